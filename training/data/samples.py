"""Sample types shared by the synthetic generators, the loaders and the finetune code.

A detector learns from whole images with line quads (``DetSample``); a recognizer learns from
cropped text lines (``RecSample``). Both hold RGB PIL images so every source looks the same downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

Point = tuple[float, float]


@dataclass(frozen=True)
class LineLabel:
    """One text line: its transcript and a 4-point quad, clockwise from the top-left corner.

    ``ignore`` marks "don't care" regions (ICDAR ``###``): a detector must neither be rewarded
    nor punished there, and a recognizer must not train on them.
    """

    text: str
    polygon: list[Point]
    ignore: bool = False

    def __post_init__(self) -> None:
        if len(self.polygon) != 4:
            raise ValueError(f"polygon needs 4 points, got {len(self.polygon)}")


@dataclass
class RecSample:
    """A cropped text line and what it reads."""

    image: Image.Image
    text: str


@dataclass
class DetSample:
    """A page or scene with its text lines; ``fields`` carries key values (plate, MRZ fields, totals...)."""

    image: Image.Image
    lines: list[LineLabel]
    fields: dict[str, object] = field(default_factory=dict)

"""What every domain profile shares: the text-line protocol it consumes and small layout helpers.

Profiles accept any object with `.text`, `.confidence` and `.polygon` (service.pipeline.TextLine, test
doubles, ground-truth lines in evaluation), so they never depend on the pipeline's concrete class.
"""

from __future__ import annotations

import bisect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

__all__ = [
    "Evidence",
    "FocusedRead",
    "LineBox",
    "Profile",
    "TextLineLike",
    "char_evidence",
    "fields_model_file",
    "group_rows",
    "line_boxes",
    "load_json_model",
]


@runtime_checkable
class TextLineLike(Protocol):
    @property
    def text(self) -> str: ...

    @property
    def confidence(self) -> float: ...

    @property
    def polygon(self) -> Sequence[Sequence[float]]: ...


class Evidence(Protocol):
    """What the recogniser saw for one character (service.vision.ctc.CharEvidence): its alternatives, best first
    (the first is the character read), and the time-step span of the character in the line crop's CTC output."""

    @property
    def alternatives(self) -> Sequence[tuple[str, float]]: ...

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


def char_evidence(line: TextLineLike) -> tuple[Evidence, ...] | None:
    """The line's per-character evidence when it has some aligned with its text (the pipeline's lines do; test
    doubles and other OCR engines' lines may not)."""
    chars = tuple(getattr(line, "char_evidence", ()) or ())
    return chars if chars and len(chars) == len(str(line.text)) else None


def fields_model_file(root: str | Path, fmt: str, claim_unmarked: bool = False) -> Path | None:
    """The file model.json's `fields_model` names in the bundle at ``root`` when it is this profile's (its JSON says
    format ``fmt``); None without one or when it is another profile's (one bundle may serve several profiles). A
    file that says no format (missing, not JSON, no "format") is returned when ``claim_unmarked``, so that loading
    it raises the error naming it; the invoice tagger claims those, as `fields_model` was its key first."""
    manifest = Path(root) / "model.json"
    if not manifest.is_file():
        return None
    name = json.loads(manifest.read_text(encoding="utf-8")).get("fields_model")
    if not name:
        return None
    path = Path(root) / name
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        said = spec.get("format") if isinstance(spec, dict) else None
    except FileNotFoundError:
        said = None
    except (OSError, ValueError):
        said = None if claim_unmarked else fmt  # unreadable: an error either way, named by the loader
    if said == fmt or (said is None and claim_unmarked):
        return path
    return None


def load_json_model(path: str | Path, build: Callable[[dict[str, Any]], Any], what: str) -> Any:
    """``build(json)`` of a learned profile model's file; ValueError naming the file and ``what`` it should be when
    it cannot be read or is not one (the service refuses such a bundle at start, not on the first request)."""
    try:
        return build(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: unreadable {what}: {exc}") from exc


@dataclass(frozen=True)
class LineBox:
    """A text line with its axis-aligned bounds, the geometry profiles reason about."""

    text: str
    confidence: float
    x0: float
    y0: float
    x1: float
    y1: float
    index: int

    @property
    def height(self) -> float:
        return max(self.y1 - self.y0, 1e-6)

    @property
    def width(self) -> float:
        return max(self.x1 - self.x0, 1e-6)

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2


def line_boxes(lines: Sequence[TextLineLike]) -> list[LineBox]:
    """Bounds of each line, in reading order (top to bottom, then left to right within a row)."""
    out = []
    for i, line in enumerate(lines):
        pts = list(line.polygon) or [(0.0, 0.0)]
        xs, ys = [float(p[0]) for p in pts], [float(p[1]) for p in pts]
        out.append(LineBox(str(line.text), float(line.confidence), min(xs), min(ys), max(xs), max(ys), i))
    return [b for row in group_rows(out) for b in row]


def group_rows(boxes: Sequence[LineBox]) -> list[list[LineBox]]:
    """Group boxes whose vertical centres lie within half a line height of a row; rows top to bottom.

    A box joins the first row (in creation order) whose first box is close enough. Rows are created in order of
    that first box's centre, and one more than half this box's height above it can never be close enough, so the
    search starts at the first row that can (bisect): the same rows as trying every row, in linear rather than
    quadratic time (a 10-page PDF's 800 lines: 1 s -> a few ms)."""
    rows: list[list[LineBox]] = []
    first_cy: list[float] = []  # each row's first centre, non-decreasing
    for b in sorted(boxes, key=lambda b: b.cy):
        for k in range(bisect.bisect_left(first_cy, b.cy - 0.5 * b.height - 1e-6), len(rows)):
            ref = rows[k][0]
            if abs(b.cy - ref.cy) <= 0.5 * min(b.height, ref.height):
                rows[k].append(b)
                break
        else:
            rows.append([b])
            first_cy.append(b.cy)
    return [sorted(r, key=lambda b: b.x0) for r in rows]


class FocusedRead(ABC):
    """A profile that needs one region of the page, not every word on it: a detector pass at low resolution
    (boxes only) locates the region, and only the region is read, at the resolution it needs. When its fields are
    not what the profile needs, the region is read once more at the retry limits (the detector at the region's own
    resolution: the pixels and scale a whole-page read would give it, at a fraction of the page's cost). Only when
    no region is found, or the region's fields are neither accepted nor settled, is the whole page read."""

    locate_det_limit: ClassVar[tuple[int, str]]  # detector (limit_side_len, limit_type) of the locating pass
    region_det_limit: ClassVar[tuple[int, str]]  # detector limits inside the region (crops keep full resolution)
    region_retry_det_limit: ClassVar[tuple[int, str] | None] = None  # the second read of the region; None: none

    def region_det_limits(self) -> list[tuple[int, str]]:
        """The detector limits the region is read at, in order, until its fields are accepted."""
        retry = self.region_retry_det_limit
        return [self.region_det_limit] + ([retry] if retry is not None and retry != self.region_det_limit else [])

    @abstractmethod
    def region(self, quads: Any, image_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1) in image pixels to read, from the locating pass's (N, 4, 2) quads; None: none found."""

    @abstractmethod
    def accept(self, fields: dict[str, Any]) -> bool:
        """Whether the region's fields answer the request (else the region is read again, then the page)."""

    def settled(self, fields: dict[str, Any]) -> bool:
        """Whether the last region read, though not accepted, shows the region held all the profile needs, so
        that a whole-page read would only read the same pixels again: then it answers (default: never)."""
        return False


class Profile(ABC):
    """A domain profile turns OCR lines into typed fields. `fields_model` documents them in OpenAPI."""

    name: ClassVar[str]
    description: ClassVar[str]
    fields_model: ClassVar[type[BaseModel]]

    @abstractmethod
    def extract(self, lines: Sequence[TextLineLike], image_size: tuple[int, int]) -> BaseModel:
        """Fields as the profile's pydantic model."""

    def for_model_dir(self, root: str | Path) -> Profile:
        """This profile with whatever the model bundle at `root` adds to it (learned field models); a profile
        that takes nothing from its bundle returns itself. The engine and the evaluation call it per bundle."""
        return self

    def extract_fields(self, lines: Sequence[TextLineLike], image_size: tuple[int, int]) -> dict[str, Any]:
        """Fields as a JSON-serialisable dict (what the service puts in its response)."""
        return self.extract(lines, image_size).model_dump(mode="json")

    # Read only the region this finds (None: the whole page), unless the request asks for all text.
    focus: ClassVar[FocusedRead | None] = None

    def det_limits(self) -> list[tuple[int, str]]:
        """Detector limits this profile may ask for besides the bundle's (the service warms them up on GPUs)."""
        limits = [self.second_look_det_limit] if self.second_look_det_limit is not None else []
        if self.focus is not None:
            limits += [self.focus.locate_det_limit, *self.focus.region_det_limits()]
        return limits

    # A second read of the same image with other detector limits, when the first found nothing usable. The
    # service and the evaluation both honour it; None (the default) means one read is all a profile needs.
    second_look_det_limit: ClassVar[tuple[int, str] | None] = None

    def wants_second_look(self, fields: dict[str, Any]) -> bool:
        """Whether the fields of the first read call for the second look (never when it is not configured)."""
        return False

    def prefer_second_look(self, first: dict[str, Any], second: dict[str, Any]) -> bool:
        """Keep the second read's fields only when they are what the first lacked."""
        return not self.wants_second_look(second)

    def with_second_look(self, lines: Sequence[TextLineLike], image_size: tuple[int, int],
                         read_at: Callable[[tuple[int, str]], Sequence[TextLineLike]]
                         ) -> tuple[Sequence[TextLineLike], bool]:
        """The lines to answer with, and whether the image was read again: ``read_at(det_limit)`` reads it at the
        second look's detector limits when the first read's fields call for it. For synchronous callers (the
        evaluation, bench/); the service's engine applies the same three steps around its async batchers."""
        limit = self.second_look_det_limit
        if limit is None:
            return lines, False
        first = self.extract_fields(lines, image_size)
        if not self.wants_second_look(first):
            return lines, False
        again = read_at(limit)
        return (again if self.prefer_second_look(first, self.extract_fields(again, image_size)) else lines), True

"""Where the MRZ is on a page, from a cheap low-resolution detector pass (boxes only, no recognition).

An ICAO 9303 MRZ is two or three lines of monospaced OCR-B of (nearly) the same length, stacked at a regular pitch,
each far wider than tall (30-44 characters), and the widest text lines of an ID page. That geometry is visible at a
detector resolution where nothing can be read yet, so the id profile locates the band first and reads only that
region at full resolution: 2 lines instead of every word of the page.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .base import FocusedRead

__all__ = ["MRZ_MIN_ASPECT", "MrzBand", "Region", "find_mrz_band"]

# Width / height of a detected MRZ line: a 30-character TD1 line is ~19x as wide as tall (OCR-B advance ~0.63 em);
# below 10 it is a short label or a date.
MRZ_MIN_ASPECT = 10.0
# Lines of one band have lengths within this ratio of the longest (a TD3 name line may end in a short `<` run the
# detector misses at low resolution), and overlap horizontally by this much of the narrower one.
SAME_LENGTH = 0.75
SAME_COLUMN = 0.7
# Centre-to-centre pitch of stacked MRZ lines, in line heights (OCR-B line spacing is ~1.5-2 heights).
MAX_PITCH = 3.0
# Margins around the band: above/below in line heights (a line the locating pass missed still falls inside when it
# is one pitch away), left/right in band widths.
VERTICAL_MARGIN = 1.0
LONE_LINE_MARGIN = 2.6
HORIZONTAL_MARGIN = 0.04


@dataclass(frozen=True)
class Region:
    """An axis-aligned rectangle in image pixels (x0, y0 inclusive; x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True)
class _Box:
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def w(self) -> float:
        return self.x1 - self.x0

    @property
    def h(self) -> float:
        return max(self.y1 - self.y0, 1e-6)

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2


def _same_band(a: _Box, b: _Box) -> bool:
    overlap = min(a.x1, b.x1) - max(a.x0, b.x0)
    return (min(a.w, b.w) >= SAME_LENGTH * max(a.w, b.w) and overlap >= SAME_COLUMN * min(a.w, b.w)
            and abs(a.cy - b.cy) <= MAX_PITCH * max(a.h, b.h))


def _bands(lines: list[_Box]) -> list[list[_Box]]:
    """Stacks of MRZ-like lines, top to bottom, each line joined to the stack whose last line it continues."""
    bands: list[list[_Box]] = []
    for box in sorted(lines, key=lambda b: b.cy):
        for band in bands:
            if _same_band(band[-1], box):
                band.append(box)
                break
        else:
            bands.append([box])
    return bands


def find_mrz_band(quads: Sequence[np.ndarray] | np.ndarray, image_size: tuple[int, int]) -> Region | None:
    """The region of ``image_size`` (width, height) most likely to hold the MRZ, given detector quads (N, 4, 2) in
    image pixels; None when no line looks like an MRZ line. Prefers stacks of two or more lines, then the widest
    (field labels can stack three deep, but an MRZ runs across the whole document), then the lowest (the MRZ sits
    at the foot of a passport page and of an ID card's back)."""
    width, height = image_size
    boxes = [_Box(float(q[:, 0].min()), float(q[:, 1].min()), float(q[:, 0].max()), float(q[:, 1].max()))
             for q in np.asarray(quads, np.float64).reshape(-1, 4, 2)]
    lines = [b for b in boxes if b.w >= MRZ_MIN_ASPECT * b.h]
    if not lines:
        return None
    best = max(_bands(lines), key=lambda band: (len(band) >= 2, max(b.w for b in band), band[-1].cy))
    line_h = float(np.median([b.h for b in best]))
    margin_y = (VERTICAL_MARGIN if len(best) >= 2 else LONE_LINE_MARGIN) * line_h
    x0, x1 = min(b.x0 for b in best), max(b.x1 for b in best)
    margin_x = HORIZONTAL_MARGIN * (x1 - x0)
    region = Region(max(int(x0 - margin_x), 0), max(int(min(b.y0 for b in best) - margin_y), 0),
                    min(int(np.ceil(x1 + margin_x)), width), min(int(np.ceil(max(b.y1 for b in best) + margin_y)),
                                                                  height))
    return region if region.width > 0 and region.height > 0 else None


class MrzBand(FocusedRead):
    """The id profile's focused read: locate the MRZ band at low resolution, read it (twice at most), keep it when
    it is valid or settled (else the whole page is read, as without the focus)."""

    # 736 px long side: MRZ lines of a 2400x1648 page are ~20 px tall there, well inside what DB separates.
    locate_det_limit: ClassVar[tuple[int, str]] = (736, "max")
    # Inside the band (~1900x330 px for such a page) the detector needs no more than this; the crops the
    # recognizer reads come from the band at full resolution (up to the bundle's det_max_side).
    region_det_limit: ClassVar[tuple[int, str]] = (1280, "max")
    # When that read is not valid, the band once more with the detector at the band's own resolution (a band
    # narrower than this is not scaled): the scale a whole-page read sees it at, for ~0.25 s instead of ~1.5 s on
    # a 2400x1648 page. On the DEV passports it gave exactly the page read's MRZ and verdict on all five pages
    # whose first band read was not valid.
    region_retry_det_limit: ClassVar[tuple[int, str] | None] = (2400, "max")

    def region(self, quads: Any, image_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        band = find_mrz_band(quads, image_size)
        return None if band is None else (band.x0, band.y0, band.x1, band.y1)

    def accept(self, fields: dict[str, Any]) -> bool:
        return bool(fields.get("valid"))

    def settled(self, fields: dict[str, Any]) -> bool:
        """An MRZ whose every line fits its type and whose every check digit holds was in the band, read at the
        page's own scale: what keeps it from `valid` is an ambiguity (another reading passes too, fillers guessed)
        that a whole-page read meets again in the same pixels. A failing check digit still sends the page to be
        read (the band may have cut a line, or a TD1 may have been taken for a TD2)."""
        checks = fields.get("check_digits") or {}
        return fields.get("mrz_type") is not None and bool(checks) and all(checks.values())

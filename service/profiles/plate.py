"""Licence plates: pick the plate among the OCR lines of a car photo, normalise it, guess its format.

A car photo holds more text than the plate (dealer frames, stickers, state names, slogans), so each line, and
each pair of neighbouring lines (plates split by the detector, two-row plates), is scored by how well its
characters fit a known plate format, its OCR confidence, its size and how central it is. Letter/digit
confusions (O/0, I/1, B/8, S/5, Z/2, G/6) are fixed only at positions where a fixed-layout format demands a
letter or a digit, and only when the separators read show that format's grouping (a bare 'P602849' is a
valid US plate, not a Polish one with a misread G); the generic US pattern (2-8 alphanumerics) never changes a character.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, Field

from .base import LineBox, Profile, TextLineLike, line_boxes

__all__ = [
    "PLATE_FORMATS",
    "PlateFields",
    "PlateFormat",
    "PlateMatch",
    "PlateProfile",
    "match_plate",
    "plate_key",
]

_TO_DIGIT = {"O": "0", "Q": "0", "D": "0", "I": "1", "B": "8", "S": "5", "Z": "2", "G": "6"}
_TO_LETTER = {"0": "O", "1": "I", "8": "B", "5": "S", "2": "Z", "6": "G"}
_ES_LETTERS = set("BCDFGHJKLMNPRSTVWXYZ")
# Codes printed on the blue EU band (or an oval sticker) that OCR reads as part of the plate line.
_BAND_CODES = {"A", "B", "BG", "CZ", "D", "DK", "E", "EST", "F", "FIN", "GB", "GR", "H", "HR", "I", "IRL", "L",
               "LT", "LV", "M", "NL", "P", "PL", "RO", "S", "SK", "SLO", "UK", "BR", "BRASIL", "BRAZIL"}


@dataclass(frozen=True)
class PlateFormat:
    """A fixed-layout plate format: `layout` uses L (letter), D (digit), A (either) and separators."""

    country: str
    layout: str
    letters: frozenset[str] | None = None  # allowed letters when a country excludes some

    @property
    def slots(self) -> str:
        return re.sub(r"[^LDA]", "", self.layout)

    @property
    def separators(self) -> str:
        return re.sub(r"[LDA]", "", self.layout)


# Order matters only for ties; specific formats first, the generic US pattern is handled separately.
PLATE_FORMATS: tuple[PlateFormat, ...] = (
    PlateFormat("FR", "LL-DDD-LL"),
    PlateFormat("SK", "LL-DDDLL"),
    PlateFormat("IT", "LL DDDLL"),
    PlateFormat("ES", "DDDD LLL", frozenset(_ES_LETTERS)),
    PlateFormat("GB", "LLDD LLL"),
    PlateFormat("BR", "LLLDLDD"),  # Mercosul
    PlateFormat("BR", "LLL-DDDD"),  # pre-Mercosul
    PlateFormat("CZ", "DLA DDDD"),
    PlateFormat("PL", "LL DDDDD"),
    PlateFormat("PL", "LLL DDDD"),
    *(PlateFormat("NL", code) for code in (
        "LL-DD-DD", "DD-DD-LL", "DD-LL-DD", "LL-DD-LL", "LL-LL-DD", "DD-LL-LL", "DD-LLL-D", "D-LLL-DD",
        "LL-DDD-L", "L-DDD-LL", "LLL-DD-L", "L-DD-LLL", "D-LL-DDD", "DDD-LL-D")),
)
# German plates: district (1-3 letters), 1-2 letters, 1-4 digits, optional E (electric) / H (historic).
# The split between district and letters is only visible in the printed separators, so match the raw text.
_DE_RAW = re.compile(r"^([A-ZÄÖÜ]{1,3})[\s\-:.·]+([A-Z]{1,2})[\s\-]*([1-9][0-9]{0,3}[EH]?)$")
_GENERIC = re.compile(r"^[A-Z0-9]{2,8}$")
_MAX_FIXES = 2


def plate_key(text: str) -> str:
    """Comparison key: upper-case alphanumerics only (spaces, hyphens, dots and the rest removed)."""
    return re.sub(r"[^A-Z0-9]", "", text.upper())


@dataclass(frozen=True)
class PlateMatch:
    plate: str  # key after fixes
    display: str
    country: str | None
    layout: str
    fixes: int
    pattern_score: float


def _fit(key: str, fmt: PlateFormat) -> tuple[str, int] | None:
    """Key rewritten to the format (fixing confusions at typed slots) and the number of fixes; None if no fit."""
    slots = fmt.slots
    if len(key) != len(slots):
        return None
    out, fixes = [], 0
    for c, slot in zip(key, slots):
        if slot == "D" and not c.isdigit():
            if c not in _TO_DIGIT:
                return None
            c, fixes = _TO_DIGIT[c], fixes + 1
        elif slot == "L" and not c.isalpha():
            if c not in _TO_LETTER:
                return None
            c, fixes = _TO_LETTER[c], fixes + 1
        if slot == "L" and fmt.letters is not None and c not in fmt.letters:
            return None
        out.append(c)
    return "".join(out), fixes


def _display(key: str, layout: str) -> str:
    it = iter(key)
    return "".join(next(it) if ch in "LDA" else ch for ch in layout)


def _groups(text: str) -> list[int]:
    return [len(g) for g in re.findall(r"[A-Z0-9]+", text.upper())]


def _layout_evidence(raw: str, fmt: PlateFormat) -> float:
    """How strongly the printed grouping of `raw` shows `fmt`: 1 same groups and separators, 0.5 same groups
    with other separators (space read for hyphen), 0 otherwise (e.g. no separator read at all)."""
    if _groups(raw) != [len(g) for g in re.findall(r"[LDA]+", fmt.layout)] or len(_groups(raw)) < 2:
        return 0.0
    seps = [s.strip() or " " for s in re.findall(r"[^A-Z0-9]+", raw.upper().strip())]
    want = [s.strip() or " " for s in re.findall(r"[^LDA]+", fmt.layout)]
    return 1.0 if seps == want else 0.5


def _raw_display(raw: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^A-Z0-9\- ]", "", raw.upper())).strip(" -")


def match_plate(raw: str) -> PlateMatch | None:
    """Best reading of `raw` as a plate among the fixed formats, the German pattern and the generic one."""
    key = plate_key(raw)
    if not key:
        return None
    grouped = len(_groups(raw)) >= 2
    options: list[PlateMatch] = []
    for fmt in PLATE_FORMATS:
        fit = _fit(key, fmt)
        if fit is None or fit[1] > _MAX_FIXES:
            continue
        fixed, fixes = fit
        evidence = _layout_evidence(raw, fmt)
        if fixes and evidence == 0.0:
            continue  # change characters only when the printed grouping shows this format
        contradicted = grouped and evidence == 0.0
        score = 1.0 - 0.1 * fixes + 0.05 * evidence - (0.45 if contradicted else 0.0)
        display = _display(fixed, fmt.layout)
        options.append(PlateMatch(fixed, display, fmt.country, fmt.layout, fixes, score))
    m = _DE_RAW.match(re.sub(r"\s+", " ", raw.upper().strip()))
    if m and len(key) <= 8:
        score = 1.05 if len(_groups(raw)) == 3 else 0.9
        options.append(PlateMatch(key, f"{m.group(1)}-{m.group(2)} {m.group(3)}", "DE", "L-L D", 0, score))
    if _GENERIC.match(key):
        has_d, has_l = any(c.isdigit() for c in key), any(c.isalpha() for c in key)
        score = (0.6 if has_d and has_l else 0.3) * (1.0 if len(key) >= 5 else 0.6)
        options.append(PlateMatch(key, _raw_display(raw) or key, "US" if has_d else None, "generic", 0, score))
    return max(options, key=lambda o: o.pattern_score, default=None)


# Camera overlays (timestamps, dates) are the most common non-plate text with digits in car photos.
# Czech plates ('1B1:9839', the emblem read as ':') show that a single colon is not enough: a time has only
# digits around its colons.
_TIMESTAMP = re.compile(r"(?<![A-Z0-9])\d{1,2}:\d{2}(?::\d{2})?(?![A-Z0-9])|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"
                        r"|(?<![A-Z0-9])\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}(?![A-Z0-9])")


def _drop_leading_glyph(raw: str) -> str | None:
    """'RRK:346AL' -> 'RK:346AL': an emblem or band read as one extra leading letter, kept only when the rest
    is a fixed-layout plate without any fix. A state graphic at the left edge may read as a digit instead
    ('4ASC7399', the Arizona cactus): that is dropped only from 8 characters, one more than every fixed layout
    has, since a 7-character US plate minus its first digit can fit a 6-character Dutch layout by chance."""
    key = plate_key(raw)
    if len(key) < 6 or not (key[0].isalpha() or (key[0].isdigit() and len(key) == 8)):
        return None
    rest = raw.strip()[1:]
    m = match_plate(rest)
    return rest if m is not None and m.layout != "generic" and m.fixes == 0 and m.country != "DE" else None


# Glyphs a hyphen, a fixing bolt or the emblem between groups is read as.
_SEPARATOR_GLYPHS = frozenset("O0I1")


def _separator_read_as_glyph(raw: str) -> str | None:
    """'RK0565AV' -> 'RK-565AV': a separator read as one extra O/0/I/1 where a fixed layout has its separator,
    kept only when the rest is that layout without any fix (the generic pattern and German plates never)."""
    key = plate_key(raw)
    if len(_groups(raw)) > 1:
        return None  # separators were read: nothing stands in for one
    for fmt in PLATE_FORMATS:
        if len(key) != len(fmt.slots) + 1:
            continue
        boundary = 0
        for ch in fmt.layout:
            if ch in "LDA":
                boundary += 1
                continue
            if key[boundary] in _SEPARATOR_GLYPHS:
                candidate = key[:boundary] + ch + key[boundary + 1:]
                m = match_plate(candidate)
                if m is not None and m.layout == fmt.layout and m.fixes == 0:
                    return candidate
    return None


def _strip_band(raw: str) -> str | None:
    """'SK RK828AG' -> 'RK828AG' when the first token is an EU band / country code."""
    parts = raw.strip().split(maxsplit=1)
    if len(parts) == 2 and parts[0].upper().strip(".:") in _BAND_CODES:
        return parts[1]
    return None


class PlateFields(BaseModel):
    """The picked plate; all null when no line looks like a plate."""

    plate: str | None = Field(None, description="normalised key: upper-case alphanumerics, no separators",
                              examples=["AB123CD"])
    plate_display: str | None = Field(None, description="the plate with its format's separators",
                                      examples=["AB-123-CD"])
    plate_raw: str | None = Field(None, description="the OCR text the plate was read from",
                                  examples=["AB-I23-CD"])
    country_guess: str | None = Field(None, description="ISO 3166 alpha-2 guess from the format (US for the "
                                                        "generic 2-8 alphanumeric pattern)", examples=["FR"])
    format: str | None = Field(None, description="layout: L letter, D digit; 'generic' for 2-8 alphanumerics",
                               examples=["LL-DDD-LL"])
    confidence: float | None = Field(None, ge=0, le=1, description="OCR confidence of the picked line(s)",
                                     examples=[0.97])


@dataclass(frozen=True)
class _Candidate:
    raw: str
    confidence: float
    x0: float
    y0: float
    x1: float
    y1: float


def _candidates(boxes: list[LineBox]) -> list[_Candidate]:
    cands = [_Candidate(b.text, b.confidence, b.x0, b.y0, b.x1, b.y1) for b in boxes]
    for a in boxes:
        for b in boxes:
            if a is b or not 0.6 <= a.height / b.height <= 1.67:
                continue
            h = min(a.height, b.height)
            same_row = abs(a.cy - b.cy) < 0.5 * h and 0 <= b.x0 - a.x1 < 1.5 * h
            overlap = min(a.x1, b.x1) - max(a.x0, b.x0)
            stacked = 0 <= b.y0 - a.y1 < 0.8 * h and overlap > 0.5 * min(a.width, b.width)
            if same_row or stacked:
                cands.append(_Candidate(f"{a.text} {b.text}", (a.confidence + b.confidence) / 2,
                                        min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1)))
    return cands


class PlateProfile(Profile):
    name: ClassVar[str] = "plate"
    description: ClassVar[str] = "Vehicle licence plates: picks the plate, normalises it, guesses its format"
    fields_model: ClassVar[type[BaseModel]] = PlateFields
    # The plate bundle detects at a long side of 736 px (3x faster than RapidOCR's default); a plate far from a
    # 1280x720 camera is then too small to find. Only then is the photo read again at up to 1280 px: on the DEV
    # plates that found 3 more plates (wts-lg / dashcam frames) for a second read on 8 of 79 images.
    second_look_det_limit: ClassVar[tuple[int, str] | None] = (1280, "max")

    def wants_second_look(self, fields: dict) -> bool:
        """No plate, or a 'plate' without a digit (a dealer name or slogan picked for want of the real one)."""
        plate = fields.get("plate")
        return not plate or not any(c.isdigit() for c in plate)

    def extract(self, lines: Sequence[TextLineLike], image_size: tuple[int, int]) -> PlateFields:
        boxes = line_boxes(lines)
        if not boxes:
            return PlateFields()
        width, height = (max(float(v), 1.0) for v in image_size)
        max_h = max(b.height for b in boxes)
        best: tuple[float, _Candidate, PlateMatch] | None = None
        for cand in _candidates(boxes):
            if _TIMESTAMP.search(cand.raw):
                continue
            variants = [(cand.raw, 0.0)]
            stripped = _strip_band(cand.raw)
            if stripped:
                variants.append((stripped, 0.02))
            glyph = _drop_leading_glyph(cand.raw)
            if glyph:
                variants.append((glyph, 0.05))
            separator = _separator_read_as_glyph(cand.raw)
            if separator:
                variants.append((separator, 0.05))
            for raw, penalty in variants:
                match = match_plate(raw)
                if match is None:
                    continue
                h = cand.y1 - cand.y0
                size = min(h / max_h, 1.0)
                dx = ((cand.x0 + cand.x1) / 2 - width / 2) / width
                dy = ((cand.y0 + cand.y1) / 2 - height / 2) / height
                centrality = 1.0 - min(math.hypot(dx, dy) / 0.7071, 1.0)
                aspect = (cand.x1 - cand.x0) / max(h, 1e-6)
                aspect_ok = 1.0 if 1.2 <= aspect <= 10 else 0.5
                score = (0.55 * match.pattern_score + 0.2 * cand.confidence + 0.15 * size + 0.1 * centrality) \
                    * aspect_ok - penalty
                if best is None or score > best[0]:
                    best = (score, cand, match)
        if best is None:
            return PlateFields()
        _, cand, match = best
        return PlateFields(plate=match.plate, plate_display=match.display, plate_raw=cand.raw,
                           country_guess=match.country, format=match.layout,
                           confidence=round(min(max(cand.confidence, 0.0), 1.0), 4))

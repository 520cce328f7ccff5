"""Licence plates: pick the plate among the OCR lines of a car photo, normalise it, guess its format.

A car photo holds more text than the plate (dealer frames, stickers, state names, slogans). Each line, and each
pair of neighbouring lines (plates split by the detector, two-row plates), is a candidate, scored by the region it
sits in first (the largest plate-shaped box: plate-like aspect and character count), then by how well it fits a
known plate format, its OCR confidence and how central it is. The candidates come back with their scores. Those
weights are set by hand; a bundle may name a learned picker instead (model.json `fields_model`, see
`plate_picker`), which ranks the same candidates by a score fitted on the TRAIN plate photos.

A read is changed only under the rules of `plate_layouts` (never when it already fits a known layout, and only
on the recogniser's own evidence); the generic US pattern (2-8 alphanumerics) never changes a character, but spells
the O/0 glyph of US plates as 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from .base import (
    Evidence,
    LineBox,
    Profile,
    TextLineLike,
    char_evidence,
    fields_model_file,
    line_boxes,
)
from .plate_layouts import (
    DE_RAW,
    PLATE_FORMATS,
    US_FORMATS,
    Correction,
    PlateFormat,
    boundary_gaps,
    corrections,
    plate_key,
    separator_boundaries,
    spacing_support,
)
from .plate_picker import FORMAT as PICKER_FORMAT
from .plate_picker import PlatePicker, Reading

__all__ = [
    "PLATE_FORMATS",
    "PlateCandidate",
    "PlateFields",
    "PlateFormat",
    "PlateMatch",
    "PlateProfile",
    "match_plate",
    "plate_key",
    "plate_readings",
]

_GENERIC = re.compile(r"^[A-Z0-9]{2,8}$")
# US plates print the letter O and the digit 0 as one glyph, and the labels spell it 0: of the 815 characters of the
# 126 US TRAIN plates (openalpr), 37 are that glyph and every one is labelled 0 (DEV: 12 of 12). So a plate in the
# generic US pattern reports it as 0, whichever of the two the recogniser wrote; fixed formats keep their slots.
MAX_CANDIDATES = 5
# A plate-shaped box: one text row of a plate is 1.5 to 10 times as wide as it is high and holds a serial: 3 to 8
# characters (a German 'A-B 1' has 3, none has over 8), digits among them (a word on a banner or a dealer frame has
# the size and aspect of a plate line but no digit).
_PLATE_ASPECT = (1.5, 10.0)
_PLATE_CHARS = (3, 8)


@dataclass(frozen=True)
class PlateMatch:
    plate: str  # key
    display: str
    country: str | None
    layout: str
    pattern_score: float


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


def _spaced_layout(raw: str, evidence: Sequence[Evidence | None] | None,
                   formats: Sequence[PlateFormat]) -> PlateFormat | None:
    """For a read with no separator, the layout among `formats` whose separators the characters' spacing shows
    best, when it shows them at all (positive log-likelihood ratio); None without aligned evidence."""
    gaps = None if evidence is None else boundary_gaps(raw, evidence)
    if gaps is None:
        return None
    best, best_support = None, 0.0
    for fmt in formats:
        support = spacing_support(gaps, separator_boundaries(fmt.layout))
        if support > best_support:
            best, best_support = fmt, support
    return best


def match_plate(raw: str, evidence: Sequence[Evidence | None] | None = None) -> PlateMatch | None:
    """Best reading of `raw`, as read, among the fixed formats, the German pattern and the generic one. A read with
    no separator takes its grouping from the spacing of its characters when `evidence` (per character of `raw`,
    with CTC spans) shows it: that tells 'TT703HW' as SK 'LL-DDDLL' from FR 'LL-DDD-LL'."""
    key = plate_key(raw)
    if not key:
        return None
    grouped = len(_groups(raw)) >= 2
    accepting = [fmt for fmt in PLATE_FORMATS if fmt.accepts(key)]
    spaced = None if grouped else _spaced_layout(raw, evidence, accepting)
    options: list[PlateMatch] = []
    for fmt in accepting:
        shown = _layout_evidence(raw, fmt) if grouped else (0.5 if fmt is spaced else 0.0)
        contradicted = grouped and shown == 0.0
        score = 1.0 + 0.05 * shown - (0.45 if contradicted else 0.0)
        options.append(PlateMatch(key, _display(key, fmt.layout), fmt.country, fmt.layout, score))
    m = DE_RAW.match(re.sub(r"\s+", " ", raw.upper().strip()))
    if m and len(key) <= 8:
        score = 1.05 if len(_groups(raw)) == 3 else 0.9
        options.append(PlateMatch(key, f"{m.group(1)}-{m.group(2)} {m.group(3)}", "DE", "L-L D", score))
    if _GENERIC.match(key):
        has_d, has_l = any(c.isdigit() for c in key), any(c.isalpha() for c in key)
        score = (0.6 if has_d and has_l else 0.3) * (1.0 if len(key) >= 5 else 0.6)
        if any(fmt.accepts(key) for fmt in US_FORMATS):
            score = 0.7  # a common US serial layout: more than any 2-8 alphanumerics, less than a fixed format
        display = _raw_display(raw) or key
        if has_d:  # a US plate: one glyph for O and 0, spelled 0 (see the note at _GENERIC)
            key, display = key.replace("O", "0"), display.replace("O", "0")
        options.append(PlateMatch(key, display, "US" if has_d else None, "generic", score))
    return max(options, key=lambda o: o.pattern_score, default=None)


# Camera overlays (timestamps, dates) are the most common non-plate text with digits in car photos.
# Czech plates ('1B1:9839', the emblem read as ':') show that a single colon is not enough: a time has only
# digits around its colons.
_TIMESTAMP = re.compile(r"(?<![A-Z0-9])\d{1,2}:\d{2}(?::\d{2})?(?![A-Z0-9])|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"
                        r"|(?<![A-Z0-9])\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}(?![A-Z0-9])")


class PlateCandidate(BaseModel):
    """One reading the picker weighed: what was read, what it became, and the score parts that ranked it."""

    read: str = Field(..., description="the OCR text of the line (or of two neighbouring lines joined)",
                      examples=["AB-I23-CD"])
    text: str = Field(..., description="the text matched as a plate: the read, or the read as changed by `rule`",
                      examples=["AB-123-CD"])
    plate: str = Field(..., description="normalised key", examples=["AB123CD"])
    format: str = Field(..., examples=["LL-DDD-LL"])
    country_guess: str | None = Field(None, examples=["FR"])
    rule: str = Field("as_read", description="as_read, or the change that was made: alternative (a character "
                                             "became one of the recogniser's close alternatives), leading_glyph, "
                                             "trailing_glyph, separator_glyph, band_code",
                      examples=["alternative"])
    changes: list[str] = Field(default_factory=list, description="what the rule changed (key position:old->new)",
                               examples=[["2:I->1"]])
    score: float = Field(..., description="the total the candidates are ranked by: the hand-set weighted sum of "
                                          "the parts below less the rule's penalty; when the bundle has a learned "
                                          "plate picker (model.json `fields_model`), the picker's score of the "
                                          "candidate's line (log-odds, comparable within one photo only), less "
                                          "what the hand-set total puts this reading below the line's best one",
                         examples=[0.91])
    region: float = Field(..., ge=0, le=1, description="plate-shaped region: the box's height relative to the "
                                                       "largest plate-shaped box (0 when the box's aspect or "
                                                       "character count is not a plate's)", examples=[1.0])
    pattern: float = Field(..., description="how well the text fits a plate format (1 fixed format, 0.7 a common "
                                            "US layout, 0.6 other 2-8 letters and digits)",
                           examples=[1.05])
    confidence: float = Field(..., ge=0, le=1, description="OCR confidence of the line(s)", examples=[0.97])
    centrality: float = Field(..., ge=0, le=1, description="1 at the photo's centre, 0 in a corner",
                              examples=[0.8])


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
    candidates: list[PlateCandidate] = Field(default_factory=list,
                                             description=f"the best {MAX_CANDIDATES} readings weighed, best first "
                                                         "(the first is the one picked)")


@dataclass(frozen=True)
class _Candidate:
    raw: str
    evidence: tuple[Evidence | None, ...] | None  # per character of raw; None when the line(s) carry none
    confidence: float
    x0: float
    y0: float
    x1: float
    y1: float
    joined: bool = False  # two neighbouring lines


def _evidence(lines: Sequence[TextLineLike], box: LineBox) -> tuple[Evidence | None, ...] | None:
    """The recogniser's per-character evidence of the line behind `box`, when it is aligned with its text."""
    return char_evidence(lines[box.index])


def _candidates(lines: Sequence[TextLineLike], boxes: list[LineBox]) -> list[_Candidate]:
    cands = [_Candidate(b.text, _evidence(lines, b), b.confidence, b.x0, b.y0, b.x1, b.y1) for b in boxes]
    for a in boxes:
        for b in boxes:
            if a is b or not 0.6 <= a.height / b.height <= 1.67:
                continue
            h = min(a.height, b.height)
            same_row = abs(a.cy - b.cy) < 0.5 * h and 0 <= b.x0 - a.x1 < 1.5 * h
            overlap = min(a.x1, b.x1) - max(a.x0, b.x0)
            stacked = 0 <= b.y0 - a.y1 < 0.8 * h and overlap > 0.5 * min(a.width, b.width)
            if same_row or stacked:
                ea, eb = _evidence(lines, a), _evidence(lines, b)
                joined = None if ea is None or eb is None else (*ea, None, *eb)
                cands.append(_Candidate(f"{a.text} {b.text}", joined, (a.confidence + b.confidence) / 2,
                                        min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1),
                                        joined=True))
    return cands


def _plate_shaped(cand: _Candidate) -> bool:
    aspect = (cand.x1 - cand.x0) / max(cand.y1 - cand.y0, 1e-6)
    key = plate_key(cand.raw)
    return _PLATE_ASPECT[0] <= aspect <= _PLATE_ASPECT[1] and _PLATE_CHARS[0] <= len(key) <= _PLATE_CHARS[1] \
        and any(c.isdigit() for c in key)


# A line in the largest plate-shaped box beats a smaller line that only fits a format better: a sticker or a dealer
# frame half the plate line's height loses 0.175 on region, more than a fixed format's 1.0 over the generic 0.6
# gains on pattern (0.16).
_W_REGION, _W_PATTERN, _W_CONFIDENCE, _W_CENTRALITY = 0.35, 0.4, 0.1, 0.15
# A changed read ranks a little below the same text read as it is, but above the read it came from: the penalty
# (0.02) is under the smallest pattern gain a change can bring (a common US layout over the generic pattern:
# 0.4 x 0.1 = 0.04), since a change is only offered for a read that fits no known layout.
_RULE_PENALTY = {"as_read": 0.0, "band_code": 0.02, "leading_glyph": 0.02, "trailing_glyph": 0.02,
                 "separator_glyph": 0.02, "alternative": 0.02}


def _readings(cand: _Candidate) -> list[tuple[str, str, tuple[str, ...]]]:
    """(text, rule, changes) for the read as it is and for every change the layout rules allow."""
    fixed: list[Correction] = corrections(cand.raw, cand.evidence)
    return [(cand.raw, "as_read", ())] + [(c.raw, c.rule, c.changes) for c in fixed]


_Weighed = tuple[Reading, PlateMatch, tuple[str, ...]]


def _weighed(lines: Sequence[TextLineLike], image_size: tuple[int, int]) -> list[_Weighed]:
    """Every reading that matches a plate pattern, with its match and the changes its rule made."""
    boxes = line_boxes(lines)
    if not boxes:
        return []
    width, height = (max(float(v), 1.0) for v in image_size)
    cands = [c for c in _candidates(lines, boxes) if not _TIMESTAMP.search(c.raw)]
    shaped = [c for c in cands if _plate_shaped(c)]
    max_h = max((c.y1 - c.y0 for c in shaped), default=1.0)
    out: list[_Weighed] = []
    for n, cand in enumerate(cands):
        h = cand.y1 - cand.y0
        region = min(h / max_h, 1.0) if _plate_shaped(cand) else 0.0
        dx = ((cand.x0 + cand.x1) / 2 - width / 2) / width
        dy = ((cand.y0 + cand.y1) / 2 - height / 2) / height
        centrality = 1.0 - min(math.hypot(dx, dy) / 0.7071, 1.0)
        confidence = min(max(cand.confidence, 0.0), 1.0)
        for text, rule, changes in _readings(cand):
            same_glyphs = cand.evidence is not None and len(text) == len(cand.raw)
            match = match_plate(text, cand.evidence if same_glyphs else None)
            if match is None:
                continue
            score = _W_REGION * region + _W_PATTERN * match.pattern_score + _W_CONFIDENCE * confidence \
                + _W_CENTRALITY * centrality - _RULE_PENALTY[rule]
            out.append((Reading(read=cand.raw, text=text, key=match.plate, layout=match.layout, rule=rule,
                                line=n, joined=cand.joined, box=(cand.x0, cand.y0, cand.x1, cand.y1), confidence=confidence,
                                region=region, pattern=match.pattern_score, centrality=centrality, hand_score=score),
                        match, tuple(changes)))
    return out


def plate_readings(lines: Sequence[TextLineLike], image_size: tuple[int, int]) -> list[Reading]:
    """The readings the picker weighs (each line and neighbouring pair, timestamps left out, as read and as each
    layout rule changes it, that match a plate pattern), with the parts of the hand-set ranking: what
    `ocrnet train-plate-picker` learns from."""
    return [r for r, _, _ in _weighed(lines, image_size)]


class PlateProfile(Profile):
    name: ClassVar[str] = "plate"
    description: ClassVar[str] = "Vehicle licence plates: picks the plate, normalises it, guesses its format"
    fields_model: ClassVar[type[BaseModel]] = PlateFields
    # The plate bundle detects at a long side of 736 px (3x faster than RapidOCR's default); a plate far from a
    # 1280x720 camera is then too small to find. Only then is the photo read again at up to 1280 px: on the DEV
    # plates that found 3 more plates (wts-lg / dashcam frames) for a second read on 8 of 79 images.
    second_look_det_limit: ClassVar[tuple[int, str] | None] = (1280, "max")

    def __init__(self, picker: PlatePicker | None = None) -> None:
        self.picker = picker

    def for_model_dir(self, root: str | Path) -> PlateProfile:
        """This profile with the bundle's learned plate picker (model.json `fields_model`); the hand-set ranking
        without one, or when `fields_model` is another profile's model (the invoice tagger of a bundle that serves
        both). Raises ValueError when the file is not JSON, or says it is a picker but is not a valid one."""
        path = fields_model_file(root, PICKER_FORMAT)
        return self if path is None else PlateProfile(PlatePicker.load(path))

    def wants_second_look(self, fields: dict) -> bool:
        """No plate, or a 'plate' without a digit (a dealer name or slogan picked for want of the real one)."""
        plate = fields.get("plate")
        return not plate or not any(c.isdigit() for c in plate)

    def extract(self, lines: Sequence[TextLineLike], image_size: tuple[int, int]) -> PlateFields:
        weighed = _weighed(lines, image_size)
        if not weighed:
            return PlateFields()
        if self.picker is None:
            scores = [r.hand_score for r, _, _ in weighed]
        else:  # the learned score picks the line; the rules and their penalties still pick the line's reading
            scores = [float(s) for s in self.picker.rank([r for r, _, _ in weighed], image_size)]
        ranked = sorted(zip((round(s, 4) for s in scores), weighed), key=lambda item: -item[0])
        _, (best, match, _) = ranked[0]
        return PlateFields(plate=match.plate, plate_display=match.display, plate_raw=best.read,
                           country_guess=match.country, format=match.layout, confidence=round(best.confidence, 4),
                           candidates=[PlateCandidate(
                               read=r.read, text=r.text, plate=m.plate, format=m.layout, country_guess=m.country,
                               rule=r.rule, changes=list(changes), score=score, region=round(r.region, 4),
                               pattern=round(r.pattern, 4), confidence=round(r.confidence, 4),
                               centrality=round(r.centrality, 4))
                               for score, (r, m, changes) in ranked[:MAX_CANDIDATES]])

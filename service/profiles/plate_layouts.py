"""Plate layouts, and the only ways a plate read may be changed to fit one.

A read that already fits a known layout (a fixed European or Brazilian format, a German plate, a common US
layout) is never changed. A read that fits none may be changed only where the recogniser itself was unsure:
- a character becomes one of its own CTC alternatives (``CharEvidence``) whose probability is close to the read
  one's, at most two of them, when that makes the read fit a layout exactly;
- a leading or trailing glyph is dropped when its own probability is low or it stands apart from the rest, and the
  rest fits a layout exactly;
- a glyph where a layout has its separator (a hyphen or bolt read as O/0/I/1) becomes that separator, on the same
  evidence;
- a first token that is an EU band / country code, separated by a space, is dropped.
Lines without per-character evidence (test doubles, other OCR engines) get only the last rule.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from .base import Evidence

__all__ = [
    "CLOSE_RATIO",
    "GLYPH_DOUBT",
    "MAX_CHANGES",
    "PLATE_FORMATS",
    "SPACING_GAP_EDGES",
    "SPACING_LOG_LR",
    "US_FORMATS",
    "Correction",
    "PlateFormat",
    "boundary_gaps",
    "corrections",
    "fits_known_layout",
    "plate_key",
    "separator_boundaries",
    "spacing_support",
]

# An alternative is close when the recogniser gives it at least a tenth of the read character's probability.
# Why a tenth: the change is made only for a read that fits no known layout, choosing between "a plate of an unknown
# layout, read right" and "a plate of a known layout, one character misread". Plates of unknown layouts (vanity,
# rare state serials) are about one in ten or fewer of those photographed (5 of the 79 DEV labels, 1 in 40 of the
# synthetic mix), so the prior odds are about 10:1 for the known layout, and an evidence ratio above 1/10 tips
# the balance.
CLOSE_RATIO = 0.1
# Each changed character multiplies the chance of turning a plate of an unknown layout into a wrong known one.
MAX_CHANGES = 2
# A glyph is doubtful when the recogniser gives it no better than even odds.
GLYPH_DOUBT = 0.5
# A glyph stands apart when its centre is at least two character pitches from its neighbour's (about one empty
# character cell between them), measured in CTC time steps on the same crop.
APART_PITCHES = 2.0
_ES_LETTERS = frozenset("BCDFGHJKLMNPRSTVWXYZ")
# Codes printed on the blue EU band (or an oval sticker) that OCR reads as part of the plate line.
_BAND_CODES = {"A", "B", "BG", "CZ", "D", "DK", "E", "EST", "F", "FIN", "GB", "GR", "H", "HR", "I", "IRL", "L",
               "LT", "LV", "M", "NL", "P", "PL", "RO", "S", "SK", "SLO", "UK", "BR", "BRASIL", "BRAZIL"}
# Glyphs a hyphen, a fixing bolt or the emblem between groups is read as.
_SEPARATOR_GLYPHS = frozenset("O0I1")
# Where a plate prints a separator (hyphen, space, emblem), its neighbouring characters stand further apart in the
# recogniser's CTC time steps than elsewhere, even when the recogniser writes no separator (the shipped plate
# recognizer was trained on labels without them). Gap = distance between neighbouring characters' centres divided
# by the read's median distance; SPACING_LOG_LR[i] = log P(gap in bin i | separator) / P(gap in bin i | none), the
# bins cut at SPACING_GAP_EDGES. Measured on the 249 TRAIN plate crops (the separators where models/base reads
# them) with `ocrnet plate-spacing` (docs/finetune.md); the recogniser's steps are coarse (about 3 per character),
# so one gap is weak evidence and a layout is judged on all of its separators together.
SPACING_GAP_EDGES: tuple[float, ...] = (1.2, 1.4, 1.6, 1.8)
SPACING_LOG_LR: tuple[float, ...] = (-2.55, 1.24, 2.17, 4.95, 3.99)


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

    def slot_accepts(self, slot: str, c: str) -> bool:
        if slot == "D":
            return c.isdigit()
        if slot == "L":
            return c.isalpha() and (self.letters is None or c in self.letters)
        return c.isalnum()

    def accepts(self, key: str) -> bool:
        """The key fits this layout exactly, character for character."""
        return len(key) == len(self.slots) and all(self.slot_accepts(s, c) for s, c in zip(self.slots, key))


# Order matters only for ties; specific formats first, the generic US pattern is handled separately.
PLATE_FORMATS: tuple[PlateFormat, ...] = (
    PlateFormat("FR", "LL-DDD-LL"),
    PlateFormat("SK", "LL-DDDLL"),
    PlateFormat("IT", "LL DDDLL"),
    PlateFormat("ES", "DDDD LLL", _ES_LETTERS),
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
# Common US serial layouts (the ones training/data/synth/plates.py renders). They are not reported as formats (a
# state's layout is not known from the text), but a read that fits one is a plate as read: never rewritten.
US_FORMATS: tuple[PlateFormat, ...] = tuple(PlateFormat("US", code) for code in (
    "LLL DDDD", "DLLLDDD", "DDD-LLL", "LLL-DDD", "LLL DDD", "DLL DDD", "DDD LLL", "LLDLDL", "DDLDDLD", "LDDDDDD"))
_TARGETS = PLATE_FORMATS + US_FORMATS
# German plates: district (1-3 letters), 1-2 letters, 1-4 digits, optional E (electric) / H (historic).
# The split between district and letters is only visible in the printed separators, so match the raw text.
DE_RAW = re.compile(r"^([A-ZÄÖÜ]{1,3})[\s\-:.·]+([A-Z]{1,2})[\s\-]*([1-9][0-9]{0,3}[EH]?)$")


def plate_key(text: str) -> str:
    """Comparison key: upper-case alphanumerics only (spaces, hyphens, dots and the rest removed)."""
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def _groups(raw: str) -> list[int]:
    return [len(g) for g in re.findall(r"[A-Z0-9]+", raw.upper())]


def _grouping_allows(raw: str, fmt: PlateFormat) -> bool:
    """No separator read, or the groups read are the layout's (a space read for a hyphen is fine)."""
    groups = _groups(raw)
    return len(groups) < 2 or groups == [len(g) for g in re.findall(r"[LDA]+", fmt.layout)]


def _fits_exactly(key: str) -> bool:
    return any(fmt.accepts(key) for fmt in _TARGETS)


def fits_known_layout(raw: str) -> bool:
    """The read as it is, its printed grouping included, fits a fixed format, a common US layout or the German
    pattern: never change it. ('AB0 1234' is PL 'LL DDDDD' by its characters but not as printed.)"""
    key = plate_key(raw)
    return any(fmt.accepts(key) and _grouping_allows(raw, fmt) for fmt in _TARGETS) or \
        (len(key) <= 8 and DE_RAW.match(re.sub(r"\s+", " ", raw.upper().strip())) is not None)


@dataclass(frozen=True)
class Correction:
    """A changed read: the new raw text, the rule that made it and what it changed (for the caller to see)."""

    raw: str
    rule: str  # alternative | leading_glyph | trailing_glyph | separator_glyph | band_code
    changes: tuple[str, ...]
    cost: float  # -log of the evidence ratio the change rests on (0 for rules that drop a glyph or token)


def _key_positions(raw: str) -> list[int]:
    """Index in `raw` of each character of its plate key."""
    return [i for i, c in enumerate(raw.upper()) if re.fullmatch(r"[A-Z0-9]", c)]


def _alternatives(raw: str, evidence: Sequence[Evidence | None]) -> Correction | None:
    """The cheapest rewrite of at most MAX_CHANGES characters, each to a close alternative, that makes the key fit
    a layout exactly; None when there is none or two different rewrites are equally cheap."""
    positions = _key_positions(raw)
    key = plate_key(raw)
    options: dict[str, tuple[float, tuple[str, ...], str]] = {}  # new key -> (cost, changes, new raw)
    for fmt in _TARGETS:
        if len(fmt.slots) != len(key) or not _grouping_allows(raw, fmt):
            continue
        chars, cost, changes = list(raw), 0.0, []
        for k, (slot, c) in enumerate(zip(fmt.slots, key)):
            if fmt.slot_accepts(slot, c):
                continue
            ev = evidence[positions[k]]
            if ev is None or not ev.alternatives or len(changes) == MAX_CHANGES:
                break
            read_p = ev.alternatives[0][1]
            fitting = [(p, a.upper()) for a, p in ev.alternatives[1:]
                       if len(a) == 1 and a.upper() != c and fmt.slot_accepts(slot, a.upper())]
            if not fitting or max(fitting)[0] < CLOSE_RATIO * read_p:
                break
            p, a = max(fitting)
            chars[positions[k]] = a
            cost += math.log(max(read_p, 1e-9) / max(p, 1e-9))
            changes.append(f"{k}:{c}->{a}")
        else:
            new_raw = "".join(chars)
            new_key = plate_key(new_raw)
            if changes and (new_key not in options or cost < options[new_key][0]):
                options[new_key] = (cost, tuple(changes), new_raw)
    ranked = sorted(options.values())
    if not ranked or (len(ranked) > 1 and math.isclose(ranked[0][0], ranked[1][0])):
        return None
    cost, changes, new_raw = ranked[0]
    return Correction(new_raw, "alternative", changes, cost)


def _pitch(evidence: Sequence[Evidence | None]) -> float | None:
    """Median distance in time steps between neighbouring characters' centres (None with under 3 characters)."""
    centres = [(e.start + e.end) / 2 for e in evidence if e is not None]
    gaps = [b - a for a, b in itertools.pairwise(centres) if b > a]
    return median(gaps) if len(gaps) >= 2 else None


def boundary_gaps(raw: str, evidence: Sequence[Evidence | None]) -> list[float] | None:
    """Per boundary between neighbouring key characters of `raw` (``evidence``: per character of `raw`): the
    distance between their centres in pitches (None with under 3 key characters, evidence not aligned with `raw` or
    missing for a key character, or no measurable pitch)."""
    if len(evidence) != len(raw):
        return None
    keyed = [evidence[i] for i in _key_positions(raw)]
    if any(e is None for e in keyed):
        return None
    pitch = _pitch(keyed)
    if not pitch:
        return None
    centres = [(e.start + e.end) / 2 for e in keyed if e is not None]
    return [(b - a) / pitch for a, b in itertools.pairwise(centres)]


def separator_boundaries(text: str) -> tuple[int, ...]:
    """Where `text` has a separator: the number of key characters before each run of other characters between two
    of them ('AB-123 CD' -> (2, 5); a layout reads the same way: 'LL-DDDLL' -> (2,))."""
    out, count, pending = [], 0, False
    for ch in text.upper():
        if re.fullmatch(r"[A-Z0-9]", ch):
            if pending and count:
                out.append(count)
            count, pending = count + 1, False
        else:
            pending = True
    return tuple(out)


def spacing_support(gaps: Sequence[float], boundaries: Sequence[int]) -> float:
    """Log-likelihood ratio that the characters' spacing shows separators at `boundaries` (1-based, before key
    character k) rather than none: the sum of SPACING_LOG_LR over those gaps."""
    return sum(SPACING_LOG_LR[bisect.bisect_right(SPACING_GAP_EDGES, gaps[b - 1])] for b in boundaries
               if 0 < b <= len(gaps))


def _doubtful(evidence: Sequence[Evidence | None], i: int, neighbour: int) -> bool:
    """The glyph at `i` has low probability, or stands apart from the glyph at `neighbour` with nothing read
    between them (a separator read there explains the gap: it is the plate's own grouping)."""
    ev, nb = evidence[i], evidence[neighbour]
    if ev is None or not ev.alternatives:
        return False
    if ev.alternatives[0][1] < GLYPH_DOUBT:
        return True
    pitch = _pitch([e for k, e in enumerate(evidence) if k != i])
    if nb is None or pitch is None or abs(neighbour - i) != 1:
        return False
    return abs((ev.start + ev.end) / 2 - (nb.start + nb.end) / 2) >= APART_PITCHES * pitch


def _end_glyph(raw: str, evidence: Sequence[Evidence | None], leading: bool) -> Correction | None:
    positions = _key_positions(raw)
    if len(positions) < 3:
        return None
    i, neighbour = (positions[0], positions[1]) if leading else (positions[-1], positions[-2])
    rest = (raw[i + 1:] if leading else raw[:i]).strip(" -:.")
    if not _fits_exactly(plate_key(rest)) or not _doubtful(evidence, i, neighbour):
        return None
    rule = "leading_glyph" if leading else "trailing_glyph"
    return Correction(rest, rule, (f"{rule}:{raw[i]}",), 0.0)


def _separator_glyph(raw: str, evidence: Sequence[Evidence | None]) -> Correction | None:
    """'RK0565AV' -> 'RK-565AV': one extra O/0/I/1 exactly where a layout has its separator, doubtful on its own
    evidence, and the rest fits that layout exactly (only when no separator was read)."""
    positions = _key_positions(raw)
    key = plate_key(raw)
    if len(re.findall(r"[A-Z0-9]+", raw.upper())) > 1:
        return None
    for fmt in PLATE_FORMATS:
        if len(key) != len(fmt.slots) + 1:
            continue
        boundary = 0
        for ch in fmt.layout:
            if ch in "LDA":
                boundary += 1
                continue
            k = boundary
            if key[k] not in _SEPARATOR_GLYPHS or not fmt.accepts(key[:k] + key[k + 1:]):
                continue
            if _doubtful(evidence, positions[k], positions[k - 1] if k else positions[k + 1]):
                i = positions[k]
                return Correction(raw[:i] + ch + raw[i + 1:], "separator_glyph", (f"{k}:{raw[i]}->{ch}",), 0.0)
    return None


def _band_code(raw: str) -> Correction | None:
    """'SK RK828AG' -> 'RK828AG' when the first token, separated by a space, is an EU band / country code."""
    parts = raw.strip().split(maxsplit=1)
    if len(parts) == 2 and parts[0].upper().strip(".:") in _BAND_CODES:
        return Correction(parts[1], "band_code", (f"band_code:{parts[0]}",), 0.0)
    return None


def corrections(raw: str, evidence: Sequence[Evidence | None] | None) -> list[Correction]:
    """Every change the rules allow for `raw` (none when it fits a known layout as read). ``evidence``: per
    character of `raw`, what the recogniser saw (None for a character it did not emit, e.g. a joining space);
    None when the line carries no evidence at all."""
    if fits_known_layout(raw):
        return []
    out = [c for c in (_band_code(raw),) if c is not None]
    if evidence is None or len(evidence) != len(raw):
        return out
    for found in (_alternatives(raw, evidence), _end_glyph(raw, evidence, leading=True),
                  _end_glyph(raw, evidence, leading=False), _separator_glyph(raw, evidence)):
        if found is not None:
            out.append(found)
    return out

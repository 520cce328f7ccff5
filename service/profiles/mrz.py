"""ICAO 9303 machine-readable zone: check digits, builders and a tolerant parser.

The builders are imported by the synthetic data generator, so the MRZ we train on and the MRZ we validate
here follow one implementation of the standard. The parser accepts OCR output: spaces, '«' for '<',
miscounted '<' fillers and letter/digit confusions in the strictly numeric positions (check digits and
dates), and reports every check digit separately so a caller can tell a misread from a forged document.

Order matters for `valid` to be trusted: the type is decided from the document code, the number of lines and their
length on the image, never from which layout's check digits pass; the filler runs are restored to that type's line
length; only then are the check digits computed. A read whose check digits pass while another reading the
recogniser found nearly as likely passes too is not valid (the check digits cannot tell the two apart).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from .base import Evidence

__all__ = [
    "CLOSE_RATIO",
    "MRZ_SPECS",
    "LineEvidence",
    "MrzResult",
    "build_td1",
    "build_td2",
    "build_td3",
    "check_digit",
    "decide_type",
    "find_mrz",
    "normalise_mrz_text",
    "normalise_mrz_with",
    "parse_mrz",
    "restore_fillers",
]

_WEIGHTS = (7, 3, 1)
# Letters an OCR engine produces where the MRZ can only hold a digit.
_TO_DIGIT = str.maketrans({"O": "0", "Q": "0", "D": "0", "U": "0", "I": "1", "L": "1", "Z": "2",
                           "S": "5", "G": "6", "B": "8", "T": "7", "A": "4"})
# Digits an OCR engine produces where the MRZ can only hold a letter (names, country codes, document type).
_TO_LETTER = str.maketrans({"0": "O", "1": "I", "2": "Z", "5": "S", "6": "G", "8": "B"})
# Look-alikes tried in alphanumeric fields (document number) when only its check digit fails.
# An alternative the recogniser gives at least a tenth of the read character's probability is a reading to weigh
# against the check digits. A tenth: a check digit passes a wrong reading 1 time in 10, so a reading the recogniser
# finds 10 times less likely than the read one is as likely as a chance pass, and no longer informative.
CLOSE_RATIO = 0.1
# For a read that fails a check digit (so some character is wrong), alternatives down to a thousandth of the read
# character's probability are weighed; below that the top-k is the softmax tail, not a reading.
TAIL_FLOOR = 0.001
# A glyph the recogniser gives no better than even odds is doubtful (see `_drop_stray_glyph`).
GLYPH_DOUBT = 0.5
# Characters changed to the recogniser's close alternatives in one reading: each one more multiplies the chance that
# a wrong reading passes the check digits by chance.
_MAX_SWAPS = 2
# (lines, line length) per document type.
MRZ_SPECS: dict[str, tuple[int, int]] = {"TD1": (3, 30), "TD2": (2, 36), "TD3": (2, 44)}


def _char_value(c: str) -> int:
    if c.isdigit():
        return int(c)
    if "A" <= c <= "Z":
        return ord(c) - ord("A") + 10
    if c == "<":
        return 0
    raise ValueError(f"character {c!r} is not allowed in an MRZ")


def check_digit(s: str) -> str:
    """ICAO 9303 check digit of `s` (weights 7,3,1 repeating; '<'=0, A=10..Z=35), as a one-char string."""
    return str(sum(_char_value(c) * _WEIGHTS[i % 3] for i, c in enumerate(s.upper())) % 10)


# ---------------------------------------------------------------------------------------------------- builders

def _field(value: str, length: int) -> str:
    """Upper-case, transliterate accents, map anything outside A-Z0-9 to '<', pad/truncate to `length`."""
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode().upper()
    value = re.sub(r"[^A-Z0-9]", "<", value)
    return value[:length].ljust(length, "<")


def _name_field(surname: str, given_names: str, length: int) -> str:
    primary = _field(surname, len(surname) + 8).rstrip("<")
    secondary = _field(given_names, len(given_names) + 8).rstrip("<")
    name = primary + ("<<" + secondary if secondary else "")
    return name[:length].ljust(length, "<")


def _date_field(value: str | _dt.date) -> str:
    if isinstance(value, _dt.date):
        return value.strftime("%y%m%d")
    if not re.fullmatch(r"[0-9<]{6}", value):
        raise ValueError(f"MRZ date must be YYMMDD, got {value!r}")
    return value


def _sex_field(sex: str) -> str:
    sex = (sex or "<").upper()[:1]
    return "<" if sex in ("X", "<", "") else sex


def build_td3(document_type: str, issuing_country: str, surname: str, given_names: str, document_number: str,
              nationality: str, birth_date: str | _dt.date, sex: str, expiry_date: str | _dt.date,
              personal_number: str = "") -> tuple[str, str]:
    """Two 44-char lines of a passport (TD3) MRZ with all check digits."""
    line1 = _field(document_type, 2) + _field(issuing_country, 3) + _name_field(surname, given_names, 39)
    number = _field(document_number, 9)
    birth, expiry = _date_field(birth_date), _date_field(expiry_date)
    personal = _field(personal_number, 14)
    # An empty personal number may carry '<' or 0 as its check digit; ICAO specimens use '<'.
    personal_cd = "<" if personal == "<" * 14 else check_digit(personal)
    line2 = (number + check_digit(number) + _field(nationality, 3) + birth + check_digit(birth) + _sex_field(sex)
             + expiry + check_digit(expiry) + personal + personal_cd)
    composite = line2[0:10] + line2[13:20] + line2[21:43]
    return line1, line2 + check_digit(composite)


def build_td2(document_type: str, issuing_country: str, surname: str, given_names: str, document_number: str,
              nationality: str, birth_date: str | _dt.date, sex: str, expiry_date: str | _dt.date,
              optional_data: str = "") -> tuple[str, str]:
    """Two 36-char lines of a TD2 card MRZ with all check digits."""
    line1 = _field(document_type, 2) + _field(issuing_country, 3) + _name_field(surname, given_names, 31)
    number = _field(document_number, 9)
    birth, expiry = _date_field(birth_date), _date_field(expiry_date)
    line2 = (number + check_digit(number) + _field(nationality, 3) + birth + check_digit(birth) + _sex_field(sex)
             + expiry + check_digit(expiry) + _field(optional_data, 7))
    composite = line2[0:10] + line2[13:20] + line2[21:35]
    return line1, line2 + check_digit(composite)


def build_td1(document_type: str, issuing_country: str, surname: str, given_names: str, document_number: str,
              nationality: str, birth_date: str | _dt.date, sex: str, expiry_date: str | _dt.date,
              optional_data1: str = "", optional_data2: str = "") -> tuple[str, str, str]:
    """Three 30-char lines of an ID-card (TD1) MRZ with all check digits (document number up to 9 chars)."""
    number = _field(document_number, 9)
    line1 = _field(document_type, 2) + _field(issuing_country, 3) + number + check_digit(number) \
        + _field(optional_data1, 15)
    birth, expiry = _date_field(birth_date), _date_field(expiry_date)
    line2 = (birth + check_digit(birth) + _sex_field(sex) + expiry + check_digit(expiry) + _field(nationality, 3)
             + _field(optional_data2, 11))
    composite = line1[5:30] + line2[0:7] + line2[8:15] + line2[18:29]
    line3 = _name_field(surname, given_names, 30)
    return line1, line2 + check_digit(composite), line3


# ---------------------------------------------------------------------------------------------------- parsing

@dataclass
class MrzResult:
    mrz_type: str
    document_type: str
    issuing_country: str
    surname: str
    given_names: str
    document_number: str
    nationality: str
    birth_date: str | None
    sex: str
    expiry_date: str | None
    personal_number: str
    check_digits: dict[str, bool]
    valid: bool
    mrz_lines: list[str]
    birth_date_raw: str = ""
    expiry_date_raw: str = ""
    corrections: list[str] = field(default_factory=list)
    ambiguous_fields: list[str] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[str]:
        """The check digits that fail, then the fields another close reading would also pass in."""
        return [k for k, ok in self.check_digits.items() if not ok] + \
            [f for f in self.ambiguous_fields if self.check_digits.get(f, True)]

    def as_dict(self) -> dict:
        out = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
               for k, v in self.__dict__.items()}
        out["failed_checks"] = self.failed_checks
        return out


def normalise_mrz_text(text: str) -> str:
    """Upper-case, drop whitespace, map the usual OCR renderings of the filler ('«', '‹', '(') to '<'."""
    t = unicodedata.normalize("NFKC", text).upper()
    t = re.sub(r"\s+", "", t)
    t = t.replace("«", "<<").replace("‹", "<").replace("〈", "<").replace("く", "<")
    return t


LineEvidence = tuple[Evidence | None, ...]  # per character of a line; None where the recogniser emitted none


def normalise_mrz_with(text: str, evidence: Sequence[Evidence | None] | None
                       ) -> tuple[str, LineEvidence | None]:
    """`normalise_mrz_text` that carries each character's evidence along (None when not aligned with `text`);
    a '«' read for '<<' gives both fillers the same evidence."""
    if evidence is None or len(evidence) != len(text):
        return normalise_mrz_text(text), None
    chars: list[str] = []
    kept: list[Evidence | None] = []
    for c, ev in zip(text, evidence):
        norm = normalise_mrz_text(c)
        chars.append(norm)
        kept.extend([ev] * len(norm))
    return "".join(chars), tuple(kept)


def decide_type(lines: Sequence[str], cells: Sequence[int] | None = None) -> str | None:
    """TD1, TD2 or TD3 from what the page shows, before any check digit is looked at (a check digit that happens to
    pass in the wrong layout must not choose it): three lines are TD1; of two lines, a passport ('P') is TD3 and an
    identity card ('I', 'A', 'C') TD2; otherwise (visas, a misread document code) the longer line decides,
    measured in character cells on the line image (`cells`, when known) or else in characters read."""
    if len(lines) == 3:
        return "TD1"
    if len(lines) != 2:
        return None
    code = lines[0][:1]
    if code == "P":
        return "TD3"
    if code in ("I", "A", "C"):
        return "TD2"
    longest = max(cells) if cells else max(len(x) for x in lines)
    return "TD3" if longest > (36 + 44) / 2 else "TD2"


def _pitch(line: str, evidence: LineEvidence) -> float | None:
    """Time steps per character cell (OCR-B is fixed-pitch): over each stretch of consecutive non-filler characters,
    the distance between its first and last centres over its cells, pooled (a median of neighbour gaps, whole steps
    of 3 and 4, is too coarse to count a 20-cell run)."""
    span = cells = 0.0
    for m in re.finditer(r"[^<]+", line):
        if m.end() - m.start() < 2:
            continue
        first, last = evidence[m.start()], evidence[m.end() - 1]
        if first is None or last is None:
            continue
        span += ((last.start + last.end) - (first.start + first.end)) / 2
        cells += m.end() - m.start() - 1
    return span / cells if cells >= 3 and span > 0 else None


def _filler_runs_from_spans(line: str, evidence: LineEvidence | None) -> tuple[str, LineEvidence] | None:
    """Each '<' run as long as the line image shows it: CTC merges a run of identical fillers into fewer
    characters, but their time steps still span the run, so (distance between the run's neighbours) / pitch
    counts its cells. None when the evidence has no usable spans."""
    if evidence is None or any(e is None or e.start < 0 for e in evidence):
        return None
    pitch = _pitch(line, evidence)
    if pitch is None or pitch <= 0:
        return None
    out, kept = [], []
    for m in re.finditer(r"<+|[^<]+", line):
        a, b = m.start(), m.end()
        if line[a] != "<" or a == 0:
            out.append(line[a:b])
            kept.extend(evidence[a:b])
            continue
        prev = evidence[a - 1]
        centre_prev = (prev.start + prev.end) / 2  # type: ignore[union-attr]
        if b < len(line):
            nxt = evidence[b]
            n = round(((nxt.start + nxt.end) / 2 - centre_prev) / pitch) - 1  # type: ignore[union-attr]
        else:
            n = round((evidence[b - 1].end - centre_prev) / pitch)  # type: ignore[union-attr]
        n = max(n, 1)
        out.append("<" * n)
        kept.extend([None] * n)
    return "".join(out), tuple(kept)


def _apart(glyph: Evidence, neighbour: Evidence, pitch: float) -> bool:
    """An empty cell between a glyph and its neighbour: 1.5 pitches or more from the glyph's centre to the nearest
    end of the neighbour's span (adjacent cells: under one; a neighbour may be a long merged '<' run)."""
    centre = (glyph.start + glyph.end) / 2
    edge = neighbour.start if neighbour.start > centre else neighbour.end
    return abs(edge - centre) >= 1.5 * pitch


def _drop_apart_glyphs(line: str, evidence: LineEvidence | None) -> tuple[str, LineEvidence | None]:
    """An MRZ line has no blank cell: a first or last glyph with an empty cell between it and the rest is not
    part of it."""
    if evidence is None or len(line) < 5 or any(e is None or e.start < 0 for e in evidence):
        return line, evidence
    pitch = _pitch(line, evidence)
    if pitch is None:
        return line, evidence
    if line[0] != "<" and _apart(evidence[0], evidence[1], pitch):  # type: ignore[arg-type]
        line, evidence = line[1:], evidence[1:]
    if line[-1] != "<" and _apart(evidence[-1], evidence[-2], pitch):  # type: ignore[arg-type]
        line, evidence = line[:-1], evidence[:-1]
    return line, evidence


def _drop_stray_glyph(line: str, length: int, evidence: LineEvidence | None) -> tuple[str, LineEvidence | None]:
    """A line one cell too long on the image loses a first or last glyph that is doubtful on its own evidence (an
    emblem or a frame edge read as a character): probability below GLYPH_DOUBT, or an empty cell between it and
    its neighbour."""
    cells = _cells(line, evidence)
    if evidence is None or cells is None or cells <= length or len(line) < 3:
        return line, evidence
    pitch = _pitch(line, evidence)
    for i, nb in ((0, 1), (len(line) - 1, len(line) - 2)):
        ev, other = evidence[i], evidence[nb]
        if ev is None or other is None or not ev.alternatives or line[i] == "<":
            continue
        apart = pitch is not None and _apart(ev, other, pitch)
        if ev.alternatives[0][1] < GLYPH_DOUBT or apart:
            return line[:i] + line[i + 1:], evidence[:i] + evidence[i + 1:]
    return line, evidence


def restore_fillers(line: str, length: int, evidence: LineEvidence | None = None
                    ) -> tuple[str, LineEvidence | None]:
    """The line with its '<' runs restored to the format's `length`: a stray end glyph dropped (see
    `_drop_stray_glyph`); unless the line then has that length and its cells do not add up to it otherwise, each
    run to the cells the line image shows (when the recogniser's spans are known and
    agree with the format within 2 characters), then the longest run grown or shrunk by what is still missing (OCR
    miscounts long runs most)."""
    line, evidence = _drop_stray_glyph(line, length, evidence)
    spans = _filler_runs_from_spans(line, evidence)
    if len(line) == length and (spans is None or len(spans[0]) != length):
        return line, evidence  # read at the format's length, and the cells do not add up to another reading of it
    if spans is not None and (abs(len(spans[0]) - length) <= 2 or _cut_short(spans[0], length)):
        line, evidence = spans
        if _cut_short(line, length):  # cells missing past the crop's end: the trailing run is what they were
            return line + "<" * (length - len(line)), evidence + (None,) * (length - len(line))
    return _fit_length(line, length, evidence)


def _cut_short(line: str, length: int) -> bool:
    """Fewer cells than the format and a line ending in fillers: the crop stopped inside its trailing run."""
    return len(line) < length and line.endswith("<")


def _fit_length(line: str, length: int, evidence: LineEvidence | None = None
                ) -> tuple[str, LineEvidence | None]:
    """Grow or shrink the longest '<' run so the line has `length` chars (evidence of added fillers: None)."""
    if len(line) == length:
        return line, evidence
    runs = [(m.end() - m.start(), m.start(), m.end()) for m in re.finditer(r"<+", line)]
    if not runs:
        return line, evidence
    n, start, end = max(runs)
    delta = length - len(line)
    if n + delta < 1:
        return line, evidence
    fitted = line[:start] + "<" * (n + delta) + line[end:]
    if evidence is not None:
        evidence = evidence[:start] + (None,) * (n + delta) + evidence[end:]
    return fitted, evidence


def _fix_digits(s: str) -> str:
    return s.translate(_TO_DIGIT)


def _iso_date(yymmdd: str, kind: str, today: _dt.date | None = None) -> str | None:
    """YYMMDD -> ISO 8601. Birth dates are never in the future; expiry dates fall within 2000-2069 or 1970s+."""
    if not re.fullmatch(r"\d{6}", yymmdd):
        return None
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    today = today or _dt.date.today()
    if kind == "birth":
        year = 2000 + yy if 2000 + yy <= today.year else 1900 + yy
    else:
        year = 2000 + yy if yy < 70 else 1900 + yy
    try:
        return _dt.date(year, mm, dd).isoformat()
    except ValueError:
        return None


def _names(field_text: str) -> tuple[str, str]:
    primary, _, secondary = field_text.strip("<").partition("<<")
    return primary.replace("<", " ").strip(), re.sub(r"<+", " ", secondary).strip()


def _clean(s: str) -> str:
    return s.replace("<", "").strip()


def _with_fixed(line: str, positions: Sequence[int | tuple[int, int]]) -> tuple[str, list[str]]:
    """Apply letter->digit fixes at the numeric-only `positions` (ints or [start, end) ranges)."""
    chars, fixes = list(line), []
    for p in positions:
        rng = range(p[0], p[1]) if isinstance(p, tuple) else range(p, p + 1)
        for i in rng:
            if i < len(chars) and chars[i] != "<":
                new = _fix_digits(chars[i])
                if new != chars[i]:
                    fixes.append(f"{i}:{chars[i]}->{new}")
                    chars[i] = new
    return "".join(chars), fixes


def _with_letters(line: str, ranges: Sequence[tuple[int, int]]) -> tuple[str, list[str]]:
    """Apply digit->letter fixes in the letters-only `ranges` (names, country codes, document type)."""
    chars, fixes = list(line), []
    for start, end in ranges:
        for i in range(start, min(end, len(chars))):
            new = chars[i].translate(_TO_LETTER)
            if new != chars[i]:
                fixes.append(f"{i}:{chars[i]}->{new}")
                chars[i] = new
    return "".join(chars), fixes


def _cd_ok(data: str, cd: str, allow_filler: bool = False) -> bool:
    if allow_filler and cd == "<" and set(data) <= {"<"}:
        return True
    try:
        return check_digit(data) == cd
    except ValueError:
        return False


def _parse_td3(lines: list[str]) -> MrzResult:
    l1, l2 = lines
    l1, fixes = _with_letters(l1, [(0, 44)])  # document code, country, names: letters and fillers only
    l2, more = _with_letters(l2, [(10, 13)])
    l2, more2 = _with_fixed(l2, [9, (13, 19), 19, (21, 27), 27, 42, 43])
    fixes += more + more2
    checks = {
        "document_number": _cd_ok(l2[0:9], l2[9]),
        "birth_date": _cd_ok(l2[13:19], l2[19]),
        "expiry_date": _cd_ok(l2[21:27], l2[27]),
        "personal_number": _cd_ok(l2[28:42], l2[42], allow_filler=True) or
                           (set(l2[28:42]) <= {"<"} and l2[42] == "0"),
        "composite": _cd_ok(l2[0:10] + l2[13:20] + l2[21:43], l2[43]),
    }
    surname, given = _names(l1[5:44])
    return MrzResult("TD3", _clean(l1[0:2]), _clean(l1[2:5]), surname, given, _clean(l2[0:9]),
                     _clean(l2[10:13]), _iso_date(l2[13:19], "birth"), _sex(l2[20]),
                     _iso_date(l2[21:27], "expiry"), _clean(l2[28:42]), checks, all(checks.values()),
                     [l1, l2], l2[13:19], l2[21:27], fixes)


def _parse_td2(lines: list[str]) -> MrzResult:
    l1, l2 = lines
    l1, fixes = _with_letters(l1, [(0, 36)])
    l2, more = _with_letters(l2, [(10, 13)])
    l2, more2 = _with_fixed(l2, [9, (13, 19), 19, (21, 27), 27, 35])
    fixes += more + more2
    checks = {
        "document_number": _cd_ok(l2[0:9], l2[9]),
        "birth_date": _cd_ok(l2[13:19], l2[19]),
        "expiry_date": _cd_ok(l2[21:27], l2[27]),
        "composite": _cd_ok(l2[0:10] + l2[13:20] + l2[21:35], l2[35]),
    }
    surname, given = _names(l1[5:36])
    return MrzResult("TD2", _clean(l1[0:2]), _clean(l1[2:5]), surname, given, _clean(l2[0:9]),
                     _clean(l2[10:13]), _iso_date(l2[13:19], "birth"), _sex(l2[20]),
                     _iso_date(l2[21:27], "expiry"), _clean(l2[28:35]), checks, all(checks.values()),
                     [l1, l2], l2[13:19], l2[21:27], fixes)


def _parse_td1(lines: list[str]) -> MrzResult:
    l1, l2, l3 = lines
    l1, fixes = _with_letters(l1, [(0, 5)])
    l3, more = _with_letters(l3, [(0, 30)])
    l2, more2 = _with_letters(l2, [(15, 18)])
    l2, more3 = _with_fixed(l2, [(0, 6), 6, (8, 14), 14, 29])
    fixes += more + more2 + more3
    number, number_cd, optional1 = l1[5:14], l1[14], l1[15:30]
    if number_cd == "<" and optional1.strip("<"):
        # Document numbers longer than 9 chars continue in the optional field, followed by their check digit.
        tail = optional1.split("<", 1)[0]
        number, number_cd = number + tail[:-1], tail[-1:]
        optional1 = optional1[len(tail):]
    else:
        l1, more = _with_fixed(l1, [14])
        fixes += more
        number_cd = l1[14]
    checks = {
        "document_number": _cd_ok(number, number_cd),
        "birth_date": _cd_ok(l2[0:6], l2[6]),
        "expiry_date": _cd_ok(l2[8:14], l2[14]),
        "composite": _cd_ok(l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29], l2[29]),
    }
    surname, given = _names(l3)
    return MrzResult("TD1", _clean(l1[0:2]), _clean(l1[2:5]), surname, given, _clean(number),
                     _clean(l2[15:18]), _iso_date(l2[0:6], "birth"), _sex(l2[7]),
                     _iso_date(l2[8:14], "expiry"), _clean(optional1), checks, all(checks.values()),
                     [l1, l2, l3], l2[0:6], l2[8:14], fixes)


def _sex(c: str) -> str:
    return c if c in ("M", "F") else "X"


_PARSERS = {"TD1": _parse_td1, "TD2": _parse_td2, "TD3": _parse_td3}


# Positions that only a digit may hold, per type: (line, start, end) ranges of dates and check digits.
_NUMERIC: dict[str, tuple[tuple[int, int, int], ...]] = {
    "TD3": ((1, 9, 10), (1, 13, 20), (1, 21, 28), (1, 42, 44)),
    "TD2": ((1, 9, 10), (1, 13, 20), (1, 21, 28), (1, 35, 36)),
    "TD1": ((1, 0, 7), (1, 8, 15), (1, 29, 30)),
}
# Positions some check digit covers, per type: only there can a check digit choose or doubt a character.
_COVERED: dict[str, tuple[tuple[int, int, int], ...]] = {
    "TD3": ((1, 0, 10), (1, 13, 20), (1, 21, 44)),
    "TD2": ((1, 0, 10), (1, 13, 20), (1, 21, 36)),
    "TD1": ((0, 5, 30), (1, 0, 7), (1, 8, 15), (1, 18, 30)),
}
_FIELD_AT: dict[str, tuple[tuple[int, int, int, str], ...]] = {
    "TD3": ((1, 0, 10, "document_number"), (1, 13, 20, "birth_date"), (1, 21, 28, "expiry_date"),
            (1, 28, 43, "personal_number"), (1, 43, 44, "composite")),
    "TD2": ((1, 0, 10, "document_number"), (1, 13, 20, "birth_date"), (1, 21, 28, "expiry_date"),
            (1, 28, 35, "optional_data"), (1, 35, 36, "composite")),
    "TD1": ((0, 5, 15, "document_number"), (0, 15, 30, "optional_data"), (1, 0, 7, "birth_date"),
            (1, 8, 15, "expiry_date"), (1, 18, 29, "optional_data"), (1, 29, 30, "composite")),
}
_MRZ_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<")


def _field_name(mrz_type: str, row: int, col: int) -> str:
    return next((name for r, a, b, name in _FIELD_AT[mrz_type] if r == row and a <= col < b), f"line{row + 1}")


def _swaps(mrz_type: str, lines: list[str], evidence: Sequence[LineEvidence | None], floor: float
           ) -> list[tuple[int, int, str, float]]:
    """(line, position, character, evidence ratio) for every alternative the recogniser gave, at least `floor`
    times the read character's probability, at a position a check digit covers (digits only where only a digit
    may stand)."""
    numeric = {(r, i) for r, a, b in _NUMERIC[mrz_type] for i in range(a, b)}
    out = []
    for r, a, b in _COVERED[mrz_type]:
        ev_line = evidence[r] if r < len(evidence) else None
        if ev_line is None:
            continue
        for i in range(a, min(b, len(lines[r]), len(ev_line))):
            ev = ev_line[i]
            if ev is None or not ev.alternatives:
                continue
            read_p = ev.alternatives[0][1]
            for alt, p in ev.alternatives[1:]:
                alt = normalise_mrz_text(alt)
                if len(alt) != 1 or alt not in _MRZ_ALPHABET or alt == lines[r][i] or p < floor * read_p:
                    continue
                if (r, i) in numeric and not alt.isdigit():
                    continue
                out.append((r, i, alt, p / max(read_p, 1e-9)))
    return out


def _o0_swaps(mrz_type: str, lines: list[str]) -> list[tuple[int, int, str, float]]:
    """O/0 swaps in the document number, whatever the recogniser said: OCR-B's O and 0 differ by a few pixels,
    recognisers read one for the other with high confidence (DEV: 0.98 and 0.9998 for two misread O's), and two such
    swaps at check weights 7 and 3 leave every check digit passing."""
    r, start = (0, 5) if mrz_type == "TD1" else (1, 0)
    return [(r, i, "O" if lines[r][i] == "0" else "0", 0.0) for i in range(start, start + 9)
            if lines[r][i] in "O0"]


def _variants(mrz_type: str, lines: list[str], swaps: list[tuple[int, int, str, float]]
              ) -> list[tuple[float, MrzResult, list[str]]]:
    """Readings that change 1 to _MAX_SWAPS characters as `swaps` allow and pass every check digit: (likelihood
    ratio against the read, parse, changes), most likely first."""
    out = []
    as_read = _PARSERS[mrz_type](lines).mrz_lines
    for k in range(1, _MAX_SWAPS + 1):
        for combo in itertools.combinations(swaps, k):
            if len({(r, i) for r, i, _, _ in combo}) < k:
                continue  # two alternatives for one position
            rows = [list(x) for x in lines]
            ratio = 1.0
            for r, i, alt, q in combo:
                rows[r][i] = alt
                ratio *= q
            candidate = _PARSERS[mrz_type](["".join(x) for x in rows])
            if candidate.valid and candidate.mrz_lines != as_read:
                out.append((ratio, candidate, [f"{_field_name(mrz_type, r, i)}:{r}:{i}:{lines[r][i]}->{a}"
                                               for r, i, a, _ in combo]))
    return sorted(out, key=lambda item: -item[0])


def _fields(changes: Sequence[str]) -> list[str]:
    return sorted({c.split(":", 1)[0] for c in changes})


def _ambiguous_passing(mrz_type: str, lines: list[str], evidence: Sequence[LineEvidence | None]) -> list[str]:
    """Fields in which another reading passes every check digit as well: one the recogniser found close
    (CLOSE_RATIO), or an O/0 swap in the document number."""
    swaps = _swaps(mrz_type, lines, evidence, CLOSE_RATIO)
    seen = {(r, i, a) for r, i, a, _ in swaps}
    swaps += [s for s in _o0_swaps(mrz_type, lines) if s[:3] not in seen]
    return _fields([c for _, _, changes in _variants(mrz_type, lines, swaps) for c in changes])


def _weigh_alternatives(mrz_type: str, lines: list[str], result: MrzResult,
                        evidence: Sequence[LineEvidence | None]) -> MrzResult:
    """Check digits against the recogniser's alternatives.

    A read that passes every check digit is valid only when no other reading it could be passes too (see
    `_ambiguous_passing`): the check digits cannot tell those apart. A read that fails is repaired to the most
    likely reading among the recogniser's alternatives (at least TAIL_FLOOR of the read character) that passes,
    when no other passing one comes within CLOSE_RATIO of its likelihood; the repair is valid only when its
    characters were close alternatives (CLOSE_RATIO) to begin with: otherwise the check digit chose it, and nothing
    is left to verify it."""
    if result.valid:
        result.ambiguous_fields = _ambiguous_passing(mrz_type, lines, evidence)
        result.valid = not result.ambiguous_fields
        return result
    passing = _variants(mrz_type, lines, _swaps(mrz_type, lines, evidence, TAIL_FLOOR))
    if not passing:
        return result
    if len(passing) > 1 and passing[1][0] >= CLOSE_RATIO * passing[0][0]:
        result.ambiguous_fields = _fields(passing[0][2] + passing[1][2])
        return result
    ratio, chosen, changes = passing[0]
    chosen.corrections = result.corrections + changes
    unverified = _fields(changes) if ratio < CLOSE_RATIO ** len(changes) else []
    chosen.ambiguous_fields = sorted(set(unverified) | set(_ambiguous_passing(mrz_type, chosen.mrz_lines, [])))
    chosen.valid = not chosen.ambiguous_fields
    return chosen


def _cells(line: str, evidence: LineEvidence | None) -> int | None:
    """Characters the line image holds, fillers CTC merged included (None without usable spans)."""
    spans = _filler_runs_from_spans(line, evidence)
    return None if spans is None else len(spans[0])


def parse_mrz(lines: Sequence[str], mrz_type: str | None = None,
              evidence: Sequence[Sequence[Evidence | None] | None] | None = None) -> MrzResult:
    """Parse 2 or 3 MRZ lines (raw OCR text is fine): decide the type (`decide_type`, unless given), restore the
    filler runs to its line length, then validate every check digit.

    ``evidence``: per line, the recogniser's per-character evidence (optional): its spans count merged fillers, its
    close alternatives are weighed against the check digits (`_weigh_alternatives`). Raises ValueError when the
    lines cannot be an MRZ.
    """
    normed = [_drop_apart_glyphs(*normalise_mrz_with(x, None if evidence is None else evidence[i]))
              for i, x in enumerate(lines)]
    norm = [text for text, _ in normed]
    if mrz_type is None:
        cells = [_cells(text, ev) for text, ev in normed]
        mrz_type = decide_type(norm, None if any(c is None for c in cells) else cells)  # type: ignore[arg-type]
    if mrz_type is None or MRZ_SPECS[mrz_type][0] != len(norm):
        raise ValueError(f"an MRZ has 2 or 3 lines, got {len(norm)}")
    length = MRZ_SPECS[mrz_type][1]
    restored = [restore_fillers(text, length, ev) for text, ev in normed]
    fitted = [text for text, _ in restored]
    if any(len(x) != length for x in fitted):
        raise ValueError(f"lines do not fit the {mrz_type} layout ({MRZ_SPECS[mrz_type][0]}x{length})")
    result = _weigh_alternatives(mrz_type, fitted, _PARSERS[mrz_type](fitted), [ev for _, ev in restored])
    # A line the image shows longer than the format, with no glyph doubtful enough to drop, holds a character we
    # cannot place (a stray glyph read with confidence); the lines check digits do not cover would hide it.
    unplaced = [f"line{k + 1}" for k, (text, ev) in enumerate(normed) if not _fillers_placed(text, length, ev)]
    if unplaced:
        result.ambiguous_fields = sorted(set(result.ambiguous_fields) | set(unplaced))
        result.valid = False
    return result


def _fillers_placed(line: str, length: int, evidence: LineEvidence | None) -> bool:
    """Whether `restore_fillers` knew where the missing or extra characters of `line` were: the recogniser's spans
    counted its filler runs (to within 2) and showed no character the format has no cell for; or, without spans,
    the line had the format's length, or was short with one filler run only. Otherwise (several runs and no spans: was it
    the '<<' between surname and given names that lost a '<'? too long: a doubled filler or a stray glyph?) the
    restored line is a guess, and the lines check digits do not cover would not show a wrong one."""
    trimmed, ev = _drop_stray_glyph(line, length, evidence)
    spans = _filler_runs_from_spans(trimmed, ev)
    if spans is not None:  # the cells on the image, not the characters read, say whether anything is extra
        return len(spans[0]) <= length and (abs(len(spans[0]) - length) <= 2 or _cut_short(spans[0], length))
    return len(line) == length or (len(line) < length and len(re.findall(r"<+", line)) == 1)


def _looks_like_mrz(text: str, cells: int | None = None) -> bool:
    """MRZ alphabet only, at least 20 characters long on the image (`cells`, when known), a filler or 28+."""
    t = normalise_mrz_text(text)
    n = max(len(t), cells or 0)
    return n >= 20 and re.fullmatch(r"[A-Z0-9<]+", t) is not None and ("<" in t or n >= 28)


def find_mrz(texts: Sequence[str], evidence: Sequence[Sequence[Evidence | None] | None] | None = None
             ) -> MrzResult | None:
    """Find the MRZ among text lines given in reading order (top to bottom); None when there is none.

    Tries every run of 2 or 3 consecutive MRZ-looking lines (each parsed in the type `decide_type` gives it) and
    keeps the parse with the most valid check digits, then the closest line lengths. ``evidence``: per text."""
    normed = [normalise_mrz_with(t, None if evidence is None else evidence[i]) for i, t in enumerate(texts)]
    picked = [(text, ev, _cells(text, ev)) for text, ev in normed]
    picked = [(text, ev, cells) for text, ev, cells in picked if _looks_like_mrz(text, cells)]
    cand = [text for text, _, _ in picked]
    cand_ev = [ev for _, ev, _ in picked]
    cand_len = [cells or len(text) for text, _, cells in picked]  # length on the image: merged fillers count
    best: MrzResult | None = None
    best_key: tuple[float, float] | None = None
    for n in (3, 2):
        for i in range(len(cand) - n + 1):
            window = cand[i:i + n]
            if not any("<<" in x or cells > len(x) for x, cells in zip(window, cand_len[i:i + n])):
                continue  # every MRZ has a filler run (maybe merged into one '<'); rows of printed labels do not
            try:
                result = parse_mrz(window, None, cand_ev[i:i + n])
            except ValueError:
                continue
            length = MRZ_SPECS[result.mrz_type][1]
            misfit = sum(abs(x - length) for x in cand_len[i:i + n]) / n
            if misfit > length * 0.25:
                continue
            key = (round(sum(result.check_digits.values()) / len(result.check_digits), 3), -misfit)
            if best_key is None or key > best_key:
                best, best_key = result, key
    return best

"""ICAO 9303 machine-readable zone: check digits, builders and a tolerant parser.

The builders are imported by the synthetic data generator, so the MRZ we train on and the MRZ we validate
here follow one implementation of the standard. The parser accepts OCR output: spaces, '«' for '<',
miscounted '<' fillers and letter/digit confusions in the strictly numeric positions (check digits and
dates), and reports every check digit separately so a caller can tell a misread from a forged document.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "MRZ_SPECS",
    "MrzResult",
    "Scores",
    "build_td1",
    "build_td2",
    "build_td3",
    "check_digit",
    "find_mrz",
    "normalise_mrz_scored",
    "normalise_mrz_text",
    "parse_mrz",
]

_WEIGHTS = (7, 3, 1)
# Letters an OCR engine produces where the MRZ can only hold a digit.
_TO_DIGIT = str.maketrans({"O": "0", "Q": "0", "D": "0", "U": "0", "I": "1", "L": "1", "Z": "2",
                           "S": "5", "G": "6", "B": "8", "T": "7", "A": "4"})
# Digits an OCR engine produces where the MRZ can only hold a letter (names, country codes, document type).
_TO_LETTER = str.maketrans({"0": "O", "1": "I", "2": "Z", "5": "S", "6": "G", "8": "B"})
# Look-alikes tried in alphanumeric fields (document number) when only its check digit fails.
_SWAP = {"0": "O", "O": "0", "1": "I", "I": "1", "2": "Z", "Z": "2", "5": "S", "S": "5", "8": "B", "B": "8",
         "6": "G", "G": "6"}
_MAX_SWAPS = 2
# How much lower (summed 1 - confidence) the swapped characters of the chosen variant must be than the runner-up's.
_MIN_DOUBT_MARGIN = 0.02
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

    def as_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                for k, v in self.__dict__.items()}


def normalise_mrz_text(text: str) -> str:
    """Upper-case, drop whitespace, map the usual OCR renderings of the filler ('«', '‹', '(') to '<'."""
    t = unicodedata.normalize("NFKC", text).upper()
    t = re.sub(r"\s+", "", t)
    t = t.replace("«", "<<").replace("‹", "<").replace("〈", "<").replace("く", "<")
    return t


Scores = tuple[float, ...]  # per-character recogniser confidence, aligned with a line's characters


def normalise_mrz_scored(text: str, scores: Sequence[float] | None) -> tuple[str, Scores | None]:
    """`normalise_mrz_text` that carries each character's confidence along (None when not aligned)."""
    if scores is None or len(scores) != len(text):
        return normalise_mrz_text(text), None
    chars: list[str] = []
    kept: list[float] = []
    for c, score in zip(text, scores):
        norm = normalise_mrz_text(c)
        chars.append(norm)
        kept.extend([float(score)] * len(norm))
    return "".join(chars), tuple(kept)


def _fit_length(line: str, length: int, scores: Scores | None = None) -> tuple[str, Scores | None]:
    """Grow or shrink the longest '<' run (where OCR miscounts most) so the line has `length` chars; the scores
    of the characters outside that run keep their positions relative to it."""
    if len(line) == length:
        return line, scores
    runs = [(m.end() - m.start(), m.start(), m.end()) for m in re.finditer(r"<+", line)]
    if not runs:
        return line, scores
    n, start, end = max(runs)
    delta = length - len(line)
    if n + delta < 1:
        return line, scores
    fitted = line[:start] + "<" * (n + delta) + line[end:]
    if scores is not None:
        scores = scores[:start] + (1.0,) * (n + delta) + scores[end:]
    return fitted, scores


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
    l1, fixes = _with_letters(l1, [(0, 1), (2, 44)])
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
    l1, fixes = _with_letters(l1, [(0, 1), (2, 36)])
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
    l1, fixes = _with_letters(l1, [(0, 1), (2, 5)])
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


def _resolve_document_number(mrz_type: str, lines: list[str], result: MrzResult,
                              scores: Sequence[Scores | None] | None = None) -> MrzResult:
    """Swap look-alikes (O/0, I/1, Z/2, S/5, B/8, G/6) in the document number when its check digit fails.

    Accepted when exactly one variant with the fewest swaps (at most _MAX_SWAPS) makes every check digit
    (document number and composite) valid. Several can: swapping O/0 at two positions with the same check weight
    (7-3-1 repeats every 3 characters) changes both sums alike. Then the recogniser's per-character confidence
    decides: the variant that changes the least confident characters wins, if no other ties with it. Two mod-10
    checks still let about 1 in 100 wrong variants through, so a document number misread in some other way can be
    "resolved" wrongly: `corrections` records every change.
    """
    row, start = (0, 5) if mrz_type == "TD1" else (1, 0)
    number = lines[row][start:start + 9]
    row_scores = scores[row] if scores is not None and row < len(scores) else None
    number_scores = row_scores[start:start + 9] if row_scores is not None else None
    positions = [i for i, c in enumerate(number) if c in _SWAP]
    if not positions or len(positions) > 9:
        return result
    found: dict[int, list[MrzResult]] = {}
    for mask in range(1, 1 << len(positions)):
        swaps = bin(mask).count("1")  # noqa: FURB161 (int.bit_count needs no import but reads worse here)
        if swaps > _MAX_SWAPS:
            continue  # each extra swap multiplies the chance that wrong readings pass both checks by chance
        chars = list(number)
        for bit, i in enumerate(positions):
            if mask >> bit & 1:
                chars[i] = _SWAP[chars[i]]
        fixed = list(lines)
        fixed[row] = fixed[row][:start] + "".join(chars) + fixed[row][start + 9:]
        candidate = _PARSERS[mrz_type](fixed)
        if candidate.valid:
            doubt = None if number_scores is None else sum(
                1.0 - number_scores[i] for bit, i in enumerate(positions) if mask >> bit & 1)
            found.setdefault(swaps, []).append((doubt, candidate))
    if not found:
        return result
    best = found[min(found)]
    if len(best) > 1:
        if any(doubt is None for doubt, _ in best):
            return result
        best = sorted(best, key=lambda pair: -pair[0])  # most doubted characters first
        if best[0][0] - best[1][0] < _MIN_DOUBT_MARGIN:
            return result
    chosen = best[0][1]
    chosen.corrections = result.corrections + [f"document_number:{number}->{chosen.document_number}"]
    return chosen


def parse_mrz(lines: Sequence[str], mrz_type: str | None = None,
              scores: Sequence[Sequence[float] | None] | None = None) -> MrzResult:
    """Parse 2 or 3 MRZ lines (raw OCR text is fine). The type is inferred from line count and length.

    ``scores``: per line, the recogniser's per-character confidences (optional); they only break ties between
    equally valid document-number corrections. Raises ValueError when the lines cannot be an MRZ of any type.
    """
    scored = [normalise_mrz_scored(x, None if scores is None else scores[i]) for i, x in enumerate(lines)]
    norm = [text for text, _ in scored]
    types = [mrz_type] if mrz_type else [t for t, (n, _) in MRZ_SPECS.items() if n == len(norm)]
    if not types:
        raise ValueError(f"an MRZ has 2 or 3 lines, got {len(norm)}")
    best: MrzResult | None = None
    best_key: tuple[float, int] | None = None
    for t in types:
        n, length = MRZ_SPECS[t]
        if len(norm) != n:
            continue
        fitted_scored = [_fit_length(x, length, sc) for x, (_, sc) in zip(norm, scored)]
        fitted = [x for x, _ in fitted_scored]
        if any(len(x) != length for x in fitted):
            continue
        try:
            result = _PARSERS[t](fitted)
        except ValueError:
            continue
        if not result.valid and not result.check_digits["document_number"]:
            result = _resolve_document_number(t, fitted, result, [sc for _, sc in fitted_scored])
        # Rank by the share of check digits passed, then by how little the line lengths had to change.
        key = (sum(result.check_digits.values()) / len(result.check_digits),
               -sum(abs(len(a) - length) for a in norm))
        if best_key is None or key > best_key:
            best, best_key = result, key
    if best is None:
        raise ValueError("lines do not fit any MRZ layout (TD1 3x30, TD2 2x36, TD3 2x44)")
    return best


def _looks_like_mrz(text: str) -> bool:
    t = normalise_mrz_text(text)
    return len(t) >= 20 and re.fullmatch(r"[A-Z0-9<]+", t) is not None and ("<" in t or len(t) >= 28)


def find_mrz(texts: Sequence[str], scores: Sequence[Sequence[float] | None] | None = None) -> MrzResult | None:
    """Find the MRZ among text lines given in reading order (top to bottom); None when there is none.

    Tries every run of 2 or 3 consecutive MRZ-looking lines and keeps the parse with the most valid check
    digits (ties: TD3 > TD2 > TD1 order of line-length fit). ``scores``: per text, per-character confidences.
    """
    picked = [normalise_mrz_scored(t, None if scores is None else scores[i])
              for i, t in enumerate(texts) if _looks_like_mrz(t)]
    cand = [text for text, _ in picked]
    cand_scores = [sc for _, sc in picked]
    best: MrzResult | None = None
    best_key: tuple[int, float] | None = None
    for n in (3, 2):
        for i in range(len(cand) - n + 1):
            window = cand[i:i + n]
            if not any("<<" in x for x in window):
                continue  # every MRZ has a filler run; rows of printed labels do not
            for t, (lines_needed, length) in MRZ_SPECS.items():
                if lines_needed != n:
                    continue
                misfit = sum(abs(len(x) - length) for x in window) / n
                if misfit > length * 0.25:
                    continue
                try:
                    result = parse_mrz(window, t, cand_scores[i:i + n])
                except ValueError:
                    continue
                score = sum(result.check_digits.values()) / len(result.check_digits)
                key = (round(score, 3), -misfit)
                if best_key is None or key > best_key:
                    best, best_key = result, key
    return best

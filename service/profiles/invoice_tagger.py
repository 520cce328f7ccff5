"""Learned company/address tagger for receipts: every word of every OCR line gets P(other | company | address).

Why learned: the rule picker in `invoice.py` was tuned on a few DEV receipts and breaks when the recognizer changes
how lines are read. This tagger is a tiny numpy MLP trained on real labelled receipts (`ocrnet train-fields`);
it scores each word from its line's geometry (position, row, height relative to the page's median line), its
text (character classes, listed cues, a learned vocabulary) and its neighbouring lines, then decodes each field
as the contiguous run of words (reading order) with the largest summed log-odds. Words, not whole lines, so it
also learns to leave out a registration number or a 'DIMILIKI:' prefix printed on the company's line.

numpy only (the service never imports torch or scikit-learn); the weights are a small JSON file named by the
bundle's model.json (`fields_model`). `features` is shared with the training code so both see the same inputs.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import LineBox, group_rows, load_json_model

__all__ = ["CLASSES", "FieldTagger", "Word", "correct_suffix", "decode_field", "decode_span", "document_words", "features",
           "within_one_edit", "word_key"]

CLASSES = ("other", "company", "address")
FORMAT = "ocrnet-invoice-fields/1"

# Listed cues (generic receipt vocabulary, not tuned per image); the learned vocabulary adds the rest.
_LEGAL = re.compile(r"\bSDN\.?\s*BHD\b|\bS/B\b|\bBHD\b|\bLTD\b|\bLIMITED\b|\bGMBH\b|\bINC\b|\bLLC\b|\bPLC\b|"
                    r"\bCORP\b|\bCO\.|\bCOMPANY\b|\bENTERPRISE\b|\bTRADING\b|\bRESTORAN\b|\bRESTAURANT\b")
_LEGAL_WORD = re.compile(r"^(?:SDN\.?|BHD\.?|S/B|LTD\.?|LIMITED|GMBH|INC\.?|LLC|PLC|CORP\.?|ENTERPRISE|TRADING)$")
_ADDRESS = re.compile(r"\bJALAN\b|\bJLN\b|\bLOT\b|\bNO\.?\s*\d|\bTAMAN\b|\bTMN\b|\bBANDAR\b|\bBDR\b|\bBATU\b|"
                      r"\bSEKSYEN\b|\bKAWASAN\b|\bLORONG\b|\bPERSIARAN\b|\bKAMPUNG\b|\bSTREET\b|\bROAD\b|"
                      r"\bAVENUE\b|\bFLOOR\b|\bBLOCK\b|\bBLK\b|\bSUITE\b|\bUNIT\b|\bMALAYSIA\b|(?<!\d)\d{5}(?!\d)")
_STOP = re.compile(r"\bTEL\b|\bPHONE\b|\bFAX\b|\bH/P\b|\bGST\b|\bREG\b|INVOICE|RECEIPT|\bDATE\b|@|WWW\.|HTTP|"
                   r"\bCASHIER\b|\bTABLE\b|\bBILL\b|\bE-?MAIL\b|THANK|WELCOME")
_REG_TOKEN = re.compile(r"^\(?(?:[A-Z]{1,3})?\d{4,}[-\s]?[A-Z]\)?[.,]?$")
_DATE = re.compile(r"(?<!\d)\d{1,4}[-/.]\d{1,2}[-/.]\d{2,4}(?!\d)|\b\d{1,2}\s*(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|"
                   r"OCT|NOV|DEC)[A-Z]*\s*\d{2,4}\b")
_AMOUNT = re.compile(r"(?<![\d.,])\d+[.,]\d{2}(?!\d)")
_PHONE = re.compile(r"\d{2,4}-\d{3,4}\s?\d{3,4}|\+?\d{2,3}-\d{6,8}")
_POSTCODE = re.compile(r"(?<!\d)\d{5}(?!\d)")
_EDGE_PUNCT = re.compile(r"^[^A-Z0-9&]+|[^A-Z0-9&]+$")

N_LINE = 32  # dense features per line (see _line_dense)
N_PAGE, N_BLOCK = 6, 6  # page-context features per line (see _context, _block)
N_CONTEXT = N_PAGE + N_BLOCK
N_WORD = 14  # per-word features (see _word_dense)


def word_key(token: str) -> str:
    """The vocabulary form of a word: upper-case, edge punctuation removed; '' for words without letters."""
    key = _EDGE_PUNCT.sub("", token.upper())
    return key if any(c.isalpha() for c in key) else ""


@dataclass(frozen=True)
class Word:
    """One whitespace-separated word of a line, in document reading order."""

    text: str
    line: int  # index into the reading-order line list
    position: int  # index of the word within its line


def document_words(boxes: Sequence[LineBox]) -> list[Word]:
    """Every word of every line, lines in the order given (reading order), words left to right."""
    return [Word(tok, i, j) for i, b in enumerate(boxes) for j, tok in enumerate(b.text.split())]


def _fractions(text: str) -> tuple[float, float, float]:
    n = max(len(text.replace(" ", "")), 1)
    alpha = sum(c.isalpha() for c in text) / n
    digit = sum(c.isdigit() for c in text) / n
    return alpha, digit, max(0.0, 1.0 - alpha - digit)


def _line_dense(box: LineBox, row: int, row_size: int, page: tuple[float, float, float, float, float]) -> list[float]:
    """Geometry and text of one line, relative to the page's text extent and median line height."""
    x0, y0, x1, y1, med_h = page
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    text = box.text.upper()
    alpha, digit, punct = _fractions(text)
    words = text.split()
    return [
        (box.cy - y0) / h, (box.y0 - y0) / h, min(row, 30) / 30, float(row == 0), float(row == 1),
        float(row == 2), float(row <= 4), (box.x0 - x0) / w, (box.x1 - x0) / w, abs((box.cx - x0) / w - 0.5),
        box.width / w, float(np.log(box.height / med_h)), float(np.log1p(len(text))) / 4, alpha, digit, punct,
        float(np.log1p(len(words))) / 3, float(bool(_LEGAL.search(text))), float(bool(_ADDRESS.search(text))),
        float(bool(_STOP.search(text))), float(bool(words) and all(_REG_TOKEN.match(t) for t in words)),
        float(any(_REG_TOKEN.match(t) for t in words)), float(bool(_DATE.search(text))),
        float(bool(_AMOUNT.search(text))), float(text.rstrip().endswith(",")), float(bool(_POSTCODE.search(text))),
        float(bool(_PHONE.search(text))), float(row_size > 1), float(":" in text), float("(" in text),
        float(sum(c.isalpha() for c in text) >= 3), float(text.count(",")) / 3,
    ]


def _block(boxes: Sequence[LineBox], texts: list[str], med_h: float, width: float) -> np.ndarray:
    """How each line continues into the next one: a name printed over two lines keeps its height and centre, the
    first part often ends with '&' and the second is little more than the legal suffix."""
    out = np.zeros((len(boxes), N_BLOCK), np.float32)
    for i, b in enumerate(boxes):
        if i + 1 < len(boxes):
            nb = boxes[i + 1]
            out[i, 0] = min(abs(np.log(nb.height / b.height)), 2.0)
            out[i, 1] = min(abs(nb.cx - b.cx) / width, 1.0)
            out[i, 2] = min(max(nb.y0 - b.y1, 0.0) / med_h, 3.0) / 3
        words = texts[i].split()
        out[i, 3] = float(bool(words) and words[-1] in ("&", "AND", "8"))
        legal_at = next((k for k, w in enumerate(words) if _LEGAL_WORD.match(w)), None)
        out[i, 4] = min(legal_at, 4) / 4 if legal_at is not None else 1.0  # words before the legal suffix
        out[i, 5] = float(bool(words) and words[0] in ("&", "AND"))
    return out


def _context(dense: np.ndarray) -> np.ndarray:
    """Where each line sits relative to the page's first legal-name line and the first item/amount lines."""
    n = len(dense)
    legal, amount, date = dense[:, 17] > 0, dense[:, 23] > 0, dense[:, 22] > 0
    idx = np.arange(n)
    first_legal = int(np.argmax(legal)) if legal.any() else -1
    legal_above = np.concatenate([[0], np.cumsum(legal)[:-1]]) if n else np.zeros(0)
    amount_above = np.concatenate([[0], np.cumsum(amount)[:-1]]) if n else np.zeros(0)
    date_above = np.concatenate([[0], np.cumsum(date)[:-1]]) if n else np.zeros(0)
    legal_below = np.array([legal[i + 1:i + 3].any() for i in range(n)], dtype=float)
    rel_first = np.clip(idx - first_legal, -3, 3) / 3 if first_legal >= 0 else np.zeros(n)
    return np.stack([
        (idx == first_legal).astype(float), np.minimum(legal_above, 2) / 2, legal_below, rel_first,
        np.minimum(amount_above, 3) / 3, np.minimum(date_above, 1),
    ], axis=1) if n else np.zeros((0, N_PAGE))


def _word_dense(tok: str, position: int, line_words: list[str]) -> list[float]:
    up = tok.upper()
    n = len(line_words)
    alpha, digit, _ = _fractions(up)
    legal_before = any(_LEGAL_WORD.match(w.upper()) for w in line_words[:position])
    colon_after = any(w.endswith(":") for w in line_words[position:])
    colon_before = any(w.endswith(":") or w == ":" for w in line_words[:position])
    return [
        position / max(n - 1, 1), float(position == 0), float(position == n - 1), float(np.log1p(len(up))) / 3,
        alpha, digit, float(bool(_REG_TOKEN.match(up))), float(up.startswith("(")), float(up.endswith(")")),
        float(up.endswith(":")), float(bool(_LEGAL_WORD.match(up))), float(legal_before), float(colon_after),
        float(colon_before),
    ]


def features(boxes: Sequence[LineBox], vocab: dict[str, int]) -> tuple[list[Word], np.ndarray]:
    """(words, matrix) for lines in reading order: one row per word, float32.

    Row layout: line dense + context (this line, previous, next), word dense, word one-hot and line bag of words
    over `vocab` (unknown words contribute nothing)."""
    words = document_words(boxes)
    v = len(vocab)
    width = 3 * (N_LINE + N_CONTEXT) + N_WORD + 2 * v
    if not words:
        return words, np.zeros((0, width), np.float32)
    index = {id(b): i for i, b in enumerate(boxes)}
    rows = group_rows(boxes)
    row_of = [0] * len(boxes)
    row_size = [1] * len(boxes)
    for r, row in enumerate(rows):
        for b in row:
            row_of[index[id(b)]] = r
            row_size[index[id(b)]] = len(row)
    page = (min(b.x0 for b in boxes), min(b.y0 for b in boxes), max(b.x1 for b in boxes), max(b.y1 for b in boxes),
            float(np.median([b.height for b in boxes])) or 1.0)
    dense = np.array([_line_dense(b, row_of[i], row_size[i], page) for i, b in enumerate(boxes)], np.float32)
    block = _block(boxes, [b.text.upper() for b in boxes], page[4], max(page[2] - page[0], 1.0))
    line = np.concatenate([dense, _context(dense), block], axis=1)
    pad = np.zeros((1, line.shape[1]), np.float32)
    prev_ = np.concatenate([pad, line[:-1]])
    next_ = np.concatenate([line[1:], pad])
    bags = np.zeros((len(boxes), v), np.float32)
    for i, b in enumerate(boxes):
        for tok in b.text.split():
            k = vocab.get(word_key(tok))
            if k is not None:
                bags[i, k] = 1.0
    at = np.array([w.line for w in words])
    split = [b.text.split() for b in boxes]
    off = 3 * line.shape[1] + N_WORD
    X = np.zeros((len(words), width), np.float32)
    X[:, :3 * line.shape[1]] = np.concatenate([line, prev_, next_], axis=1)[at]
    X[:, off - N_WORD:off] = [_word_dense(w.text, w.position, split[w.line]) for w in words]
    for r, w in enumerate(words):
        k = vocab.get(word_key(w.text))
        if k is not None:
            X[r, off + k] = 1.0
    X[:, off + v:] = bags[at]
    return words, X


def decode_span(log_odds: np.ndarray) -> tuple[int, int] | None:
    """The contiguous run [start, end) with the largest positive sum (Kadane); None when every score is <= 0."""
    best, best_span = 0.0, None
    run, start = 0.0, 0
    for i, s in enumerate(log_odds):
        if run <= 0:
            run, start = 0.0, i
        run += float(s)
        if run > best:
            best, best_span = run, (start, i + 1)
    return best_span


def decode_field(log_odds: np.ndarray, line_of: np.ndarray, always: bool = False) -> tuple[int, int] | None:
    """The field's word span (decode_span); with `always`, when no word is likelier in than out, the run around
    the line with the highest mean log-odds (shifted so that line averages +0.5)."""
    span = decode_span(log_odds)
    if span is None and always and len(log_odds):
        best_line = max(float(log_odds[line_of == i].mean()) for i in np.unique(line_of))
        span = decode_span(log_odds - best_line + 0.5)
    return span


def within_one_edit(a: str, b: str) -> bool:
    """Levenshtein distance of a and b is at most 1."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1:] or (len(a) == len(b) and a[i + 1:] == b[i + 1:])


def correct_suffix(words: list[str], suffixes: dict[str, int]) -> list[str]:
    """A company name's last one or two words replaced by the legal suffix they misread ('SDN 3HD' -> 'SDN BHD').

    `suffixes` holds the endings of the training labels' company names with their counts (a closed vocabulary:
    'SDN BHD', 'S/B', 'ENTERPRISE'...). Letters and digits decide: an ending whose alphanumerics are those of a
    known ending is kept as printed ('SDN.BHD'); one whose alphanumerics are one edit from those of a single most
    frequent known ending becomes that ending."""
    by_key: dict[tuple[int, str], list[tuple[int, str]]] = {}  # (words, alphanumerics) -> [(count, form)]
    for text, count in suffixes.items():
        by_key.setdefault((len(text.split()), _alnum(text)), []).append((count, text))
    for n in (2, 1, 2):  # the last two words, else the last word and then two ('SON. BHD.L' -> 'SDN. BHD.')
        if len(words) < n + 1:
            continue
        printed = " ".join(words[-n:]).upper()
        tail = _alnum(printed)
        if (n, tail) in by_key or len(tail) < 3:
            continue
        close = sorted(((sum(c for c, _ in forms), forms) for (m, k), forms in by_key.items()
                        if m == n and within_one_edit(tail, k)), key=lambda cf: -cf[0])
        if close and (len(close) == 1 or close[0][0] > close[1][0]):
            # the spelling of that ending closest to the print ('SDN. BHDL' -> 'SDN. BHD.'), then the commonest
            form = min(close[0][1], key=lambda cf: (_edits(printed, cf[1]), -cf[0]))[1]
            words = words[:-n] + form.split()
    return words


def _edits(a: str, b: str) -> int:
    """Levenshtein distance (short strings: the endings of a company name)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def _alnum(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def _decode_array(spec: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(spec["data"])
    return np.frombuffer(raw, dtype=np.dtype(spec["dtype"]).newbyteorder("<")).astype(np.float32).reshape(
        spec["shape"])


def encode_array(a: np.ndarray, dtype: str = "float16") -> dict[str, Any]:
    """A weight matrix as JSON: little-endian bytes in base64 with dtype and shape (float16 keeps the file small)."""
    arr = np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "shape": list(a.shape), "data": base64.b64encode(arr.tobytes()).decode("ascii")}


class FieldTagger:
    """A trained word tagger: standardise, one ReLU hidden layer, softmax over CLASSES."""

    def __init__(self, vocab: Sequence[str], mean: np.ndarray, std: np.ndarray, w1: np.ndarray, b1: np.ndarray,
                 w2: np.ndarray, b2: np.ndarray, meta: dict[str, Any] | None = None,
                 suffixes: dict[str, int] | None = None) -> None:
        self.vocab = {w: i for i, w in enumerate(vocab)}
        self.suffixes = dict(suffixes or {})
        self.mean, self.std = mean.astype(np.float32), np.maximum(std.astype(np.float32), 1e-3)
        self.w1, self.b1, self.w2, self.b2 = (np.asarray(a, np.float32) for a in (w1, b1, w2, b2))
        self.meta = meta or {}
        width = 3 * (N_LINE + N_CONTEXT) + N_WORD + 2 * len(self.vocab)
        if self.w1.shape != (width, self.b1.shape[0]) or self.w2.shape != (self.b1.shape[0], len(CLASSES)) \
                or self.mean.shape != (width,) or self.std.shape != (width,) or self.b2.shape != (len(CLASSES),):
            raise ValueError(f"field tagger weights do not fit {width} features and {len(CLASSES)} classes")

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """P(class) per row of a `features` matrix."""
        h = np.maximum((X - self.mean) / self.std @ self.w1 + self.b1, 0.0)
        z = h @ self.w2 + self.b2
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def tag(self, boxes: Sequence[LineBox]) -> dict[str, str | None]:
        """{'company': ..., 'address': ...} from lines in reading order. The address is None when no word is
        likelier in it than out; the company is then the run around its likeliest line (every receipt has one)."""
        words, X = features(boxes, self.vocab)
        out: dict[str, str | None] = {"company": None, "address": None}
        if not words:
            return out
        p = np.clip(self.probabilities(X), 1e-6, 1 - 1e-6)
        for k, name in enumerate(CLASSES[1:], start=1):
            span = decode_field(np.log(p[:, k]) - np.log1p(-p[:, k]), np.array([w.line for w in words]),
                                always=name == "company")  # a receipt names its seller
            if span is not None:
                picked = [w.text for w in words[span[0]:span[1]]]
                out[name] = " ".join(correct_suffix(picked, self.suffixes) if name == "company" else picked)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "classes": list(CLASSES), "vocab": list(self.vocab),
                "mean": encode_array(self.mean, "float32"), "std": encode_array(self.std, "float32"),
                "w1": encode_array(self.w1), "b1": encode_array(self.b1, "float32"), "w2": encode_array(self.w2),
                "b2": encode_array(self.b2, "float32"), "company_suffixes": self.suffixes, "meta": self.meta}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> FieldTagger:
        if spec.get("format") != FORMAT or list(spec.get("classes", ())) != list(CLASSES):
            raise ValueError(f"not an {FORMAT} file (format {spec.get('format')!r}, classes {spec.get('classes')})")
        arrays = {k: _decode_array(spec[k]) for k in ("mean", "std", "w1", "b1", "w2", "b2")}
        return cls(spec["vocab"], meta=spec.get("meta"), suffixes=spec.get("company_suffixes"), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> FieldTagger:
        """Read a tagger file; ValueError (naming the file) when it is not one."""
        return load_json_model(path, cls.from_json, "field tagger")

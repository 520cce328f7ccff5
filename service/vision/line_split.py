"""Cut a recognised line between columns the detector joined: 'TEL : 03-5121 7970  FAX : 03-5121 8059' -> two lines.

Why: DB joins a receipt row's columns into one line when the white space between them is narrower than what its
boxes bridge, while receipt labels (SROIE) and anything that reads a row as key and value want them apart. Where
to cut is not a width a rule can fix: the same single space separates 'CASHIER : ADMIN' (one labelled line) and
'RM 65.20' (two). So a small logistic model, trained on the detected lines of labelled pages
(`ocrnet train-line-split`), scores every space of a line from what stands on either side of it (the words, their
kind: amount, code, label ending in ':'), and from how wide the gap is: CTC time step t covers input columns
8t..8t+7 of the 48-px-high crop, so the recogniser's own character spans measure it in line heights. The line is
cut, text, confidences and polygon alike, with no second model call.

numpy only; the weights are a small JSON file named by the bundle's model.json (`line_split_model`). `features` is
shared with the training code so both see the same inputs.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from .ctc import CharEvidence
from .rec_preprocess import REC_HEIGHT

__all__ = [
    "FORMAT",
    "MEETING_WORDS",
    "REC_STRIDE",
    "WORD_FEATURES",
    "LineSplitter",
    "LogisticModel",
    "Segment",
    "Space",
    "feature_names",
    "features",
    "fitted_to_chars",
    "load_logistic",
    "meeting_words",
    "segments",
    "spaces",
    "vocab_names",
    "word_features",
]

FORMAT = "ocrnet-line-split/1"
REC_STRIDE = 8  # recogniser input columns per CTC time step (PP-OCR's SVTR/LCNet heads)


@dataclass(frozen=True)
class Segment:
    """A piece of a line: characters ``start``..``end`` (exclusive) of its text and its quad (tl, tr, br, bl)."""

    start: int
    end: int
    quad: np.ndarray


@dataclass(frozen=True)
class Space:
    """A place a line may be cut: between non-space characters ``i`` and ``j`` with white space read between them;
    ``gap`` is the distance between their time-step centres in line heights (CTC writes one space for any width)."""

    i: int
    j: int
    gap: float
    left: str  # the word ending at i
    right: str  # the word starting at j


def spaces(text: str, chars: Sequence[CharEvidence], rec_height: int) -> list[Space]:
    """Every white-space run between two words of ``text`` (``chars`` aligned with it), left to right."""
    step = REC_STRIDE / rec_height
    out = []
    for m in re.finditer(r"\s+", text):
        i, j = m.start() - 1, m.end()
        if i < 0 or j >= len(text):
            continue
        left = text[:i + 1].split()[-1]
        right = text[j:].split()[0]
        out.append(Space(i, j, (chars[j].centre - chars[i].centre) * step, left, right))
    return out


_NUMBER = re.compile(r"^[-+(]?\d[\d.,\-/]*\)?%?$")
_MONEY = re.compile(r"^[-+(]?\d+[.,]\d{2}\)?$")


def word_features(word: str) -> list[float]:
    """Kind of a word: number, amount, digits, letters, punctuation only, one character, label ending in ':'."""
    w = word.upper()
    return [float(bool(_NUMBER.match(w))), float(bool(_MONEY.match(w))), float(any(c.isdigit() for c in w)),
            float(any(c.isalpha() for c in w)), float(not any(c.isalnum() for c in w)), float(len(w) == 1),
            float(w.endswith(":")), float(w.startswith(":")), min(len(w), 12) / 12]


WORD_FEATURES = ("number", "money", "has_digit", "has_letter", "punct_only", "one_char", "ends_colon",
               "starts_colon", "length")


MEETING_WORDS = (*(f"left_{n}" for n in WORD_FEATURES), *(f"right_{n}" for n in WORD_FEATURES),
                 "number_after_word", "word_after_number")


def meeting_words(left: str, right: str, index: dict[str, int]) -> tuple[list[float], np.ndarray]:
    """What the splitter and the joiner see of the two words meeting at a gap: their kinds (`MEETING_WORDS`) and
    which of the ``index``'s words they are (left ones, then right ones; `vocab_names`)."""
    left_kind, right_kind = word_features(left), word_features(right)
    kinds = [*left_kind, *right_kind, float(left_kind[3] > 0 and right_kind[0] > 0),
             float(left_kind[0] > 0 and right_kind[3] > 0)]
    hot = np.zeros(2 * len(index))
    if left.upper() in index:
        hot[index[left.upper()]] = 1.0
    if right.upper() in index:
        hot[len(index) + index[right.upper()]] = 1.0
    return kinds, hot


def vocab_names(vocab: Sequence[str]) -> list[str]:
    return [f"left={w}" for w in vocab] + [f"right={w}" for w in vocab]


def feature_names(vocab: Sequence[str]) -> list[str]:
    """Names of the columns `features` returns, in order (the weights file lists them for a reader)."""
    return ["gap", "gap_over_pitch", "position", "words", "aspect", *MEETING_WORDS, "after_colon",
            *vocab_names(vocab)]


def features(text: str, chars: Sequence[CharEvidence], found: Sequence[Space], aspect: float,
             vocab: Sequence[str]) -> np.ndarray:
    """(len(found), n) inputs of the model for the spaces `spaces` found in one line; ``aspect`` is the line
    crop's width over its height, ``vocab`` the words the model knows by name (upper-case)."""
    solid = [k for k, ch in enumerate(text) if not ch.isspace()]
    steps = [chars[b].centre - chars[a].centre for a, b in pairwise(solid)]
    pitch = max(float(np.median(steps)) * REC_STRIDE / REC_HEIGHT, 1e-3) if steps else 1.0  # line heights
    index = {w: k for k, w in enumerate(vocab)}
    n_words = len(text.split())
    rows = []
    for k, sp in enumerate(found):
        kinds, hot = meeting_words(sp.left, sp.right, index)
        row = [min(sp.gap, 6.0), min(sp.gap / pitch, 10.0) / 10, (k + 1) / (len(found) + 1), min(n_words, 20) / 20,
               min(aspect, 40.0) / 40, *kinds, float(sp.left.endswith(":") or sp.right == ":")]
        rows.append(np.concatenate([np.asarray(row, np.float64), hot]))
    return np.asarray(rows, np.float64) if rows else np.zeros((0, len(feature_names(vocab))))


@dataclass(frozen=True)
class LogisticModel:
    """A logistic model over named inputs, stored as JSON: the shape the line splitter and joiner share."""

    weights: np.ndarray
    bias: float
    vocab: tuple[str, ...]
    threshold: float = 0.5
    meta: dict[str, Any] | None = None
    format: ClassVar[str] = ""

    @staticmethod
    def names(vocab: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(yes) per row of inputs ``x``."""
        return 1.0 / (1.0 + np.exp(-np.clip(x @ self.weights + self.bias, -30, 30)))

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "features": self.names(self.vocab), "weights": [round(float(w), 6)
                for w in self.weights], "bias": round(float(self.bias), 6), "vocab": list(self.vocab),
                "threshold": self.threshold, **({"meta": self.meta} if self.meta else {})}

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Raises ValueError for a file that is not this kind of model or whose weights do not fit its inputs."""
        return cls(*load_logistic(path, cls.format, cls.names))


@dataclass(frozen=True)
class LineSplitter(LogisticModel):
    """Logistic model over `features`: a space is cut when its probability reaches ``threshold``."""

    format: ClassVar[str] = FORMAT
    names = staticmethod(feature_names)

    def probabilities(self, text: str, chars: Sequence[CharEvidence], found: Sequence[Space],
                      aspect: float) -> np.ndarray:
        return self.probability(features(text, chars, found, aspect, self.vocab)) if found else np.zeros(0)

    def cuts(self, text: str, chars: Sequence[CharEvidence], rec_height: int, aspect: float) -> list[Space]:
        """The spaces of the line to cut at."""
        found = spaces(text, chars, rec_height)
        probs = self.probabilities(text, chars, found, aspect)
        return [sp for sp, p in zip(found, probs) if p >= self.threshold]


def load_logistic(path: str | Path, fmt: str, names: Any) -> tuple[np.ndarray, float, tuple[str, ...], float,
                                                                    dict[str, Any] | None]:
    """(weights, bias, vocab, threshold, meta) of a logistic model file of format ``fmt`` whose inputs are
    ``names(vocab)``; ValueError for anything else."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {fmt} model {path}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != fmt:
        raise ValueError(f"{path} is not a {fmt} model")
    vocab = tuple(str(w) for w in raw.get("vocab", []))
    weights = np.asarray(raw.get("weights", []), np.float64)
    if weights.shape != (len(names(vocab)),):
        raise ValueError(f"{path}: {weights.size} weights for {len(names(vocab))} features")
    return weights, float(raw.get("bias", 0.0)), vocab, float(raw.get("threshold", 0.5)), raw.get("meta")


def _axis(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Midpoints of the quad's left and right sides and its length along them."""
    left, right = (quad[0] + quad[3]) / 2, (quad[1] + quad[2]) / 2
    return left, right, float(np.linalg.norm(right - left))


def _at(quad: np.ndarray, f0: float, f1: float) -> np.ndarray:
    """The part of ``quad`` between fractions f0 < f1 of its length (top and bottom edges interpolated alike)."""
    tl, tr, br, bl = quad
    return np.array([tl + f0 * (tr - tl), tl + f1 * (tr - tl), bl + f1 * (br - bl), bl + f0 * (br - bl)],
                    np.float32)


def _along_fn(crop_quad: np.ndarray, output_quad: np.ndarray, input_width: int):
    """char -> fraction of the output quad's length at the character's centre (time step t lies at fraction
    (t + 0.5) * 8 / input_width along the crop quad); None when the quads or width are degenerate."""
    c_left, c_right, _ = _axis(crop_quad)
    o_left, o_right, o_len = _axis(output_quad)
    if o_len <= 0 or input_width <= 0:
        return None
    direction = (o_right - o_left) / o_len

    def along(char: CharEvidence) -> float:
        f = (char.centre + 0.5) * REC_STRIDE / input_width
        point = c_left + f * (c_right - c_left)
        return float(np.dot(point - o_left, direction)) / o_len

    return along


def fitted_to_chars(text: str, chars: Sequence[CharEvidence], crop_quad: np.ndarray, output_quad: np.ndarray,
                    input_width: int, margin: float) -> np.ndarray:
    """``output_quad`` with its ends brought in to ``margin`` line heights beyond the centres of its first and last
    characters, where they stand further out (never grown): a box that also spans blank paper or a stray mark the
    recogniser read nothing in."""
    output_quad = np.asarray(output_quad, np.float64)
    along = _along_fn(np.asarray(crop_quad, np.float64), output_quad, input_width)
    solid = [k for k, ch in enumerate(text) if not ch.isspace()]
    if along is None or not solid:
        return output_quad.astype(np.float32)
    o_len = _axis(output_quad)[2]
    height = float(np.linalg.norm((output_quad[3] + output_quad[2]) / 2 - (output_quad[0] + output_quad[1]) / 2))
    pad = margin * height / o_len
    f0 = min(max(along(chars[solid[0]]) - pad, 0.0), 1.0)
    f1 = max(min(along(chars[solid[-1]]) + pad, 1.0), f0)
    return _at(output_quad, f0, f1)


def segments(text: str, chars: Sequence[CharEvidence], cuts: Sequence[Space], crop_quad: np.ndarray,
             output_quad: np.ndarray, input_width: int) -> list[Segment]:
    """The pieces of a line cut at ``cuts`` (from `spaces`), each with the part of ``output_quad`` its
    characters cover. ``crop_quad`` is the quad the recogniser's crop was cut from (same coordinates as
    ``output_quad``) and ``input_width`` the crop's width once scaled to the recogniser's height: time step t
    lies at fraction (t + 0.5) * 8 / input_width along it. An inner end sits as far beyond its outermost character
    as the line's own ends sit beyond its first and last characters."""
    crop_quad = np.asarray(crop_quad, np.float64)
    output_quad = np.asarray(output_quad, np.float64)
    c_left, c_right, _ = _axis(crop_quad)
    o_left, o_right, o_len = _axis(output_quad)
    if o_len <= 0 or input_width <= 0:
        return [Segment(0, len(text), output_quad.astype(np.float32))]
    direction = (o_right - o_left) / o_len

    def along(char: CharEvidence) -> float:
        """Fraction of the output quad's length at the character's centre."""
        f = (char.centre + 0.5) * REC_STRIDE / input_width
        point = c_left + f * (c_right - c_left)
        return float(np.dot(point - o_left, direction)) / o_len

    solid = [k for k, ch in enumerate(text) if not ch.isspace()]
    lead = max(along(chars[solid[0]]), 0.0)
    trail = max(1.0 - along(chars[solid[-1]]), 0.0)
    bounds = [(0, None)] + [(sp.j, sp.i) for sp in cuts] + [(None, len(text) - 1)]
    pieces = []
    for (first, _), (_, last) in pairwise(bounds):
        start = next(k for k in range(first, len(text)) if not text[k].isspace())
        end = max(k for k in range(start, last + 1) if not text[k].isspace()) + 1
        f0 = 0.0 if first == 0 else min(max(along(chars[start]) - lead, 0.0), 1.0)
        f1 = 1.0 if last == len(text) - 1 else min(max(along(chars[end - 1]) + trail, f0), 1.0)
        pieces.append(Segment(start, end, _at(output_quad, f0, f1)))
    return pieces

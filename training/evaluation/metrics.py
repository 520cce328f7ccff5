"""Detection, recognition and end-to-end metrics (numpy/shapely/rapidfuzz only, no torch).

Counts are kept as integers and summed over a dataset before dividing, so a metric over many images is
the corpus-level value (not a mean of per-image ratios) and empty images do not skew it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from rapidfuzz.distance import Levenshtein

from .matching import Shape, greedy_match, iou_matrix

__all__ = ["DetCounts", "PRCounts", "RecCounts", "alnum_key", "cer", "det_counts", "edit_distance", "fold_o0",
           "normalise_text", "ratio"]


def ratio(num: float, den: float) -> float | None:
    """num/den, or None when there is nothing to measure (den == 0)."""
    return num / den if den else None


def _hmean(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class PRCounts:
    """True positives against prediction and ground-truth counts -> precision, recall, F1 (H-mean)."""

    tp: int = 0
    n_pred: int = 0
    n_gt: int = 0

    def __iadd__(self, other: PRCounts) -> Self:
        self.tp += other.tp
        self.n_pred += other.n_pred
        self.n_gt += other.n_gt
        return self

    @property
    def precision(self) -> float | None:
        return ratio(self.tp, self.n_pred)

    @property
    def recall(self) -> float | None:
        return ratio(self.tp, self.n_gt)

    @property
    def hmean(self) -> float | None:
        return _hmean(self.precision, self.recall)


DetCounts = PRCounts


def det_counts(preds: Sequence[Shape], gts: Sequence[Shape], iou_threshold: float = 0.5
               ) -> tuple[PRCounts, list[tuple[int, int, float]]]:
    """Detection counts at `iou_threshold` with one-to-one greedy matching, and the matched pairs."""
    pairs = greedy_match(iou_matrix(preds, gts), iou_threshold) if preds and gts else []
    return PRCounts(len(pairs), len(preds), len(gts)), pairs


def normalise_text(s: str | None) -> str:
    """Case-insensitive comparison form: upper-case, runs of whitespace collapsed, ends stripped."""
    return " ".join((s or "").upper().split())


def fold_o0(s: str) -> str:
    """Treat the letter O and the digit 0 as one character (plate labels mix them up)."""
    return s.upper().replace("O", "0")


def edit_distance(a: str, b: str) -> int:
    return int(Levenshtein.distance(a, b))


def cer(pred: str, gt: str) -> float:
    """Character error rate of one string: edits / len(gt) (1.0 per char when gt is empty and pred is not)."""
    if not gt:
        return float(bool(pred))
    return edit_distance(pred, gt) / len(gt)


@dataclass
class RecCounts:
    """Recognition over pairs of (prediction, truth): exact-match accuracy and corpus CER (sum edits/chars)."""

    n: int = 0
    correct: int = 0
    edits: int = 0
    chars: int = 0

    def add(self, pred: str, gt: str) -> None:
        self.n += 1
        self.correct += int(pred == gt)
        self.edits += edit_distance(pred, gt)
        self.chars += len(gt)

    def __iadd__(self, other: RecCounts) -> Self:
        self.n += other.n
        self.correct += other.correct
        self.edits += other.edits
        self.chars += other.chars
        return self

    @property
    def accuracy(self) -> float | None:
        return ratio(self.correct, self.n)

    @property
    def cer(self) -> float | None:
        return ratio(self.edits, self.chars)


def alnum_key(s: str | None) -> str:
    """Upper-case alphanumerics only: the comparison form for plates and 'loose' field matches."""
    return re.sub(r"[^A-Z0-9]", "", (s or "").upper())


"""Join neighbouring read lines of one row that are one labelled line: 'TAX INVOICE' read as 'TAX' + 'INVOICE'.

Why: DB also does the opposite of what `line_split` undoes: where the white space inside a line is wide it returns
two boxes ('DATE :' + '23/01/2018', 'RM' + '14.10'), while receipt labels (SROIE) keep many of them whole. Whether a
pair is one line is the same kind of question as whether a space is a column gap, with the same answer: a small
logistic model trained on labelled pages (`ocrnet train-line-split --join-out`) scores each pair of row neighbours
from the gap between their boxes in line heights, how well their heights and rows agree, the words that meet at the
gap (by name for the commonest, and by kind) and how long each line is.

numpy only; the weights are a small JSON file named by the bundle's model.json (`line_join_model`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from .ctc import CharEvidence
from .line_split import MEETING_WORDS, LogisticModel, meeting_words, vocab_names

__all__ = ["FORMAT", "LineJoiner", "Pair", "feature_names", "features", "join_rows", "row_pairs"]

FORMAT = "ocrnet-line-join/1"
MAX_GAP = 4.0  # line heights: boxes further apart are never one line


class JoinableLine(Protocol):
    @property
    def text(self) -> str: ...

    @property
    def polygon(self) -> Sequence[Sequence[float]]: ...


@dataclass(frozen=True)
class Pair:
    """Lines ``k`` and ``k + 1`` (in reading order) side by side on one row; gap and offset in line heights."""

    k: int
    gap: float
    dy: float
    height_ratio: float


def _bounds(line: JoinableLine) -> tuple[float, float, float, float]:
    pts = np.asarray(line.polygon, np.float64)
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def row_pairs(lines: Sequence[JoinableLine]) -> list[Pair]:
    """Consecutive lines whose boxes sit on one row: centres within half a line height of each other, the second
    starting right of the first (overlap up to a fifth of a height) and at most `MAX_GAP` heights away."""
    out = []
    for k in range(len(lines) - 1):
        _, ay0, ax1, ay1 = _bounds(lines[k])
        bx0, by0, _, by1 = _bounds(lines[k + 1])
        ha, hb = max(ay1 - ay0, 1e-3), max(by1 - by0, 1e-3)
        h = (ha + hb) / 2
        dy = abs((ay0 + ay1) / 2 - (by0 + by1) / 2) / h
        gap = (bx0 - ax1) / h
        if dy < 0.5 and -0.2 <= gap <= MAX_GAP:
            out.append(Pair(k, gap, dy, hb / ha))
    return out


def feature_names(vocab: Sequence[str]) -> list[str]:
    """Names of the columns `features` returns, in order."""
    return ["gap", "dy", "log_height_ratio", "left_words", "right_words", *MEETING_WORDS, *vocab_names(vocab)]


def features(lines: Sequence[JoinableLine], pairs: Sequence[Pair], vocab: Sequence[str]) -> np.ndarray:
    """(len(pairs), n) model inputs: the pair's geometry and the words that meet at its gap."""
    index = {w: k for k, w in enumerate(vocab)}
    rows = []
    for pair in pairs:
        left_words, right_words = lines[pair.k].text.split() or [""], lines[pair.k + 1].text.split() or [""]
        kinds, hot = meeting_words(left_words[-1], right_words[0], index)
        row = [min(pair.gap, MAX_GAP), min(pair.dy, 1.0), float(np.log(max(min(pair.height_ratio, 4.0), 0.25))),
               min(len(left_words), 10) / 10, min(len(right_words), 10) / 10, *kinds]
        rows.append(np.concatenate([np.asarray(row, np.float64), hot]))
    return np.asarray(rows, np.float64) if rows else np.zeros((0, len(feature_names(vocab))))


@dataclass(frozen=True)
class LineJoiner(LogisticModel):
    """Logistic model over `features`: a pair is joined when its probability reaches ``threshold``."""

    format: ClassVar[str] = FORMAT
    names = staticmethod(feature_names)

    def joins(self, lines: Sequence[JoinableLine]) -> list[int]:
        """Indices k whose line is joined with line k + 1."""
        pairs = row_pairs(lines)
        if not pairs:
            return []
        probs = self.probability(features(lines, pairs, self.vocab))
        return [p.k for p, prob in zip(pairs, probs) if prob >= self.threshold]


def join_rows(lines: Sequence[Any], joins: Sequence[int], make: Callable[..., Any]) -> list[Any]:
    """``lines`` with each line k in ``joins`` merged with the next (chains merge into one): text joined by a space,
    confidences weighted by characters, evidence concatenated around a space, the box from the first line's left
    side to the last line's right side. ``make`` builds a line like the pipeline's TextLine."""
    joined = set(joins)
    out: list[Any] = []
    k = 0
    while k < len(lines):
        group = [lines[k]]
        while k in joined and k + 1 < len(lines):
            k += 1
            group.append(lines[k])
        out.append(group[0] if len(group) == 1 else _merged(group, make))
        k += 1
    return out


def _merged(group: Sequence[Any], make: Callable[..., Any]) -> Any:
    text = " ".join(line.text for line in group)
    confs: list[float] = []
    chars: list[CharEvidence] = []
    aligned = all(len(line.char_confidences) == len(line.text) == len(line.char_evidence) for line in group)
    for n, line in enumerate(group):
        if n:
            space_p = (confs[-1] + line.char_confidences[0]) / 2 if aligned else 1.0
            confs.append(space_p)
            last = chars[-1].end if chars else 0
            chars.append(CharEvidence(((" ", space_p),), last + 1, last + 1))
        confs.extend(line.char_confidences)
        chars.extend(line.char_evidence)
    first, last = np.asarray(group[0].polygon), np.asarray(group[-1].polygon)
    polygon = [tuple(map(float, first[0])), tuple(map(float, last[1])), tuple(map(float, last[2])),
               tuple(map(float, first[3]))]
    n_chars = [max(len(line.text), 1) for line in group]
    confidence = float(np.average([line.confidence for line in group], weights=n_chars))
    det_score = float(min(line.det_score for line in group))
    if not aligned:
        return make(text, confidence, polygon, det_score, (), ())
    return make(text, confidence, polygon, det_score, tuple(confs), tuple(chars))

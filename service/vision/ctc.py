"""Greedy CTC decoding with per-character confidences (PP-OCR ``CTCLabelDecode``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Decoded:
    text: str
    confidence: float  # mean of the kept characters' max probability; 0.0 for empty text
    char_confidences: tuple[float, ...]


def ctc_greedy_decode(probs: np.ndarray, classes: Sequence[str], blank: int = 0) -> list[Decoded]:
    """(N,T,C) per-step class probabilities -> text per row: argmax, merge repeats, drop blanks."""
    if probs.ndim != 3:
        raise ValueError(f"expected (N,T,C) probabilities, got shape {probs.shape}")
    if probs.shape[2] != len(classes):
        raise ValueError(f"model has {probs.shape[2]} classes, charset has {len(classes)}")
    idx = probs.argmax(axis=2)
    conf = np.take_along_axis(probs, idx[:, :, None], axis=2)[:, :, 0]
    out: list[Decoded] = []
    for row, row_conf in zip(idx, conf):
        keep = np.ones(len(row), dtype=bool)
        keep[1:] = row[1:] != row[:-1]
        keep &= row != blank
        chars = [classes[i] for i in row[keep]]
        cc = tuple(float(c) for c in row_conf[keep])
        out.append(Decoded("".join(chars), float(np.mean(cc)) if cc else 0.0, cc))
    return out

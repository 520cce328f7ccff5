"""Recogniser input preparation: height 48, keep aspect, ``(x/255 - 0.5)/0.5``, zero right-pad.

Crops are grouped by width bucket so one batch is one tensor width (a few fixed shapes for the
GPU); within a bucket they are sorted by aspect ratio as PP-OCR does. Crops wider than the
largest bucket are squeezed to it.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .images import resize_linear

REC_HEIGHT = 48
DEFAULT_WIDTH_BUCKETS = (80, 160, 240, 320, 480, 640, 960, 1280)


@dataclass
class RecBatch:
    """One recogniser call: tensor (N,3,H,W) and which input crop each row is."""

    tensor: np.ndarray
    indices: list[int]

    @property
    def width(self) -> int:
        return int(self.tensor.shape[3])


def resized_width(h: int, w: int, height: int = REC_HEIGHT, max_width: int = DEFAULT_WIDTH_BUCKETS[-1]) -> int:
    """Width after scaling to ``height`` keeping aspect (ceil, as PaddleOCR), capped at max_width."""
    return max(1, min(int(math.ceil(height * w / max(h, 1))), max_width))


def width_bucket(width: int, buckets: Sequence[int] = DEFAULT_WIDTH_BUCKETS) -> int:
    i = bisect.bisect_left(buckets, width)
    return int(buckets[min(i, len(buckets) - 1)])


def normalize_crop(bgr: np.ndarray, bucket_w: int, height: int = REC_HEIGHT) -> np.ndarray:
    """HxWx3 uint8 -> (3, height, bucket_w) float32, image left-aligned, zero padding on the right."""
    w = resized_width(bgr.shape[0], bgr.shape[1], height, bucket_w)
    x = resize_linear(bgr, w, height).astype(np.float32)
    x = (x.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    out = np.zeros((3, height, bucket_w), np.float32)
    out[:, :, :w] = x
    return out


def make_rec_batches(
    crops: Sequence[np.ndarray],
    max_batch: int = 32,
    buckets: Sequence[int] = DEFAULT_WIDTH_BUCKETS,
    height: int = REC_HEIGHT,
) -> list[RecBatch]:
    """Group crops by width bucket, sort each group by aspect ratio, split into <= max_batch rows."""
    groups: dict[int, list[int]] = {}
    ratios = [c.shape[1] / max(c.shape[0], 1) for c in crops]
    for i, c in enumerate(crops):
        groups.setdefault(width_bucket(resized_width(c.shape[0], c.shape[1], height, buckets[-1]), buckets), []).append(i)
    batches: list[RecBatch] = []
    for bw in sorted(groups):
        idx = sorted(groups[bw], key=lambda i: ratios[i])
        for start in range(0, len(idx), max_batch):
            part = idx[start : start + max_batch]
            tensor = np.stack([normalize_crop(crops[i], bw, height) for i in part])
            batches.append(RecBatch(tensor, part))
    return batches

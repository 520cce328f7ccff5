"""A few fixed tensor shapes for accelerators: batch sizes padded up to a short ladder, coarse rec widths.

On the CUDA provider the first run of every new input shape pays a one-off cost (cuDNN picks convolution
algorithms per shape): measured on an H100 with onnxruntime-gpu 1.31.1, 0.4-2 s for det.onnx and 2.3-3.4 s for
rec.onnx per new shape, against 4-50 ms once warm (`bench/session_timing.py`). The cross-request batchers make
batches of any size 1..max, so without padding almost every call was a new shape (1.4 s per plate image).
Padding the batch dimension to the ladder below and warming each (batch, width) pair at start-up bounds the shapes
the GPU ever sees. CPU sessions have no per-shape cost and keep exact shapes (padding would only add work).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# Fewer, wider rec buckets than on CPU: each extra shape is seconds of warm-up, padding is nearly free on a GPU.
ACCELERATOR_WIDTH_BUCKETS = (160, 320, 640, 1280)


def batch_ladder(max_batch: int, step: int = 4) -> tuple[int, ...]:
    """Batch sizes an accelerator will see: 1, step, step**2, ... below ``max_batch``, then ``max_batch``."""
    if max_batch < 1:
        raise ValueError("max_batch must be >= 1")
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= step
    return (*sizes, max_batch)


def padded_batch_size(n: int, ladder: Sequence[int]) -> int:
    """Smallest ladder size >= n (n itself when beyond the ladder or the ladder is empty)."""
    return next((size for size in ladder if size >= n), n)


def pad_batch(batch: np.ndarray, ladder: Sequence[int]) -> np.ndarray:
    """``batch`` with zero rows appended up to the ladder size; unchanged when already a ladder size."""
    target = padded_batch_size(batch.shape[0], ladder)
    if target == batch.shape[0]:
        return batch
    pad = np.zeros((target - batch.shape[0], *batch.shape[1:]), batch.dtype)
    return np.concatenate([batch, pad])

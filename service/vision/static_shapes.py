"""A few fixed tensor shapes for accelerators: batch sizes padded up to a short ladder, coarse rec widths.

On the CUDA provider the first run of every new input shape pays a one-off cost (cuDNN picks convolution
algorithms per shape): measured on an H100 with onnxruntime-gpu 1.31.1, 0.4-2 s for det.onnx and 2.3-3.4 s for
rec.onnx per new shape, against 4-50 ms once warm (`bench/session_timing.py`). The cross-request batchers make
batches of any size 1..max, so without padding almost every call was a new shape (1.4 s per plate image).
Padding the batch dimension to the ladder below and warming each (batch, width) pair at start-up bounds the shapes
the GPU ever sees. CPU sessions have no per-shape cost and keep exact shapes (padding would only add work).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from .det_preprocess import DetPreprocessConfig, bucket_shape, det_input_size

# Fewer, wider rec buckets than on CPU: each extra shape is seconds of warm-up, padding is nearly free on a GPU.
ACCELERATOR_WIDTH_BUCKETS = (160, 320, 640, 1280)
# Detector sides on accelerators. The CPU-era ladder (128..2048 in steps of 128-256) let photos of ordinary sizes
# reach a dozen cold shapes per profile (measured on an H200: plate requests at 0.5 img/s, most of each 2 s the
# first run of a shape); with these, a bundle's reachable shapes are a handful and all get warmed.
ACCELERATOR_DET_BUCKETS = (768, 1280, 2048, 3072)
# Det inputs above this many pixels run one image per call: batching them gains little on a GPU, and a batch of 8
# at 3072x3072 would hold gigabytes of activations. So large shapes need one warm-up call each, not one per size.
LARGE_DET_PIXELS = 1280 * 1280


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


def accelerator_det_config(cfg: DetPreprocessConfig) -> DetPreprocessConfig:
    """``cfg`` for a static-shape pipeline: the coarse buckets (unless the manifest set its own) and the detector's
    long side capped at the largest bucket, so every input lands on a bucket `reachable_det_shapes` lists."""
    buckets = cfg.buckets or ACCELERATOR_DET_BUCKETS
    return replace(cfg, buckets=buckets, max_det_side=max(buckets))


def reachable_det_shapes(cfg: DetPreprocessConfig, step: int = 16) -> list[tuple[int, int]]:
    """Every bucket shape an image can reach under ``cfg``, by running the shape arithmetic of the preprocessing
    over image sizes up to the work-image bound (larger images are first shrunk into that range), commonest first.
    Meant for configs from `accelerator_det_config`; with exact shapes (no buckets) the list would be huge."""
    counts: dict[tuple[int, int], int] = {}
    for h in range(step, cfg.max_side_len + 2 * step, step):
        for w in range(step, cfg.max_side_len + 2 * step, step):
            shape = bucket_shape(*det_input_size(h, w, cfg), cfg.buckets)
            counts[shape] = counts.get(shape, 0) + 1
    return sorted(counts, key=lambda shape: (-counts[shape], shape))


def det_batch_ladder_for(shape: tuple[int, int], ladder: Sequence[int]) -> tuple[int, ...]:
    """Batch sizes the detector sees at ``shape``: the ladder, or one image per call above `LARGE_DET_PIXELS`."""
    return (1,) if ladder and shape[0] * shape[1] > LARGE_DET_PIXELS else tuple(ladder)

"""Detector input preparation, matching rapidocr 3.10 / PP-OCRv6 serving.

Steps (as ``rapidocr.main`` + ``ch_ppocr_det``): bound the image side to [min_side, max_side]
(the "work" image the crops are taken from), pad very flat or very short images vertically,
resize for the detector by ``limit_type``/``limit_side_len`` with each side rounded to a multiple
of 32, normalise ``(x/255 - mean)/std`` on BGR, then zero-pad to a bucket shape so images of
different sizes share one batch tensor and the GPU sees a handful of shapes only. ``buckets=()`` keeps the
exact (multiple-of-32) shape: on CPU a batch costs the sum of its images, so bucket padding is pure waste
(736x1312 -> 768x1536 is +22 % detector pixels, measured +25-30 % detector time).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from .images import resize_linear

PPOCR_DET_MEAN = (0.5, 0.5, 0.5)  # rapidocr 3.10 config.yaml Det.mean for PP-OCRv6
PPOCR_DET_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # classic PaddleOCR DB normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_DET_BUCKETS = (128, 256, 384, 512, 640, 768, 896, 1024, 1152, 1280, 1536, 1792, 2048)
# Default caps on the detector input: the largest side any shipped bundle reaches on ordinary pages (a 736-px short
# side on a 1:4 line strip: 2944; invoice's tall receipts at 3000 px: 3008), and 4 megapixels: a CPU det call peaks
# at ~180 MB per input megapixel, so with the ~420 MiB a loaded server holds, one call stays under the 1.5 GiB
# per-replica goal (issue 20). It binds only invoice's A4-sized pages (3008x2112 -> 2368x1664); every other shipped
# bundle reads at most 1984x1408 (2.8 Mpx). OCRNET_MAX_DET_PIXELS raises it where memory allows.
DEFAULT_MAX_DET_SIDE = 3072
DEFAULT_MAX_DET_PIXELS = 4_000_000


@dataclass(frozen=True)
class DetPreprocessConfig:
    limit_side_len: int = 736
    limit_type: Literal["min", "max"] = "min"
    min_side_len: int = 30
    max_side_len: int = 2000
    vertical_padding: bool = True
    width_height_ratio: float = 8.0
    min_height: int = 30
    mean: tuple[float, float, float] = PPOCR_DET_MEAN
    std: tuple[float, float, float] = PPOCR_DET_STD
    buckets: tuple[int, ...] = DEFAULT_DET_BUCKETS
    max_upscale: float | None = None  # cap on the detector resize ratio (None = rapidocr: unbounded)
    # Caps on the detector input, whatever the aspect ratio (None = rapidocr: unbounded). Without them a "min"
    # limit blows a tall narrow strip (60x3000 px, 2.9 KB as PNG) up to 45632x736: a 400 MB input tensor and GBs
    # of activations (the int8 detector peaks at ~180 MB per input megapixel on CPU, `bench/det_memory.py`).
    # Static-shape pipelines lower the side cap to their largest bucket so every input lands on a warmed shape.
    max_det_side: int | None = DEFAULT_MAX_DET_SIDE
    max_det_pixels: int | None = DEFAULT_MAX_DET_PIXELS


@dataclass
class DetInput:
    """One image ready for the detector plus what is needed to map results back."""

    tensor: np.ndarray  # (3, H_bucket, W_bucket) float32
    valid_hw: tuple[int, int]  # resized (unpadded) region inside the tensor
    work: np.ndarray  # BGR image the detector coordinates refer to (crops come from here)
    pad_top: int  # rows of vertical padding added on top of the bounded image
    ratio_hw: tuple[float, float]  # bounded-image pixel -> original pixel scale
    original_hw: tuple[int, int]

    @property
    def bucket(self) -> tuple[int, int]:
        return int(self.tensor.shape[1]), int(self.tensor.shape[2])


def _round32(v: float) -> int:
    return int(round(v / 32) * 32)


def _scaled32(h: int, w: int, ratio: float) -> tuple[int, int]:
    """h x w scaled by ``ratio``, each side rounded to a multiple of 32 (at least 32), as rapidocr does."""
    return max(_round32(int(h * ratio)), 32), max(_round32(int(w * ratio)), 32)


def bounded_size(h: int, w: int, min_side: int, max_side: int) -> tuple[int, int]:
    """Size of the work image `bound_image` makes from an h x w image (shape arithmetic only).

    Growing a too-short side never takes the long side past ``max_side`` (rapidocr's unbounded growth turns a
    1x2000 strip into a 32x60000 work image, which vertical padding then makes 15008x60000: 2.7 GB of BGR)."""
    if max(h, w) > max_side:
        h, w = _scaled32(h, w, max_side / max(h, w))
    if min(h, w) < min_side:
        h, w = _scaled32(h, w, min(min_side / min(h, w), max(max_side / max(h, w), 1.0)))
    return h, w


def bound_image(bgr: np.ndarray, min_side: int, max_side: int) -> tuple[np.ndarray, float, float]:
    """Shrink above ``max_side`` then grow below ``min_side`` (sides rounded to 32) like rapidocr.

    Returns the image and (ratio_h, ratio_w) mapping its pixels back to the input's.
    """
    h, w = bgr.shape[:2]
    ratio_h = ratio_w = 1.0
    if max(h, w) > max_side:  # shrink first; a still-too-small side then grows from the shrunk image
        sh, sw = bounded_size(h, w, 0, max_side)
        bgr, ratio_h, ratio_w = resize_linear(bgr, sw, sh), h / sh, w / sw
    nh, nw = bounded_size(h, w, min_side, max_side)
    if bgr.shape[:2] != (nh, nw):
        bgr, ratio_h, ratio_w = resize_linear(bgr, nw, nh), h / nh, w / nw  # relative to the caller's image
    return bgr, ratio_h, ratio_w


def vertical_pad_rows(h: int, w: int, width_height_ratio: float, min_height: int) -> int:
    """Rows `vertical_pad` adds above (and below) an h x w image: 0 unless it is very flat or very short."""
    if h > min_height and w / h <= width_height_ratio:
        return 0
    new_h = max(int(w / width_height_ratio), min_height) * 2
    return int(abs(new_h - h) / 2)


def vertical_pad(bgr: np.ndarray, width_height_ratio: float, min_height: int) -> tuple[np.ndarray, int]:
    """Black bands above and below flat/short images (single text lines) so DB sees context."""
    pad = vertical_pad_rows(bgr.shape[0], bgr.shape[1], width_height_ratio, min_height)
    if pad == 0:
        return bgr, 0
    return np.pad(bgr, ((pad, pad), (0, 0), (0, 0))), pad


def det_resize_shape(h: int, w: int, limit_side_len: int, limit_type: str,
                     max_upscale: float | None = None) -> tuple[int, int]:
    """Detector input size before bucketing (rapidocr ``DetPreProcess.resize``).

    ``max_upscale`` caps the ratio: with ``limit_type="min"`` a small photo is otherwise blown up to
    ``limit_side_len`` on its short side (a 284x359 plate photo became 736x928, 6.7x the pixels to detect).
    """
    if limit_type == "max":
        ratio = limit_side_len / max(h, w) if max(h, w) > limit_side_len else 1.0
    elif limit_type == "min":
        ratio = limit_side_len / min(h, w) if min(h, w) < limit_side_len else 1.0
    else:
        raise ValueError(f"limit_type must be 'min' or 'max', got {limit_type!r}")
    if max_upscale is not None:
        ratio = min(ratio, max(float(max_upscale), 1e-6))
    return _scaled32(h, w, ratio)


def det_input_size(h: int, w: int, cfg: DetPreprocessConfig) -> tuple[int, int]:
    """Detector input size (before bucketing) for an h x w image: the shape arithmetic of `prepare_det_input`."""
    h, w = bounded_size(h, w, cfg.min_side_len, cfg.max_side_len)
    if cfg.vertical_padding:
        h += 2 * vertical_pad_rows(h, w, cfg.width_height_ratio, cfg.min_height)
    rh, rw = det_resize_shape(h, w, cfg.limit_side_len, cfg.limit_type, cfg.max_upscale)
    return capped_det_size(rh, rw, cfg.max_det_side, cfg.max_det_pixels)


def capped_det_size(h: int, w: int, max_side: int | None, max_pixels: int | None) -> tuple[int, int]:
    """h x w shrunk (aspect kept, sides multiples of 32, at least 32) until the long side is at most ``max_side``
    and the area at most ``max_pixels``: every axis is bounded, so is the detector's memory."""
    ratio = 1.0
    if max_side is not None and max(h, w) > max_side:
        ratio = max_side / max(h, w)
    if max_pixels is not None and h * w * ratio * ratio > max_pixels:
        ratio = (max_pixels / (h * w)) ** 0.5
    if ratio >= 1.0:
        return h, w
    # round down to 32 (rounding to nearest could land one step above a cap)
    return max(int(h * ratio) // 32 * 32, 32), max(int(w * ratio) // 32 * 32, 32)


def bucket_side(side: int, buckets: Sequence[int]) -> int:
    """Smallest bucket >= side; beyond the largest bucket, the next multiple of 256; no buckets: ``side``."""
    if not buckets:
        return int(side)
    i = bisect.bisect_left(buckets, side)
    if i < len(buckets):
        return int(buckets[i])
    return int(-(-side // 256) * 256)


def bucket_shape(h: int, w: int, buckets: Sequence[int] = DEFAULT_DET_BUCKETS) -> tuple[int, int]:
    return bucket_side(h, buckets), bucket_side(w, buckets)


def normalize(bgr: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """HxWx3 uint8 BGR -> 3xHxW float32 ``(x/255 - mean)/std``.

    A uint8 image has 256 values per channel, so each channel is one table lookup into the transposed output
    (bit-identical to the arithmetic, 1.5x faster: 11.5 -> 7.6 ms at 416x736)."""
    mean32, std32 = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if bgr.dtype != np.uint8:
        x = bgr.astype(np.float32) * np.float32(1 / 255.0)
        return np.ascontiguousarray(((x - mean32) / std32).transpose(2, 0, 1))
    table = ((np.arange(256, dtype=np.float32) * np.float32(1 / 255.0))[:, None] - mean32) / std32
    out = np.empty((3,) + bgr.shape[:2], np.float32)
    for c in range(3):
        np.take(table[:, c], bgr[:, :, c], out=out[c])
    return out


def prepare_det_input(bgr: np.ndarray, cfg: DetPreprocessConfig = DetPreprocessConfig()) -> DetInput:
    """Full detector preprocessing of one BGR image (see module docstring)."""
    original_hw = (int(bgr.shape[0]), int(bgr.shape[1]))
    work, ratio_h, ratio_w = bound_image(bgr, cfg.min_side_len, cfg.max_side_len)
    pad_top = 0
    if cfg.vertical_padding:
        work, pad_top = vertical_pad(work, cfg.width_height_ratio, cfg.min_height)
    rh, rw = det_input_size(*original_hw, cfg)
    chw = normalize(resize_linear(work, rw, rh), cfg.mean, cfg.std)
    bh, bw = bucket_shape(rh, rw, cfg.buckets)
    if (bh, bw) == (rh, rw):
        tensor = chw
    else:
        tensor = np.zeros((3, bh, bw), np.float32)
        tensor[:, :rh, :rw] = chw
    return DetInput(tensor, (rh, rw), work, pad_top, (ratio_h, ratio_w), original_hw)


def stack_det_inputs(inputs: Sequence[DetInput]) -> np.ndarray:
    """(N,3,H,W) batch; all inputs must share one bucket."""
    shapes = {inp.bucket for inp in inputs}
    if len(shapes) != 1:
        raise ValueError(f"det batch mixes bucket shapes {sorted(shapes)}")
    return np.stack([inp.tensor for inp in inputs])


def group_by_bucket(inputs: Sequence[DetInput]) -> dict[tuple[int, int], list[int]]:
    """Indices of ``inputs`` per bucket shape (one detector call per group)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, inp in enumerate(inputs):
        groups.setdefault(inp.bucket, []).append(i)
    return groups

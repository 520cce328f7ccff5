"""Random variation of real recognizer crops, so a few hundred labelled crops teach more than their own pixels.

A real crop is one detector box of one photo. The same text in the next photo comes with a slightly different box
(DB's margin, a tilt), at another resolution (a plate further from the camera) and through another camera (blur,
noise, light, JPEG). The augmentation re-creates exactly those differences and nothing that changes the text: the
box moves by a fraction of the text height, never across a character; the tilt stays within a few degrees. The
camera effects are the synthetic generator's own (``training.data.synth.common.degrade``), at a milder level.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from training.data.synth.common import degrade

__all__ = ["augment_crop"]

# Box jitter in crop heights: top/bottom margins grow by up to 15 % or shrink by up to 5 % (DB boxes carry a
# ~30 % margin, so a shrink never reaches the glyphs); left/right by -3 % .. +15 % (a character is ~60 % of the
# height wide, so the ends stay whole).
VERTICAL_JITTER = (-0.05, 0.15)
HORIZONTAL_JITTER = (-0.03, 0.15)
MAX_TILT_DEG = 2.5
# A plate or line read at 40-100 % of its pixels (further from the camera), scaled back up as the service would.
MIN_SCALE = 0.4


def _jitter_box(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h = arr.shape[0]  # every margin is a fraction of the text height
    top, bottom = (round(rng.uniform(*VERTICAL_JITTER) * h) for _ in range(2))
    left, right = (round(rng.uniform(*HORIZONTAL_JITTER) * h) for _ in range(2))
    pad = ((max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0)), (0, 0))
    arr = np.pad(arr, pad, mode="edge")
    y0, x0 = max(-top, 0), max(-left, 0)
    y1, x1 = arr.shape[0] - max(-bottom, 0), arr.shape[1] - max(-right, 0)
    return arr[y0:y1, x0:x1] if y1 - y0 >= 4 and x1 - x0 >= 4 else arr


def augment_crop(rgb: np.ndarray, rng: np.random.Generator, level: float = 0.6) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 crop -> a crop of the same text as another photo might give it.
    ``level`` scales the camera degradations (0: box, tilt and scale only)."""
    arr = _jitter_box(np.ascontiguousarray(rgb), rng)
    img = Image.fromarray(arr)
    if rng.random() < 0.5:
        fill = tuple(int(v) for v in np.median(arr.reshape(-1, 3), axis=0))
        img = img.rotate(float(rng.uniform(-MAX_TILT_DEG, MAX_TILT_DEG)), resample=Image.Resampling.BILINEAR,
                         fillcolor=fill)
    if rng.random() < 0.4:
        w, h = img.size
        s = float(rng.uniform(MIN_SCALE, 1.0))
        small = img.resize((max(int(w * s), 8), max(int(h * s), 4)), Image.Resampling.BILINEAR)
        img = small.resize((w, h), Image.Resampling.BILINEAR)
    if level > 0:
        img = degrade(img, rng, level)
    return np.asarray(img.convert("RGB"))

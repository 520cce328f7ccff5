"""Image decoding and cv2-compatible resizing without OpenCV.

The PP-OCR models were trained on BGR arrays resized with ``cv2.resize(INTER_LINEAR)`` (no
anti-aliasing, half-pixel centres); ``resize_linear`` reproduces that so train, eval and serve
feed the networks the same pixels.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

ImageLike = Image.Image | np.ndarray | bytes | bytearray | memoryview


def to_bgr_array(img: ImageLike) -> np.ndarray:
    """PIL image, RGB ndarray (HxW, HxWx3, HxWx4) or encoded bytes -> HxWx3 uint8 BGR.

    Bytes are decoded with Pillow and EXIF orientation is applied, so phone photos come upright.
    """
    if isinstance(img, (bytes, bytearray, memoryview)):
        with Image.open(io.BytesIO(bytes(img))) as pil:
            pil = ImageOps.exif_transpose(pil)
            return to_bgr_array(pil)
    if isinstance(img, Image.Image):
        arr = np.asarray(img.convert("RGB"))
    elif isinstance(img, np.ndarray):
        arr = img
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[:, :, :3]
        elif arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"expected HxW, HxWx3 or HxWx4 array, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
    else:
        raise TypeError(f"unsupported image type {type(img).__name__}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError("empty image")
    return np.ascontiguousarray(arr[:, :, ::-1])


def _axis_weights(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights for one axis, cv2 INTER_LINEAR convention."""
    scale = src / dst
    pos = (np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5
    pos = np.clip(pos, 0, None)
    i0 = np.floor(pos).astype(np.int64)
    frac = (pos - i0).astype(np.float32)
    i0 = np.minimum(i0, src - 1)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, frac


def resize_linear(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of an HxW[xC] uint8/float array to ``height`` x ``width`` like cv2.resize."""
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid target size {width}x{height}")
    src_h, src_w = arr.shape[:2]
    if (src_h, src_w) == (height, width):
        return arr.copy()
    y0, y1, fy = _axis_weights(src_h, height)
    x0, x1, fx = _axis_weights(src_w, width)
    extra = (None,) * (arr.ndim - 2)
    # gather the needed source rows before converting to float: a downscale never converts the whole image
    rows = (arr[y0].astype(np.float32) * (1 - fy)[(slice(None), None) + extra]
            + arr[y1].astype(np.float32) * fy[(slice(None), None) + extra])
    out = rows[:, x0] * (1 - fx)[(None, slice(None)) + extra] + rows[:, x1] * fx[(None, slice(None)) + extra]
    if arr.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(arr.dtype)

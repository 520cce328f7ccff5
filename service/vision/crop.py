"""Line crops: perspective rectification of detector quads and reading-order sorting.

Mirrors rapidocr's ``get_rotate_crop_image`` (cv2.warpPerspective, INTER_CUBIC, BORDER_REPLICATE)
with Pillow: the homography is solved with numpy in cv2's pixel convention (centres on integers)
and conjugated by half-pixel shifts into Pillow's PERSPECTIVE coefficients; border replication is
done by edge-padding the source region.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

ROTATE_RATIO = 1.5  # crops at least this much taller than wide are rotated 90 degrees (PP-OCR)
SAME_LINE_DY = 10  # px: quads whose top-left y differ less than this are one reading line
_MARGIN = 3  # source pixels around the quad (bicubic support + replicate border)


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 H with dst ~ H @ src for 4 point pairs (like cv2.getPerspectiveTransform)."""
    a = np.zeros((8, 8), np.float64)
    b = np.zeros(8, np.float64)
    for i, ((x, y), (u, v)) in enumerate(zip(np.asarray(src, np.float64), np.asarray(dst, np.float64))):
        a[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
        b[2 * i], b[2 * i + 1] = u, v
    h = np.linalg.solve(a, b)
    return np.append(h, 1.0).reshape(3, 3)


def crop_size(quad: np.ndarray) -> tuple[int, int]:
    """(width, height) of the rectified crop: longest opposite sides, truncated like rapidocr."""
    q = np.asarray(quad, np.float64)
    w = int(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[2] - q[3])))
    h = int(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2])))
    return w, h


def crop_quad(image: np.ndarray, quad: np.ndarray, rotate_tall: bool = True) -> np.ndarray:
    """Rectify quad (tl,tr,br,bl in image pixels) of an HxWxC uint8 array into a WxH crop."""
    quad = np.asarray(quad, np.float64)
    width, height = crop_size(quad)
    width, height = max(width, 1), max(height, 1)
    img_h, img_w = image.shape[:2]
    x0 = int(np.floor(quad[:, 0].min())) - _MARGIN
    y0 = int(np.floor(quad[:, 1].min())) - _MARGIN
    x1 = int(np.ceil(quad[:, 0].max())) + _MARGIN + 1
    y1 = int(np.ceil(quad[:, 1].max())) + _MARGIN + 1
    region = image[max(y0, 0) : min(y1, img_h), max(x0, 0) : min(x1, img_w)]
    pad = ((max(0, -y0), max(0, y1 - img_h)), (max(0, -x0), max(0, x1 - img_w))) + ((0, 0),) * (image.ndim - 2)
    region = np.pad(region, pad, mode="edge")
    dst = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    h_dst_to_src = homography(dst, quad - np.array([x0, y0], np.float64))
    shift = lambda d: np.array([[1, 0, d], [0, 1, d], [0, 0, 1]], np.float64)  # noqa: E731
    p = shift(0.5) @ h_dst_to_src @ shift(-0.5)
    p = p / p[2, 2]
    pil = Image.fromarray(np.ascontiguousarray(region))
    out = pil.transform((width, height), Image.Transform.PERSPECTIVE, tuple(p.ravel()[:8]), Image.Resampling.BICUBIC)
    crop = np.asarray(out)
    if rotate_tall and crop.shape[0] / crop.shape[1] >= ROTATE_RATIO:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


def reading_order(quads: np.ndarray, same_line_dy: float = SAME_LINE_DY) -> np.ndarray:
    """Indices sorting quads top-to-bottom, then left-to-right within a line (rapidocr rule).

    Quads are sorted by top-left y; a new line starts where consecutive y differ by >= same_line_dy.
    """
    quads = np.asarray(quads)
    if len(quads) == 0:
        return np.zeros(0, np.int64)
    ys = quads[:, 0, 1]
    by_y = np.argsort(ys, kind="stable")
    line_ids = np.concatenate([[0], np.cumsum(np.diff(ys[by_y]) >= same_line_dy)])
    within = np.lexsort((quads[by_y, 0, 0], line_ids))
    return by_y[within]

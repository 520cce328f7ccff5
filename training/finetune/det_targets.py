"""DB training targets from line polygons (numpy + pyclipper + Pillow, no OpenCV).

Follows the DB paper / PP-OCR recipe: the probability target is each text polygon shrunk by
``D = A(1 - r^2) / L`` (r = 0.4); the threshold target is a border band of width D on both sides
of the polygon edge, valued 1 - distance/D and rescaled to [thresh_min, thresh_max].
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyclipper
from PIL import Image, ImageDraw

Polygon = Sequence[tuple[float, float]]


def _fill(mask: np.ndarray, polygon: np.ndarray, value: float) -> None:
    """Rasterise ``polygon`` into ``mask`` in place (Pillow's even-odd fill, like cv2.fillPoly)."""
    h, w = mask.shape
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon([tuple(map(float, p)) for p in polygon], fill=1, outline=1)
    mask[np.asarray(canvas, dtype=bool)] = value


def _offset(polygon: np.ndarray, distance: float) -> list[np.ndarray]:
    pco = pyclipper.PyclipperOffset()
    pco.AddPath([tuple(map(int, map(round, p))) for p in polygon], pyclipper.JT_ROUND,
                pyclipper.ET_CLOSEDPOLYGON)
    return [np.asarray(p, dtype=np.float64) for p in pco.Execute(distance)]


def _area_perimeter(polygon: np.ndarray) -> tuple[float, float]:
    x, y = polygon[:, 0], polygon[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    perimeter = float(np.linalg.norm(polygon - np.roll(polygon, -1, axis=0), axis=1).sum())
    return area, perimeter


def _segment_distance(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of every grid point to the segment a-b."""
    ab = b - a
    denom = float(ab @ ab) or 1e-9
    t = np.clip(((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / denom, 0.0, 1.0)
    return np.hypot(xs - (a[0] + t * ab[0]), ys - (a[1] + t * ab[1]))


def _draw_border(polygon: np.ndarray, canvas: np.ndarray, mask: np.ndarray, ratio: float) -> None:
    area, perimeter = _area_perimeter(polygon)
    if perimeter <= 0 or area <= 0:
        return
    distance = area * (1 - ratio**2) / perimeter
    expanded = _offset(polygon, distance)
    if not expanded:
        return
    padded = expanded[0]
    _fill(mask, padded, 1.0)
    h, w = canvas.shape
    x0, y0 = np.floor(padded.min(0)).astype(int)
    x1, y1 = np.ceil(padded.max(0)).astype(int)
    if x1 <= x0 or y1 <= y0:
        return
    ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float64)
    dist = np.min([_segment_distance(xs, ys, polygon[i], polygon[(i + 1) % len(polygon)])
                   for i in range(len(polygon))], axis=0)
    value = 1.0 - np.clip(dist / distance, 0.0, 1.0)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    if cx1 < cx0 or cy1 < cy0:
        return
    region = value[cy0 - y0:cy1 - y0 + 1, cx0 - x0:cx1 - x0 + 1]
    canvas[cy0:cy1 + 1, cx0:cx1 + 1] = np.maximum(canvas[cy0:cy1 + 1, cx0:cx1 + 1], region)


def make_db_targets(polygons: Sequence[Polygon], ignore: Sequence[bool], height: int, width: int,
                    shrink_ratio: float = 0.4, min_text_size: float = 8.0, thresh_min: float = 0.3,
                    thresh_max: float = 0.7) -> dict[str, np.ndarray]:
    """Float32 HxW maps: shrink_map, shrink_mask, thresh_map, thresh_mask.

    ``ignore`` polygons (ICDAR ``###``) and lines too small or too thin to shrink are masked out of
    the probability loss rather than taught as background.
    """
    shrink_map = np.zeros((height, width), np.float32)
    shrink_mask = np.ones((height, width), np.float32)
    canvas = np.zeros((height, width), np.float64)
    thresh_mask = np.zeros((height, width), np.float32)
    for poly, skip in zip(polygons, ignore, strict=True):
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        pts[:, 0] = pts[:, 0].clip(0, width - 1)
        pts[:, 1] = pts[:, 1].clip(0, height - 1)
        side = min(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]))
        area, perimeter = _area_perimeter(pts)
        if skip or side < min_text_size or area < 1.0:
            _fill(shrink_mask, pts, 0.0)
            continue
        shrunk = _offset(pts, -area * (1 - shrink_ratio**2) / perimeter)
        if not shrunk:
            _fill(shrink_mask, pts, 0.0)
            continue
        _fill(shrink_map, shrunk[0], 1.0)
        _draw_border(pts, canvas, thresh_mask, shrink_ratio)
    thresh_map = (canvas * (thresh_max - thresh_min) + thresh_min).astype(np.float32)
    return {"shrink_map": shrink_map, "shrink_mask": shrink_mask,
            "thresh_map": thresh_map, "thresh_mask": thresh_mask}

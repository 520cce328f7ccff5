"""Polygon IoU and one-to-one greedy matching of predicted to ground-truth text regions.

Greedy by descending IoU (the ICDAR-2015 style protocol): each ground truth and each prediction is used at
most once, so a detector cannot score twice by splitting or duplicating a line.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from shapely.geometry import Polygon, box
from shapely.validation import make_valid

__all__ = ["Shape", "greedy_match", "iou_matrix", "polygon_iou", "to_polygon"]

# [x1, y1, x2, y2] or [[x, y], ...] (3+ points)
Shape = Sequence[float] | Sequence[Sequence[float]]


def to_polygon(shape: Shape) -> Polygon:
    """A valid shapely polygon from an axis-aligned box or a point list (self-intersections repaired)."""
    if len(shape) == 4 and all(isinstance(v, (int, float, np.integer, np.floating)) for v in shape):
        x1, y1, x2, y2 = (float(v) for v in shape)
        return box(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
    pts = [(float(p[0]), float(p[1])) for p in shape]
    if len(pts) < 3:
        raise ValueError(f"a polygon needs 3+ points, got {len(pts)}")
    poly = Polygon(pts)
    if poly.is_valid:
        return poly
    # A bow-tie quad (points out of order) is repaired; pieces are replaced by their convex hull.
    fixed = make_valid(poly)
    if isinstance(fixed, Polygon):
        return fixed
    hull = fixed.convex_hull
    return hull if isinstance(hull, Polygon) else Polygon()


def polygon_iou(a: Shape | Polygon, b: Shape | Polygon) -> float:
    pa = a if isinstance(a, Polygon) else to_polygon(a)
    pb = b if isinstance(b, Polygon) else to_polygon(b)
    if pa.is_empty or pb.is_empty:
        return 0.0
    inter = pa.intersection(pb).area
    union = pa.area + pb.area - inter
    return float(inter / union) if union > 0 else 0.0


def iou_matrix(preds: Sequence[Shape], gts: Sequence[Shape]) -> np.ndarray:
    """(len(preds), len(gts)) IoU matrix; bounding boxes are checked first so far-apart pairs cost nothing."""
    pp, gp = [to_polygon(p) for p in preds], [to_polygon(g) for g in gts]
    out = np.zeros((len(pp), len(gp)), dtype=np.float64)
    gb = [g.bounds for g in gp]
    for i, p in enumerate(pp):
        px0, py0, px1, py1 = p.bounds
        for j, g in enumerate(gp):
            gx0, gy0, gx1, gy1 = gb[j]
            if px0 < gx1 and gx0 < px1 and py0 < gy1 and gy0 < py1:
                out[i, j] = polygon_iou(p, g)
    return out


def greedy_match(iou: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one (pred, gt, iou) pairs with iou >= threshold, highest IoU first."""
    if iou.size == 0:
        return []
    pairs = np.argwhere(iou >= threshold)
    order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_p, used_g, out = set(), set(), []
    for k in order:
        i, j = int(pairs[k, 0]), int(pairs[k, 1])
        if i in used_p or j in used_g:
            continue
        used_p.add(i)
        used_g.add(j)
        out.append((i, j, float(iou[i, j])))
    return out

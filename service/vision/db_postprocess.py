"""DB (differentiable binarisation) probability map -> text quads, the rapidocr 3.10 way without cv2.

cv2.findContours + minAreaRect is replaced by scipy connected components (8-connectivity, same
pixels as the outer contours) and shapely's minimum rotated rectangle of the component's hull.
Holes inside a component are ignored (cv2 RETR_LIST would also emit them as extra contours;
on text maps they are rare and only ever produce duplicate boxes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyclipper
from PIL import Image, ImageDraw
from scipy import ndimage
from shapely.geometry import MultiPoint, Polygon

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class DBConfig:
    thresh: float = 0.3
    box_thresh: float = 0.5
    max_candidates: int = 1000
    unclip_ratio: float = 1.6
    use_dilation: bool = True
    min_size: int = 3
    # Growth of the polygons reported to callers (None: the crop's unclip_ratio). The recognizer wants PP-OCR's
    # margin around the text; a caller locating text wants the box on the text (at 1.6 a receipt line's box is a
    # median 1.3x the height of its SROIE label box, and a lone '1' misses IoU 0.5 with its own label).
    output_unclip_ratio: float | None = None


def binarize(prob: np.ndarray, thresh: float, use_dilation: bool) -> np.ndarray:
    """``prob > thresh``, optionally dilated by the 2x2 kernel cv2 uses (anchor at (1,1))."""
    mask = prob > thresh
    if use_dilation:
        mask = ndimage.maximum_filter(mask.astype(np.uint8), size=2, mode="constant", cval=0) > 0
    return mask


def component_hulls(mask: np.ndarray, max_candidates: int) -> list[np.ndarray]:
    """Per 8-connected component, its row-extreme pixels (x, y) (same convex hull, far fewer points)."""
    labels, n = ndimage.label(mask, structure=_EIGHT)
    out: list[np.ndarray] = []
    for idx, sl in enumerate(ndimage.find_objects(labels)[:max_candidates], start=1):
        if sl is None:
            continue
        sub = labels[sl] == idx
        rows = np.flatnonzero(sub.any(axis=1))
        left = sub[rows].argmax(axis=1)
        right = sub.shape[1] - 1 - sub[rows, ::-1].argmax(axis=1)
        ys = np.concatenate([rows, rows]) + sl[0].start
        xs = np.concatenate([left, right]) + sl[1].start
        out.append(np.stack([xs, ys], axis=1).astype(np.float64))
    return out


def mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimum-area rectangle as 4 points (rapidocr ``get_mini_boxes`` order) and its short side."""
    rect = MultiPoint(points).minimum_rotated_rectangle
    if not isinstance(rect, Polygon):  # a point or a segment: degenerate, zero short side
        return np.zeros((4, 2), np.float32), 0.0
    corners = np.asarray(rect.exterior.coords, dtype=np.float64)[:4]
    sides = np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1)
    pts = sorted(corners.tolist(), key=lambda p: p[0])
    i1, i4 = (0, 1) if pts[1][1] > pts[0][1] else (1, 0)
    i2, i3 = (2, 3) if pts[3][1] > pts[2][1] else (3, 2)
    box = np.array([pts[i1], pts[i2], pts[i3], pts[i4]], dtype=np.float32)
    return box, float(min(sides[0], sides[1]))


def box_score(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside the (integer-truncated) quad: rapidocr's ``box_score_fast``."""
    h, w = prob.shape
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask_img = Image.new("L", (xmax - xmin + 1, ymax - ymin + 1), 0)
    pts = (box - np.array([xmin, ymin], np.float32)).astype(np.int32)
    ImageDraw.Draw(mask_img).polygon([tuple(p) for p in pts.tolist()], fill=1, outline=1)
    mask = np.asarray(mask_img, dtype=bool)
    region = prob[ymin : ymax + 1, xmin : xmax + 1]
    return float(region[mask].mean()) if mask.any() else 0.0


def unclip(box: np.ndarray, unclip_ratio: float) -> np.ndarray:
    """Grow the shrunk DB kernel back to the text extent: offset by area * ratio / perimeter."""
    poly = Polygon(box)
    if poly.length == 0:
        return np.zeros((0, 2))
    distance = poly.area * unclip_ratio / poly.length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    paths = offset.Execute(distance)
    if not paths:
        return np.zeros((0, 2))
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in paths]).reshape(-1, 2)


def order_clockwise(pts: np.ndarray) -> np.ndarray:
    """tl, tr, br, bl from x-sorted halves (imutils' rule, as rapidocr)."""
    xs = pts[np.argsort(pts[:, 0], kind="stable")]
    left = xs[:2][np.argsort(xs[:2, 1], kind="stable")]
    right = xs[2:][np.argsort(xs[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def _finish(expanded: np.ndarray, map_hw: tuple[int, int], dest_hw: tuple[int, int], min_size: int
            ) -> np.ndarray | None:
    """An unclipped polygon -> its min-area quad in ``dest_hw`` pixels, tl,tr,br,bl, integer-valued and clipped;
    None when it is too thin to be a line."""
    if len(expanded) < 3:
        return None
    box, sside = mini_box(expanded)
    if sside < min_size + 2:
        return None
    (height, width), (dest_h, dest_w) = map_hw, dest_hw
    box[:, 0] = np.clip(np.round(box[:, 0] / width * dest_w), 0, dest_w)
    box[:, 1] = np.clip(np.round(box[:, 1] / height * dest_h), 0, dest_h)
    box = order_clockwise(box)
    box[:, 0] = np.clip(box[:, 0], 0, dest_w - 1)
    box[:, 1] = np.clip(box[:, 1], 0, dest_h - 1)
    if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
        return None
    return box


def db_line_boxes(
    prob: np.ndarray, dest_hw: tuple[int, int], cfg: DBConfig = DBConfig()
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """(H, W) probability map of the resized image -> (crop quads, output quads, scores), quads (N,4,2) in
    ``dest_hw`` pixels. Crop quads are grown by ``cfg.unclip_ratio`` (what the recognizer reads), output quads by
    ``cfg.output_unclip_ratio`` from the same kernel (the same array when that is None)."""
    if prob.ndim != 2:
        raise ValueError(f"expected a 2-D probability map, got {prob.shape}")
    mask = binarize(prob, cfg.thresh, cfg.use_dilation)
    quads: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    scores: list[float] = []
    for points in component_hulls(mask, cfg.max_candidates):
        kernel, sside = mini_box(points)
        if sside < cfg.min_size:
            continue
        score = box_score(prob, kernel)
        if score < cfg.box_thresh:
            continue
        box = _finish(unclip(kernel, cfg.unclip_ratio), prob.shape, dest_hw, cfg.min_size)
        if box is None:
            continue
        if cfg.output_unclip_ratio is not None:
            tight = _finish(unclip(kernel, cfg.output_unclip_ratio), prob.shape, dest_hw, cfg.min_size)
            outputs.append(box if tight is None else tight)  # too thin to stand alone: report the crop's box
        quads.append(box)
        scores.append(score)
    if not quads:
        empty = np.zeros((0, 4, 2), np.float32)
        return empty, empty, []
    crop_quads = np.stack(quads).astype(np.float32)
    return crop_quads, (np.stack(outputs).astype(np.float32) if outputs else crop_quads), scores


def db_boxes(
    prob: np.ndarray, dest_hw: tuple[int, int], cfg: DBConfig = DBConfig()
) -> tuple[np.ndarray, list[float]]:
    """(H, W) probability map of the resized image -> crop quads (N,4,2) in ``dest_hw`` pixels + scores.

    Quads are tl,tr,br,bl, integer-valued and clipped to the destination image.
    """
    quads, _, scores = db_line_boxes(prob, dest_hw, cfg)
    return quads, scores

import numpy as np
from PIL import Image, ImageDraw
from shapely.geometry import Polygon

from service.vision.db_postprocess import (
    DBConfig,
    binarize,
    box_score,
    db_boxes,
    db_line_boxes,
    mini_box,
    order_clockwise,
    unclip,
)


def _iou(a, b) -> float:
    pa, pb = Polygon(a), Polygon(b)
    return pa.intersection(pb).area / pa.union(pb).area


def _prob_map(shape, quads, value=0.9) -> np.ndarray:
    img = Image.new("F", (shape[1], shape[0]), 0.02)
    draw = ImageDraw.Draw(img)
    for q in quads:
        draw.polygon([tuple(map(float, p)) for p in q], fill=value)
    return np.array(img, np.float32)


def _shrunk(quad, ratio=1.6):
    """The DB kernel whose unclip (offset by area*ratio/perimeter) gives back ``quad``."""
    text = Polygon(quad)
    lo, hi = 0.0, min(text.bounds[2] - text.bounds[0], text.bounds[3] - text.bounds[1]) / 2
    for _ in range(50):  # bisection on the inward offset d: unclip distance of the kernel == d
        d = (lo + hi) / 2
        k = text.buffer(-d, join_style="mitre")
        if k.is_empty or k.area * ratio / k.length < d:
            hi = d
        else:
            lo = d
    return np.asarray(text.buffer(-lo, join_style="mitre").exterior.coords)[:-1]


def test_known_rectangles_are_recovered_with_high_iou():
    texts = [
        np.array([[40, 30], [400, 30], [400, 70], [40, 70]]),
        np.array([[60, 120], [300, 120], [300, 150], [60, 150]]),
        np.array([[420, 200], [600, 200], [600, 260], [420, 260]]),
    ]
    prob = _prob_map((320, 640), [_shrunk(t) for t in texts])
    quads, scores = db_boxes(prob, (320, 640), DBConfig())
    assert len(quads) == 3 and all(s > 0.8 for s in scores)
    for t in texts:
        assert max(_iou(t, q) for q in quads) > 0.9


def test_rotated_text_and_rescaling_to_destination():
    c, (w, h), ang = np.array([200.0, 150.0]), (240.0, 40.0), np.deg2rad(20)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    quad = (np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]]) @ rot.T) + c
    prob = _prob_map((320, 416), [_shrunk(quad)])
    quads, _ = db_boxes(prob, (640, 832), DBConfig())  # destination is 2x the map
    assert len(quads) == 1
    assert _iou(quad * 2, quads[0]) > 0.9
    q = quads[0]
    assert q[0, 0] < q[1, 0] and q[0, 1] < q[3, 1]  # tl, tr, br, bl order


def test_output_boxes_hug_the_text_while_crops_keep_the_margin():
    """Text drawn 40 px tall with a kernel made for a 1.3 growth: the crop (1.6) is taller than the text, the output
    box (1.3) lands on it; both come from the same kernel, in the same order, one each."""
    texts = [np.array([[40, 30], [400, 30], [400, 70], [40, 70]]),
             np.array([[60, 120], [100, 120], [100, 150], [60, 150]])]  # a short token: where IoU suffers most
    prob = _prob_map((320, 640), [_shrunk(t, 1.3) for t in texts])
    crops, outputs, scores = db_line_boxes(prob, (320, 640), DBConfig(output_unclip_ratio=1.3))
    assert crops.shape == outputs.shape == (2, 4, 2) and len(scores) == 2
    for t, crop, out in zip(texts, crops, outputs):
        assert Polygon(out).within(Polygon(crop).buffer(0.5))
        assert _iou(t, out) > 0.85 and _iou(t, out) > _iou(t, crop) + 0.1
    same_crops, same_outputs, _ = db_line_boxes(prob, (320, 640), DBConfig())  # unset: one box for both uses
    assert same_outputs is same_crops and np.array_equal(same_crops, crops)
    assert np.array_equal(db_boxes(prob, (320, 640), DBConfig(output_unclip_ratio=1.3))[0], crops)


def test_low_score_and_tiny_components_are_dropped():
    prob = _prob_map((200, 200), [np.array([[20, 20], [180, 20], [180, 60], [20, 60]])], value=0.4)
    prob[150, 150] = 0.99  # a single pixel: short side < min_size
    assert len(db_boxes(prob, (200, 200), DBConfig(box_thresh=0.5))[0]) == 0
    assert len(db_boxes(prob, (200, 200), DBConfig(box_thresh=0.3))[0]) == 1


def test_dilation_uses_cv2_anchor():
    m = np.zeros((4, 4), np.float32)
    m[1, 1] = 1
    out = binarize(m, 0.5, use_dilation=True)
    assert sorted(zip(*np.nonzero(out))) == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_geometry_helpers():
    box, short = mini_box(np.array([[0, 0], [10, 0], [10, 4], [0, 4], [5, 2]], float))
    assert short == 4 and _iou(box, [[0, 0], [10, 0], [10, 4], [0, 4]]) > 0.99
    assert mini_box(np.array([[0, 0], [5, 5]], float))[1] == 0.0
    prob = np.zeros((10, 10), np.float32)
    prob[2:6, 2:8] = 1
    assert box_score(prob, np.array([[2, 2], [7, 2], [7, 5], [2, 5]], np.float32)) == 1.0
    grown = unclip(np.array([[0, 0], [100, 0], [100, 10], [0, 10]], float), 1.5)
    assert Polygon(grown).area > 1000 * 1.5
    np.testing.assert_array_equal(order_clockwise(np.array([[9, 9], [0, 0], [9, 0], [0, 9]], float)),
                                  [[0, 0], [9, 0], [9, 9], [0, 9]])

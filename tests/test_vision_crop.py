import numpy as np
from PIL import Image

from rendering import render_text_line
from service.vision.crop import crop_quad, crop_size, homography, reading_order


def test_homography_maps_the_four_corners():
    src = np.array([[10, 20], [110, 25], [105, 60], [12, 55]], float)
    dst = np.array([[0, 0], [100, 0], [100, 40], [0, 40]], float)
    h = homography(src, dst)
    mapped = (h @ np.c_[src, np.ones(4)].T).T
    np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], dst, atol=1e-9)


def test_rotated_quad_is_rectified_back_to_the_text_line():
    line = np.asarray(render_text_line("ROTATED 42", height=48).convert("L"))
    h, w = line.shape
    canvas = np.full((400, 500), 255, np.uint8)
    canvas[150 : 150 + h, 100 : 100 + w] = line
    angle = 25.0
    rotated = np.asarray(Image.fromarray(canvas).rotate(angle, resample=Image.Resampling.BICUBIC, center=(250, 200),
                                                       fillcolor=255))
    # where the line's corners went (PIL rotates counter-clockwise in image coordinates)
    corners = np.array([[100, 150], [100 + w, 150], [100 + w, 150 + h], [100, 150 + h]], float)
    t = np.deg2rad(angle)
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    quad = (corners - [250, 200]) @ rot.T + [250, 200]
    crop = crop_quad(rotated[:, :, None].repeat(3, axis=2), quad)
    assert crop_size(quad) in {(w, h), (w - 1, h), (w, h - 1), (w - 1, h - 1)}
    ref = line[: crop.shape[0], : crop.shape[1]].astype(float)
    diff = np.abs(crop[:, :, 0].astype(float) - ref).mean()
    assert diff < 12, diff  # same picture (resampling twice blurs edges a little)
    assert np.abs(crop[:, :, 0].astype(float) - 255).mean() > 20  # and it is not blank


def test_axis_aligned_crop_is_exact_and_tall_crops_rotate():
    img = np.random.default_rng(1).integers(0, 255, (50, 60, 3), dtype=np.uint8)
    crop = crop_quad(img, np.array([[10, 5], [40, 5], [40, 25], [10, 25]], float))
    np.testing.assert_array_equal(crop, img[5:25, 10:40])
    tall = crop_quad(img, np.array([[10, 0], [20, 0], [20, 30], [10, 30]], float))
    assert tall.shape == (10, 30, 3)  # 30x10 -> rotated by 90 degrees (h/w >= 1.5)
    np.testing.assert_array_equal(tall, np.rot90(img[0:30, 10:20]))


def test_reading_order_top_to_bottom_then_left_to_right():
    def q(x, y):
        return [[x, y], [x + 50, y], [x + 50, y + 20], [x, y + 20]]

    quads = np.array([q(300, 104), q(10, 200), q(10, 100), q(150, 98)], float)
    assert reading_order(quads).tolist() == [2, 3, 0, 1]
    assert reading_order(np.zeros((0, 4, 2))).tolist() == []

import io

import numpy as np
import pytest
from PIL import Image

from service.vision.images import resize_linear, to_bgr_array


def test_to_bgr_array_from_pil_ndarray_and_bytes_agree():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    pil = Image.fromarray(rgb)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    for src in (pil, rgb, buf.getvalue()):
        bgr = to_bgr_array(src)
        assert bgr.shape == (4, 5, 3) and bgr.dtype == np.uint8
        assert (bgr[..., 2] == 200).all() and (bgr[..., :2] == 0).all()


def test_to_bgr_array_gray_and_rgba():
    assert to_bgr_array(np.full((3, 3), 7, np.uint8)).shape == (3, 3, 3)
    assert to_bgr_array(Image.new("RGBA", (3, 2), (1, 2, 3, 4)))[0, 0].tolist() == [3, 2, 1]
    with pytest.raises(ValueError):
        to_bgr_array(np.zeros((0, 3, 3), np.uint8))


def test_resize_linear_matches_cv2_conventions():
    # cv2.resize([[0, 100]], (4, 1), INTER_LINEAR) == [[0, 25, 75, 100]] (half-pixel centres, edge clamp)
    up = resize_linear(np.array([[0, 100]], np.float32), 4, 1)
    np.testing.assert_allclose(up, [[0, 25, 75, 100]])
    # exact 2x downscale averages pixel pairs (no wider anti-alias filter)
    row = np.array([[0, 10, 20, 40, 100, 200]], np.uint8)
    np.testing.assert_array_equal(resize_linear(row, 3, 1), [[5, 30, 150]])
    img = np.random.default_rng(0).integers(0, 255, (7, 9, 3), dtype=np.uint8)
    assert resize_linear(img, 13, 5).shape == (5, 13, 3)
    np.testing.assert_array_equal(resize_linear(img, 9, 7), img)

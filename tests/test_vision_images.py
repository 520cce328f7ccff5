import io

import numpy as np
import pytest
from PIL import Image

from service.vision.images import _axis_weights, resize_linear, to_bgr_array


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


def _reference_resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """The straightforward broadcasting form `resize_linear` replaced (kept here as its specification; the
    per-axis source indices and weights are unchanged, so both use `_axis_weights`)."""
    y0, y1, fy = _axis_weights(arr.shape[0], height)
    x0, x1, fx = _axis_weights(arr.shape[1], width)
    extra = (None,) * (arr.ndim - 2)
    rows = (arr[y0].astype(np.float32) * (1 - fy)[(slice(None), None) + extra]
            + arr[y1].astype(np.float32) * fy[(slice(None), None) + extra])
    out = rows[:, x0] * (1 - fx)[(None, slice(None)) + extra] + rows[:, x1] * fx[(None, slice(None)) + extra]
    if arr.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(arr.dtype)


@pytest.mark.parametrize("shape, size", [
    ((720, 1280, 3), (736, 416)),   # a plate photo to its detector input
    ((1280, 1280, 3), (736, 736)),
    ((17, 40, 3), (100, 48)),       # a crop up to recogniser height
    ((48, 200, 3), (320, 48)),
    ((30, 33), (64, 70)),           # grey
    ((9, 11, 4), (5, 20)),          # four channels
    ((1, 7, 3), (3, 1)),
])
def test_resize_linear_is_bit_identical_to_the_broadcasting_form(shape, size):
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(resize_linear(img, *size), _reference_resize(img, *size))
    as_float = img.astype(np.float32) / 3
    np.testing.assert_array_equal(resize_linear(as_float, *size), _reference_resize(as_float, *size))
    strided = np.ascontiguousarray(np.concatenate([img, img], axis=1))[:, ::2]  # a non-contiguous view
    np.testing.assert_array_equal(resize_linear(strided, *size), _reference_resize(strided, *size))


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK", "LA"])
def test_pil_images_of_any_mode_come_out_as_writable_bgr(mode):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    pil = Image.fromarray(rgb).convert(mode)
    bgr = to_bgr_array(pil)
    np.testing.assert_array_equal(bgr, np.asarray(pil.convert("RGB"))[:, :, ::-1])
    assert bgr.flags.writeable and bgr.flags.c_contiguous
    bgr[0, 0] = 0  # callers may draw on it


def test_bytes_decode_applies_exif_orientation():
    img = Image.new("RGB", (6, 3), (10, 20, 30))
    img.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    buf = io.BytesIO()
    img.save(buf, format="PNG", exif=exif.tobytes())
    bgr = to_bgr_array(buf.getvalue())
    assert bgr.shape == (6, 3, 3)
    assert bgr[0, 2].tolist() == [0, 0, 255]  # the red top-left corner is now top-right

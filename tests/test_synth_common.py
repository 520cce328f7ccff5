"""Font registry and degradation helpers of the synthetic generators."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.data.synth import common
from training.data.synth.common import (
    FontNotFoundError,
    apply_homography,
    degrade,
    fit_canvas,
    font_files,
    homography,
    motion_blur,
    rect_quad,
    rotation,
    sample_seed,
    warp,
)


def test_every_family_is_installed():
    common.check_fonts()
    assert font_files("ocrb")[0].endswith("OCRB.otf")


def test_missing_fonts_fail_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("OCRNET_FONT_DIR", str(tmp_path))
    with pytest.raises(FontNotFoundError, match="make fonts"):
        font_files("mono")


def test_homography_maps_corners_and_warp_follows_it():
    src = rect_quad(0, 0, 100, 50)
    dst = [(10, 5), (120, 0), (115, 70), (5, 60)]
    h = homography(np.asarray(src), np.asarray(dst))
    np.testing.assert_allclose(apply_homography(h, src), dst, atol=1e-6)
    img = Image.new("RGB", (100, 50), (0, 0, 0))
    img.paste((255, 255, 255), (40, 20, 60, 30))  # a white block whose centre (50, 25) we track
    out = warp(img, h, (130, 80))
    cx, cy = apply_homography(h, [(50, 25)])[0]
    assert out.getpixel((round(cx), round(cy)))[0] > 200
    assert out.getpixel((2, 78))[0] == 0


def test_fit_canvas_keeps_the_rotated_image_inside():
    h, (w, hh) = fit_canvas(rotation(30, 50, 25), 100, 50)
    pts = np.asarray(apply_homography(h, rect_quad(0, 0, 100, 50)))
    assert pts.min() >= -1e-6 and pts[:, 0].max() <= w + 1e-6 and pts[:, 1].max() <= hh + 1e-6


def test_degrade_is_seeded_and_keeps_size():
    img = Image.new("RGB", (120, 40), (240, 240, 240))
    a = degrade(img, sample_seed(5, 1), 1.2, allow_glare=True, low_light=0.5)
    b = degrade(img, sample_seed(5, 1), 1.2, allow_glare=True, low_light=0.5)
    assert a.size == img.size and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()
    outs = {degrade(img, sample_seed(5, i), 1.2).tobytes() for i in range(6)}
    assert len(outs) > 1


def test_motion_blur_spreads_a_dot_along_its_direction():
    img = Image.new("RGB", (31, 31), (0, 0, 0))
    img.putpixel((15, 15), (255, 255, 255))
    arr = np.asarray(motion_blur(img, 7, 0))[..., 0]
    assert arr[15, 12] > 0 and arr[15, 18] > 0 and arr[12, 15] == 0

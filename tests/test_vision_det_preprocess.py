import numpy as np
import pytest

from service.vision.det_preprocess import (
    DetPreprocessConfig,
    bound_image,
    bucket_shape,
    det_resize_shape,
    group_by_bucket,
    normalize,
    prepare_det_input,
    stack_det_inputs,
    vertical_pad,
)


def test_det_resize_shape_follows_rapidocr_limit_rules():
    # limit_type=min: grow until the short side reaches the limit, sides rounded to 32
    assert det_resize_shape(500, 1000, 736, "min") == (736, 1472)
    assert det_resize_shape(800, 1000, 736, "min") == (800, 992)
    # limit_type=max: shrink only when the long side exceeds the limit
    assert det_resize_shape(1500, 3000, 960, "max") == (480, 960)
    assert det_resize_shape(100, 200, 960, "max") == (96, 192)
    with pytest.raises(ValueError):
        det_resize_shape(10, 10, 736, "avg")


def test_bound_image_caps_long_side_and_reports_ratio():
    img = np.zeros((3000, 1000, 3), np.uint8)
    out, rh, rw = bound_image(img, 30, 2000)
    assert out.shape[:2] == (1984, 672)  # ~2000 -> round(62.5)*32 = 1984; 666 -> 672
    assert rh == pytest.approx(3000 / 1984) and rw == pytest.approx(1000 / 672)
    same, rh, rw = bound_image(np.zeros((100, 200, 3), np.uint8), 30, 2000)
    assert same.shape == (100, 200, 3) and (rh, rw) == (1.0, 1.0)


def test_vertical_pad_only_for_flat_or_short_images():
    line = np.full((40, 400, 3), 255, np.uint8)  # w/h = 10 > 8
    padded, top = vertical_pad(line, 8, 30)
    assert top == 30 and padded.shape == (100, 400, 3) and padded[0].max() == 0
    page = np.zeros((400, 300, 3), np.uint8)
    assert vertical_pad(page, 8, 30)[1] == 0


def test_normalize_is_bgr_chw_mean_std():
    x = normalize(np.array([[[0, 255, 51]]], np.uint8), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (3, 1, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [-1.0, 1.0, -0.6], atol=1e-6)


def test_buckets_and_padded_tensor():
    assert bucket_shape(736, 1472) == (768, 1536)
    assert bucket_shape(32, 100) == (128, 128)
    assert bucket_shape(3000, 64) == (3072, 128)
    cfg = DetPreprocessConfig(limit_side_len=736, limit_type="min")
    inp = prepare_det_input(np.full((500, 1000, 3), 255, np.uint8), cfg)
    assert inp.valid_hw == (736, 1472) and inp.bucket == (768, 1536)
    assert (inp.tensor[:, :736, :1472] == 1.0).all() and (inp.tensor[:, 736:, :] == 0).all()
    assert inp.original_hw == (500, 1000) and inp.ratio_hw == (1.0, 1.0)


def test_images_of_different_size_share_a_bucket_batch():
    cfg = DetPreprocessConfig(limit_side_len=960, limit_type="max")
    a = prepare_det_input(np.zeros((700, 900, 3), np.uint8), cfg)
    b = prepare_det_input(np.zeros((690, 880, 3), np.uint8), cfg)
    c = prepare_det_input(np.zeros((300, 300, 3), np.uint8), cfg)
    assert a.original_hw != b.original_hw and a.bucket == b.bucket
    assert stack_det_inputs([a, b]).shape == (2, 3) + a.bucket
    assert group_by_bucket([a, c, b]) == {a.bucket: [0, 2], c.bucket: [1]}
    with pytest.raises(ValueError):
        stack_det_inputs([a, c])


def test_max_upscale_caps_the_resize_ratio():
    # a small photo under limit_type=min: 6.7x the pixels uncapped, 2.25x with a 1.5 cap
    assert det_resize_shape(284, 359, 736, "min") == (736, 928)
    assert det_resize_shape(284, 359, 736, "min", max_upscale=1.5) == (416, 544)
    assert det_resize_shape(284, 359, 736, "min", max_upscale=1.0) == (288, 352)
    # downscaling is never affected by the cap
    assert det_resize_shape(1500, 3000, 960, "max", max_upscale=1.0) == (480, 960)
    cfg = DetPreprocessConfig(limit_side_len=736, limit_type="min", max_upscale=1.0)
    assert prepare_det_input(np.zeros((284, 359, 3), np.uint8), cfg).valid_hw == (288, 352)


def test_no_buckets_keeps_the_exact_shape():
    cfg = DetPreprocessConfig(limit_side_len=736, limit_type="min", buckets=())
    inp = prepare_det_input(np.full((720, 1280, 3), 255, np.uint8), cfg)
    assert inp.valid_hw == (736, 1312) and inp.bucket == (736, 1312) and inp.tensor.shape == (3, 736, 1312)
    assert bucket_shape(736, 1312, ()) == (736, 1312)


def test_normalize_table_lookup_is_bit_identical_to_the_arithmetic():
    img = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for mean, std in [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]:
        x = img.astype(np.float32) * np.float32(1 / 255.0)
        expected = ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(2, 0, 1)
        got = normalize(img, mean, std)
        np.testing.assert_array_equal(got, expected)
        assert got.flags.c_contiguous
    np.testing.assert_allclose(normalize(img.astype(np.float32), (0.5,) * 3, (0.5,) * 3), normalize(img, (0.5,) * 3, (0.5,) * 3))


# Thin strips (issue 20): a 60x3000 PNG (2.9 KB) became a 45632x736 detector input, a 1x2000 one a 15008x60000 work
# image. Sizes are (width x height) as an image viewer says; arrays are (h, w).
THIN_STRIPS_WH = [(60, 3000), (3000, 60), (1, 100000), (100000, 1), (2000, 1), (1, 2000), (7, 4000), (5000, 2)]


@pytest.mark.parametrize("bundle", ["base", "plate", "invoice", "id"])
def test_detector_input_is_capped_on_every_axis_for_thin_strips(repo_root, bundle):
    from service.model_bundle import ModelBundle
    from service.vision.det_preprocess import (DEFAULT_MAX_DET_PIXELS, DEFAULT_MAX_DET_SIDE, bounded_size,
                                               det_input_size)

    cfg = ModelBundle(repo_root / "models" / bundle).manifest.det_preprocess(())
    for w, h in THIN_STRIPS_WH:
        rh, rw = det_input_size(h, w, cfg)
        assert max(rh, rw) <= DEFAULT_MAX_DET_SIDE and rh * rw <= DEFAULT_MAX_DET_PIXELS, (bundle, w, h, rh, rw)
        bh, bw = bounded_size(h, w, cfg.min_side_len, cfg.max_side_len)
        assert max(bh, bw) <= max(cfg.max_side_len, 32) + 32, (bundle, w, h, bh, bw)  # the work image too


@pytest.mark.parametrize("w,h", [(60, 3000), (1, 100000)])  # (2000, 1): shapes above (10 GB before)
def test_prepare_det_input_of_a_thin_strip_stays_small(w, h):
    cfg = DetPreprocessConfig(buckets=())
    inp = prepare_det_input(np.full((h, w, 3), 255, np.uint8), cfg)
    assert inp.tensor.nbytes < 64 * 2**20, inp.tensor.shape  # was 400 MB (60x3000) / 380 MB (1x100000)
    assert inp.work.nbytes < 64 * 2**20, inp.work.shape
    assert inp.valid_hw == inp.tensor.shape[1:]


def test_caps_leave_ordinary_pages_untouched():
    from service.vision.det_preprocess import det_input_size

    cfg = DetPreprocessConfig(buckets=())
    # rapidocr's own shapes for a plate photo, an A4 scan and a wide single line
    assert det_input_size(720, 1280, cfg) == (736, 1312)
    assert det_input_size(3508, 2480, cfg) == (1984, 1408)
    assert det_input_size(100, 1500, cfg) == (736, 2944)

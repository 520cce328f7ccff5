import numpy as np

from service.vision.rec_preprocess import make_rec_batches, normalize_crop, resized_width, width_bucket


def test_width_and_bucket_rules():
    assert resized_width(24, 100) == 200  # ceil(48 * 100 / 24)
    assert resized_width(10, 10000) == 1280  # squeezed to the largest bucket
    assert [width_bucket(w) for w in (1, 80, 81, 321, 2000)] == [80, 80, 160, 480, 1280]


def test_normalize_crop_values_and_right_padding():
    crop = np.full((24, 40, 3), 255, np.uint8)
    x = normalize_crop(crop, 160)
    assert x.shape == (3, 48, 160) and x.dtype == np.float32
    assert np.allclose(x[:, :, :80], 1.0) and np.all(x[:, :, 80:] == 0.0)
    assert np.allclose(normalize_crop(np.zeros((48, 48, 3), np.uint8), 80)[:, :, :48], -1.0)


def test_batches_are_one_width_each_and_cover_every_crop_once():
    rng = np.random.default_rng(0)
    widths = [30, 400, 90, 150, 1000, 60, 300]
    crops = [rng.integers(0, 255, (48, w, 3), dtype=np.uint8) for w in widths]
    batches = make_rec_batches(crops, max_batch=2)
    seen = sorted(i for b in batches for i in b.indices)
    assert seen == list(range(len(crops)))
    for b in batches:
        assert len(b.indices) <= 2 and b.tensor.shape[:3] == (len(b.indices), 3, 48)
        assert all(width_bucket(widths[i]) == b.width for i in b.indices)
        assert [widths[i] for i in b.indices] == sorted(widths[i] for i in b.indices)
    assert {b.width for b in batches} == {80, 160, 320, 480, 1280}

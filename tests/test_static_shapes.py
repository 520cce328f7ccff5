"""Static shapes for accelerators: padded batch sizes, coarse rec widths, every shape warmed before ready.

The GPU path itself needs a GPU; here the same code runs on CPU sessions with ``static_shapes=True`` forced, which
checks the part that can go wrong without one: padding must never change what is read, and warm-up must cover
every (batch, width) shape the batchers can produce.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from api_support import BASE_TEXTS, encode, ready_client, square_doc
from rendering import DEJAVU_SANS, render_text_line
from service.vision.images import to_bgr_array
from service.vision.static_shapes import (
    ACCELERATOR_DET_BUCKETS,
    ACCELERATOR_WIDTH_BUCKETS,
    accelerator_det_config,
    batch_ladder,
    det_batch_ladder_for,
    pad_batch,
    padded_batch_size,
    reachable_det_shapes,
)


def test_batch_ladder_and_padding():
    assert batch_ladder(1) == (1,)
    assert batch_ladder(8) == (1, 4, 8)
    assert batch_ladder(128) == (1, 4, 16, 64, 128)
    assert batch_ladder(16) == (1, 4, 16)
    with pytest.raises(ValueError):
        batch_ladder(0)
    assert [padded_batch_size(n, (1, 4, 8)) for n in (1, 2, 4, 5, 8, 9)] == [1, 4, 4, 8, 8, 9]
    x = np.ones((3, 2, 5), np.float32)
    padded = pad_batch(x, (1, 4, 8))
    assert padded.shape == (4, 2, 5) and padded.dtype == x.dtype
    assert np.array_equal(padded[:3], x) and not padded[3].any()
    assert pad_batch(x, ()) is x


@contextmanager
def recorded_shapes(session) -> Iterator[list[tuple[int, ...]]]:
    """Input shapes of every ``session.run`` call inside the block."""
    calls: list[tuple[int, ...]] = []
    real_run = session.run

    def spy(outputs, feeds):
        calls.append(next(iter(feeds.values())).shape)
        return real_run(outputs, feeds)

    session.run = spy
    try:
        yield calls
    finally:
        session.run = real_run


@pytest.fixture(scope="module")
def static_pipeline(base_model_dir):
    from service.pipeline import OcrPipeline

    return OcrPipeline.from_dir(base_model_dir, providers=["cpu"], intra_threads=2, static_shapes=True,
                                rec_batch_size=16, det_batch_size=4)


def test_cpu_default_keeps_exact_shapes(base_pipeline):
    assert base_pipeline.static_shapes is False
    assert base_pipeline.det_batch_ladder == () and base_pipeline.rec_batch_ladder == ()


def test_padded_batches_read_the_same_text(base_pipeline, static_pipeline):
    assert static_pipeline.rec_width_buckets == ACCELERATOR_WIDTH_BUCKETS
    assert static_pipeline.rec_batch_ladder == (1, 4, 16) and static_pipeline.det_batch_ladder == (1, 4)
    texts = ["INVOICE 2024-00123", "TOTAL 1,234.56", "ABC-1234"]  # 3 crops: padded to a batch of 4
    crops = [to_bgr_array(render_text_line(t, font=DEJAVU_SANS, height=40)) for t in texts]
    batches = static_pipeline.prepare_rec(crops)
    with recorded_shapes(static_pipeline.rec_session) as calls:
        decoded = static_pipeline.decode(batches, [static_pipeline.run_rec(b) for b in batches])
    assert [d.text for d in decoded] == texts
    assert all(shape[0] in static_pipeline.rec_batch_ladder for shape in calls)
    assert all(shape[3] in ACCELERATOR_WIDTH_BUCKETS for shape in calls)
    assert [d.text for d in base_pipeline.recognize(crops)] == texts

    pages = [np.asarray(square_doc(("STATIC SHAPES",))), np.asarray(square_doc(("SECOND PAGE",)))]
    got = [[line.text for line in r] for r in static_pipeline.read_batch(pages)]  # det batch of 2 padded to 4
    assert got == [["STATIC SHAPES"], ["SECOND PAGE"]]
    assert got == [[line.text for line in r] for r in base_pipeline.read_batch(pages)]


def test_reachable_det_shapes_cover_every_image_size():
    """Whatever size an upload has, its detector input lands on a shape the warm-up list holds (sizes well past the
    work-image bound and extreme aspect ratios included: "min" limits used to blow a 100x2000 strip up to 45824 px)."""
    from service.vision.det_preprocess import DetPreprocessConfig, bucket_shape, det_input_size

    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(1, 9000, size=(2000, 2))]
    sizes += [(100, 2000), (2000, 100), (5, 8000), (8000, 5), (1, 1), (720, 1280), (4000, 3000)]
    for cfg in (DetPreprocessConfig(limit_side_len=736, limit_type="min", buckets=()),
                DetPreprocessConfig(limit_side_len=736, limit_type="max", buckets=()),
                DetPreprocessConfig(limit_side_len=960, limit_type="min", max_side_len=3000, buckets=())):
        acc = accelerator_det_config(cfg)
        assert acc.buckets == ACCELERATOR_DET_BUCKETS and acc.max_det_side == max(ACCELERATOR_DET_BUCKETS)
        reachable = set(reachable_det_shapes(acc))
        assert len(reachable) <= len(ACCELERATOR_DET_BUCKETS) ** 2
        missed = {bucket_shape(*det_input_size(h, w, acc), acc.buckets) for h, w in sizes} - reachable
        assert not missed, (cfg, missed)
    plate = accelerator_det_config(DetPreprocessConfig(limit_side_len=736, limit_type="max", buckets=()))
    assert reachable_det_shapes(plate) == [(768, 768)]  # a plate deployment warms one detector shape


def test_det_input_size_is_what_prepare_det_input_makes():
    from service.vision.det_preprocess import DetPreprocessConfig, det_input_size, prepare_det_input

    rng = np.random.default_rng(1)
    acc = accelerator_det_config(DetPreprocessConfig(buckets=()))
    for h, w in [(int(h), int(w)) for h, w in rng.integers(8, 2600, size=(12, 2))] + [(40, 1900), (1900, 40)]:
        for cfg in (acc, DetPreprocessConfig(buckets=())):
            inp = prepare_det_input(np.zeros((h, w, 3), np.uint8), cfg)
            assert inp.valid_hw == det_input_size(h, w, cfg), (h, w)
            assert max(inp.tensor.shape[1:]) <= (cfg.max_det_side or 10**6)


def test_large_det_shapes_run_one_image_per_call(static_pipeline, monkeypatch):
    from service.vision import static_shapes

    assert det_batch_ladder_for((768, 768), (1, 4, 8)) == (1, 4, 8)
    assert det_batch_ladder_for((1280, 2048), (1, 4, 8)) == (1,)
    assert det_batch_ladder_for((1280, 2048), ()) == ()
    page = np.asarray(square_doc(("ONE AT A TIME",)))
    inputs = [static_pipeline.prepare_det(page)] * 2
    with recorded_shapes(static_pipeline.det_session) as calls:
        batched = static_pipeline.run_det(inputs)
        monkeypatch.setattr(static_shapes, "LARGE_DET_PIXELS", 0)  # now every shape counts as large
        single = static_pipeline.run_det(inputs)
    assert [c[0] for c in calls] == [4, 1, 1]  # 2 images padded to 4, then one call per image
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(batched, single))


def test_service_warms_every_shape_a_request_can_reach(monkeypatch):
    """The GPU contract, checked on CPU sessions: after /readyz no request runs a det or rec shape the warm-up did
    not run, whatever the image size (smaller buckets here only to keep the CPU warm-up short)."""
    import onnxruntime

    from service.vision import static_shapes

    monkeypatch.setattr(static_shapes, "ACCELERATOR_DET_BUCKETS", (256, 512))
    monkeypatch.setattr(static_shapes, "LARGE_DET_PIXELS", 256 * 512)
    seen: dict[str, set[tuple[str, tuple[int, ...]]]] = {"warm": set(), "requests": set()}
    phase = ["warm"]
    real_run = onnxruntime.InferenceSession.run

    def run(self, outputs, feeds, *args, **kwargs):  # every tensor shape any session is asked to run
        shape = tuple(next(iter(feeds.values())).shape)
        seen[phase[0]].add(("rec" if shape[2] == 48 else "det", shape))
        return real_run(self, outputs, feeds, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", run)
    with ready_client(static_shapes=True, max_batch_size=4, rec_max_batch_size=16) as client:
        (runner,) = client.app.state.engine.runners
        pipeline = runner.pipeline
        assert pipeline.rec_batch_ladder == (1, 4, 16) and pipeline.det_batch_ladder == (1, 4)
        assert pipeline.det_config.buckets == (256, 512) and pipeline.det_config.max_det_side == 512
        shapes = runner.warmup_det_shapes()
        assert set(shapes) == {(256, 256), (256, 512), (512, 256), (512, 512)}
        assert {shape for kind, shape in seen["warm"] if kind == "det"} == {
            (n, 3, *shape) for shape in shapes for n in det_batch_ladder_for(shape, (1, 4))}
        assert {shape for kind, shape in seen["warm"] if kind == "rec"} == {
            (n, 3, pipeline.rec_height, w) for n in (1, 4, 16) for w in ACCELERATOR_WIDTH_BUCKETS}

        phase[0] = "requests"
        r = client.post("/v1/ocr", files={"files": ("a.png", encode(square_doc()), "image/png")})
        assert r.status_code == 200, r.text
        assert [line["text"] for line in r.json()["images"][0]["lines"]] == list(BASE_TEXTS)
        for size in [(1280, 720), (300, 1800), (2400, 200), (64, 64)]:  # wide, tall strip, tiny
            files = [("files", (f"{i}.png", encode(square_doc(size=min(size)).resize(size)), "image/png"))
                     for i in range(3)]
            for profile in ("generic", "plate"):  # plate: second looks at 1280 px when no plate is read
                r = client.post("/v1/ocr", params={"profile": profile}, files=files)
                assert r.status_code == 200, r.text
    assert seen["requests"] and seen["requests"] <= seen["warm"], seen["requests"] - seen["warm"]


def test_pipeline_warm_up_returns_single_item_times(static_pipeline, monkeypatch):
    """Timed on a second call of each single-item shape: a GPU's first call is seconds of cuDNN set-up, and admission
    control seeded with it answered 503 to load the card could serve (H200 run, bench/README)."""
    sizes: list[int] = []
    real_run_det = static_pipeline.run_det

    def run_det(inputs):
        sizes.append(len(inputs))
        return real_run_det(inputs)

    monkeypatch.setattr(static_pipeline, "run_det", run_det)
    det_s, rec_s = static_pipeline.warm_up([(64, 96)])
    assert det_s > 0 and rec_s > 0
    assert sizes == [1, 1, 4]  # batch 1 twice (the second one timed), then the padded batch of 4

"""Static shapes for accelerators: padded batch sizes, coarse rec widths, every shape warmed before ready.

The GPU path itself needs a GPU; here the same code runs on CPU sessions with ``static_shapes=True`` forced, which
checks the part that can go wrong without one: padding must never change what is read, and warm-up must cover
every (batch, width) shape the batchers can produce.
"""
from __future__ import annotations

import numpy as np
import pytest

from api_support import BASE_TEXTS, encode, ready_client, square_doc
from rendering import DEJAVU_SANS, render_text_line
from service.vision.images import to_bgr_array
from service.vision.static_shapes import ACCELERATOR_WIDTH_BUCKETS, batch_ladder, pad_batch, padded_batch_size


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
    calls: list[tuple[int, ...]] = []
    real_run = static_pipeline.rec_session.run

    def spy(outputs, feeds):
        calls.append(next(iter(feeds.values())).shape)
        return real_run(outputs, feeds)

    static_pipeline.rec_session.run = spy
    try:
        decoded = static_pipeline.decode(batches, [static_pipeline.run_rec(b) for b in batches])
    finally:
        static_pipeline.rec_session.run = real_run
    assert [d.text for d in decoded] == texts
    assert all(shape[0] in static_pipeline.rec_batch_ladder for shape in calls)
    assert all(shape[3] in ACCELERATOR_WIDTH_BUCKETS for shape in calls)
    assert [d.text for d in base_pipeline.recognize(crops)] == texts

    pages = [np.asarray(square_doc(("STATIC SHAPES",))), np.asarray(square_doc(("SECOND PAGE",)))]
    got = [[line.text for line in r] for r in static_pipeline.read_batch(pages)]  # det batch of 2 padded to 4
    assert got == [["STATIC SHAPES"], ["SECOND PAGE"]]
    assert got == [[line.text for line in r] for r in base_pipeline.read_batch(pages)]


def test_service_warms_every_padded_shape(monkeypatch):
    from service.pipeline import OcrPipeline

    seen: set[tuple[str, tuple[int, ...]]] = set()
    real_det, real_rec = OcrPipeline.run_det, OcrPipeline.run_rec

    def run_det(self, inputs):
        seen.add(("det", (len(inputs), *inputs[0].tensor.shape)))
        return real_det(self, inputs)

    def run_rec(self, batch):
        seen.add(("rec", batch.tensor.shape))
        return real_rec(self, batch)

    monkeypatch.setattr(OcrPipeline, "run_det", run_det)
    monkeypatch.setattr(OcrPipeline, "run_rec", run_rec)
    with ready_client(static_shapes=True, max_batch_size=4, rec_max_batch_size=16) as client:
        (runner,) = client.app.state.engine.runners
        pipeline = runner.pipeline
        assert pipeline.rec_batch_ladder == (1, 4, 16) and pipeline.det_batch_ladder == (1, 4)
        base_shape, second_look_shape = runner.warmup_det_shapes()  # this runner also serves the plate profile
        from service.vision.det_preprocess import bucket_shape, det_resize_shape

        # a 1280x720 frame at the plate profile's second-look limit (768x1280 with the GPU buckets)
        assert second_look_shape == bucket_shape(*det_resize_shape(720, 1280, 1280, "max"),
                                                 pipeline.det_config.buckets)
        assert {shape for kind, shape in seen if kind == "det"} == {
            (n, 3, *shape) for n in (1, 4) for shape in (base_shape, second_look_shape)}
        assert {shape for kind, shape in seen if kind == "rec"} == {
            (n, 3, pipeline.rec_height, w) for n in (1, 4, 16) for w in ACCELERATOR_WIDTH_BUCKETS}
        r = client.post("/v1/ocr", files={"files": ("a.png", encode(square_doc()), "image/png")})
        assert r.status_code == 200, r.text
        assert [line["text"] for line in r.json()["images"][0]["lines"]] == list(BASE_TEXTS)


def test_pipeline_warm_up_returns_single_item_times(static_pipeline):
    det_s, rec_s = static_pipeline.warm_up([(64, 96)])
    assert det_s > 0 and rec_s > 0

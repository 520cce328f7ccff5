"""Cross-request dynamic batching on the real models, queue-full 503 + Retry-After, per-request timeout 504.

The batcher's gate (pause/resume, part of its design) builds a known backlog, so the batch sizes asserted here
are exact rather than timing luck.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from api_support import BASE_TEXTS, assert_error, metric_value, ready_client, wait_until


@pytest.fixture(scope="module")
def client(base_model_dir):
    # admission control off: this module asserts the raw queue bound and the 504 path (tests/test_admission.py
    # covers the early 503 that would otherwise answer these backlogs first)
    with ready_client(model_dir=base_model_dir, max_batch_size=4, max_queue=4, max_delay_ms=5,
                      admission_control=False) as c:
        yield c


def batch_stats(client, stage: str) -> tuple[float, float]:
    text = client.get("/metrics").text
    return (metric_value(text, "ocrnet_batch_size_count", model="base", stage=stage),
            metric_value(text, "ocrnet_batch_size_sum", model="base", stage=stage))


def post(client, png: bytes):
    return client.post("/v1/ocr", files=[("files", ("doc.png", png, "image/png"))])


def test_cpu_default_is_two_lanes_on_one_shared_pool(client):
    runner = client.app.state.engine.by_profile["generic"]
    assert runner.det.lanes == runner.rec.lanes == 2
    assert runner.det._executor is runner.rec._executor and runner.det._executor._max_workers == 2
    # CPU lanes split the same cores: estimates are core-equivalent seconds, not divided by the lanes again
    assert runner.det.meter.shares_cores and runner.det.meter is not runner.rec.meter
    assert runner.det.drain_seconds_per_item == pytest.approx(runner.det.item_seconds)


def test_concurrent_requests_share_det_and_rec_batches(client, doc_png):
    runner = client.app.state.engine.by_profile["generic"]
    det_before, rec_before = batch_stats(client, "det"), batch_stats(client, "rec")
    client.portal.call(runner.det.pause)
    client.portal.call(runner.rec.pause)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(post, client, doc_png) for _ in range(4)]
        wait_until(lambda: runner.det.depth == 4)
        client.portal.call(runner.det.resume)
        wait_until(lambda: runner.rec.depth == 4 * len(BASE_TEXTS))  # crops of all four requests
        client.portal.call(runner.rec.resume)
        responses = [f.result(timeout=120) for f in futures]
    assert {r.status_code for r in responses} == {200}
    assert all([l["text"] for l in r.json()["images"][0]["lines"]] == list(BASE_TEXTS) for r in responses)
    assert len({r.json()["request_id"] for r in responses}) == 4
    det_after, rec_after = batch_stats(client, "det"), batch_stats(client, "rec")
    assert (det_after[0] - det_before[0], det_after[1] - det_before[1]) == (1, 4)  # one det call, 4 images
    assert (rec_after[0] - rec_before[0], rec_after[1] - rec_before[1]) == (1, 8)  # one rec call, 8 crops
    text = client.get("/metrics").text
    assert metric_value(text, "ocrnet_batch_size_bucket", model="base", stage="det", le="3.0") < det_after[0]


def test_full_queue_gives_503_with_retry_after_then_timeouts_give_504(client, doc_png):
    app = client.app
    runner = app.state.engine.by_profile["generic"]
    det_before = batch_stats(client, "det")
    app.state.settings.request_timeout_s = 5.0
    client.portal.call(runner.det.pause)
    try:
        with ThreadPoolExecutor(4) as pool:
            queued = [pool.submit(post, client, doc_png) for _ in range(4)]
            wait_until(lambda: runner.det.depth == 4)
            rejected = post(client, doc_png)
            assert_error(rejected, 503, "overloaded")
            assert rejected.headers["retry-after"] == "1"
            for future in queued:  # the gate stays closed: every queued request hits the deadline
                assert_error(future.result(timeout=60), 504, "timeout")
    finally:
        app.state.settings.request_timeout_s = 300.0
        client.portal.call(runner.det.resume)
    fresh = post(client, doc_png)
    assert fresh.status_code == 200, fresh.text
    det_after = batch_stats(client, "det")
    # the four timed-out images were dropped from the queue, never run: only the fresh image reached the model
    assert (det_after[0] - det_before[0], det_after[1] - det_before[1]) == (1, 1)
    text = client.get("/metrics").text
    assert metric_value(text, "ocrnet_http_requests_total", route="/v1/ocr", status="503") >= 1
    assert metric_value(text, "ocrnet_http_requests_total", route="/v1/ocr", status="504") >= 4

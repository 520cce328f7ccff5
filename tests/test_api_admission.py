"""Admission control, skipped work and client disconnects on the real models, made deterministic.

The det gate (pause/resume) holds a known backlog and the det estimate (seconds per input megapixel) is set so one
test page costs a known time, so the expected wait of each new request is exact arithmetic, not timing luck: with
12 s per image and a 60 s deadline (budget 0.8 -> 48 s), four requests fit (12, 24, 36, 48 s) and the fifth (60 s)
is turned away at once with 503 + Retry-After = ceil(60 - 48) = 12.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from api_support import BASE_TEXTS, assert_error, metric_value, ready_client, wait_until

from service.api.batching import MicroBatcher
from service.api.disconnect import unless_disconnected
from service.api.errors import ApiError

ITEM_S, TIMEOUT_S = 12.0, 60.0


@pytest.fixture(scope="module")
def client(base_model_dir):
    # one lane: the arithmetic below (queued images x ITEM_S) is that of one model call at a time
    with ready_client(model_dir=base_model_dir, request_timeout_s=TIMEOUT_S, admission_budget=0.8,
                      inference_lanes=1) as c:
        for runner in c.app.state.engine.runners:  # estimates set by these tests stay put (no decay to the seed)
            runner.det.service_time.half_life_s = runner.rec.service_time.half_life_s = 0.0
        yield c


def post(client, png: bytes):
    return client.post("/v1/ocr", files=[("files", ("doc.png", png, "image/png"))])


def per_mpx_for(runner, seconds_per_doc: float) -> float:
    """The det estimate (seconds per input megapixel) that makes one 320x320 test page cost ``seconds_per_doc``."""
    return seconds_per_doc / runner.det_mpx_for(320, 320)


def fresh_load(client) -> None:
    """Forget the measured drain speed (factor 1: the end-to-end estimate equals the per-stage one)."""
    from service.api.engine import LoadTracker

    engine = client.app.state.engine
    assert engine.load.images == 0
    engine.load = LoadTracker()


def test_cpu_defaults_and_shared_inference_thread(client):
    runner = client.app.state.engine.by_profile["generic"]
    assert runner.on_cpu and runner.det.max_batch_size == 1 and runner.rec.max_batch_size == 32
    assert runner.det._executor is runner.rec._executor  # one inference thread: det and rec never oversubscribe
    assert runner.det.item_seconds > 0 and runner.rec.item_seconds > 0  # seeded by warm-up


def test_backlog_past_the_deadline_gets_early_503_with_retry_after(client, doc_png):
    runner = client.app.state.engine.by_profile["generic"]
    measured = runner.det.service_time.value
    client.portal.call(runner.det.pause)
    fresh_load(client)
    runner.det.service_time.value, runner.rec.service_time.value = per_mpx_for(runner, ITEM_S), 0.0
    try:
        with ThreadPoolExecutor(4) as pool:
            admitted = [pool.submit(post, client, doc_png) for _ in range(3)]
            wait_until(lambda: runner.det.depth == 3)
            # two images: the pre-body check (one image, 48 s) passes, the engine's check (60 s) refuses
            two = client.post("/v1/ocr", files=[("files", ("a.png", doc_png, "image/png")),
                                                ("files", ("b.png", doc_png, "image/png"))])
            assert_error(two, 503, "overloaded")
            assert two.headers["retry-after"] == "12"
            admitted.append(pool.submit(post, client, doc_png))
            wait_until(lambda: runner.det.depth == 4)
            assert runner.upstream == 4
            started = time.monotonic()
            rejected = post(client, doc_png)
            elapsed = time.monotonic() - started
            assert_error(rejected, 503, "overloaded")
            assert rejected.headers["retry-after"] == "12"
            assert elapsed < 5, elapsed  # early (before its body is even read), not after waiting for the backlog
            assert runner.det.depth == 4  # nothing of the rejected request was queued
            runner.det.service_time.value = measured
            client.portal.call(runner.det.resume)
            responses = [f.result(timeout=120) for f in admitted]
    finally:
        runner.det.service_time.value = measured
        client.portal.call(runner.det.resume)
    assert [r.status_code for r in responses] == [200] * 4
    assert all([l["text"] for l in r.json()["images"][0]["lines"]] == list(BASE_TEXTS) for r in responses)
    assert runner.upstream == 0
    text = client.get("/metrics").text
    assert metric_value(text, "ocrnet_images_total", profile="generic", outcome="rejected") >= 1


def test_load_tracker_measures_busy_drain_speed_only():
    from service.api.engine import LoadTracker

    now = [100.0]
    load = LoadTracker(clock=lambda: now[0], alpha=1.0)  # follow the latest completion exactly
    assert load.factor == 1.0
    load.admit(2, 4.0)  # two images estimated at 2 s each
    now[0] += 3.0
    load.image_done(2.0)
    assert load.factor == pytest.approx(1.5)  # 3 s of wall time for 2 s of estimated work
    now[0] += 1.0
    load.image_done(2.0)
    assert load.factor == pytest.approx(0.5)  # since the previous completion, not since admission
    load.leave(2, 4.0)
    assert load.in_flight_s == 0 and load.images == 0
    now[0] += 1000.0  # idle: never counted
    load.admit(1, 2.0)
    now[0] += 2.0
    load.image_done(2.0)
    assert load.factor == pytest.approx(1.0) and load.images == 1


def test_end_to_end_estimate_rejects_when_completions_are_slow(client, doc_png):
    """Model times say 10 s per page but admitted work has drained at half that speed (say, a busy CPU):
    1 in flight + 1 new = 2 x 10 s x 2 = 40 s > 24 s, while the per-stage estimate alone (20 s) would admit."""
    engine = client.app.state.engine
    runner = engine.by_profile["generic"]
    measured = runner.det.service_time.value
    client.portal.call(runner.det.pause)
    fresh_load(client)
    runner.det.service_time.value, runner.rec.service_time.value = per_mpx_for(runner, 10.0), 0.0
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, client, doc_png)  # idle: admitted
            wait_until(lambda: runner.det.depth == 1)
            engine.load._elapsed, engine.load._work = 2.0, 1.0  # drains at half the estimated speed
            doc = runner.det_mpx_for(320, 320)
            assert engine.expected_wait_s(runner, [doc]) == pytest.approx(40.0)
            assert sum(r.backlog_s() for r in engine.runners) + runner.image_cost_s(doc) == pytest.approx(20.0)
            client.app.state.settings.admission_budget = 0.4  # 24 s
            rejected = post(client, doc_png)
            assert_error(rejected, 503, "overloaded")
            assert rejected.headers["retry-after"] == "16"
            runner.det.service_time.value = measured
            client.portal.call(runner.det.resume)
            assert first.result(timeout=120).status_code == 200
    finally:
        client.app.state.settings.admission_budget = 0.8
        runner.det.service_time.value = measured
        client.portal.call(runner.det.resume)
        fresh_load(client)


def test_idle_server_admits_even_a_slow_estimate(client, doc_png):
    runner = client.app.state.engine.by_profile["generic"]
    measured = runner.det.service_time.value
    runner.det.service_time.value = per_mpx_for(runner, 50.0)  # over the 48 s budget, but alone never refused
    try:
        r = post(client, doc_png)
    finally:
        runner.det.service_time.value = measured
    assert r.status_code == 200, r.text


def test_timed_out_request_crops_are_skipped_by_rec(client, doc_png):
    """Det runs, the rec gate is closed, the request hits its deadline: its crops never reach the rec model."""
    app = client.app
    runner = app.state.engine.by_profile["generic"]
    text = client.get("/metrics").text
    rec_calls = metric_value(text, "ocrnet_batch_size_count", model="base", stage="rec")
    skipped = runner.rec.skipped
    client.portal.call(runner.rec.pause)
    app.state.settings.request_timeout_s = 12.0  # room for det on a busy CPU; the rec gate then holds the crops
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(post, client, doc_png)
            wait_until(lambda: runner.rec.depth == len(BASE_TEXTS), 30)  # det done, crops queued for rec
            assert_error(pending.result(timeout=60), 504, "timeout")
    finally:
        app.state.settings.request_timeout_s = TIMEOUT_S
        client.portal.call(runner.rec.resume)
    wait_until(lambda: runner.rec.skipped == skipped + len(BASE_TEXTS) and runner.rec.depth == 0, 30)
    text = client.get("/metrics").text
    assert metric_value(text, "ocrnet_batch_size_count", model="base", stage="rec") == rec_calls
    assert metric_value(text, "ocrnet_skipped_items_total", model="base", stage="rec") >= len(BASE_TEXTS)
    assert runner.upstream == 0


def test_client_disconnect_cancels_queued_work():
    calls: list[list[int]] = []

    def run(items):
        calls.append(list(items))
        return items

    async def main():
        batcher = MicroBatcher("det", "m", run, max_batch_size=4, max_delay_s=0.01, max_queue=8)
        batcher.start()
        batcher.pause()
        gone = asyncio.Event()

        async def receive():
            await gone.wait()
            return {"type": "http.disconnect"}

        served = asyncio.ensure_future(unless_disconnected(receive, batcher.submit(1)))
        await asyncio.sleep(0.02)
        assert batcher.depth == 1
        gone.set()
        with pytest.raises(ApiError) as err:
            await served
        assert err.value.status == 499
        batcher.resume()
        assert await batcher.submit(2) == 2
        await batcher.stop()
        return batcher.skipped

    assert asyncio.run(main()) == 1
    assert calls == [[2]]  # the disconnected request's item never reached the model


def test_connected_client_gets_the_result():
    async def main():
        async def receive():
            await asyncio.sleep(3600)

        async def work():
            await asyncio.sleep(0.01)
            return 42

        return await unless_disconnected(receive, work())

    assert asyncio.run(main()) == 42

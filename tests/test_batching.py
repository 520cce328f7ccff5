"""MicroBatcher: cross-caller batches, shape buckets, bounded queue, gate, cancellation, deadlines, failures,
service-time estimate, shared executor."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.api.batching import MicroBatcher, QueueFullError
from service.api.metrics import Metrics


def make(run_batch, **kw) -> MicroBatcher:
    defaults = dict(max_batch_size=4, max_delay_s=0.05, max_queue=16)
    defaults.update(kw)
    return MicroBatcher("stage", "m", run_batch, **defaults)


class OverlapProbe:
    """A run_batch that takes 10 ms and records the most calls that were ever in progress at once."""

    def __init__(self) -> None:
        self.active = self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, items):
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.01)
        with self._lock:
            self.active -= 1
        return items


def test_concurrent_submits_share_one_batch_and_keep_order():
    calls: list[list[int]] = []

    def run(items):
        calls.append(list(items))
        return [x * 10 for x in items]

    async def main():
        b = make(run)
        b.start()
        results = await asyncio.gather(*(b.submit(i) for i in range(4)))
        await b.stop()
        return results

    assert asyncio.run(main()) == [0, 10, 20, 30]
    assert calls == [[0, 1, 2, 3]]


def test_batches_never_mix_buckets_and_respect_max_batch_size():
    calls: list[list[tuple[str, int]]] = []

    def run(items):
        calls.append(list(items))
        return [n for _, n in items]

    async def main():
        b = make(run, bucket_of=lambda item: item[0], max_batch_size=2, max_delay_s=0.02)
        b.start()
        items = [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5)]
        out = await b.submit_many(items)
        await b.stop()
        return out

    assert asyncio.run(main()) == [1, 2, 3, 4, 5]
    assert all(len({k for k, _ in batch}) == 1 for batch in calls)
    assert max(len(batch) for batch in calls) == 2
    assert sorted(n for batch in calls for _, n in batch) == [1, 2, 3, 4, 5]


def test_queue_bound_is_all_or_nothing_and_gate_holds_batches():
    async def main():
        b = make(lambda items: items, max_queue=3)
        b.start()
        b.pause()
        first = asyncio.ensure_future(b.submit_many([1, 2]))
        await asyncio.sleep(0.1)
        assert b.depth == 2 and not first.done()  # gate closed: nothing ran although max_delay passed
        with pytest.raises(QueueFullError):
            await b.submit_many([3, 4])  # 2 + 2 > 3: refused whole
        assert b.depth == 2
        b.resume()
        assert await first == [1, 2]
        await b.stop()

    asyncio.run(main())


def test_cancelled_items_are_skipped_and_failures_reach_only_their_batch():
    seen: list[list[int]] = []

    def run(items):
        seen.append(list(items))
        if -1 in items:
            raise ValueError("bad batch")
        return items

    async def main():
        b = make(run, max_batch_size=8, max_delay_s=0.01)
        b.start()
        b.pause()
        doomed = asyncio.ensure_future(b.submit(7))
        await asyncio.sleep(0.02)
        doomed.cancel()  # e.g. the request timed out
        kept = asyncio.ensure_future(b.submit(8))
        await asyncio.sleep(0.02)
        b.resume()
        assert await kept == 8
        with pytest.raises(ValueError):
            await b.submit(-1)
        assert await b.submit(9) == 9  # worker survived the failing batch
        await b.stop()

    asyncio.run(main())
    assert [8] in seen and all(7 not in batch for batch in seen)


def test_inference_runs_off_the_event_loop_and_metrics_are_recorded():
    threads: set[str] = set()
    metrics = Metrics()

    def run(items):
        threads.add(threading.current_thread().name)
        return items

    async def main():
        b = MicroBatcher("det", "base", run, max_batch_size=4, max_delay_s=0.02, max_queue=8, metrics=metrics)
        b.start()
        await asyncio.gather(*(b.submit(i) for i in range(3)))
        await b.stop()

    asyncio.run(main())
    assert threads and threading.main_thread().name not in threads
    text = metrics.render().decode()
    assert 'ocrnet_batch_size_sum{model="base",stage="det"} 3.0' in text
    assert 'ocrnet_batch_size_count{model="base",stage="det"} 1.0' in text


def test_items_that_cannot_meet_their_deadline_are_skipped_without_a_model_call():
    """Per-item estimate 10 s (known, not measured): an item due in 1 s fails at once; one due in 100 s runs."""
    from service.api.batching import DeadlineMissedError, request_deadline

    calls: list[list[int]] = []

    def run(items):
        calls.append(list(items))
        return items

    async def main():
        b = make(run, max_batch_size=8, max_delay_s=0.01, initial_item_s=10.0)
        b.start()
        b.pause()
        token = request_deadline.set(time.monotonic() + 1.0)
        doomed = asyncio.ensure_future(b.submit(1))
        request_deadline.reset(token)
        token = request_deadline.set(time.monotonic() + 100.0)
        kept = asyncio.ensure_future(b.submit(2))
        request_deadline.reset(token)
        await asyncio.sleep(0.02)
        b.resume()
        with pytest.raises(DeadlineMissedError):
            await doomed
        assert await kept == 2
        assert b.skipped == 1
        await b.stop()

    asyncio.run(main())
    assert calls == [[2]]


def test_service_time_ewma_follows_measured_batches():
    def run(items):
        time.sleep(0.02 * len(items))
        return items

    async def main():
        b = make(run, max_batch_size=4, max_delay_s=0.01, initial_item_s=1.0)
        b.start()
        for _ in range(10):
            await b.submit_many([1, 2])
        await b.stop()
        return b.item_seconds

    per_item = asyncio.run(main())
    assert 0.015 < per_item < 0.1, per_item  # 1.0 s seed forgotten after 10 batches of ~0.02 s/item


def test_shared_executor_never_runs_two_stages_at_once():
    from concurrent.futures import ThreadPoolExecutor

    run = OverlapProbe()

    async def main():
        shared = ThreadPoolExecutor(max_workers=1)
        det, rec = make(run, executor=shared), make(run, executor=shared)
        det.start()
        rec.start()
        await asyncio.gather(*(det.submit(i) for i in range(8)), *(rec.submit(i) for i in range(8)))
        await det.stop()
        await rec.stop()
        assert not shared._shutdown  # a batcher does not shut down an executor it does not own
        shared.shutdown()

    asyncio.run(main())
    assert run.peak == 1


def test_lanes_run_batches_side_by_side_within_the_shared_pool():
    from concurrent.futures import ThreadPoolExecutor

    both_running = threading.Barrier(2, timeout=5)  # passes only if two calls of one stage overlap
    run_rec = OverlapProbe()

    def run_det(items):
        both_running.wait()
        return items

    async def main():
        det = make(run_det, max_batch_size=1, lanes=2)
        det.start()
        assert await asyncio.gather(det.submit(1), det.submit(2)) == [1, 2]
        await det.stop()
        shared = ThreadPoolExecutor(max_workers=2)
        a, b = make(run_rec, executor=shared, lanes=2), make(run_rec, executor=shared, lanes=2)
        a.start()
        b.start()
        await asyncio.gather(*(a.submit(i) for i in range(8)), *(b.submit(i) for i in range(8)))
        await a.stop()
        await b.stop()
        shared.shutdown()
        return det

    det = asyncio.run(main())
    assert run_rec.peak == 2  # four lanes, but never more calls at once than the pool's two threads
    det.service_time.half_life_s = 0.0  # no decay between setting and reading: the comparison below is exact
    det.service_time.value = 0.3
    assert det.drain_seconds_per_item == pytest.approx(0.15)
    with pytest.raises(ValueError):
        make(run_det, lanes=0)


def test_a_stuck_estimate_recovers_by_itself_with_a_5_s_deadline():
    """Issue 20: one slow call left the per-item estimate past every 5 s deadline; every later item was dropped
    before its call, so no call ever refreshed the estimate and the stage answered 504 for good. The estimate's
    excess over its warm-up seed now decays (half-life shortened here so the test takes seconds, not half a
    minute), so the stage serves again without any call having to succeed first."""
    from service.api.batching import DeadlineMissedError, request_deadline

    calls: list[list[int]] = []

    def run(items):
        calls.append(list(items))
        return items

    async def submit_with_5s_deadline(b: MicroBatcher, item: int) -> int:
        token = request_deadline.set(time.monotonic() + 5.0)
        try:
            return await b.submit(item)
        finally:
            request_deadline.reset(token)

    async def main():
        b = make(run, max_batch_size=1, max_delay_s=0.0, initial_item_s=0.2)
        b.service_time.half_life_s = 0.2
        b.start()
        b.service_time.value = 60.0  # what one 60 s call leaves behind (alpha 1 for clarity)
        with pytest.raises(DeadlineMissedError):
            await submit_with_5s_deadline(b, 1)  # dropped before its call: nothing refreshed the estimate
        assert calls == []
        await asyncio.sleep(2.0)  # ten half-lives: 60 s of excess -> 0.06 s
        assert b.item_seconds < 1.0
        result = await submit_with_5s_deadline(b, 2)
        await b.stop()
        return result

    assert asyncio.run(main()) == 2
    assert calls == [[2]]


def test_service_time_decays_only_above_its_seed_and_only_when_not_refreshed():
    from service.api.batching import ServiceTime

    now = [0.0]
    st = ServiceTime(0.5, alpha=1.0, half_life_s=10.0, clock=lambda: now[0])
    st.observe(4.5, 1)
    assert st.value == pytest.approx(4.5)
    now[0] += 10.0
    assert st.value == pytest.approx(0.5 + 4.0 / 2)  # one half-life
    st.observe(0.1, 1)  # faster than the seed: kept as measured, no decay below it
    now[0] += 100.0
    assert st.value == pytest.approx(0.1)


def test_item_cost_scales_the_estimate_and_the_deadline_check():
    """The detector's cost unit is an input megapixel: a big image's slow call must not make small ones look slow,
    and a big queued item is dropped where a small one still fits its deadline."""
    from service.api.batching import DeadlineMissedError, request_deadline

    def run(items):
        time.sleep(0.01 * sum(items))
        return items

    async def main():
        b = make(run, max_batch_size=1, max_delay_s=0.0, cost_of=float)
        b.start()
        await b.submit(20)  # 0.2 s for 20 units
        await b.submit(1)
        per_unit = b.item_seconds
        b.service_time.value = 1.0  # 1 s per unit
        token = request_deadline.set(time.monotonic() + 5.0)
        try:
            with pytest.raises(DeadlineMissedError):
                await b.submit(8)  # 8 s > 5 s: dropped
            assert await b.submit(2) == 2  # 2 s: runs
        finally:
            request_deadline.reset(token)
        await b.stop()
        return per_unit

    per_unit = asyncio.run(main())
    assert 0.005 < per_unit < 0.05, per_unit  # ~0.01 s per unit, not 0.2 s per item

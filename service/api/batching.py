"""Asyncio micro-batcher: requests that arrive within ``max_delay`` share one model call.

One batcher per model stage (detector, recognizer). Items carry a *bucket* key (padded input shape) and a batch
only ever holds items of one bucket, so every model call sees a shape it was warmed up with. Inference runs on a
executor, never on the event loop: its own by default (one worker per onnxruntime session), or one shared by several
batchers (on CPU, so det and rec calls together never exceed the executor's workers). ``lanes`` worker coroutines
form and run batches independently: on a CPU two concurrent calls use the cores better than one call spread over
both (PP-OCRv6 det int8, 2 cores: ~107 ms per image with two 1-thread calls at once vs ~130 ms one at a time). The queue
is bounded: ``submit`` raises :class:`QueueFullError` instead of letting latency grow without limit.
Each batcher keeps an EWMA of its service time per cost unit (:attr:`MicroBatcher.item_seconds`; ``cost_of`` an
item: 1 by default, input megapixels for the detector), which the engine's admission control turns into an
expected wait; the EWMA decays back to its warm-up seed when no call refreshes it (see :class:`ServiceTime`). Items carry their request's deadline (the ``request_deadline``
context variable): an item whose request was cancelled, or that cannot finish before its deadline at the current
per-item time, is dropped when its batch is formed, so no compute goes to answers nobody will read.
The ``gate`` event pauses batch formation (drain before shutdown; tests use it to build a known backlog).
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from service.api.metrics import Metrics

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("ocrnet.api.batching")


# time.monotonic() by which the current request must be answered (None = no deadline); set by the engine.
request_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("request_deadline", default=None)


class QueueFullError(Exception):
    """The batcher's bounded queue cannot take the items; the caller should answer 503."""


class DeadlineMissedError(Exception):
    """The item's request could not be answered before its deadline, so its work was skipped (answer 504)."""


class ServiceTime:
    """EWMA of seconds per cost unit of one stage's model calls (a CPU batch of N costs about N single items; the
    detector's unit is an input megapixel, so a huge image does not make the next small one look slow).

    The estimate recovers by itself: when it sits above its seed (warm-up) and no call has refreshed it for a while,
    the excess decays with ``half_life_s``. Without that, one slow call could push it past every request's deadline;
    every later item would then be dropped before its call, no call would ever run, and the estimate (only updated
    after a call) would never come down: a profile answering 504 for good (issue 20)."""

    def __init__(self, initial_s: float = 0.0, alpha: float = 0.3, half_life_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seed = initial_s
        self.alpha = alpha
        self.half_life_s = half_life_s
        self.samples = 0
        self._clock = clock
        self._value = initial_s
        self._stamp = clock()

    @property
    def value(self) -> float:
        """The current estimate, decayed toward the seed by the time since it was last refreshed."""
        excess = self._value - self.seed
        if excess <= 0 or self.half_life_s <= 0:
            return self._value
        age = max(self._clock() - self._stamp, 0.0)
        return self.seed + excess * 0.5 ** (age / self.half_life_s)

    @value.setter
    def value(self, seconds: float) -> None:
        self._value = seconds
        self._stamp = self._clock()

    def observe(self, seconds: float, items: float) -> None:
        per_item = seconds / max(items, 1e-9)
        current = self.value
        self.value = per_item if self.samples == 0 and current == 0 else (
            self.alpha * per_item + (1 - self.alpha) * current)
        self.samples += 1


class CallMeter:
    """Runs and times one model call on an inference thread. This plain one measures wall seconds; the engine's
    CPU meter (service.api.engine.CpuMeter) reports core-equivalent seconds instead (``shares_cores``)."""

    shares_cores = False

    def run(self, call: Callable[[], R], cost: float) -> tuple[R, float]:
        started = time.perf_counter()
        result = call()
        return result, time.perf_counter() - started


@dataclass
class _Pending(Generic[T, R]):
    payload: T
    future: asyncio.Future[R]
    enqueued: float
    deadline: float | None = None
    cost: float = 1.0


class MicroBatcher(Generic[T, R]):
    """Collects items into per-bucket batches of up to ``max_batch_size``, waiting at most ``max_delay_s``."""

    def __init__(
        self,
        name: str,
        model: str,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        bucket_of: Callable[[T], Hashable] = lambda _item: None,
        cost_of: Callable[[T], float] = lambda _item: 1.0,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        metrics: Metrics | None = None,
        executor: Executor | None = None,
        initial_item_s: float = 0.0,
        lanes: int = 1,
        meter: CallMeter | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self._run_batch = run_batch
        self._bucket_of = bucket_of
        self._cost_of = cost_of
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self._metrics = metrics
        self._buckets: dict[Hashable, deque[_Pending[T, R]]] = {}
        self._size = 0
        self._wakeup = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self.lanes = lanes
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=lanes, thread_name_prefix=f"ocrnet-{model}-{name}")
        self.service_time = ServiceTime(initial_item_s)
        self.meter = meter or CallMeter()
        self._running = 0
        self.skipped = 0  # items dropped at batch formation (cancelled or past their deadline)
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle
    def start(self) -> None:
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._worker(), name=f"batcher-{self.model}-{self.name}-{lane}")
                           for lane in range(self.lanes)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        for queue in self._buckets.values():
            for item in queue:
                if not item.future.done():
                    item.future.set_exception(RuntimeError("batcher stopped"))
        self._buckets.clear()
        self._set_depth(0)
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    def pause(self) -> None:
        """Stop forming batches (items still queue up, to the bound)."""
        self.gate.clear()

    def resume(self) -> None:
        self.gate.set()

    @property
    def depth(self) -> int:
        """Items waiting (not yet handed to the model)."""
        return self._size

    @property
    def running(self) -> int:
        """Items in the model calls now in progress (all lanes)."""
        return self._running

    @property
    def item_seconds(self) -> float:
        """Recent service time per cost unit (EWMA over batches; seeded by warm-up; decays back to the seed when
        no call refreshes it)."""
        return self.service_time.value

    @property
    def queued_cost(self) -> float:
        """Cost units waiting (not yet handed to the model)."""
        return sum(item.cost for queue in self._buckets.values() for item in queue)

    @property
    def drain_seconds_per_item(self) -> float:
        """How fast a backlog drains, per cost unit. With a meter that shares the cores, the estimate is already in
        core-equivalent seconds (what the unit costs the whole machine, however many calls run at once). Else the
        lanes run side by side (each call's own time includes the slowdown from sharing the device, so dividing by
        the lanes does not promise more than was measured)."""
        return self.service_time.value if self.meter.shares_cores else self.service_time.value / self.lanes

    # -- producer side
    async def submit(self, item: T) -> R:
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """Queue all items atomically (all or none) and wait for their results, in order."""
        if not items:
            return []
        if self._size + len(items) > self.max_queue:
            raise QueueFullError(f"{self.model}/{self.name} queue full ({self._size}/{self.max_queue})")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        deadline = request_deadline.get()
        futures: list[asyncio.Future[R]] = []
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            pending = _Pending(item, future, now, deadline, self._cost_of(item))
            self._buckets.setdefault(self._bucket_of(item), deque()).append(pending)
            futures.append(future)
        self._size += len(items)
        self._set_depth(self._size)
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            for future in futures:  # a timed-out request must not leave work behind
                future.cancel()
            raise

    # -- consumer side
    def _oldest_bucket(self) -> Hashable | None:
        oldest_key, oldest_time = None, float("inf")
        for key, queue in self._buckets.items():
            if queue and queue[0].enqueued < oldest_time:
                oldest_key, oldest_time = key, queue[0].enqueued
        return oldest_key

    def _take(self, key: Hashable) -> list[_Pending[T, R]]:
        queue = self._buckets.get(key)
        taken: list[_Pending[T, R]] = []
        now = time.monotonic()
        per_unit, cost = self.item_seconds, 0.0
        while queue and len(taken) < self.max_batch_size:
            item = queue.popleft()
            self._size -= 1
            if item.future.done():  # the request was cancelled (timeout, disconnect): skip its work
                self._skip()
            elif item.deadline is not None and now + per_unit * (cost + item.cost) > item.deadline:
                self._skip()  # would finish after its request's deadline: fail it now, spend nothing on it
                item.future.set_exception(DeadlineMissedError(f"{self.model}/{self.name}: deadline"))
            else:
                taken.append(item)
                cost += item.cost
        if queue is not None and not queue:
            del self._buckets[key]
        self._set_depth(self._size)
        return taken

    async def _wait_for_fill(self, key: Hashable) -> None:
        queue = self._buckets.get(key)
        if not queue:
            return
        deadline = queue[0].enqueued + self.max_delay_s
        while len(queue) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.gate.wait()
            key = self._oldest_bucket()
            if key is None and not any(self._buckets.values()):
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_fill(key)
            await self.gate.wait()  # a pause during the fill wait holds the batch back
            batch = self._take(key)
            if not batch:
                continue
            self._running += len(batch)
            try:
                # timed inside the executor: time spent queued behind another stage's call is not service time
                results, seconds = await loop.run_in_executor(
                    self._executor, self._timed_run, [b.payload for b in batch], sum(b.cost for b in batch))
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(results)} results for a batch of {len(batch)}")
            except Exception as exc:  # one bad batch fails its own requests, not the worker
                log.exception("%s/%s batch of %d failed", self.model, self.name, len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            finally:
                self._running -= len(batch)
            self.service_time.observe(seconds, sum(item.cost for item in batch))
            if self._metrics is not None:
                self._metrics.observe_batch(self.model, self.name, len(batch), seconds)
            for item, result in zip(batch, results):
                if not item.future.done():
                    item.future.set_result(result)

    def _skip(self) -> None:
        self.skipped += 1
        if self._metrics is not None:
            self._metrics.skipped.labels(model=self.model, stage=self.name).inc()

    def _timed_run(self, payloads: list[T], cost: float) -> tuple[Sequence[R], float]:
        return self.meter.run(lambda: self._run_batch(payloads), cost)

    def _set_depth(self, depth: int) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.labels(model=self.model, stage=self.name).set(depth)

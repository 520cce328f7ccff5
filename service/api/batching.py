"""Asyncio micro-batcher: requests that arrive within ``max_delay`` share one model call.

One batcher per model stage (detector, recognizer). Items carry a *bucket* key (padded input shape) and a batch
only ever holds items of one bucket, so every model call sees a shape it was warmed up with. Inference runs on a
dedicated single-thread executor (one worker per onnxruntime session), never on the event loop. The queue is
bounded: ``submit`` raises :class:`QueueFullError` instead of letting latency grow without limit.
The ``gate`` event pauses batch formation (drain before shutdown; tests use it to build a known backlog).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from service.api.metrics import Metrics

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("ocrnet.api.batching")


class QueueFullError(Exception):
    """The batcher's bounded queue cannot take the items; the caller should answer 503."""


@dataclass
class _Pending(Generic[T, R]):
    payload: T
    future: asyncio.Future[R]
    enqueued: float


class MicroBatcher(Generic[T, R]):
    """Collects items into per-bucket batches of up to ``max_batch_size``, waiting at most ``max_delay_s``."""

    def __init__(
        self,
        name: str,
        model: str,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        bucket_of: Callable[[T], Hashable] = lambda _item: None,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self._run_batch = run_batch
        self._bucket_of = bucket_of
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self._metrics = metrics
        self._buckets: dict[Hashable, deque[_Pending[T, R]]] = {}
        self._size = 0
        self._wakeup = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ocrnet-{model}-{name}")
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._worker(), name=f"batcher-{self.model}-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for queue in self._buckets.values():
            for item in queue:
                if not item.future.done():
                    item.future.set_exception(RuntimeError("batcher stopped"))
        self._buckets.clear()
        self._set_depth(0)
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
        futures: list[asyncio.Future[R]] = []
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            self._buckets.setdefault(self._bucket_of(item), deque()).append(_Pending(item, future, now))
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
        while queue and len(taken) < self.max_batch_size:
            item = queue.popleft()
            self._size -= 1
            if not item.future.done():  # skip items whose request was cancelled (timeout, disconnect)
                taken.append(item)
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
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, [b.payload for b in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(results)} results for a batch of {len(batch)}")
            except Exception as exc:  # one bad batch fails its own requests, not the worker
                log.exception("%s/%s batch of %d failed", self.model, self.name, len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            if self._metrics is not None:
                self._metrics.observe_batch(self.model, self.name, len(batch), time.perf_counter() - started)
            for item, result in zip(batch, results):
                if not item.future.done():
                    item.future.set_result(result)

    def _set_depth(self, depth: int) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.labels(model=self.model, stage=self.name).set(depth)

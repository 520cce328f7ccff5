"""Model serving core: loads one OcrPipeline per model bundle, batches its stages across requests, warms it up.

Per image: header sizes + decode (decode pool) -> ``prepare_det`` (host pool) -> detector batcher (shared by all
requests, grouped by bucket shape) -> ``boxes`` + crop + rec normalisation (host pool) -> recognizer batcher (crops
of every image in flight, grouped by width bucket) -> ``assemble`` -> profile fields. Profiles map to model dirs so
a finetuned model can serve one profile while ``model_dir`` serves the rest.

Overload: before the body is read and again before decoding, :meth:`Engine.expected_wait_s` prices the new request
(its images' detector megapixels from the headers x each runner's recent time per megapixel, plus expected crops x
rec time per crop) on top of the work admitted to *every* runner, since all of them share the inference lanes; past
``admission_budget x request_timeout_s`` the request gets 503 + Retry-After at once instead of a 504 later. On CPU,
model calls are timed in core-equivalent seconds (:class:`CpuMeter`). The deadline starts at the request's arrival
and covers decoding. Work of requests that timed out, whose client left, or that cannot finish before their
deadline is dropped by the batchers (see batching.py). Memory: detector inputs are capped on every axis (see
det_preprocess), :class:`MemoryGate` bounds the detector megapixels in calls at once, and on CPU one inference pool
serves det and rec of every bundle, so model calls never oversubscribe the cores.
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
from PIL import Image

from service.api import memory
from service.api.batching import (
    CallMeter,
    DeadlineMissedError,
    MicroBatcher,
    QueueFullError,
    request_deadline,
)
from service.api.config import Settings
from service.api.context import current_request_id
from service.api.errors import ApiError
from service.api.metrics import Metrics
from service.api.pages import Page, PageReader, document_results, line_out
from service.api.schemas import (
    ImageResult,
    ModelInfo,
    ModelRef,
    OcrResponse,
    Timings,
)
from service.api.uploads import DecodedImage, UploadedFile, declared_sizes, decode_image
from service.documents import RenderPolicy
from service.model_bundle import MANIFEST, sha256_file
from service.pipeline import Detections, OcrPipeline, TextLine
from service.profiles import PROFILES, Profile
from service.reading import ReadOptions, read_for_profile_async
from service.runtime import CPU, resolve_providers
from service.vision.ctc import Decoded
from service.vision.det_preprocess import (
    DetInput,
    bucket_shape,
    det_input_size,
    det_resize_shape,
)
from service.vision.rec_preprocess import (
    RecBatch,
    normalize_crop,
    resized_width,
    width_bucket,
)
from service.vision.static_shapes import reachable_det_shapes

log = logging.getLogger("ocrnet.api.engine")
T = TypeVar("T")


# ---------------------------------------------------------------- profiles
def load_profiles() -> dict[str, Profile]:
    """Profile name -> profile, from the service.profiles registry."""
    return dict(PROFILES)


def resolve_profile_dirs(settings: Settings, profiles: Sequence[str]) -> dict[str, Path]:
    """Explicit OCRNET_PROFILE_MODELS wins, then models/<profile>/model.json when present, else model_dir."""
    out = {}
    for name in profiles:
        if name in settings.profile_models:
            out[name] = Path(settings.profile_models[name])
        elif (settings.models_root / name / MANIFEST).is_file():
            out[name] = settings.models_root / name
        else:
            out[name] = settings.model_dir
    unknown = sorted(set(settings.profile_models) - set(profiles))
    if unknown:
        raise ValueError(f"OCRNET_PROFILE_MODELS names unknown profiles {unknown}; known: {list(profiles)}")
    return out


def parse_shapes(specs: Sequence[str]) -> list[tuple[int, int]]:
    shapes = []
    for spec in specs:
        h, _, w = spec.lower().partition("x")
        shapes.append((int(h), int(w)))
    return shapes


# ---------------------------------------------------------------- one model bundle
# Batch defaults by device when the settings leave them unset: (det images, rec crops).
CPU_BATCH = (1, 32)
GPU_BATCH = (8, 128)
# Model calls in flight at once per stage on CPU-only hosts when the settings leave it unset. Two: plate profile
# on the 2-core box, 1 vs 32 clients, 2.69 vs 3.95 images/s with two lanes (2.98 vs 3.83 in a rerun), 2.83 vs
# 3.26 with one; see bench/results/load_cpu_plate_lanes2*.md and load_cpu_plate_int8.md.
CPU_LANES = 2
# malloc_trim after detector calls at least this big (CPU): they free hundreds of MB; small ones are not worth it.
TRIM_AFTER_MPX = 1.0


class OverloadedError(Exception):
    """Admission control: the expected wait exceeds the request's budget."""

    def __init__(self, expected_s: float, budget_s: float) -> None:
        super().__init__(f"expected wait {expected_s:.1f} s exceeds the {budget_s:.1f} s budget")
        self.expected_s = expected_s
        self.budget_s = budget_s


@dataclass
class RecItem:
    """One text-line crop, normalised and right-padded to its width bucket."""

    tensor: np.ndarray  # (3, H, bucket)
    bucket: int


class LoadTracker:
    """Engine-wide: work admitted and not yet answered, in estimated seconds of the shared inference lanes, and how
    fast it really drains. ``factor`` is the EWMA of wall seconds per estimated second between completions while
    busy (host pre/post-processing, decoding and CPU taken by other processes included, which the per-stage model
    times alone underestimate on a shared CPU); 1 when the estimates are right. Idle time is never counted."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, alpha: float = 0.2) -> None:
        self.in_flight_s = 0.0
        self.images = 0
        self.alpha = alpha
        self._elapsed = 0.0  # EWMA of wall seconds between completions
        self._work = 0.0  # EWMA of estimated seconds completed per completion
        self._clock = clock
        self._since = 0.0  # last completion, or when the engine became busy

    @property
    def factor(self) -> float:
        if self._work <= 0:
            return 1.0
        return min(max(self._elapsed / self._work, 0.5), 8.0)

    def admit(self, images: int, cost_s: float) -> None:
        if self.images == 0:
            self._since = self._clock()
        self.images += images
        self.in_flight_s += cost_s

    def image_done(self, cost_s: float) -> None:
        now = self._clock()
        if self._work <= 0:
            self._elapsed, self._work = now - self._since, cost_s
        else:
            self._elapsed = self.alpha * (now - self._since) + (1 - self.alpha) * self._elapsed
            self._work = self.alpha * cost_s + (1 - self.alpha) * self._work
        self._since = now

    def leave(self, images: int, cost_s: float) -> None:
        self.images -= images
        self.in_flight_s = max(self.in_flight_s - cost_s, 0.0) if self.images else 0.0


class Admission:
    """An admitted request: per image, its detector megapixels and estimated cost, released as the image moves on
    (megapixels when its crops reach rec, the cost when it is answered), the rest when the request ends."""

    def __init__(self, runner: ModelRunner, load: LoadTracker, det_mpx: list[float], costs_s: list[float]) -> None:
        self.runner = runner
        self.load = load
        self.det_mpx = list(det_mpx)
        self.costs_s = list(costs_s)
        self._upstream = [True] * len(det_mpx)
        self._open = [True] * len(det_mpx)

    def reserve(self) -> None:
        self.runner.upstream += len(self.det_mpx)
        self.runner.upstream_mpx += sum(self.det_mpx)
        self.load.admit(len(self.det_mpx), sum(self.costs_s))

    def release_one(self, index: int) -> None:
        """Image ``index`` left the detector stage: its crops are in the rec queue now."""
        if 0 <= index < len(self._upstream) and self._upstream[index]:
            self._upstream[index] = False
            self.runner.upstream -= 1
            self.runner.upstream_mpx -= self.det_mpx[index]

    def image_done(self, index: int) -> None:
        if 0 <= index < len(self._open) and self._open[index]:
            self._open[index] = False
            self.load.image_done(self.costs_s[index])

    def close(self) -> None:
        for i in range(len(self._upstream)):
            self.release_one(i)
        self.runner.upstream_mpx = max(self.runner.upstream_mpx, 0.0) if self.runner.upstream else 0.0
        self.load.leave(len(self.costs_s), sum(self.costs_s))


class MemoryGate:
    """Bounds the detector input megapixels in model calls at once, across every bundle and lane: a CPU det call
    peaks at ~180 MB per input megapixel (`bench/det_memory.py`), so two big pages side by side would double the
    peak. A call larger than the whole budget runs alone. First come, first served (a big page is not starved by a
    stream of small ones). Blocking: it is taken on the inference threads."""

    def __init__(self, budget_mpx: float) -> None:
        self.budget_mpx = budget_mpx
        self.in_use_mpx = 0.0
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()

    @contextmanager
    def hold(self, mpx: float) -> Iterator[None]:
        me = object()
        with self._cond:
            self._waiting.append(me)
            while self._waiting[0] is not me or (self.in_use_mpx > 0 and self.in_use_mpx + mpx > self.budget_mpx):
                self._cond.wait()
            self._waiting.popleft()
            self.in_use_mpx += mpx
            self._cond.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with self._cond:
                self.in_use_mpx -= mpx
                self._cond.notify_all()


class CpuMeter(CallMeter):
    """Times model calls on the shared CPU lanes in core-equivalent seconds: a call's wall time divided by the
    number of model calls running alongside it (mean of that count at its start and end). On a CPU the lanes split
    the same cores, so two calls side by side each take about twice as long as one alone: their wall time divided
    by the lanes is right under load but halves the lone call the warm-up measured, and calls the memory gate runs
    alone are not divided at all. In core-equivalent seconds all three are one currency, and a backlog drains at
    one such second per second whatever runs at once. The detector's memory gate is taken here, before timing."""

    shares_cores = True

    def __init__(self, gate: MemoryGate | None = None, active: list[int] | None = None,
                 lock: threading.Lock | None = None) -> None:
        self.gate = gate
        self._active = active if active is not None else [0]  # shared between the det and rec meters
        self._lock = lock or threading.Lock()

    def sibling(self, gate: MemoryGate | None = None) -> CpuMeter:
        """A meter counting the same calls in progress (another stage), with its own gate."""
        return CpuMeter(gate, self._active, self._lock)

    @property
    def active(self) -> int:
        return self._active[0]

    def run(self, call: Callable[[], T], cost: float) -> tuple[T, float]:
        with self.gate.hold(cost) if self.gate is not None else nullcontext():
            with self._lock:
                self._active[0] += 1
                at_start = self._active[0]
            started = time.perf_counter()
            try:
                result = call()
            finally:
                seconds = time.perf_counter() - started
                with self._lock:
                    at_end = self._active[0]
                    self._active[0] -= 1
        return result, seconds / max((at_start + at_end) / 2, 1.0)


def det_mpx(inp: DetInput) -> float:
    """The detector's cost unit for one input: megapixels of the tensor it is run on (bucket padding included)."""
    return inp.tensor.shape[1] * inp.tensor.shape[2] / 1e6


class ModelRunner:
    """One model bundle: its pipeline, its two batchers, its warm-up."""

    def __init__(self, model_dir: Path, profiles: list[str], settings: Settings, metrics: Metrics) -> None:
        self.dir = model_dir
        self.profiles = profiles
        self.settings = settings
        self.metrics = metrics
        self.pipeline: OcrPipeline | None = None
        self.det: MicroBatcher[DetInput, np.ndarray] | None = None
        self.rec: MicroBatcher[RecItem, Decoded] | None = None
        self.sha256: dict[str, str] = {}
        self.warm_det_s = 0.0  # per-image det time at warm-up (seeds the det EWMA)
        self.warm_rec_s = 0.0  # per-crop rec time at warm-up
        self.upstream = 0  # admitted images whose crops have not reached the rec queue yet
        self.upstream_mpx = 0.0  # their detector input megapixels
        self.crops_per_image = 8.0  # EWMA of text-line crops per image (prior: a short document)
        self.typical_mpx = 0.0  # EWMA of detector megapixels per image (seeded by the warm-up shape)
        self.trim_after_det = False
        self.host_pool: Executor | None = None

    @property
    def name(self) -> str:
        return self.pipeline.bundle.name if self.pipeline else self.dir.name

    @property
    def version(self) -> str:
        return self.pipeline.bundle.version if self.pipeline else "unloaded"

    @property
    def providers(self) -> list[str]:
        return list(self.pipeline.det_providers) if self.pipeline else []

    @property
    def on_cpu(self) -> bool:
        """Both sessions run on the CPU provider (requested GPU unavailable counts as CPU too)."""
        p = self.pipeline
        return p is not None and p.det_providers[0] == CPU and p.rec_providers[0] == CPU

    def batch_sizes(self) -> tuple[int, int]:
        """(det, rec) max batch: the settings when given, else the device defaults (CPU_BATCH / GPU_BATCH)."""
        det, rec = CPU_BATCH if self.on_cpu else GPU_BATCH
        s = self.settings
        return s.max_batch_size or det, s.rec_max_batch_size or rec

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, version=self.version, path=str(self.dir), profiles=self.profiles,
                         sha256=self.sha256, providers=self.providers)

    # -- loading (blocking; runs in a worker thread)
    def load(self) -> None:
        started = time.perf_counter()
        s = self.settings
        self.pipeline = OcrPipeline.from_dir(
            self.dir, providers=s.providers or None, intra_threads=s.intra_threads, inter_threads=s.inter_threads,
            trt_cache_dir=s.trt_cache_dir, cpu_mem_arena=s.cpu_mem_arena, static_shapes=s.static_shapes,
        )
        self.pipeline.set_batch_limits(*self.batch_sizes())
        self.pipeline.det_config = replace(self.pipeline.det_config, max_det_pixels=s.max_det_pixels)
        bundle = self.pipeline.bundle
        self.sha256 = {**bundle.sha256, "charset": sha256_file(bundle.charset_path)}
        if bundle.fields_model_path is not None:
            self.sha256["fields_model"] = sha256_file(bundle.fields_model_path)
        log.info("loaded model %s %s from %s on %s in %.2f s", self.name, self.version, self.dir, self.providers,
                 time.perf_counter() - started)

    def warmup_det_shapes(self) -> list[tuple[int, int]]:
        """The settings' shapes; with static shapes (GPUs, where a cold shape costs seconds) every bucket a request
        can reach, for the bundle's detector limits and each profile's second look; else (CPU, no per-shape cost)
        the bucket of a limit-sized square, to touch the session once."""
        if self.settings.warmup_det_shapes:
            return parse_shapes(self.settings.warmup_det_shapes)
        pipeline = self.pipeline
        assert pipeline is not None
        cfg = pipeline.det_config
        if not pipeline.static_shapes:
            side = det_resize_shape(cfg.limit_side_len, cfg.limit_side_len, cfg.limit_side_len, cfg.limit_type)
            return [bucket_shape(*side, cfg.buckets)]
        configs = [cfg] + [replace(cfg, limit_side_len=limit[0], limit_type=limit[1]) for name in self.profiles
                           for limit in PROFILES[name].det_limits()]
        shapes: list[tuple[int, int]] = []
        for config in configs:
            shapes += [shape for shape in reachable_det_shapes(config) if shape not in shapes]
        return shapes

    def warm_up(self) -> None:
        """One model call per det warm-up shape and per rec width bucket, through the batch functions; with static
        shapes (accelerators) also once per padded batch size, so no request ever meets a cold shape there."""
        started = time.perf_counter()
        pipeline = self.pipeline
        assert pipeline is not None
        det_shapes = self.warmup_det_shapes()
        det_s, rec_s = pipeline.warm_up(det_shapes)
        # the slowest det shape's single-image time (a second call on accelerators) per megapixel of the largest
        # shape is the det seed (small shapes cost a little more per megapixel: the estimate learns that)
        largest = max(h * w for h, w in det_shapes) / 1e6 if det_shapes else 1.0
        self.warm_det_s, self.warm_rec_s = det_s / largest, rec_s
        self.typical_mpx = largest
        log.info("warmed up %s: det shapes %s x batches %s, rec widths %s x batches %s in %.2f s", self.name,
                 det_shapes, list(pipeline.det_batch_ladder or (1,)), list(pipeline.rec_width_buckets),
                 list(pipeline.rec_batch_ladder or (1,)), time.perf_counter() - started)

    # -- batch functions (run on the inference threads)
    def _run_det(self, inputs: list[DetInput]) -> list[np.ndarray]:
        pipeline = self.pipeline
        assert pipeline is not None
        probs = pipeline.run_det(inputs)
        if self.trim_after_det and sum(det_mpx(inp) for inp in inputs) >= TRIM_AFTER_MPX:
            memory.trim()
        return probs

    def det_mpx_for(self, height: int | None, width: int | None, det_limit: tuple[int, str] | None = None) -> float:
        """Detector megapixels an image of this size will cost (read from its header before decoding; unknown
        sizes: the recent typical image); ``det_limit`` as in :meth:`read`."""
        pipeline = self.pipeline
        if pipeline is None or not height or not width:
            return self.typical_mpx
        cfg = pipeline.det_config
        if det_limit is not None:
            cfg = replace(cfg, limit_side_len=det_limit[0], limit_type=det_limit[1])
        return float(np.prod(bucket_shape(*det_input_size(height, width, cfg), cfg.buckets))) / 1e6

    def _run_rec(self, items: list[RecItem]) -> list[Decoded]:
        pipeline = self.pipeline
        assert pipeline is not None
        batch = RecBatch(np.stack([item.tensor for item in items]), list(range(len(items))))
        return pipeline.decode([batch], [pipeline.run_rec(batch)])

    def _rec_items(self, inp: DetInput, dets: Detections) -> list[RecItem]:
        pipeline = self.pipeline
        assert pipeline is not None
        buckets, height = pipeline.rec_width_buckets, pipeline.rec_height
        items = []
        for crop in pipeline.crops(inp, dets):
            bucket = width_bucket(resized_width(crop.shape[0], crop.shape[1], height, buckets[-1]), buckets)
            items.append(RecItem(normalize_crop(crop, bucket, height), bucket))
        return items

    def start(self, executor: Executor | None = None, lanes: int = 1, meters: tuple[CallMeter, CallMeter] | None = None,
              host_pool: Executor | None = None, trim_after_det: bool = False) -> None:
        """Start both batchers; ``executor``: inference threads shared with other stages (CPU), else each stage's
        own; ``lanes``: model calls each stage may have in flight at once; ``meters``: (det, rec) call meters (the
        CPU ones count core-equivalent seconds and hold the detector memory gate); ``host_pool``: threads for
        pre/post-processing (None: asyncio's default); ``trim_after_det``: malloc_trim after big det calls."""
        self.host_pool = host_pool
        self.trim_after_det = trim_after_det
        det_meter, rec_meter = meters or (CallMeter(), CallMeter())
        s = self.settings
        det_batch, rec_batch = self.batch_sizes()
        rec_delay_ms = s.max_delay_ms if s.rec_max_delay_ms is None else s.rec_max_delay_ms
        self.det = MicroBatcher(
            "det", self.name, self._run_det, bucket_of=lambda inp: inp.bucket, cost_of=det_mpx, max_batch_size=det_batch,
            max_delay_s=s.max_delay_ms / 1000, max_queue=s.max_queue, metrics=self.metrics, executor=executor,
            initial_item_s=self.warm_det_s, lanes=lanes, meter=det_meter,
        )
        self.rec = MicroBatcher(
            "rec", self.name, self._run_rec, bucket_of=lambda item: item.bucket, max_batch_size=rec_batch,
            max_delay_s=rec_delay_ms / 1000, max_queue=s.rec_max_queue, metrics=self.metrics, executor=executor,
            initial_item_s=self.warm_rec_s, lanes=lanes, meter=rec_meter,
        )
        self.det.start()
        self.rec.start()
        log.info("%s: det batch %d, rec batch %d, %d lane(s), %s inference threads", self.name, det_batch,
                 rec_batch, lanes, "shared" if executor is not None else "per-stage")

    # -- admission control (the engine sums these over every runner: all share the inference lanes)
    def image_cost_s(self, mpx: float) -> float:
        """Estimated lane-seconds of one image of ``mpx`` detector megapixels: det at the recent time per megapixel
        plus its expected crops at the recent rec time per crop, the lanes running side by side."""
        det, rec = self.det, self.rec
        assert det is not None and rec is not None
        return mpx * det.drain_seconds_per_item + self.crops_per_image * rec.drain_seconds_per_item

    def backlog_s(self) -> float:
        """Estimated lane-seconds of work admitted here and not done: images not yet at rec, crops queued or
        running in rec."""
        det, rec = self.det, self.rec
        assert det is not None and rec is not None
        upstream = max(self.upstream_mpx, 0.0) * det.drain_seconds_per_item \
            + self.upstream * self.crops_per_image * rec.drain_seconds_per_item
        return upstream + (rec.depth + rec.running) * rec.drain_seconds_per_item

    @property
    def busy(self) -> bool:
        rec = self.rec
        assert rec is not None
        return self.upstream > 0 or rec.depth + rec.running > 0

    async def stop(self) -> None:
        for batcher in (self.det, self.rec):
            if batcher is not None:
                await batcher.stop()

    # -- serving
    async def host(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the host pre/post-processing pool (bounded, apart from decoding and inference)."""
        if self.host_pool is None:
            return await asyncio.to_thread(fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self.host_pool, fn, *args)

    async def locate(self, image: Image.Image, det_limit: tuple[int, str]) -> np.ndarray:
        """Detector quads (N, 4, 2) of one image at ``det_limit``, no recognition (a profile's focused read)."""
        pipeline, det = self.pipeline, self.det
        assert pipeline is not None and det is not None
        inp = await self.host(pipeline.prepare_det, image, det_limit, True)
        prob = await det.submit(inp)
        return (await self.host(pipeline.boxes, inp, prob)).quads

    async def read(self, image: Image.Image, ticket: Admission | None = None,
                   det_limit: tuple[int, str] | None = None, index: int = 0) -> tuple[list[TextLine], float, float]:
        """Lines of one image plus (det_ms, rec_ms); det/rec calls are shared with concurrent requests.
        ``det_limit`` overrides the bundle's detector resolution (a profile's second look or focused read);
        ``index``: the image's place in the request (its admission ticket entry)."""
        pipeline, det, rec = self.pipeline, self.det, self.rec
        assert pipeline is not None and det is not None and rec is not None
        t0 = time.perf_counter()
        inp = await self.host(pipeline.prepare_det, image, det_limit)
        self.typical_mpx = 0.8 * self.typical_mpx + 0.2 * det_mpx(inp)
        prob = await det.submit(inp)
        dets = await self.host(pipeline.boxes, inp, prob)
        items = await self.host(self._rec_items, inp, dets)
        del inp, prob  # the detector tensor and map are dead weight while the crops wait for rec
        t1 = time.perf_counter()
        self.crops_per_image = 0.8 * self.crops_per_image + 0.2 * len(items)
        if ticket is not None:
            ticket.release_one(index)  # no await before submit_many enqueues: the crops move to rec.depth atomically
        decoded = await rec.submit_many(items)
        if ticket is not None:
            ticket.image_done(index)
        lines = pipeline.assemble(dets, decoded)
        return lines, (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000


async def _all_or_nothing(aws: Sequence[Awaitable[T]]) -> list[T]:
    """Like gather, but the first failure cancels the siblings (no orphan work in the batchers)."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(aw) for aw in aws]  # type: ignore[arg-type]
    except BaseExceptionGroup as eg:
        leaf: BaseException = eg
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None
    return [task.result() for task in tasks]


# ---------------------------------------------------------------- all models
class _RunnerSteps:
    """service.reading's ReadSteps over one runner's batchers, for one image of one request: the first read
    carries the image's admission ticket entry (later ones, a fallback or a second look, run outside it); det, rec
    and profile time add up across the reads; a PDF page's text-layer lines join each read."""

    def __init__(self, engine: Engine, runner: ModelRunner, image: DecodedImage, ticket: Admission | None,
                 page: Page | None, index: int) -> None:
        self.engine, self.runner, self.image, self.ticket, self.page, self.index = engine, runner, image, ticket, \
            page, index
        self.det_ms = self.rec_ms = self.fields_ms = 0.0

    async def locate(self, image: Image.Image, det_limit: tuple[int, str]) -> np.ndarray:
        started = time.perf_counter()
        try:
            return await self.runner.locate(image, det_limit)
        finally:
            self.det_ms += (time.perf_counter() - started) * 1000

    async def read(self, image: Image.Image, det_limit: tuple[int, str] | None = None) -> list[TextLine]:
        ticket, self.ticket = self.ticket, None
        lines, det_ms, rec_ms = await self.runner.read(image, ticket, det_limit, self.index)
        self.det_ms += det_ms
        self.rec_ms += rec_ms
        return lines

    def complete(self, lines: list[TextLine]) -> list[TextLine]:
        return self.page.merge(lines) if self.page is not None else lines

    async def fields(self, profile: Profile, lines: list[TextLine], size: tuple[int, int]) -> dict[str, Any]:
        started = time.perf_counter()
        fields = await self.runner.host(profile.extract_fields, lines, size)
        self.fields_ms += (time.perf_counter() - started) * 1000
        return fields

    def may_read_again(self, profile: Profile) -> bool:
        limit = profile.second_look_det_limit
        assert limit is not None
        mpx = self.runner.det_mpx_for(self.image.height, self.image.width, limit)
        return self.engine._time_for_another_read(self.runner, profile.name, mpx)


class Engine:
    """Owns the runners; ``ready`` flips only after every runner loaded and warmed up."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.profile_impls = load_profiles()
        self.profiles = list(self.profile_impls)
        dirs = resolve_profile_dirs(settings, self.profiles)
        self._runners: dict[Path, ModelRunner] = {}
        self.by_profile: dict[str, ModelRunner] = {}
        for profile, model_dir in dirs.items():
            key = model_dir.resolve()
            if key not in self._runners:
                self._runners[key] = ModelRunner(model_dir, [], settings, metrics)
            self._runners[key].profiles.append(profile)
            self.by_profile[profile] = self._runners[key]
        self.ready = False
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.load = LoadTracker()
        self.memory_gate = MemoryGate(settings.det_memory_mpx)
        # Decoding and the header pre-check, and the pre/post-processing around the model calls, each get a small
        # pool of their own: in asyncio's default pool a few slow decodes (scan bombs) held every other request's
        # pre-check for 97 s, before its deadline had even started (issue 20).
        self.decode_pool = ThreadPoolExecutor(max_workers=settings.decode_workers, thread_name_prefix="ocrnet-decode")
        self.host_pool = ThreadPoolExecutor(max_workers=settings.host_workers, thread_name_prefix="ocrnet-host")
        # PDF / multi-page TIFF pages (its own single PDF thread; images decode on the decode pool)
        self.pages = PageReader(settings.max_pages, self.decode_pool)

    @property
    def runners(self) -> list[ModelRunner]:
        return list(self._runners.values())

    async def start(self) -> None:
        """Load and warm up in the background so /healthz answers while models load."""
        self._task = asyncio.get_running_loop().create_task(self._load(), name="ocrnet-model-load")

    async def wait_ready(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _load(self) -> None:
        runner: ModelRunner | None = None
        if self.settings.malloc_tuning and resolve_providers(self.settings.providers or None) == [CPU]:
            memory.tune_malloc()  # before the sessions exist: their threads' first allocations follow it too
        try:
            for runner in self.runners:
                await asyncio.to_thread(runner.load)
                for name in runner.profiles:  # learned field models named by the bundle (model.json)
                    self.profile_impls[name] = self.profile_impls[name].for_model_dir(runner.dir)
                if self.settings.warmup:
                    await asyncio.to_thread(runner.warm_up)
            on_cpu = all(runner.on_cpu for runner in self.runners)
            shared = on_cpu if self.settings.shared_executor is None else self.settings.shared_executor
            lanes = self.settings.inference_lanes or (CPU_LANES if on_cpu else 1)
            meters = None
            if shared:  # one pool for every session: at most `lanes` model calls compete for the cores
                self._executor = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="ocrnet-inference")
                if on_cpu:  # core-equivalent timing and the detector memory gate (host RAM: CPU only)
                    rec_meter = CpuMeter()
                    meters = (rec_meter.sibling(self.memory_gate), rec_meter)
            for runner in self.runners:
                runner.start(self._executor, lanes, meters, self.host_pool,
                             trim_after_det=on_cpu and self.settings.malloc_tuning)
        except Exception as exc:
            # What an operator expects: the process stays alive (liveness 200, no crash loop), /readyz says 503,
            # and the log carries one line naming the bundle and file; the traceback only at DEBUG.
            where = f"model bundle {runner.dir}" if runner is not None else "model bundle"
            self.error = " ".join(f"{where}: {type(exc).__name__}: {exc}".split())
            log.error("model loading failed, not ready: %s", self.error)
            log.debug("model loading traceback", exc_info=True)
            return
        self.ready = True
        log.info("ready: %s", ", ".join(f"{r.name}->{r.profiles}" for r in self.runners))

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for runner in self.runners:
            await runner.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.pages.close()
        for pool in (self.decode_pool, self.host_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    def _overloaded(self, profile: str, exc: OverloadedError, images: int) -> ApiError:
        self.metrics.images.labels(profile=profile, outcome="rejected").inc(images)
        # come back when the backlog should have drained below the budget again
        retry = max(self.settings.retry_after_s, math.ceil(exc.expected_s - exc.budget_s))
        return ApiError(503, "overloaded", f"server busy: {exc}; retry later", {"Retry-After": str(retry)})

    # -- admission control: every bundle's work shares the same inference lanes and cores
    @property
    def busy(self) -> bool:
        return self.load.images > 0 or any(runner.busy for runner in self.runners)

    def expected_wait_s(self, runner: ModelRunner, det_mpx: Sequence[float]) -> float:
        """Seconds until images of these detector sizes, sent to ``runner``, would be answered: the work admitted
        to *every* runner before them plus their own. The larger of two estimates: per stage (each runner's
        backlog at its recent per-megapixel det and per-crop rec times) and end to end (the same work in flight,
        scaled by how fast admitted work has really been draining: host processing and other processes count)."""
        new = sum(runner.image_cost_s(mpx) for mpx in det_mpx)
        stages = sum(r.backlog_s() for r in self.runners) + new
        wait = max(stages, (self.load.in_flight_s + new) * self.load.factor)
        self.metrics.expected_wait.labels(model=runner.name).set(wait)
        return wait

    def check_admission(self, runner: ModelRunner, det_mpx: Sequence[float], budget_s: float | None) -> None:
        """Raise OverloadedError when the expected wait exceeds ``budget_s`` (None: never). An idle engine always
        admits: a lone slow image still gets its chance (at worst a 504)."""
        expected = self.expected_wait_s(runner, det_mpx)
        if budget_s is not None and self.busy and expected > budget_s:
            raise OverloadedError(expected, budget_s)

    @contextmanager
    def admitted(self, runner: ModelRunner, det_mpx: Sequence[float], budget_s: float | None) -> Iterator[Admission]:
        """Check admission, then reserve the images in the backlog estimate for the request's life."""
        self.check_admission(runner, det_mpx, budget_s)
        ticket = Admission(runner, self.load, list(det_mpx), [runner.image_cost_s(mpx) for mpx in det_mpx])
        ticket.reserve()
        try:
            yield ticket
        finally:
            ticket.close()

    def raise_if_overloaded(self, profile: str | None) -> None:
        """Cheap pre-check before the body is read: would even one image of the usual size be refused? The form
        may still name another profile, so refuse only when every runner that could serve it is over budget."""
        s = self.settings
        if not s.admission_control:
            return
        budget = s.admission_budget * s.request_timeout_s
        runners = [self.by_profile[profile]] if profile in self.by_profile else self.runners
        refusals = []
        for runner in runners:
            try:
                self.check_admission(runner, [runner.typical_mpx], budget)
            except OverloadedError as exc:
                refusals.append(exc)
        if refusals and len(refusals) == len(runners):
            raise self._overloaded(profile or "generic", min(refusals, key=lambda e: e.expected_s), 1)

    def raise_unless_ready(self) -> None:
        if self.error is not None:
            raise ApiError(503, "models_failed", "models failed to load; see the server log")
        if not self.ready:
            raise ApiError(503, "not_ready", "models are loading / warming up", {"Retry-After": "1"})

    def render_policy(self, runner: ModelRunner) -> RenderPolicy:
        """PDF pages are rendered at the size this runner's detector works at (its work-image long side)."""
        assert runner.pipeline is not None
        return RenderPolicy(runner.pipeline.det_config.max_side_len, self.settings.max_pixels)

    async def ocr(
        self, files: Sequence[UploadedFile], profile: str, min_confidence: float, return_polygons: bool,
        force_ocr: bool = False, deadline: float | None = None, all_text: bool = False,
    ) -> OcrResponse:
        """``deadline``: time.monotonic() by which to answer (the route passes the request's arrival + timeout, so
        reading the body, the header pre-check and decoding all count); None: from now."""
        runner = self.by_profile[profile]
        profile_impl = self.profile_impls[profile]
        options = ReadOptions(all_text=all_text, min_confidence=min_confidence)
        s = self.settings
        budget = s.admission_budget * s.request_timeout_s if s.admission_control else None
        deadline = time.monotonic() + s.request_timeout_s if deadline is None else deadline
        token = request_deadline.set(deadline)
        loop = asyncio.get_running_loop()
        pages: list[Page] = []
        try:
            # loop.time() is time.monotonic() on asyncio's loops; the offset keeps this right on any other clock
            async with asyncio.timeout_at(loop.time() + (deadline - time.monotonic())):
                sizes = await loop.run_in_executor(self.decode_pool, declared_sizes, list(files))
                declared = sum(w * h for size in sizes if size is not None for w, h in [size])
                if declared > s.max_request_pixels:
                    raise ApiError(413, "request_too_many_pixels", f"images total {declared} pixels, over the "
                                   f"{s.max_request_pixels}-pixel request limit")
                async with self.pages.open(files, self.render_policy(runner), force_ocr, deadline) as opened:
                    pages = opened.pages
                    # admission prices the pages the models must read (a PDF text-layer page costs milliseconds)
                    model_pages = [page for page in pages if page.needs_models]
                    slot = {id(page): k for k, page in enumerate(model_pages)}
                    det_mpx = [self._page_mpx(runner, page, sizes) for page in model_pages]
                    admitted = self.admitted(runner, det_mpx, budget) if det_mpx else nullcontext()
                    with admitted as ticket:
                        results = await _all_or_nothing(opened.readers(
                            lambda upload, index, frame: self._timed_decode(upload, index, s.max_pixels, frame),
                            lambda image, ms, page: self._one(runner, image, ms, profile_impl, options,
                                                              return_polygons, ticket, page, slot[id(page)]),
                            profile_impl, min_confidence, return_polygons,
                        ))
                    documents = await loop.run_in_executor(self.host_pool, document_results, pages, results,
                                                           profile_impl)
        except (TimeoutError, DeadlineMissedError):
            self.metrics.images.labels(profile=profile, outcome="timeout").inc(len(pages) or len(files))
            raise ApiError(504, "timeout", f"processing took longer than {s.request_timeout_s:g} s") from None
        except OverloadedError as exc:
            raise self._overloaded(profile, exc, len(pages) or len(files)) from None
        except QueueFullError:
            self.metrics.images.labels(profile=profile, outcome="rejected").inc(len(pages) or len(files))
            raise ApiError(503, "overloaded", "server busy: queue full, retry later",
                           {"Retry-After": str(s.retry_after_s)}) from None
        finally:
            request_deadline.reset(token)
        self.metrics.images.labels(profile=profile, outcome="ok").inc(len(pages))
        return OcrResponse(
            request_id=current_request_id(),
            profile=profile,
            model=ModelRef(name=runner.name, version=runner.version),
            execution_provider=runner.providers[0] if runner.providers else "none",
            images=results,
            documents=documents,
        )

    @staticmethod
    def _page_mpx(runner: ModelRunner, page: Page, sizes: Sequence[tuple[int, int] | None]) -> float:
        """Detector megapixels of a page that needs the models: a PDF page at its render size, an image (or TIFF
        frame) at its header size."""
        if page.plan is not None:
            return runner.det_mpx_for(page.plan.height, page.plan.width)
        size = sizes[page.file_index] if page.file_index < len(sizes) else None
        return runner.det_mpx_for(size[1], size[0]) if size else runner.typical_mpx

    def _time_for_another_read(self, runner: ModelRunner, profile: str, mpx: float) -> bool:
        """A second look only when the request's deadline leaves room for twice the expected wait of one more
        image of ``mpx`` detector megapixels: the first answer beats a 504."""
        deadline = request_deadline.get()
        if deadline is None:
            return True
        fits = time.monotonic() + 2 * self.expected_wait_s(runner, [mpx]) < deadline
        if not fits:
            self.metrics.second_looks.labels(profile=profile, kept="skipped").inc()
        return fits

    async def _decode(self, upload: UploadedFile, index: int) -> tuple[DecodedImage, float]:
        """Decode on the decode pool; (image, ms). Cancelled while still queued (deadline, disconnect), it never
        starts; started, it runs to its end (threads cannot be interrupted): the pool's size bounds that."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.decode_pool, self._timed_decode, upload, index, self.settings.max_pixels)

    @staticmethod
    def _timed_decode(upload: UploadedFile, index: int, max_pixels: int, frame: int = 0
                      ) -> tuple[DecodedImage, float]:
        started = time.perf_counter()
        image = decode_image(upload, index, max_pixels, frame)
        return image, (time.perf_counter() - started) * 1000

    async def _one(
        self, runner: ModelRunner, image: DecodedImage, decode_ms: float, profile: Profile,
        options: ReadOptions, return_polygons: bool, ticket: Admission | None = None, page: Page | None = None,
        index: int = 0,
    ) -> ImageResult:
        """``page``: where the image came from; a PDF page's text-layer lines join the OCR lines there."""
        started = time.perf_counter()
        steps = _RunnerSteps(self, runner, image, ticket, page, index)
        result = await read_for_profile_async(steps, profile, image.image, options)
        image.image = None  # type: ignore[assignment]  # up to 120 MB of RGB nobody reads again
        if result.second_look is not None:
            self.metrics.second_looks.labels(profile=profile.name, kept=str(result.second_look).lower()).inc()
        if profile.focus is not None and not options.all_text:
            self.metrics.focused_reads.labels(profile=profile.name, answered=result.scope).inc()
        lines, fields = result.lines, result.fields
        det_ms, rec_ms, fields_ms = steps.det_ms, steps.rec_ms, steps.fields_ms
        if page is not None:
            page.lines = list(lines)
        return ImageResult(
            filename=image.filename,
            width=image.width,
            height=image.height,
            lines=[line_out(line, return_polygons) for line in lines],
            fields=fields,
            timings_ms=Timings(
                decode=round(decode_ms, 2), det=round(det_ms, 2), rec=round(rec_ms, 2), fields=round(fields_ms, 2),
                total=round(decode_ms + (time.perf_counter() - started) * 1000, 2),
            ),
        )

"""onnxruntime session factory: TensorRT (opt-in) -> CUDA -> CPU, with an honest report of what we got.

A requested provider that is not installed, or that fails to initialise (no GPU, missing CUDA
libraries), is dropped with a warning; CPU is always last so a session is always obtained.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Sequence

import onnxruntime as ort

from .shared_weights import load_shared_weights

log = logging.getLogger(__name__)

TRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_ORDER = (TRT, CUDA, CPU)
_ALIASES = {"tensorrt": TRT, "trt": TRT, "cuda": CUDA, "gpu": CUDA, "cpu": CPU}


def canonical_provider(name: str) -> str:
    """'cuda' / 'CUDAExecutionProvider' -> 'CUDAExecutionProvider'."""
    return _ALIASES.get(name.strip().lower(), name.strip())


def resolve_providers(requested: Sequence[str] | None = None, available: Sequence[str] | None = None) -> list[str]:
    """Requested providers in priority order (TensorRT only if asked), keeping the available ones, CPU last.

    ``requested=None`` means "CUDA if available, else CPU".
    """
    available = list(ort.get_available_providers() if available is None else available)
    wanted = [CUDA] if requested is None else [canonical_provider(p) for p in requested]
    unknown = [p for p in wanted if p not in _ORDER]
    if unknown:
        raise ValueError(f"unsupported providers {unknown}; choose from {list(_ORDER)}")
    for p in wanted:
        if p not in available and p != CPU:
            _report_missing(p, available, explicit=requested is not None)
    chosen = [p for p in _ORDER if p in wanted and p in available and p != CPU]
    return chosen + [CPU]


_reported_missing: set[tuple[str, bool]] = set()


def _report_missing(provider: str, available: Sequence[str], explicit: bool) -> None:
    """Say once per process that a provider is missing: a warning when the caller asked for it by name, an info
    line when it was only the default's first choice (a CPU-only install is a normal deployment). Every session
    and every bundle resolves providers, and a start-up log with the same warning eight times hides real ones."""
    if (provider, explicit) in _reported_missing:
        return
    _reported_missing.add((provider, explicit))
    if explicit:
        log.warning("provider %s requested but not available in this onnxruntime build (%s)", provider, available)
    else:
        log.info("no %s in this onnxruntime build (%s); running on CPU", provider, available)


def provider_options(provider: str, trt_cache_dir: str | Path | None = None, trt_fp16: bool = False,
                     device_id: int = 0) -> dict[str, Any]:
    if provider == TRT:
        opts: dict[str, Any] = {"device_id": device_id, "trt_fp16_enable": trt_fp16}
        if trt_cache_dir is not None:
            Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache_dir),
                        trt_timing_cache_enable=True, trt_timing_cache_path=str(trt_cache_dir))
        return opts
    if provider == CUDA:
        return {"device_id": device_id, "arena_extend_strategy": "kSameAsRequested",
                "cudnn_conv_algo_search": "HEURISTIC"}
    return {}


INTRA_OP_SPINNING = False  # see session_options
_preloaded = False


def preload_cuda_libraries() -> None:
    """Load CUDA/cuDNN from pip ``nvidia-*`` wheels (or torch's) before the first GPU session, once.

    The onnxruntime-gpu wheel does not bundle them; without a system CUDA (our GPU image has one, a plain
    ``pip install`` machine may not) the CUDA provider fails to load and the service silently runs on CPU.
    ``onnxruntime.preload_dlls`` exists in onnxruntime-gpu >= 1.21; anything it cannot find is left to the
    normal library search, so this never makes things worse.
    """
    global _preloaded
    if _preloaded or not hasattr(ort, "preload_dlls"):
        return
    _preloaded = True
    try:
        ort.preload_dlls()
    except Exception as exc:  # noqa: BLE001 - best effort; the provider fallback reports the real outcome
        log.info("onnxruntime.preload_dlls failed (%s); relying on the system library path", exc)


def session_options(intra_threads: int | None = None, inter_threads: int | None = None,
                    cpu_mem_arena: bool = True) -> ort.SessionOptions:
    """``cpu_mem_arena=False`` frees CPU buffers after each run instead of keeping the arena's peak (the service
    turns it off: with varying det shapes the arena grew RSS from ~0.3 to ~1-3 GiB and never gave it back)."""
    so = ort.SessionOptions()
    so.enable_cpu_mem_arena = cpu_mem_arena
    if intra_threads:
        so.intra_op_num_threads = int(intra_threads)
    if inter_threads:
        so.inter_op_num_threads = int(inter_threads)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads sleep instead of busy-waiting between ops: on a CPU shared with other processes the
    # spinning threads steal the cores the working ones need (PP-OCRv6 det at 416x736, 2 threads, on the shared
    # 2-CPU dev box: median 960 ms spinning vs 766 ms not).
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if INTRA_OP_SPINNING else "0")
    return so


def create_session(
    path: str | Path,
    providers: Sequence[str] | None = None,
    intra_threads: int | None = None,
    inter_threads: int | None = None,
    trt_cache_dir: str | Path | None = None,
    trt_fp16: bool = False,
    device_id: int = 0,
    cpu_mem_arena: bool = True,
) -> tuple[ort.InferenceSession, list[str]]:
    """Open ``path`` with the best obtainable providers; returns (session, providers actually in use).

    A model exported with weights shared with its base model (``<path>.shared.json``, see
    service.shared_weights) gets those tensors from the base file."""
    chosen = resolve_providers(providers)
    if chosen != [CPU]:
        preload_cuda_libraries()
    so = session_options(intra_threads, inter_threads, cpu_mem_arena)
    shared = load_shared_weights(path)
    if shared is not None:
        shared.apply(so)
    while True:
        opts = [provider_options(p, trt_cache_dir, trt_fp16, device_id) for p in chosen]
        try:
            sess = ort.InferenceSession(str(path), sess_options=so, providers=chosen, provider_options=opts)
            sess._ocrnet_shared_weights = shared  # type: ignore[attr-defined]  # their memory must outlive it
        except Exception as exc:  # noqa: BLE001 - provider init errors come as assorted types
            if chosen == [CPU]:
                raise
            log.warning("session init with %s failed (%s); retrying without %s", chosen, exc, chosen[0])
            chosen = chosen[1:]
            continue
        obtained = list(sess.get_providers())
        dropped = [p for p in chosen if p not in obtained]
        if dropped:
            log.warning("%s: providers %s failed to initialise; running on %s", Path(path).name, dropped, obtained)
        else:
            log.info("%s: running on %s", Path(path).name, obtained)
        return sess, obtained


_shared: dict[tuple[str, int, int, str], tuple[ort.InferenceSession, list[str]]] = {}
_shared_lock = threading.Lock()


def shared_session(path: str | Path, **options: Any) -> tuple[ort.InferenceSession, list[str]]:
    """`create_session`, but one session per (model file, options) per process.

    Bundles that reuse a file share it: every shipped profile bundle uses models/base's det.onnx, and plate uses its
    rec.onnx too, so four bundles need three sessions instead of eight. On a GPU that also shares the per-shape state
    the warm-up builds (an H100 spent ~50 s warming each bundle's own copies); on a CPU it saves their memory.
    onnxruntime sessions accept concurrent ``run`` calls, so the bundles' batchers can share one.
    """
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns, repr(sorted(options.items())))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = create_session(resolved, **options)
        return _shared[key]

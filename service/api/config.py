"""Service settings, read from ``OCRNET_*`` environment variables (pydantic-settings).

One object carries every knob so the app factory, the batcher and the upload reader never read the
environment themselves; tests build a ``Settings(...)`` directly instead of patching os.environ.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_list(value: Any) -> Any:
    """Accept JSON lists or comma-separated strings for list settings (``a,b`` is friendlier in a shell)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """All service settings; env var = ``OCRNET_`` + upper-case field name."""

    model_config = SettingsConfigDict(env_prefix="OCRNET_", env_file=None, extra="ignore")

    model_dir: Path = Field(Path("models/base"), description="Default model bundle (dir holding model.json).")
    models_root: Path = Field(
        Path("models"),
        description="Auto-discovery root: models/<profile>/model.json, when present, serves that profile.",
    )
    profile_models: dict[str, Path] = Field(
        default_factory=dict,
        description='Explicit profile -> model dir mapping as JSON, e.g. {"plate": "models/plate"}; wins over discovery.',
    )
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="onnxruntime providers to request, in order (empty = best available: TensorRT opt-in, CUDA, CPU).",
    )
    intra_threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads per session.")
    inter_threads: int | None = Field(None, ge=1, description="onnxruntime inter-op threads per session.")
    trt_cache_dir: Path | None = Field(
        None, description="TensorRT engine/timing cache folder (only used when TensorRT is among the providers)."
    )

    max_batch_size: int | None = Field(
        None, ge=1, le=256,
        description="Largest detector batch (images). Unset: 1 on CPU (a CPU det batch of N costs about N single "
        "calls, so a big batch only delays its first image), 8 on GPU.",
    )
    rec_max_batch_size: int | None = Field(
        None, ge=1, le=1024,
        description="Largest recognizer batch (text-line crops). Unset: 32 on CPU (crops are small: batching them "
        "across requests pays even on CPU), 128 on GPU.",
    )
    max_delay_ms: float = Field(5.0, ge=0, le=10_000, description="How long a det batch waits to fill before it runs.")
    rec_max_delay_ms: float | None = Field(
        None, ge=0, le=10_000, description="How long a rec batch waits to fill (unset: same as max_delay_ms)."
    )
    max_queue: int = Field(64, ge=1, description="Images waiting for the detector before requests get 503.")
    rec_max_queue: int = Field(4096, ge=1, description="Text-line crops waiting for the recognizer before 503.")
    request_timeout_s: float = Field(
        30.0, gt=0, description="Per-request deadline from the request's arrival (body, decoding and processing); "
        "past it -> 504.")
    admission_control: bool = Field(
        True,
        description="Answer 503 + Retry-After at once when the expected wait (the work admitted to every bundle, "
        "priced per detector megapixel and per crop at recent model times, plus the new request's own) would exceed "
        "admission_budget x request_timeout_s, instead of a late 504.",
    )
    admission_budget: float = Field(
        0.5, gt=0, le=1.0,
        description="Share of request_timeout_s the expected wait may use (the rest covers estimation error on a "
        "noisy machine; a few images in flight already keep the pipeline full, more only add latency).",
    )
    shared_executor: bool | None = Field(
        None,
        description="Run det and rec model calls on one shared pool of inference_lanes threads. Unset: on when every "
        "session is CPU-only (each stage with its own threads would oversubscribe the cores), off on GPU.",
    )
    inference_lanes: int | None = Field(
        None, ge=1, le=16,
        description="Model calls each stage (det, rec) may have running at once. Unset: 2 when every session is "
        "CPU-only (two calls side by side use the cores better than one spread over all of them; a lone request "
        "still gets every intra-op thread), 1 on GPU.",
    )
    cpu_mem_arena: bool | None = Field(
        None,
        description="onnxruntime CPU memory arena. Unset: off when every session is CPU-only (the arena keeps its "
        "peak, and exact det shapes vary with every image size), on with accelerators (static shapes bound the "
        "peak, and onnxruntime's default is what the GPU timings in bench/README were measured with).",
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After header value sent with 503 responses.")
    malloc_tuning: bool = Field(
        True, description="On CPU-only hosts with glibc: fixed 256 KiB mmap threshold, two malloc arenas and a "
        "malloc_trim after big detector calls, so freed model tensors go back to the kernel (service/api/memory.py).",
    )
    decode_workers: int = Field(
        2, ge=1, le=64, description="Threads decoding uploads (and reading their headers); a pool of its own, so slow "
        "decodes queue behind each other under their requests' deadlines, not in front of everything else.",
    )
    host_workers: int = Field(
        2, ge=1, le=64, description="Threads for the pre/post-processing around the model calls (resize, DB boxes, "
        "crops, fields); a pool of its own, apart from decoding and inference.",
    )
    max_det_pixels: int = Field(
        4_000_000, ge=32 * 32, description="Largest detector input (pixels, after resizing, whatever the aspect "
        "ratio; the long side is capped at 3072 too): larger inputs are scaled down. A CPU det call peaks at ~180 MB "
        "per megapixel, so this bounds one request's memory (service.vision.det_preprocess).",
    )
    det_memory_mpx: float = Field(
        4.0, gt=0, description="Detector input megapixels in model calls at once, all bundles and lanes together "
        "(a CPU det call peaks at ~180 MB per megapixel); a larger single call runs alone.",
    )

    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Largest single uploaded file (bytes).")
    max_pixels: int = Field(40_000_000, ge=1, description="Largest image (width*height), checked before decoding.")
    max_files: int = Field(16, ge=1, description="Most files per request.")
    max_pages: int = Field(
        32, ge=1,
        description="Most pages per request, all files together (an image is one page; PDF and TIFF files count "
        "every page, a PDF by the page count it declares).",
    )
    max_request_pixels: int = Field(
        120_000_000, ge=1,
        description="Largest total width*height of all images in one request, checked from the headers before "
        "decoding (16 tiny PNGs may otherwise declare 16 x max_pixels: gigabytes of RGB from a 72 KB request).",
    )
    upload_timeout_s: float = Field(
        60.0, gt=0, description="Whole request body must arrive within this, else 408 (slow-upload guard)."
    )
    upload_idle_timeout_s: float = Field(15.0, gt=0, description="Longest pause between body chunks before 408.")

    api_key: SecretStr | None = Field(None, description="When set, /v1/* require a matching X-API-Key header.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Allowed CORS origins (empty = CORS off)."
    )
    warmup: bool = Field(True, description="Run every model once per bucket shape before reporting ready.")
    static_shapes: bool | None = Field(
        None,
        description="Pad batches to a few fixed sizes and use coarse rec widths, all warmed up before ready. Unset: on "
        "for GPU providers (CUDA pays 0.4-3 s per new input shape), off for CPU (no such cost; padding only adds work).",
    )
    warmup_det_shapes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Detector bucket shapes to warm up, e.g. 768x768,768x1024 (empty = the model's base bucket).",
    )
    log_level: str = Field("INFO", description="Python logging level for the service loggers.")

    @field_validator("providers", "cors_origins", "warmup_det_shapes", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

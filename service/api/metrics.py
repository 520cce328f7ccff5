"""Prometheus metrics for the service, on a per-app registry (several apps in one process stay independent)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ocrnet_http_requests", "HTTP requests by route template, method and status.",
            ("route", "method", "status"), registry=self.registry,
        )
        self.latency = Histogram(
            "ocrnet_http_request_duration_seconds", "HTTP request latency by route template and method.",
            ("route", "method"), buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.inflight = Gauge("ocrnet_http_inflight_requests", "HTTP requests being served now.", registry=self.registry)
        self.batch_size = Histogram(
            "ocrnet_batch_size", "Items per model call (images for det, text-line crops for rec).",
            ("model", "stage"), buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.batch_latency = Histogram(
            "ocrnet_batch_inference_seconds", "Time per batched model call (pre/post-processing included).",
            ("model", "stage"), buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.queue_depth = Gauge(
            "ocrnet_queue_depth", "Items waiting in a batcher queue.", ("model", "stage"), registry=self.registry
        )
        self.skipped = Counter(
            "ocrnet_skipped_items", "Queued items dropped before their model call: request cancelled (timeout, client "
            "gone) or unable to finish before its deadline.", ("model", "stage"), registry=self.registry,
        )
        self.expected_wait = Gauge(
            "ocrnet_expected_wait_seconds", "Admission control's latest estimate of the wait for a new image.",
            ("model",), registry=self.registry,
        )
        self.images = Counter(
            "ocrnet_images", "Images processed, by profile and outcome.", ("profile", "outcome"), registry=self.registry
        )
        self.second_looks = Counter(
            "ocrnet_second_looks", "Images a profile asked to read a second time at another detector resolution; kept: "
            "true / false (which read answered), skipped (no time left before the request deadline).",
            ("profile", "kept"), registry=self.registry,
        )
        self.focused_reads = Counter(
            "ocrnet_focused_reads", "Images of a profile that reads one region (id: the MRZ band) located by a "
            "low-resolution detector pass; answered: region (its fields were complete) or page (read whole instead).",
            ("profile", "answered"), registry=self.registry,
        )

    def observe_batch(self, model: str, stage: str, size: int, seconds: float) -> None:
        self.batch_size.labels(model=model, stage=stage).observe(size)
        self.batch_latency.labels(model=model, stage=stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

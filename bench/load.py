"""HTTP load generator for a running OCRNet server: throughput, latency percentiles and the batch sizes it produced.

For each concurrency level, `c` async workers POST images to /v1/ocr back to back (closed loop) for a fixed
number of requests or seconds. Per level it reports images/s, p50/p95/p99 latency of successful requests, the
status codes seen (503 = queue full), and the det/rec batch-size distribution taken from the server's
`ocrnet_batch_size` histogram (scraped from /metrics before and after the level, so only that level counts).
Point it at one replica, not at the balancer, when you want the batch sizes (metrics are per replica).

    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 --concurrency 1,8,32,64 --requests 200
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_PLATES,
    emit_report,
    git_commit,
    histogram_delta,
    list_images,
    machine_description,
    markdown_table,
    parse_histogram,
    percentile,
)

BATCH_METRIC = "ocrnet_batch_size"
CALL_SECONDS_METRIC = "ocrnet_batch_inference_seconds"


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    ok: int
    images: int
    wall_s: float
    images_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    statuses: dict[str, int] = field(default_factory=dict)
    batches: dict[str, dict] = field(default_factory=dict)
    call_ms: dict[str, float] = field(default_factory=dict)  # mean ms per batched model call, per model/stage


async def scrape_histograms(client: httpx.AsyncClient, url: str) -> tuple[dict, dict]:
    """(batch sizes, seconds per model call) from /metrics; empty when the server has none."""
    try:
        r = await client.get(f"{url}/metrics")
        r.raise_for_status()
    except httpx.HTTPError:
        return {}, {}
    return parse_histogram(r.text, BATCH_METRIC), parse_histogram(r.text, CALL_SECONDS_METRIC)


async def run_level(client: httpx.AsyncClient, url: str, payloads: list[tuple[str, bytes]], concurrency: int,
                    requests: int | None, duration_s: float | None, profile: str, files_per_request: int,
                    headers: dict[str, str], backoff: bool = False) -> LevelResult:
    """Closed-loop load at one concurrency; stops at `requests` sent or `duration_s` elapsed."""
    before, before_s = await scrape_histograms(client, url)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = 0
    sent = 0
    images_ok = 0
    deadline = None if duration_s is None else time.perf_counter() + duration_s

    def take() -> list[tuple[str, bytes]] | None:
        nonlocal counter, sent
        if requests is not None and sent >= requests:
            return None
        if deadline is not None and time.perf_counter() >= deadline:
            return None
        sent += 1
        batch = [payloads[(counter + k) % len(payloads)] for k in range(files_per_request)]
        counter += files_per_request
        return batch

    async def worker() -> None:
        nonlocal images_ok
        while (batch := take()) is not None:
            files = [("files", (name, data, "application/octet-stream")) for name, data in batch]
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{url}/v1/ocr", files=files, data={"profile": profile}, headers=headers)
                code = str(r.status_code)
            except httpx.HTTPError as exc:
                r, code = None, type(exc).__name__
            dt = time.perf_counter() - t0
            if backoff and r is not None and r.status_code == 503:
                # A well-behaved client waits as told instead of re-sending at once.
                await asyncio.sleep(float(r.headers.get("Retry-After", "1") or 1))
            statuses[code] = statuses.get(code, 0) + 1
            if code == "200":
                latencies.append(dt)
                images_ok += len(batch)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    after, after_s = await scrape_histograms(client, url)
    ms = [x * 1000 for x in latencies]
    return LevelResult(
        concurrency=concurrency, requests=sent, ok=len(latencies), images=images_ok, wall_s=round(wall, 3),
        images_per_s=round(images_ok / wall, 3) if wall > 0 else 0.0,
        p50_ms=round(percentile(ms, 50), 1), p95_ms=round(percentile(ms, 95), 1), p99_ms=round(percentile(ms, 99), 1),
        mean_ms=round(sum(ms) / len(ms), 1) if ms else float("nan"),
        statuses=dict(sorted(statuses.items())), batches=histogram_delta(before, after),
        call_ms={k: round(1000 * v["mean_size"], 1) for k, v in histogram_delta(before_s, after_s).items()},
    )


async def wait_ready(client: httpx.AsyncClient, url: str, timeout_s: float) -> dict:
    deadline = time.perf_counter() + timeout_s
    while True:
        try:
            r = await client.get(f"{url}/readyz")
            if r.status_code == 200:
                models = await client.get(f"{url}/v1/models")
                return models.json() if models.status_code == 200 else {}
        except httpx.HTTPError:
            pass
        if time.perf_counter() > deadline:
            raise SystemExit(f"{url} not ready after {timeout_s:.0f} s")
        await asyncio.sleep(0.5)


async def run(url: str, images: list[Path], levels: list[int], requests: int | None, duration_s: float | None,
              profile: str = "generic", files_per_request: int = 1, warmup: int = 4, api_key: str | None = None,
              timeout_s: float = 300.0, backoff: bool = False) -> dict:
    """Every level in turn against `url`; returns the report (also what --out writes)."""
    payloads = [(p.name, p.read_bytes()) for p in images]
    headers = {"X-API-Key": api_key} if api_key else {}
    limits = httpx.Limits(max_connections=max(levels) + 4, max_keepalive_connections=max(levels) + 4)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        models = await wait_ready(client, url, timeout_s)
        if warmup:
            await run_level(client, url, payloads, 1, warmup, None, profile, files_per_request, headers)
        results = []
        for c in levels:
            res = await run_level(client, url, payloads, c, requests, duration_s, profile, files_per_request, headers,
                                  backoff)
            print(f"c={c:>3}: {res.images_per_s:7.2f} img/s  p50 {res.p50_ms:8.1f} ms  p95 {res.p95_ms:8.1f} ms  "
                  f"p99 {res.p99_ms:8.1f} ms  statuses {res.statuses}", file=sys.stderr, flush=True)
            results.append(res)
    return {
        "url": url, "machine": machine_description(), "commit": git_commit(),
        "images_dir": str(images[0].parent), "n_images": len(images),
        "profile": profile, "files_per_request": files_per_request, "requests_per_level": requests,
        "backoff_on_503": backoff,
        "duration_per_level_s": duration_s, "server_models": models, "levels": [asdict(r) for r in results],
    }


def to_markdown(report: dict) -> str:
    rows = []
    for lv in report["levels"]:
        det = lv["batches"].get(_stage_key(lv["batches"], "det"), {})
        rec = lv["batches"].get(_stage_key(lv["batches"], "rec"), {})
        calls = lv.get("call_ms", {})  # absent in reports written before it was recorded
        statuses = ", ".join(f"{k}:{v}" for k, v in lv["statuses"].items())
        rows.append([lv["concurrency"], lv["requests"], lv["images_per_s"], lv["p50_ms"], lv["p95_ms"], lv["p99_ms"],
                     _mean(det), _mean(rec), calls.get(_stage_key(calls, "det"), "-"),
                     calls.get(_stage_key(calls, "rec"), "-"), statuses])
    table = markdown_table(["concurrency", "requests", "images/s", "p50 ms", "p95 ms", "p99 ms", "mean det batch",
                            "mean rec batch", "ms per det call", "ms per rec call", "statuses"], rows)
    return f"{table}\n\nMachine: {report['machine']}. Server: {report['url']}.\n"


def _stage_key(batches: dict, stage: str) -> str:
    return next((k for k in batches if k.endswith("/" + stage) or k == stage), "")


def _mean(series: dict) -> str:
    return f"{series['mean_size']:.2f}" if series else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--images", type=Path, default=DEFAULT_PLATES, help="directory of images (sent round-robin)")
    ap.add_argument("--limit-images", type=int, default=None)
    ap.add_argument("--concurrency", default="1,8,32,64", help="comma-separated levels")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--requests", type=int, default=None, help="requests per level (default 100)")
    group.add_argument("--duration", type=float, default=None, help="seconds per level instead of a request count")
    ap.add_argument("--profile", default="generic")
    ap.add_argument("--files-per-request", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=4, help="sequential requests before the first level")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--backoff", action="store_true", help="after a 503, wait Retry-After seconds before the next")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON report here (and a .md next to it)")
    args = ap.parse_args(argv)
    requests = args.requests if args.requests is not None or args.duration is not None else 100
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    report = asyncio.run(run(args.url, list_images(args.images, args.limit_images), levels, requests, args.duration,
                             args.profile, args.files_per_request, args.warmup, args.api_key, args.timeout,
                             args.backoff))
    emit_report(report, to_markdown(report), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

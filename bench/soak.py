"""Soak test: many requests with random image sizes against a running server, watching the server's RSS.

A leak in the batcher, the upload path or onnxruntime's arena (new input shapes each request) shows up as RSS that
keeps climbing. RSS is sampled (psutil, process + children) at start, every `--every` requests and at the end;
the verdict compares the end with the level right after warm-up: pass when end <= warm * (1 + tolerance).
Give the server's PID (`--pid`), or let the script find the process listening on the URL's port.

    .venv/bin/python bench/soak.py --url http://127.0.0.1:8000 --requests 5000 --concurrency 8

``--mixed DATA_DIR`` (e.g. ../shared/data) sends instead what a mixed production day looks like (issue 20): real
plate photos (profile plate), receipts (invoice), identity pages (id) and generic reads, plus bad inputs (not an
image, a truncated JPEG, thin 60x3000 / 1x100000 PNG strips), chosen at random with ``--weights``. It reports RSS
before and after, the peak (VmHWM, reset at the start when the kernel allows it), RSS after the first and the
second half (flat within ``--flat`` = 5 %), and ends with ``--peak-requests`` concurrent requests of the largest
images (every receipt above 20 Mpx for invoice, four identity pages in one request for id), whose peak RSS it
reports on its own.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_PLATES, git_commit, list_images, machine_description  # noqa: E402


def find_server_pid(port: int) -> int:
    """PID of the process listening on `port` (needs permission to see the socket's owner)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise SystemExit(f"no process found listening on port {port}; pass --pid")


def rss_mb(proc: psutil.Process) -> float:
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def peak_rss_mb(proc: psutil.Process) -> float | None:
    """VmHWM (the process's peak RSS) from /proc; None where there is no /proc."""
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss(proc: psutil.Process) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, same user or root); False when not allowed."""
    try:
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, "PNG")
    return buf.getvalue()


def mixed_corpus(data_dir: Path, seed: int) -> dict[str, list[tuple[str, list[tuple[str, bytes, str]]]]]:
    """kind -> list of (profile, files) requests; files as (name, bytes, content type)."""
    rng = random.Random(seed)

    def load(sub: str, limit: int | None = None) -> list[tuple[str, bytes, str]]:
        paths = list_images(data_dir / sub)
        rng.shuffle(paths)
        return [(p.name, p.read_bytes(), "image/jpeg" if p.suffix.lower() in (".jpg", ".jpeg") else "image/png")
                for p in paths[:limit]]

    plates, receipts, ids = load("plates"), load("receipts"), load("ids")
    good = open(data_dir / "plates" / list_images(data_dir / "plates")[0].name, "rb").read()
    bad = [("bad.png", b"not an image at all", "image/png"), ("cut.jpg", good[: len(good) // 3], "image/jpeg"),
           ("strip.png", _png((60, 3000)), "image/png"), ("line.png", _png((1, 100000)), "image/png")]
    return {
        "plate": [("plate", [f]) for f in plates],
        "invoice": [("invoice", [f]) for f in receipts],
        "id": [("id", [f]) for f in ids],
        "generic": [("generic", [f]) for f in plates[:20] + receipts[:10]],
        "bad": [(rng.choice(["generic", "invoice", "plate", "id"]), [f]) for f in bad],
    }


def largest_requests(data_dir: Path, n: int) -> list[tuple[str, list[tuple[str, bytes, str]]]]:
    """``n`` requests of the largest images the service reads: big receipts (invoice), 4 identity pages (id)."""
    def by_pixels(sub: str) -> list[Path]:
        sized = []
        for p in list_images(data_dir / sub):
            with Image.open(p) as im:
                sized.append((im.width * im.height, p))
        return [p for _, p in sorted(sized, key=lambda t: t[0], reverse=True)]

    receipts, ids = by_pixels("receipts"), by_pixels("ids")
    out = []
    for i in range(n):
        if i % 2 == 0:
            p = receipts[(i // 2) % len(receipts)]
            out.append(("invoice", [(p.name, p.read_bytes(), "image/jpeg")]))
        else:
            out.append(("id", [(p.name, p.read_bytes(), "image/jpeg") for p in ids[:4]]))
    return out


async def mixed_soak(url: str, proc: psutil.Process, corpus: dict, weights: dict[str, float], total: int,
                     concurrency: int, every: int, seed: int, timeout_s: float) -> dict:
    rng = random.Random(seed)
    kinds = [k for k in weights if corpus.get(k)]
    samples: list[tuple[int, float]] = [(0, rss_mb(proc))]
    statuses: dict[str, dict[str, int]] = {}
    done = sent = 0
    t0 = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done, sent
        while sent < total:
            sent += 1
            kind = rng.choices(kinds, [weights[k] for k in kinds])[0]
            profile, files = rng.choice(corpus[kind])
            try:
                r = await client.post(f"{url}/v1/ocr", files=[("files", f) for f in files], data={"profile": profile})
                code = str(r.status_code)
                if r.status_code == 503:
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            per_kind = statuses.setdefault(kind, {})
            per_kind[code] = per_kind.get(code, 0) + 1
            done += 1
            if done % every == 0 or done == total // 2:
                samples.append((done, rss_mb(proc)))
                print(f"{done:>6}/{total} rss {samples[-1][1]:8.1f} MiB peak {peak_rss_mb(proc)} MiB "
                      f"{statuses}", file=sys.stderr, flush=True)

    async with httpx.AsyncClient(timeout=timeout_s) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    samples.append((done, rss_mb(proc)))
    return {"samples": samples, "statuses": statuses, "wall_s": round(time.perf_counter() - t0, 1)}


async def concurrent_peak(url: str, proc: psutil.Process, requests: list, timeout_s: float) -> dict:
    """All ``requests`` at once; the server's RSS peak over them (VmHWM reset first when allowed)."""
    before = rss_mb(proc)
    reset = reset_peak_rss(proc)
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        async def one(profile: str, files: list) -> int:
            r = await client.post(f"{url}/v1/ocr", files=[("files", f) for f in files], data={"profile": profile})
            return r.status_code
        t0 = time.perf_counter()
        codes = await asyncio.gather(*(one(p, f) for p, f in requests))
    return {"requests": [(p, len(f)) for p, f in requests], "statuses": codes, "rss_before_mb": round(before, 1),
            "peak_mb": peak_rss_mb(proc) if reset else None, "peak_reset": reset,
            "rss_after_mb": round(rss_mb(proc), 1), "wall_s": round(time.perf_counter() - t0, 1)}


def make_variants(sources: list[Path], n: int, min_side: int, max_side: int, seed: int) -> list[bytes]:
    """`n` JPEGs of random sizes (longest side uniform in [min_side, max_side]) made from the source images."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        with Image.open(rng.choice(sources)) as im:
            im = im.convert("RGB")
            side = rng.randint(min_side, max_side)
            scale = side / max(im.size)
            size = (max(8, round(im.width * scale)), max(8, round(im.height * scale)))
            buf = io.BytesIO()
            im.resize(size, Image.BILINEAR).save(buf, format="JPEG", quality=85)
            out.append(buf.getvalue())
    return out


async def soak(url: str, proc: psutil.Process, variants: list[bytes], total: int, concurrency: int, every: int,
               warmup: int, profile: str, seed: int, timeout_s: float) -> dict:
    rng = random.Random(seed)
    samples: list[tuple[int, float]] = [(0, rss_mb(proc))]
    statuses: dict[str, int] = {}
    done = 0
    sent = 0
    t0 = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done, sent
        while sent < total:
            sent += 1
            data = variants[rng.randrange(len(variants))]
            try:
                r = await client.post(f"{url}/v1/ocr", files=[("files", ("soak.jpg", data, "image/jpeg"))],
                                      data={"profile": profile})
                code = str(r.status_code)
                if r.status_code == 503:  # a polite client: without this, a closed loop turns into a 503 storm
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            statuses[code] = statuses.get(code, 0) + 1
            done += 1
            if done % every == 0 or done == warmup:
                samples.append((done, rss_mb(proc)))
                print(f"{done:>6}/{total} rss {samples[-1][1]:8.1f} MiB  statuses {statuses}", file=sys.stderr,
                      flush=True)

    async with httpx.AsyncClient(timeout=timeout_s) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    samples.append((done, rss_mb(proc)))
    return {"samples": samples, "statuses": statuses, "wall_s": round(time.perf_counter() - t0, 1)}


def verdict(samples: list[tuple[int, float]], warmup: int, tolerance: float, statuses: dict[str, int],
            min_ok: float) -> dict:
    """Flatness after warm-up: the end RSS may exceed the first post-warm-up sample by at most `tolerance`; and at
    least `min_ok` of the answers must be 200, else the pipeline was not exercised and flat RSS proves nothing."""
    warm = next((mb for n, mb in samples if n >= warmup), samples[-1][1])
    end = samples[-1][1]
    answered = sum(statuses.values())
    ok_share = statuses.get("200", 0) / answered if answered else 0.0
    return {"start_mb": round(samples[0][1], 1), "warm_mb": round(warm, 1), "end_mb": round(end, 1),
            "max_mb": round(max(mb for _, mb in samples), 1), "tolerance": tolerance,
            "ok_share": round(ok_share, 4), "exercised": ok_share >= min_ok,
            "passed": end <= warm * (1 + tolerance) and ok_share >= min_ok}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--pid", type=int, default=None, help="server PID (default: whoever listens on the URL's port)")
    ap.add_argument("--images", type=Path, default=DEFAULT_PLATES)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--every", type=int, default=250, help="sample RSS every K requests")
    ap.add_argument("--warmup", type=int, default=None, help="requests before the reference sample (default 10%%)")
    ap.add_argument("--variants", type=int, default=64, help="distinct random-size images to cycle through")
    ap.add_argument("--min-side", type=int, default=160)
    ap.add_argument("--max-side", type=int, default=1600)
    ap.add_argument("--tolerance", type=float, default=0.2, help="allowed end/warm RSS growth (0.2 = 20%%)")
    ap.add_argument("--min-ok", type=float, default=0.9, help="share of 200 answers below which the soak is invalid")
    ap.add_argument("--profile", default="generic")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--mixed", type=Path, default=None,
                    help="data dir with plates/, receipts/, ids/: mixed profiles and bad inputs (see above)")
    ap.add_argument("--weights", default="plate=0.4,invoice=0.15,id=0.15,generic=0.1,bad=0.2")
    ap.add_argument("--flat", type=float, default=0.05, help="--mixed: allowed RSS change second vs first half")
    ap.add_argument("--peak-requests", type=int, default=4, help="--mixed: concurrent largest-image requests (0: none)")
    args = ap.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else max(1, args.requests // 10)
    pid = args.pid or find_server_pid(urlparse(args.url).port or 80)
    proc = psutil.Process(pid)
    if args.mixed is not None:
        return main_mixed(args, proc)
    variants = make_variants(list_images(args.images), args.variants, args.min_side, args.max_side, args.seed)
    run = asyncio.run(soak(args.url, proc, variants, args.requests, args.concurrency, args.every, warmup,
                           args.profile, args.seed, args.timeout))
    report = {"machine": machine_description(), "commit": git_commit(), "url": args.url, "pid": pid,
              "requests": args.requests, "concurrency": args.concurrency, "warmup": warmup,
              "sides": [args.min_side, args.max_side], **run,
              **verdict(run["samples"], warmup, args.tolerance, run["statuses"], args.min_ok)}
    print(f"RSS start {report['start_mb']} MiB, after warm-up {report['warm_mb']} MiB, end {report['end_mb']} MiB, "
          f"max {report['max_mb']} MiB -> {'PASS' if report['passed'] else 'FAIL'} "
          f"(end <= warm x {1 + args.tolerance:.2f}, {report['ok_share']:.1%} answered 200, need {args.min_ok:.0%}); "
          f"statuses {report['statuses']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


def main_mixed(args: argparse.Namespace, proc: psutil.Process) -> int:
    weights = {k: float(v) for k, v in (kv.split("=") for kv in args.weights.split(","))}
    corpus = mixed_corpus(args.mixed, args.seed)
    start_mb, reset = rss_mb(proc), reset_peak_rss(proc)
    run = asyncio.run(mixed_soak(args.url, proc, corpus, weights, args.requests, args.concurrency, args.every,
                                 args.seed, args.timeout))
    half = next(mb for n, mb in run["samples"] if n >= args.requests // 2)
    end = run["samples"][-1][1]
    report = {"machine": machine_description(), "commit": git_commit(), "url": args.url, "pid": proc.pid,
              "requests": args.requests, "concurrency": args.concurrency, "weights": weights, **run,
              "start_mb": round(start_mb, 1), "first_half_mb": round(half, 1), "end_mb": round(end, 1),
              "peak_mb": peak_rss_mb(proc) if reset else None, "flat_change": round(end / half - 1, 4),
              "flat": abs(end / half - 1) <= args.flat}
    print(f"mixed soak, {args.requests} requests, {args.concurrency} clients, {run['wall_s']} s: RSS before "
          f"{report['start_mb']} MiB, after {args.requests // 2}: {report['first_half_mb']} MiB, after "
          f"{args.requests}: {report['end_mb']} MiB (change {report['flat_change']:+.1%}, "
          f"{'flat' if report['flat'] else 'NOT flat'} within {args.flat:.0%}), peak {report['peak_mb']} MiB; "
          f"statuses {run['statuses']}")
    if args.peak_requests:
        peak = asyncio.run(concurrent_peak(args.url, proc, largest_requests(args.mixed, args.peak_requests),
                                           args.timeout))
        report["concurrent_largest"] = peak
        print(f"{args.peak_requests} concurrent largest-image requests {peak['requests']}: statuses "
              f"{peak['statuses']}, RSS {peak['rss_before_mb']} -> peak {peak['peak_mb']} -> {peak['rss_after_mb']} MiB "
              f"in {peak['wall_s']} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0 if report["flat"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

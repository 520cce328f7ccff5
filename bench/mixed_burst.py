"""Mixed-profile burst: N concurrent requests spread over plate / generic / id / invoice, real photos (issue 20).

Admission control must answer 503 + Retry-After at once rather than 504 after 20-30 s, whatever the mix: the
profiles share the inference lanes, so one profile's backlog is every profile's wait. Prints the statuses per
profile, the share of 504, and when each kind of answer came (503s should come at once).

    .venv/bin/python bench/mixed_burst.py --url http://127.0.0.1:8000 --data ../shared/data --requests 120
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_commit, machine_description, percentile
from soak import mixed_corpus

PROFILES = ("plate", "generic", "id", "invoice")


async def burst(url: str, corpus: dict, n: int, seed: int, timeout_s: float) -> list[dict]:
    rng = random.Random(seed)
    plan = [(PROFILES[i % len(PROFILES)], rng.choice(corpus[PROFILES[i % len(PROFILES)]])[1]) for i in range(n)]
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        async def one(profile: str, files: list) -> dict:
            started = time.monotonic()
            try:
                r = await client.post(f"{url}/v1/ocr", files=[("files", f) for f in files], data={"profile": profile})
                status, retry = r.status_code, r.headers.get("retry-after")
            except httpx.HTTPError as exc:
                status, retry = type(exc).__name__, None
            return {"profile": profile, "status": status, "retry_after": retry,
                    "seconds": round(time.monotonic() - started, 3)}
        return await asyncio.gather(*(one(p, f) for p, f in plan))


def summarize(results: list[dict]) -> dict:
    statuses = Counter(str(r["status"]) for r in results)
    per_profile = {p: dict(Counter(str(r["status"]) for r in results if r["profile"] == p)) for p in PROFILES}
    timing = {code: {"p50": round(percentile([r["seconds"] for r in results if str(r["status"]) == code], 50), 2),
                     "max": round(max(r["seconds"] for r in results if str(r["status"]) == code), 2)}
              for code in statuses}
    share_504 = statuses.get("504", 0) / len(results)
    return {"statuses": dict(statuses), "per_profile": per_profile, "seconds": timing,
            "share_504": round(share_504, 4),
            "all_503_have_retry_after": all(r["retry_after"] for r in results if r["status"] == 503)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--requests", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--max-504", type=float, default=0.05, help="share of 504 above which the run fails")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    corpus = mixed_corpus(args.data, args.seed)
    started = time.monotonic()
    results = asyncio.run(burst(args.url, corpus, args.requests, args.seed, args.timeout))
    summary = summarize(results)
    report = {"machine": machine_description(), "commit": git_commit(), "url": args.url, "requests": args.requests,
              "wall_s": round(time.monotonic() - started, 1), **summary, "results": results}
    ok = summary["share_504"] < args.max_504 and summary["all_503_have_retry_after"]
    print(f"mixed burst of {args.requests} in {report['wall_s']} s: {summary['statuses']} "
          f"(504: {summary['share_504']:.1%}, limit {args.max_504:.0%}: {'PASS' if ok else 'FAIL'}); per profile "
          f"{summary['per_profile']}; seconds by status {summary['seconds']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

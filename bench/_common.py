"""Helpers shared by the bench scripts: image discovery, percentiles, Prometheus histogram deltas.

Kept free of service imports so the scripts run against any OCRNet server (local, container, behind nginx).
"""
from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PLATES = REPO.parent / "shared" / "data" / "plates"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(directory: Path, limit: int | None = None) -> list[Path]:
    """Image files of a directory in name order (stable across runs, so two benches see the same inputs)."""
    files = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {directory}")
    return files[:limit] if limit else files


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]); NaN for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


Histogram = dict[tuple[str, str], dict[str, float]]  # (model, stage) -> {"le=<bound>": cum, "sum": s, "count": n}


def parse_histogram(metrics_text: str, name: str) -> Histogram:
    """One Prometheus histogram's samples, keyed by its (model, stage) labels."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Histogram = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != name:
            continue
        for s in family.samples:
            key = (s.labels.get("model", ""), s.labels.get("stage", ""))
            series = out.setdefault(key, {})
            if s.name.endswith("_bucket"):
                series[f"le={s.labels['le']}"] = s.value
            elif s.name.endswith("_sum"):
                series["sum"] = s.value
            elif s.name.endswith("_count"):
                series["count"] = s.value
    return out


def histogram_delta(before: Histogram, after: Histogram) -> dict[str, dict]:
    """What happened between two scrapes: per (model, stage) the calls, mean size and per-bucket counts."""
    result: dict[str, dict] = {}
    for key, new in after.items():
        old = before.get(key, {})
        count = new.get("count", 0.0) - old.get("count", 0.0)
        if count <= 0:
            continue
        total = new.get("sum", 0.0) - old.get("sum", 0.0)
        bounds = sorted((k for k in new if k.startswith("le=")), key=lambda k: float(k[3:]))
        buckets: dict[str, int] = {}
        prev_cum, prev_bound = 0.0, None
        for b in bounds:
            cum = new[b] - old.get(b, 0.0)
            n = int(round(cum - prev_cum))
            if n:
                buckets[_bucket_label(prev_bound, b[3:])] = n
            prev_cum, prev_bound = cum, float(b[3:])
        result["/".join(k for k in key if k)] = {"calls": int(count), "mean_size": total / count, "buckets": buckets}
    return result


def _bucket_label(prev: float | None, bound: str) -> str:
    """Readable name of the bucket (prev, bound] for integer sizes: "1", "5-6", ">128"."""
    if bound == "+Inf":
        return f">{prev:g}" if prev is not None else "any"
    upper = float(bound)
    if prev is None:
        return f"<={upper:g}"
    if prev.is_integer() and upper.is_integer():
        lo, hi = int(prev) + 1, int(upper)
        return str(hi) if lo == hi else f"{lo}-{hi}"
    return f"({prev:g},{upper:g}]"


def machine_description() -> str:
    """One line saying what the numbers were measured on (they are meaningless without it)."""
    load = ""
    if hasattr(os, "getloadavg"):
        load = " load(1m)={:.1f}".format(os.getloadavg()[0])
    return f"{platform.machine()} {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}{load}"


def git_commit() -> str:
    """Commit of the checkout the numbers came from (+dirty when the worktree differs)."""
    import subprocess

    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def markdown_table(headers: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    headers = list(headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def emit_report(report: dict, markdown: str, out: Path | None) -> None:
    """Print the markdown; with ``out``, also keep the JSON there and the markdown beside it (``.md``)."""
    import json

    print(markdown)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        out.with_suffix(".md").write_text(markdown)

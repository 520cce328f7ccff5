"""PNG charts from bench/load.py JSON reports: throughput and latency percentiles vs concurrency.

Several reports (e.g. CPU and GPU runs) go on the same axes, labelled by file name.

    .venv/bin/python bench/plot.py bench/results/load_cpu.json [more.json ...] --out-dir bench/results
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(reports: dict[str, dict], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, rep in reports.items():
        lv = rep["levels"]
        ax.plot([x["concurrency"] for x in lv], [x["images_per_s"] for x in lv], marker="o", label=label)
    ax.set(xscale="log", xlabel="concurrent clients", ylabel="images / s", title="OCRNet throughput")
    ax.grid(True, alpha=0.3)
    ax.legend()
    thr = out_dir / "throughput.png"
    fig.tight_layout()
    fig.savefig(thr, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, rep) in enumerate(reports.items()):
        lv = rep["levels"]
        xs = [x["concurrency"] for x in lv]
        for q, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
            ax.plot(xs, [x[q] for x in lv], style, color=colors[i % len(colors)], marker="o", label=f"{label} {q[:3]}")
    ax.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="latency of 200s (ms)",
           title="OCRNet latency (p50 -, p95 --, p99 :)")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    lat = out_dir / "latency.png"
    fig.tight_layout()
    fig.savefig(lat, dpi=120)
    plt.close(fig)
    return [thr, lat]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", type=Path)
    ap.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    reports = {p.stem: json.loads(p.read_text()) for p in args.reports}
    for path in plot(reports, args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

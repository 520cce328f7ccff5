"""Peak RSS of one detector call per input shape, each in a fresh process (what a det call costs in host memory).

Why: the service bounds a request's memory by capping the detector input (OCRNET_MAX_DET_PIXELS) and the
megapixels in det calls at once (OCRNET_DET_MEMORY_MPX); both defaults follow from this table. Each shape runs in
its own subprocess so one shape's freed-but-kept heap cannot hide another's peak. ``--malloc-tuning`` applies the
service's glibc settings (service/api/memory.py) first and also reports RSS after the call.

    .venv/bin/python bench/det_memory.py --model models/base/det_int8.onnx --shapes 736x736,1984x1408,3008x2112
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = """
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[5])
from service.runtime import create_session
from service.api import memory
h, w, model, tuning = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
if tuning:
    memory.tune_malloc()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
s, _ = create_session(model, providers=["CPUExecutionProvider"], intra_threads=2, cpu_mem_arena=False)
before = rss()
t = time.perf_counter()
s.run(None, {s.get_inputs()[0].name: np.zeros((1, 3, h, w), np.float32)})
seconds = time.perf_counter() - t
if tuning:
    memory.trim()
print(json.dumps({"shape": [h, w], "mpx": round(h * w / 1e6, 3), "rss_before_mib": round(before),
                  "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "rss_after_mib": round(rss()), "seconds": round(seconds, 2)}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(REPO / "models" / "base" / "det_int8.onnx"))
    ap.add_argument("--shapes", default="736x736,1984x1408,2368x1664,3008x2112")
    ap.add_argument("--malloc-tuning", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = []
    for spec in args.shapes.split(","):
        h, w = spec.lower().split("x")
        out = subprocess.run([sys.executable, "-c", _CHILD, h, w, args.model, "1" if args.malloc_tuning else "0",
                              str(REPO)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["peak_over_before_mib_per_mpx"] = round((row["peak_mib"] - row["rss_before_mib"]) / row["mpx"])
        rows.append(row)
        print(f"{spec:>10} {row['mpx']:6.2f} Mpx: RSS {row['rss_before_mib']} -> peak {row['peak_mib']} -> "
              f"{row['rss_after_mib']} MiB ({row['peak_over_before_mib_per_mpx']} MiB per Mpx), {row['seconds']} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": args.model, "malloc_tuning": args.malloc_tuning, "rows": rows},
                                       indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

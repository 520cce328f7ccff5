"""Raw onnxruntime timings of det.onnx and rec.onnx per provider: first run of each new shape vs repeated runs.

Separates model/provider cost from pipeline cost (pre/post-processing, batching) when a device looks slow:

    python bench/session_timing.py --model-dir models/base --providers cuda cpu
    python bench/session_timing.py --models det.onnx det_int8.onnx --repeats 10   # float vs int8 detector on CPU
    python bench/session_timing.py --providers cuda cpu --cpu-arena on off --det-shapes 1x3x768x768 \
        --rec-shapes 4x3x48x320   # the service's GPU sessions (arena off before 2026-11-27) vs arena on
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service.runtime import create_session  # noqa: E402

DET_SHAPES = [(1, 3, 768, 1536), (1, 3, 736, 1312), (1, 3, 416, 736), (8, 3, 768, 1536)]
REC_SHAPES = [(8, 3, 48, 320), (32, 3, 48, 320), (7, 3, 48, 640), (128, 3, 48, 320)]


def time_runs(sess, shape: tuple[int, ...], repeats: int) -> tuple[float, float]:
    """(first run ms, median of the following runs ms) for a random input of ``shape``."""
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    t0 = time.perf_counter()
    sess.run(None, {name: x})
    first = 1000 * (time.perf_counter() - t0)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append(1000 * (time.perf_counter() - t0))
    return first, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=REPO / "models" / "base")
    ap.add_argument("--providers", nargs="*", default=["cpu"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["det.onnx", "rec.onnx"],
                    help="files in --model-dir; names starting with det get detector shapes, others rec shapes")
    ap.add_argument("--cpu-arena", nargs="+", choices=["on", "off"], default=["on"],
                    help="onnxruntime CPU memory arena setting(s) to time, each in its own session")
    ap.add_argument("--det-shapes", nargs="+", type=parse_shape, default=DET_SHAPES, help="e.g. 1x3x768x768")
    ap.add_argument("--rec-shapes", nargs="+", type=parse_shape, default=REC_SHAPES, help="e.g. 4x3x48x320")
    args = ap.parse_args(argv)
    for arena in args.cpu_arena:
        for model in args.models:
            shapes = args.det_shapes if model.startswith("det") else args.rec_shapes
            sess, used = create_session(args.model_dir / model, args.providers, intra_threads=args.threads,
                                        cpu_mem_arena=arena == "on")
            print(f"{model} on {used}, CPU arena {arena}")
            for shape in shapes:
                first, median = time_runs(sess, shape, args.repeats)
                print(f"  {str(shape):>22}  first {first:9.1f} ms   median {median:9.2f} ms")
    return 0


def parse_shape(spec: str) -> tuple[int, ...]:
    return tuple(int(v) for v in spec.lower().split("x"))


if __name__ == "__main__":
    raise SystemExit(main())

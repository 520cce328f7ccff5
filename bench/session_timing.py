"""Raw onnxruntime timings of det.onnx and rec.onnx per provider: first run of each new shape vs repeated runs.

Separates model/provider cost from pipeline cost (pre/post-processing, batching) when a device looks slow:

    python bench/session_timing.py --model-dir models/base --providers cuda cpu
    python bench/session_timing.py --models det.onnx det_int8.onnx --repeats 10   # float vs int8 detector on CPU
    python bench/session_timing.py --providers cuda cpu --cpu-arena on off --det-shapes 1x3x768x768 \
        --rec-shapes 4x3x48x320   # the service's GPU sessions (arena off before 2026-11-27) vs arena on
    python bench/session_timing.py --models det_int8.onnx --det-shapes 1x3x416x736 --threads 1 2 --in-flight 1 2
        # what the CPU service's two inference lanes buy: calls side by side, with 1 or 2 intra-op threads each
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
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


def time_in_flight(sess, shape: tuple[int, ...], repeats: int, in_flight: int) -> float:
    """Wall-clock ms per input row while ``in_flight`` threads each run ``repeats`` calls on the same session
    (onnxruntime sessions take concurrent ``run`` calls; the CPU service's lanes do exactly this)."""
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    sess.run(None, {name: x})  # the shape's first run is not part of this measurement

    def worker() -> None:
        for _ in range(repeats):
            sess.run(None, {name: x})

    threads = [threading.Thread(target=worker) for _ in range(in_flight)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 1000 * (time.perf_counter() - t0) / (in_flight * repeats * shape[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=REPO / "models" / "base")
    ap.add_argument("--providers", nargs="*", default=["cpu"])
    ap.add_argument("--threads", type=int, nargs="+", default=[2], help="intra-op threads (several: one session each)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["det.onnx", "rec.onnx"],
                    help="files in --model-dir; names starting with det get detector shapes, others rec shapes")
    ap.add_argument("--cpu-arena", nargs="+", choices=["on", "off"], default=["on"],
                    help="onnxruntime CPU memory arena setting(s) to time, each in its own session")
    ap.add_argument("--in-flight", type=int, nargs="+", default=[],
                    help="also time N concurrent callers per shape (ms per input row, wall clock)")
    ap.add_argument("--det-shapes", nargs="+", type=parse_shape, default=DET_SHAPES, help="e.g. 1x3x768x768")
    ap.add_argument("--rec-shapes", nargs="+", type=parse_shape, default=REC_SHAPES, help="e.g. 4x3x48x320")
    args = ap.parse_args(argv)
    for arena in args.cpu_arena:
        for threads in args.threads:
            for model in args.models:
                shapes = args.det_shapes if model.startswith("det") else args.rec_shapes
                sess, used = create_session(args.model_dir / model, args.providers, intra_threads=threads,
                                            cpu_mem_arena=arena == "on")
                print(f"{model} on {used}, CPU arena {arena}, {threads} intra-op thread(s)")
                for shape in shapes:
                    first, median = time_runs(sess, shape, args.repeats)
                    print(f"  {shape!s:>22}  first {first:9.1f} ms   median {median:9.2f} ms"
                          f"   per row {median / shape[0]:8.2f} ms")
                    for n in args.in_flight:
                        per_row = time_in_flight(sess, shape, args.repeats, n)
                        print(f"  {shape!s:>22}  {n} call(s) in flight: {per_row:8.2f} ms per row (wall clock)")
    return 0


def parse_shape(spec: str) -> tuple[int, ...]:
    return tuple(int(v) for v in spec.lower().split("x"))


if __name__ == "__main__":
    raise SystemExit(main())

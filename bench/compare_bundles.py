"""Images/s of two model dirs side by side in one process: same images, same threads, order alternating per image.

For a model change that should not cost speed (e.g. a retrained recognizer of the same architecture): the host's
own drift hits both sides alike, so the ratio is what to read.

    .venv/bin/python bench/compare_bundles.py --a models/invoice --b /tmp/invoice_before --images ../shared/data/receipts
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from service.pipeline import OcrPipeline

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", type=Path, required=True, help="model dir A (e.g. the new one)")
    ap.add_argument("--b", type=Path, required=True, help="model dir B (e.g. the one it replaces)")
    ap.add_argument("--images", type=Path, default=Path("../shared/data/receipts"))
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (each side)")
    ap.add_argument("--limit", type=int, default=0, help="first N images (0 = all)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    args = ap.parse_args()
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    files = files[: args.limit] if args.limit else files
    if not files:
        ap.error(f"no images in {args.images}")
    images = [p.read_bytes() for p in files]
    sides = {"a": OcrPipeline.from_dir(args.a, providers=["CPUExecutionProvider"], intra_threads=args.threads),
             "b": OcrPipeline.from_dir(args.b, providers=["CPUExecutionProvider"], intra_threads=args.threads)}
    for pipeline in sides.values():
        for data in images[: args.warmup]:
            pipeline.read(data)
    seconds: dict[str, list[float]] = {"a": [], "b": []}
    for i, data in enumerate(images):
        for name in (("a", "b") if i % 2 == 0 else ("b", "a")):
            started = time.perf_counter()
            sides[name].read(data)
            seconds[name].append(time.perf_counter() - started)
    result = {name: {"model_dir": str(getattr(args, name)), "images_per_s": len(s) / sum(s),
                     "p50_ms": 1000 * statistics.median(s)} for name, s in seconds.items()}
    result["ratio_a_over_b"] = result["a"]["images_per_s"] / result["b"]["images_per_s"]
    result["images"] = len(images)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

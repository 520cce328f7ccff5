"""Images/s of OcrPipeline on a folder of images (default: ../shared/data/plates), CPU or GPU.

    python bench/pipeline_throughput.py --threads 2 --batch 1 4 --limit 40
    python bench/pipeline_throughput.py --images ../shared/data/ids --model-dir models/id --profile id

Prints one row per batch size: images, wall seconds, images/s, mean ms per image, lines found, then where
the time went: ms per image in each pipeline stage (det preprocess, det model calls, DB post-process, crops, rec
preprocess, rec model calls, CTC decode, assembly). Model calls on an accelerator against the Python stages around
them is the question a GPU service slower than a CPU one raises. Images are decoded once up front; the timed part is
read_batch (det preprocess .. CTC decode). With ``--profile`` each image is read as the service reads it for that
profile instead (service.reading: the id profile's MRZ band, the plate profile's second look; one image per call),
profile field extraction included in the time.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service.pipeline import OcrPipeline  # noqa: E402
from service.profiles import PROFILES, get_profile  # noqa: E402
from service.reading import ReadOptions, as_rgb_image, read_for_profile  # noqa: E402
from service.vision.images import to_bgr_array  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
STAGES = ("prepare_det", "run_det", "boxes", "crops", "prepare_rec", "run_rec", "decode", "assemble")


def time_stages(pipe: OcrPipeline) -> dict[str, float]:
    """Wrap the pipeline's public stage methods (on this instance only) so each call adds its wall seconds to the
    returned dict; read_batch calls them through ``self``, so its own code is what gets timed."""
    seconds: dict[str, float] = defaultdict(float)

    def timed(name: str, method: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - started
        return wrapper

    for name in STAGES:
        setattr(pipe, name, timed(name, getattr(pipe, name)))
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "plates")
    ap.add_argument("--model-dir", type=Path, default=REPO / "models" / "base")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--providers", nargs="*", default=["cpu"], help="e.g. cuda cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=[1], help="images per read_batch call")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images (0 = all)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--profile", choices=sorted(PROFILES), default=None,
                    help="read each image as the service does for this profile (batch 1)")
    ap.add_argument("--all-text", action="store_true", help="with --profile: the all_text request option")
    args = ap.parse_args(argv)

    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if args.limit:
        files = files[: args.limit]
    if not files:
        print(f"no images in {args.images}", file=sys.stderr)
        return 1
    images = [to_bgr_array(p.read_bytes())[:, :, ::-1] for p in files]  # RGB arrays, decode not timed
    if args.profile:
        images = [as_rgb_image(img) for img in images]
        profile, options = get_profile(args.profile), ReadOptions(all_text=args.all_text)
        args.batch = [1]

        def read_batch(batch: list) -> list:
            return [read_for_profile(pipe, profile, img, options).lines for img in batch]
    else:
        def read_batch(batch: list) -> list:
            return pipe.read_batch(batch)
    pipe = OcrPipeline.from_dir(args.model_dir, providers=args.providers, intra_threads=args.threads,
                                det_batch_size=max(args.batch))
    if pipe.static_shapes:  # accelerators: every det bucket of these images and every rec shape, as the service does
        pipe.warm_up(sorted({pipe.prepare_det(img).bucket for img in images}))
    for img in images[: args.warmup]:
        read_batch([img])

    print(f"model={args.model_dir.name} providers={pipe.det_providers} threads={args.threads} images={len(images)} "
          f"from {args.images} profile={args.profile or '-'}{' all_text' if args.all_text else ''}")
    stage_seconds = time_stages(pipe)
    stage_rows = []
    print(f"{'batch':>5} {'images':>6} {'wall_s':>8} {'img/s':>7} {'ms/img':>8} {'lines':>6}")
    for bs in args.batch:
        stage_seconds.clear()
        t0 = time.perf_counter()
        n_lines = 0
        for start in range(0, len(images), bs):
            n_lines += sum(len(r) for r in read_batch(images[start : start + bs]))
        wall = time.perf_counter() - t0
        print(f"{bs:>5} {len(images):>6} {wall:>8.2f} {len(images) / wall:>7.2f} {1000 * wall / len(images):>8.1f} "
              f"{n_lines:>6}")
        stage_rows.append((bs, wall, dict(stage_seconds)))
    print("ms per image by stage (the rest of the wall time is read_batch's own glue)")
    print(f"{'batch':>5} " + " ".join(f"{name:>11}" for name in STAGES) + f" {'rest':>7}")
    for bs, wall, spent in stage_rows:
        rest = wall - sum(spent.values())
        print(f"{bs:>5} " + " ".join(f"{1000 * spent.get(name, 0.0) / len(images):>11.1f}" for name in STAGES)
              + f" {1000 * rest / len(images):>7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`ocrnet synth`: write synthetic samples as images + labels.jsonl (the format of shared/data/README.md).

Line crops are written with one line whose box is the whole image, so the same loader turns both
synthetic and user data into DetSamples/RecSamples.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from training.data.synth import DOMAINS, KINDS

if TYPE_CHECKING:  # the generators (fonts, numpy, Pillow) load when samples are written, not for --help
    from training.data.samples import DetSample, RecSample


def to_record(sample: RecSample | DetSample, image_name: str, domain: str) -> dict:
    from training.data.samples import RecSample

    if isinstance(sample, RecSample):
        w, h = sample.image.size
        return {"image": image_name, "lines": [{"text": sample.text, "box": [0, 0, w, h]}],
                "fields": {"domain": domain, "kind": "line"}}
    lines = [{"text": ln.text, "box": [[x, y] for x, y in ln.polygon], **({"ignore": True} if ln.ignore else {})}
             for ln in sample.lines]
    return {"image": image_name, "lines": lines, "fields": {"domain": domain, "kind": "page", **sample.fields}}


def write_dataset(domain: str, kind: str, n: int, seed: int, out: Path, start: int = 0,
                  jpeg_quality: int = 92) -> tuple[Path, int]:
    """Generate samples start..start+n-1 into ``out`` (images + labels.jsonl, appended).

    Idempotent: samples whose image is already listed in labels.jsonl are skipped, so re-running a
    command (or an interrupted run) never duplicates records. Returns (jsonl path, samples written).
    """
    from training.data.synth.common import check_fonts
    from training.data.synth.registry import generate

    check_fonts()
    out.mkdir(parents=True, exist_ok=True)
    labels = out / "labels.jsonl"
    done: set[str] = set()
    if labels.is_file():
        done = {json.loads(x)["image"] for x in labels.read_text(encoding="utf-8").splitlines() if x.strip()}
    ext = "png" if kind == "lines" else "jpg"
    written = 0
    with labels.open("a", encoding="utf-8") as f:
        for i in range(start, start + n):
            name = f"{domain}_{kind}_s{seed}_{i:07d}.{ext}"
            if name in done:
                continue
            sample = generate(domain, kind, seed, i)
            if ext == "png":
                sample.image.save(out / name, format="PNG", compress_level=1)
            else:
                sample.image.save(out / name, format="JPEG", quality=jpeg_quality)
            f.write(json.dumps(to_record(sample, name, domain), ensure_ascii=False) + "\n")
            f.flush()
            written += 1
    return labels, written


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    from training.cli import HelpFormatter

    p = parser or argparse.ArgumentParser(prog="ocrnet synth", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--domain", choices=DOMAINS, required=True, help="which generator family")
    p.add_argument("--kind", choices=KINDS, default="lines",
                   help="lines: recognizer crops; pages: scenes/pages with line quads for the detector")
    p.add_argument("--n", type=int, default=1000, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="run seed: the same (seed, index) always renders the same sample")
    p.add_argument("--start", type=int, default=0, help="first sample index (to extend a set or shard a run)")
    p.add_argument("--out", type=Path, required=True, help="folder for the images and labels.jsonl (appended)")
    return p


def main_synth(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    labels, written = write_dataset(args.domain, args.kind, args.n, args.seed, args.out, start=args.start)
    dt = time.perf_counter() - t0
    print(f"wrote {written} {args.domain} {args.kind} to {labels} ({args.n - written} already there) in {dt:.1f} s "
          f"({1000 * dt / max(written, 1):.1f} ms/sample)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_synth())

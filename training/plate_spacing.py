"""``ocrnet plate-spacing``: how much wider a plate recognizer's character spacing is where the plate prints a separator.

A recognizer trained on plate labels without separators (the TRAIN labels have none) writes none, but its CTC time
steps still show the gap a hyphen, space or emblem leaves between two groups. The plate profile tells layouts that
differ only in their grouping ('TT703HW': SK 'LL-DDDLL' or FR 'LL-DDD-LL') by that spacing, using the likelihood
ratios this command measures (``service.profiles.plate_layouts.SPACING_LOG_LR``):

    ocrnet plate-spacing --crops .data/crops/plates/labels.tsv --model-dir models/plate \
        --reference-model-dir models/base

Where the separators are: where the reference recognizer (the pretrained one, which writes separators) reads them
on the same crop, on crops it reads right. Gaps: the measured recognizer's, on crops it reads right. Needs the TRAIN
plate crops (``ocrnet crops --mode plate``, docs/finetune.md).
"""

from __future__ import annotations

import argparse
import bisect
import logging
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["SpacingTable", "main", "spacing_table"]


@dataclass(frozen=True)
class SpacingTable:
    """Gap counts per bin at separators (``separator``) and elsewhere (``other``), and the smoothed log-likelihood
    ratio per bin."""

    edges: tuple[float, ...]
    separator: tuple[int, ...]
    other: tuple[int, ...]
    log_lr: tuple[float, ...]

    def markdown(self) -> str:
        bounds = ("0", *(f"{e:g}" for e in self.edges), "inf")
        rows = ["| gap / pitch | at a separator | elsewhere | log LR |", "|---|---:|---:|---:|"]
        for i, (s, o, lr) in enumerate(zip(self.separator, self.other, self.log_lr)):
            rows.append(f"| [{bounds[i]}, {bounds[i + 1]}) | {s} | {o} | {lr:+.2f} |")
        return "\n".join(rows)


def spacing_table(samples: Iterable[tuple[Sequence[float], Collection[int]]],
                  edges: Sequence[float]) -> SpacingTable:
    """``samples``: per read, its gaps (one per boundary between key characters, in pitches) and the boundaries
    (1-based: before key character k) where the plate has a separator. Add-one smoothing per bin, so a bin never
    seen on one side still gets a finite ratio."""
    n_bins = len(edges) + 1
    sep, other = np.zeros(n_bins, np.int64), np.zeros(n_bins, np.int64)
    for gaps, boundaries in samples:
        for k, gap in enumerate(gaps, start=1):
            (sep if k in boundaries else other)[bisect.bisect_right(edges, gap)] += 1
    log_lr = [math.log((s + 1) / (sep.sum() + n_bins)) - math.log((o + 1) / (other.sum() + n_bins))
              for s, o in zip(sep.tolist(), other.tolist())]
    return SpacingTable(tuple(edges), tuple(sep.tolist()), tuple(other.tolist()), tuple(round(v, 2) for v in log_lr))


def _measure(crops: Path, model_dir: Path, reference_dir: Path, threads: int) -> tuple[SpacingTable, int, int]:
    from service.pipeline import OcrPipeline
    from service.profiles.plate_layouts import (
        SPACING_GAP_EDGES,
        boundary_gaps,
        plate_key,
        separator_boundaries,
    )
    from service.vision.images import to_bgr_array
    from training.data.loaders import open_rgb, read_crop_list

    records = read_crop_list(crops)
    images = [to_bgr_array(open_rgb(r.path)) for r in records]

    def read(model: Path) -> list:
        pipeline = OcrPipeline.from_dir(model, providers=["CPUExecutionProvider"], intra_threads=threads)
        return pipeline.recognize(images)

    reference, measured = read(reference_dir), read(model_dir)
    samples = []
    for record, ref, got in zip(records, reference, measured):
        key = plate_key(record.text)
        if plate_key(ref.text) != key or plate_key(got.text) != key:
            continue
        gaps = boundary_gaps(got.text, got.chars)
        if gaps is not None and len(gaps) == len(key) - 1:
            samples.append((gaps, set(separator_boundaries(ref.text))))
    return spacing_table(samples, SPACING_GAP_EDGES), len(samples), len(records)


def main(argv: Sequence[str] | None = None) -> int:
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet plate-spacing", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--crops", required=True, type=Path, help="labels.tsv of plate crops (`path<TAB>plate`)")
    ap.add_argument("--model-dir", type=Path, default=Path("models/plate"),
                    help="bundle whose recognizer's spacing is measured")
    ap.add_argument("--reference-model-dir", type=Path, default=Path("models/base"),
                    help="bundle whose recognizer's separators say where the plate has them")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    args = ap.parse_args(list(argv) if argv is not None else None)
    if not args.crops.is_file():
        ap.error(f"{args.crops} not found (TRAIN plate crops: see docs/finetune.md)")
    table, used, total = _measure(args.crops, args.model_dir, args.reference_model_dir, args.threads)
    print(f"{used} of {total} crops read right by both recognizers\n")
    print(table.markdown())
    print(f"\nSPACING_LOG_LR: tuple[float, ...] = {table.log_lr}")
    return 0

"""Recognizer training crops cut the way the service cuts them, labelled from real page annotations.

A recognizer finetuned on tight label boxes reads tight crops, but the service feeds it the DB detector's
crops (PP-OCR's 1.6x unclip margin, the detector's own line splits). So each labelled page goes through
the service's detector (``OcrPipeline.detect`` + ``crops``, the bundle's own resolution and DB settings)
and every detected line that matches a labelled line gets that label:

- ``lines`` (receipts, documents): a detection matches a label line at IoU >= 0.5 (one-to-one, as in the
  evaluation). Label lines the detector missed are still used, cut from the label quad grown by the
  service's typical margin, so the recognizer also learns the lines a better detector will find.
- ``label`` (no detector run, ~100x cheaper): every labelled line cut from its quad grown by that margin; the
  choice when the detector pass is too slow for the machine, or when the detector is being retrained too.
- ``plate`` (one plate box per photo, the box is the plate, not its text): among the detected lines lying
  mostly inside the plate box, the one whose read by the bundle's recognizer is closest to the label
  (normalised edit similarity >= ``min_similarity``) becomes the crop; photos without such a line are
  skipped and counted, never guessed. Plate labels carry no separators; with ``--separators-from-read`` each
  label gets the separators that recognizer read on the crop (a run of spaces as one space, any other run, a
  hyphen, an emblem read as '·' or '=', as one hyphen) when its read has as many alphanumerics as the label, so a
  recognizer finetuned on them keeps writing a plate's grouping, which the plate profile reads its format from.
  A photo whose plate is not found at the bundle's resolution is detected again at the plate profile's second
  look (up to 1280 px), as the service does: those distant, small plates are the ones worth learning from.

The output is a crop list (``labels.tsv``: ``crops/NAME.png<TAB>text``) that ``ocrnet finetune`` reads as a
``tsv`` source, plus ``stats.json`` with the match counts.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from shapely.geometry import Polygon

from service.vision.crop import crop_quad
from service.vision.db_postprocess import mini_box, order_clockwise, unclip
from training.data.loaders import ImageRecord, open_rgb, read_labels_jsonl
from training.evaluation.metrics import alnum_key, det_counts, edit_distance

log = logging.getLogger(__name__)

LABEL_MARGIN = 0.3  # unclip ratio that grows a tight label quad to the service's crop (~1.3x its height)
INSIDE_FRACTION = 0.5  # a plate candidate has at least this much of its area inside the plate box


@dataclass
class CropStats:
    """What the extraction found, written next to the crops so a run can be judged before training."""

    images: int = 0
    label_lines: int = 0
    matched: int = 0  # crops from a detection (the service's own crop)
    from_label: int = 0  # crops from a grown label quad (the detector missed or split the line)
    skipped_images: int = 0  # plate photos with no detected line close to the label
    second_looks: int = 0  # plate photos whose crop came from the second-look resolution


def grown_label_quad(quad: Sequence[Sequence[float]], ratio: float = LABEL_MARGIN) -> np.ndarray | None:
    """A tight label quad grown like a DB crop, as tl,tr,br,bl; None for a degenerate quad."""
    grown = unclip(np.asarray(quad, np.float64), ratio)
    if len(grown) < 3:
        return None
    box, short_side = mini_box(grown)
    return order_clockwise(box) if short_side > 1 else None


def similarity(read: str, label: str) -> float:
    """1 - normalised edit distance of the alphanumeric upper-case forms (plates carry no separators)."""
    a, b = alnum_key(read), alnum_key(label)
    if not a or not b:
        return 0.0
    return 1.0 - edit_distance(a, b) / max(len(a), len(b))


def label_with_read_separators(label: str, read: str) -> str:
    """`label` (alphanumerics) with the separators of `read` between the same characters: 'TT703HW' and a read
    'TT·7O3HW' give 'TT-703HW'; unchanged when the read has a different number of alphanumerics."""
    tokens = re.findall(r"[A-Z0-9]|[^A-Z0-9]+", read.upper().strip())
    if sum(len(t) == 1 and t.isalnum() and t.isascii() for t in tokens) != len(label):
        return label
    out, chars = [], iter(label)
    for t in tokens:
        if len(t) == 1 and t.isalnum() and t.isascii():
            out.append(next(chars))
        elif out:
            out.append(" " if t.isspace() else "-")
    return "".join(out).rstrip(" -")


def _inside_fraction(quad: np.ndarray, region: Polygon) -> float:
    poly = Polygon(quad)
    return poly.intersection(region).area / poly.area if poly.is_valid and poly.area > 0 else 0.0


def _to_rgb(bgr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))


class ServiceCropper:
    """Cuts labelled crops from pages with a service pipeline (``OcrPipeline``)."""

    def __init__(self, pipeline=None, min_similarity: float = 0.5, separators_from_read: bool = False,
                 reader=None, second_look: tuple[int, str] | None = None) -> None:
        """``reader``: the pipeline whose recognizer reads plate candidates (default: ``pipeline``), e.g. the
        pretrained one while ``pipeline``'s bundle ships a recognizer finetuned on these very crops.
        ``second_look``: detector limits to try a plate photo again at when the first pass finds no close line."""
        self.pipeline = pipeline
        self.min_similarity = min_similarity
        self.separators_from_read = separators_from_read
        self.reader = reader or pipeline
        self.second_look = second_look

    def line_crops(self, record: ImageRecord, stats: CropStats, use_detector: bool = True
                   ) -> list[tuple[Image.Image, str]]:
        image = open_rgb(record.path)
        labelled = [ln for ln in record.lines if ln.polygon is not None and not ln.ignore and ln.text.strip()]
        stats.label_lines += len(labelled)
        out: list[tuple[Image.Image, str]] = []
        matched: set[int] = set()
        if use_detector:
            inputs, dets = self.pipeline.detect([image])
            inp, det = inputs[0], dets[0]
            _, pairs = det_counts(list(det.quads), [ln.polygon for ln in labelled], 0.5)
            crops = self.pipeline.crops(inp, det) if pairs else []
            out = [(_to_rgb(crops[i]), labelled[j].text) for i, j, _ in pairs]
            stats.matched += len(pairs)
            matched = {j for _, j, _ in pairs}
        rgb = np.asarray(image)
        for j, ln in enumerate(labelled):
            if j in matched:
                continue
            quad = grown_label_quad(ln.polygon)
            if quad is not None:
                out.append((Image.fromarray(crop_quad(rgb, quad)), ln.text))
                stats.from_label += 1
        return out

    def plate_crops(self, record: ImageRecord, stats: CropStats) -> list[tuple[Image.Image, str]]:
        label = record.plate_text
        boxes = [ln.polygon for ln in record.lines if ln.polygon is not None]
        stats.label_lines += 1
        if not label or not boxes:
            stats.skipped_images += 1
            return []
        region, image = Polygon(boxes[0]), open_rgb(record.path)
        found = self._closest_plate_line(image, region, label, None)
        if found is None and self.second_look is not None:
            found = self._closest_plate_line(image, region, label, self.second_look)
            stats.second_looks += found is not None
        if found is None:
            stats.skipped_images += 1
            return []
        crop, read = found
        stats.matched += 1
        if self.separators_from_read:
            label = label_with_read_separators(alnum_key(label), read)
        return [(_to_rgb(crop), label)]

    def _closest_plate_line(self, image: Image.Image, region: Polygon, label: str,
                            det_limit: tuple[int, str] | None) -> tuple[np.ndarray, str] | None:
        """(crop, read) of the detected line inside the plate box read closest to `label`, when close enough."""
        inputs, dets = self.pipeline.detect([image], det_limit)
        inp, det = inputs[0], dets[0]
        inside = [i for i, q in enumerate(det.quads) if _inside_fraction(q, region) >= INSIDE_FRACTION]
        if not inside:
            return None
        crops = self.pipeline.crops(inp, det)
        reads = self.reader.recognize([crops[i] for i in inside])
        score, k = max((similarity(r.text, label), k) for k, r in enumerate(reads))
        return (crops[inside[k]], reads[k].text) if score >= self.min_similarity else None

    def extract(self, records: Sequence[ImageRecord], out_dir: Path, mode: str = "lines") -> CropStats:
        """Write ``out_dir/crops/*.png`` and ``out_dir/labels.tsv``; returns the counts."""
        from tqdm import tqdm

        crops_dir = out_dir / "crops"
        crops_dir.mkdir(parents=True, exist_ok=True)
        stats = CropStats()
        cut = {"plate": self.plate_crops, "lines": self.line_crops,
               "label": lambda r, st: self.line_crops(r, st, use_detector=False)}[mode]
        rows = []
        for record in tqdm(records, desc=f"crops ({mode})", dynamic_ncols=True):
            stats.images += 1
            for k, (crop, text) in enumerate(cut(record, stats)):
                if "\t" in text or "\n" in text:
                    continue
                name = f"{record.path.stem}_{k:03d}.png"
                crop.save(crops_dir / name)
                rows.append(f"crops/{name}\t{text}")
        (out_dir / "labels.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        (out_dir / "stats.json").write_text(json.dumps(asdict(stats), indent=1), encoding="utf-8")
        return stats


def labelled_records(ap: argparse.ArgumentParser, data: Path, limit: int | None = None) -> list[ImageRecord]:
    """The records of ``data/labels.jsonl`` (the first ``limit``), or a command-line error saying where the TRAIN
    images come from."""
    labels = data / "labels.jsonl"
    if not labels.is_file():
        ap.error(f"{labels} not found (TRAIN images: see ../shared/data/train/README.md)")
    return read_labels_jsonl(labels)[:limit]


def cpu_pipeline(model_dir: Path, threads: int):
    """The service pipeline of a bundle on the CPU, as these offline commands run it."""
    from service.pipeline import OcrPipeline

    return OcrPipeline.from_dir(model_dir, providers=["CPUExecutionProvider"], intra_threads=threads)


def main(argv: Sequence[str] | None = None) -> int:
    """``ocrnet crops``: labelled pages -> recognizer crops as the service cuts them."""
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet crops", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="folder with labels.jsonl and its images")
    ap.add_argument("--model-dir", type=Path, default=Path("models/base"),
                    help="service bundle whose detector (and, for plates, recognizer) cuts the crops")
    ap.add_argument("--out", required=True, type=Path, help="output folder (crops/ + labels.tsv + stats.json)")
    ap.add_argument("--mode", choices=("lines", "label", "plate"), default="lines",
                    help="lines: match detections to labelled line quads; label: grown label quads only (no "
                         "detector); plate: the detected line inside the plate box")
    ap.add_argument("--min-similarity", type=float, default=0.5, help="plate mode: accept a line read this close")
    ap.add_argument("--reader-model-dir", type=Path,
                    help="plate mode: bundle whose recognizer reads the candidates; unset: --model-dir's")
    ap.add_argument("--separators-from-read", action="store_true",
                    help="plate mode: label each crop with the separators the recognizer reads on it")
    ap.add_argument("--no-second-look", action="store_true",
                    help="plate mode: never detect a photo again at the plate profile's second-look resolution")
    ap.add_argument("--limit", type=int, help="first N images only")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    args = ap.parse_args(list(argv) if argv is not None else None)
    records = labelled_records(ap, args.data, args.limit)
    pipeline = None if args.mode == "label" else cpu_pipeline(args.model_dir, args.threads)
    reader = None if pipeline is None or args.reader_model_dir is None else cpu_pipeline(args.reader_model_dir,
                                                                                        args.threads)
    second_look = None
    if args.mode == "plate" and not args.no_second_look:
        from service.profiles.plate import PlateProfile

        second_look = PlateProfile.second_look_det_limit
    cropper = ServiceCropper(pipeline, args.min_similarity, args.separators_from_read, reader, second_look)
    stats = cropper.extract(records, args.out, args.mode)
    log.info("%s", asdict(stats))
    print(json.dumps(asdict(stats)))
    return 0

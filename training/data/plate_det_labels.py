"""Detector (DB) labels for plate photos, whose labels box the whole plate and not its text.

DB learns text polygons, and a plate box is not one: it holds the state name, stickers and the frame's dealer
text around the characters. So each photo's text line is taken from the service itself:

- **found**: among the lines the bundle detects inside the plate box (at its resolution, then at the plate
  profile's second look), the one read as the label (as many alphanumerics, at most two of them misread: the box
  spans the text), with its polygon grown from the DB
  kernel by ``text_unclip`` (1.3 sits on the characters; the crops keep PP-OCR's 1.6);
- **placed**: a photo where no line reads exactly (the plate missed, or its box cut short: the cases a
  finetune must teach) gets the text line where the found ones sit inside their plate boxes: the median
  fractions of the box for its region (us / eu / br), axis-aligned like the box.

Everything else is "don't care" (``###``, ignored by the DB loss): the other detected lines inside the plate
box's neighbourhood and the whole photo beyond it (its text is unlabelled, not background). The detector thus
learns where a plate's characters begin and end without unlearning the rest of the photo's text.

Output: ``labels.jsonl`` in the shared format (image paths relative to the output folder) and ``stats.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from shapely.geometry import Polygon, box

from training.data.loaders import ImageRecord, open_rgb
from training.data.service_crops import (
    INSIDE_FRACTION,
    _inside_fraction,
    cpu_pipeline,
    labelled_records,
)
from training.evaluation.metrics import alnum_key

log = logging.getLogger(__name__)

DONT_CARE = "###"
TEXT_UNCLIP = 1.3  # DB kernel growth that sits on the characters (models/invoice returns its lines so)
NEIGHBOURHOOD = 1.0  # the cared-for region: the plate box grown by this much of its width/height on each side


@dataclass
class PlateDetStats:
    images: int = 0
    found: int = 0  # text line from a detection read exactly as the label
    found_second_look: int = 0
    placed: int = 0  # text line placed from the region's median geometry
    skipped: int = 0  # no plate box, or no geometry for its region


@dataclass(frozen=True)
class PlateText:
    """One photo's plate text quad (original pixels) and the other detected lines near the plate."""

    record: ImageRecord
    quad: np.ndarray | None  # None: not found by the detector
    others: list[np.ndarray]
    size: tuple[int, int]  # photo width, height


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def outside_rects(plate: Sequence[float], width: int, height: int, grow: float = NEIGHBOURHOOD
                  ) -> list[list[list[float]]]:
    """Four rectangles covering the photo beyond the plate box grown by ``grow`` (top, bottom, left, right)."""
    x0, y0, x1, y1 = plate
    gx, gy = (x1 - x0) * grow, (y1 - y0) * grow
    x0, y0 = max(0.0, x0 - gx), max(0.0, y0 - gy)
    x1, y1 = min(float(width), x1 + gx), min(float(height), y1 + gy)
    rects = [_rect(0, 0, width, y0), _rect(0, y1, width, height), _rect(0, y0, x0, y1), _rect(x1, y0, width, y1)]
    return [r for r in rects if r[1][0] - r[0][0] >= 1 and r[2][1] - r[1][1] >= 1]


def relative_box(quad: np.ndarray, plate: Sequence[float]) -> np.ndarray:
    """The quad's bounding box as fractions of the plate box: (left, top, right, bottom)."""
    x0, y0, x1, y1 = plate
    w, h = x1 - x0, y1 - y0
    return np.array([(quad[:, 0].min() - x0) / w, (quad[:, 1].min() - y0) / h,
                     (quad[:, 0].max() - x0) / w, (quad[:, 1].max() - y0) / h])


def placed_quad(fractions: np.ndarray, plate: Sequence[float]) -> np.ndarray:
    x0, y0, x1, y1 = plate
    w, h = x1 - x0, y1 - y0
    return np.array(_rect(x0 + fractions[0] * w, y0 + fractions[1] * h, x0 + fractions[2] * w,
                          y0 + fractions[3] * h), np.float64)


def plate_bounds(record: ImageRecord) -> tuple[float, float, float, float] | None:
    boxes = [ln.polygon for ln in record.lines if ln.polygon is not None]
    if not boxes:
        return None
    pts = np.asarray(boxes[0], np.float64)
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def spans_label(read: str, label: str, max_substitutions: int = 2) -> bool:
    """Whether a read covers the whole plate text: as many alphanumerics as the label, at most
    ``max_substitutions`` of them different (a misread character, not a box cut short or grown long)."""
    key = alnum_key(read)
    return len(key) == len(label) and sum(a != b for a, b in zip(key, label)) <= max_substitutions


class PlateTextFinder:
    """Finds the plate's text line with a service pipeline (``OcrPipeline``) whose polygons sit on the text."""

    def __init__(self, pipeline, second_look: tuple[int, str] | None = None, text_unclip: float = TEXT_UNCLIP,
                 reader=None) -> None:
        """``reader``: the pipeline whose recognizer reads the lines (default: ``pipeline``'s). Use one not
        trained on these photos: a recognizer finetuned on a cut-short crop labelled with the whole plate
        reads it whole, and the short box would be taught as the plate's text."""
        pipeline.db_config = replace(pipeline.db_config, output_unclip_ratio=text_unclip)
        self.pipeline = pipeline
        self.reader = reader or pipeline
        self.second_look = second_look

    def find(self, record: ImageRecord, stats: PlateDetStats) -> PlateText:
        label = alnum_key(record.plate_text)
        region = Polygon(box(*plate_bounds(record)))  # type: ignore[misc]
        image = open_rgb(record.path)
        others: list[np.ndarray] = []
        for limit in (None, self.second_look) if self.second_look else (None,):
            inputs, dets = self.pipeline.detect([image], limit)
            inside = [i for i, q in enumerate(dets[0].quads) if _inside_fraction(q, region) >= INSIDE_FRACTION]
            crops = self.pipeline.crops(inputs[0], dets[0]) if inside else []
            reads = dict(zip(inside, self.reader.recognize([crops[i] for i in inside]) if inside else []))
            spanning = sorted((i for i in inside if spans_label(reads[i].text, label)),
                              key=lambda i: alnum_key(reads[i].text) != label)
            if limit is None:
                others = list(dets[0].quads)
            if spanning:
                stats.found += 1
                stats.found_second_look += limit is not None
                quad = np.asarray(dets[0].quads[spanning[0]], np.float64)
                if limit is not None:  # the first look's other lines are the ones training sees at its scale
                    others = [q for q in others if Polygon(q).intersection(Polygon(quad)).area == 0]
                else:
                    others = [q for k, q in enumerate(others) if k != spanning[0]]
                return PlateText(record, quad, others, image.size)
        return PlateText(record, None, others, image.size)


def build_labels(found: Sequence[PlateText], out_dir: Path, stats: PlateDetStats,
                 grow: float = NEIGHBOURHOOD) -> list[dict]:
    """labels.jsonl records: the text quad (found or placed), don't-care for the rest."""
    by_region: dict[str, list[np.ndarray]] = {}
    for f in found:
        if f.quad is not None:
            region = str(f.record.fields.get("region", ""))
            by_region.setdefault(region, []).append(relative_box(f.quad, plate_bounds(f.record)))  # type: ignore[arg-type]
    medians = {r: np.median(np.stack(v), axis=0) for r, v in by_region.items()}
    if by_region:
        medians[""] = np.median(np.concatenate([np.stack(v) for v in by_region.values()]), axis=0)
    out = []
    for f in found:
        plate = plate_bounds(f.record)
        fractions = medians.get(str(f.record.fields.get("region", "")), medians.get(""))
        if plate is None or (f.quad is None and fractions is None):
            stats.skipped += 1
            continue
        quad = f.quad if f.quad is not None else placed_quad(fractions, plate)  # type: ignore[arg-type]
        stats.placed += f.quad is None
        text_poly = Polygon(quad)
        width, height = f.size
        near = Polygon(box(*plate)).buffer(max(plate[2] - plate[0], plate[3] - plate[1]) * grow)
        others = [q for q in f.others if Polygon(q).intersects(near)
                  and Polygon(q).intersection(text_poly).area < 0.5 * Polygon(q).area]
        lines = [{"text": f.record.plate_text,
                  "box": np.round(quad, 1).tolist()}]
        lines += [{"text": DONT_CARE, "box": np.round(q, 1).tolist(), "ignore": True} for q in others]
        lines += [{"text": DONT_CARE, "box": r, "ignore": True} for r in outside_rects(plate, width, height, grow)]
        fields = dict(f.record.fields, text_line="found" if f.quad is not None else "placed")
        out.append({"image": os.path.relpath(f.record.path, out_dir), "lines": lines, "fields": fields})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``ocrnet plate-det-labels``: plate photos (plate box labels) -> DB detector labels of the plate's text."""
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet plate-det-labels", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="folder with labels.jsonl (plate boxes) and its images")
    ap.add_argument("--model-dir", type=Path, default=Path("models/plate"),
                    help="plate bundle whose detector finds the text line")
    ap.add_argument("--reader-model-dir", type=Path, default=Path("models/base"),
                    help="bundle whose recognizer reads the lines: one not trained on these photos")
    ap.add_argument("--out", required=True, type=Path, help="output folder (labels.jsonl + stats.json)")
    ap.add_argument("--text-unclip", type=float, default=TEXT_UNCLIP, help="DB kernel growth of the text quads")
    ap.add_argument("--neighbourhood", type=float, default=NEIGHBOURHOOD,
                    help="cared-for region: the plate box grown by this fraction on each side")
    ap.add_argument("--limit", type=int, help="first N images only")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    args = ap.parse_args(list(argv) if argv is not None else None)
    records = labelled_records(ap, args.data, args.limit)
    from tqdm import tqdm

    from service.profiles.plate import PlateProfile

    finder = PlateTextFinder(cpu_pipeline(args.model_dir, args.threads), PlateProfile.second_look_det_limit,
                             args.text_unclip, cpu_pipeline(args.reader_model_dir, args.threads))
    stats = PlateDetStats(images=len(records))
    found = [finder.find(r, stats) for r in tqdm(records, desc="plate text lines", dynamic_ncols=True)
             if plate_bounds(r) is not None]
    stats.skipped += len(records) - len(found)
    rows = build_labels(found, args.out, stats, args.neighbourhood)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (args.out / "stats.json").write_text(json.dumps(asdict(stats), indent=1), encoding="utf-8")
    print(json.dumps(asdict(stats)))
    return 0

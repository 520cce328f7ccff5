"""DEV receipts read as JPEGs and as scanned PDFs: does the PDF path read a page as well as the JPEG it holds?

    python bench/pdf_accuracy.py --model-dir models/invoice --out bench/results/pdf_accuracy.md [--all]

Each receipt JPEG is wrapped, bytes unchanged, into a one-page PDF (as a scanner writes one: the JPEG drawn over
the page at ``--dpi``), and that PDF goes through the service's own PDF code (``service.documents``: page plan at
the bundle's detector size, PDFium rendering) before the same pipeline and invoice profile. Polygons come back in
rendered-page pixels and are scaled to the JPEG's for scoring. Both paths are scored by ``training.evaluation``
(unchanged) against ``labels.jsonl``; the table prints line recall / F1 and field accuracy side by side.

The pipeline is deterministic, so a page whose rendering is pixel-for-pixel the decoded JPEG (the service's own
decoder) reads the same by construction: by default only the other receipts are OCR'd, through both paths, and the
line-recall difference is given over all receipts (``--all`` OCRs every receipt both ways).
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # pdf_samples: the PDF builders the tests use

from pdf_samples import scanned_pdf  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from service.documents import PdfPages, RenderPolicy  # noqa: E402
from service.api.uploads import UploadedFile, decode_image  # noqa: E402
from service.pipeline import OcrPipeline  # noqa: E402
from training.evaluation.run import DEFAULT_DATA, domain_dir, evaluate_dataset, load_labels  # noqa: E402

METRICS = ("e2e_recall", "e2e_precision", "e2e_f1", "det_recall", "field_date", "field_total", "field_company",
           "field_address")


@dataclass(frozen=True)
class ScaledLine:
    text: str
    confidence: float
    polygon: list[tuple[float, float]]


class PdfPathReader:
    """``read_batch`` over JPEG bytes, through a scanned PDF and the service's page rendering."""

    def __init__(self, pipeline: OcrPipeline, dpi: float, max_pixels: int) -> None:
        self.pipeline = pipeline
        self.bundle = pipeline.bundle
        self.dpi = dpi
        self.policy = RenderPolicy(pipeline.det_config.max_side_len, max_pixels)
        self.sizes: list[tuple[tuple[int, int], tuple[int, int]]] = []  # (jpeg size, rendered size) per page

    def page(self, jpeg: bytes) -> tuple[Image.Image, tuple[int, int]]:
        with Image.open(io.BytesIO(jpeg)) as im:
            size = im.size
        doc = PdfPages(scanned_pdf([jpeg], dpi=self.dpi), "receipt", 1)
        try:
            return doc.render(doc.plan(0, self.policy)), size
        finally:
            doc.close()

    def read_batch(self, images: Sequence[bytes]) -> list[list[ScaledLine]]:
        pages = [self.page(data) for data in images]
        out = []
        for (page, (w, h)), lines in zip(pages, self.pipeline.read_batch([p for p, _ in pages])):
            sx, sy = w / page.width, h / page.height
            self.sizes.append(((w, h), page.size))
            out.append([ScaledLine(line.text, line.confidence, [(x * sx, y * sy) for x, y in line.polygon])
                        for line in lines])
        return out


def same_pixels(reader: PdfPathReader, jpeg: bytes, max_pixels: int) -> bool:
    """Whether the rendered PDF page is exactly the JPEG as the service decodes it."""
    page, _ = reader.page(jpeg)
    decoded = decode_image(UploadedFile("r.jpg", "image/jpeg", bytearray(jpeg)), 0, max_pixels).image
    a, b = np.asarray(page), np.asarray(decoded)
    return a.shape == b.shape and bool(np.array_equal(a, b))


def subset_dir(data: Path, names: set[str], into: Path) -> Path:
    """A receipts folder holding only ``names`` (labels.jsonl lines, images linked)."""
    folder = into / "receipts"
    folder.mkdir(parents=True)
    lines = [raw for raw in (data / "labels.jsonl").read_text(encoding="utf-8").splitlines()
             if raw.strip() and json.loads(raw)["image"] in names]
    (folder / "labels.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in names:
        (folder / name).symlink_to((data / name).resolve())
    return into


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default="models/invoice")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--dpi", type=float, default=200.0, help="resolution the JPEG is drawn at on its PDF page")
    ap.add_argument("--max-pixels", type=int, default=40_000_000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--batch-size", type=int, default=1, help="images per read_batch (4 full-size scans need ~10 GB)")
    ap.add_argument("--all", action="store_true", help="OCR every receipt both ways, pixel-identical ones too")
    args = ap.parse_args(argv)

    pipeline = OcrPipeline.from_dir(args.model_dir, intra_threads=args.threads)
    reader = PdfPathReader(pipeline, args.dpi, args.max_pixels)
    folder = domain_dir(args.data, "receipts")
    records = load_labels(folder)[: args.limit]
    identical = {r.image.name for r in records if same_pixels(reader, r.image.read_bytes(), args.max_pixels)}
    gt_lines = sum(1 for r in records for line in r.lines if line.shape is not None)
    data = args.data
    with tempfile.TemporaryDirectory() as tmp:
        if not args.all:
            data = str(subset_dir(folder, {r.image.name for r in records} - identical, Path(tmp)))
        started = time.perf_counter()
        jpeg = evaluate_dataset(pipeline, data, "receipts", None if not args.all else args.limit, args.batch_size)
        jpeg_s = time.perf_counter() - started
        started = time.perf_counter()
        pdf = evaluate_dataset(reader, data, "receipts", None if not args.all else args.limit,  # type: ignore[arg-type]
                               args.batch_size)
        pdf_s = time.perf_counter() - started
    same = sum(a == b for a, b in reader.sizes)
    delta = (pdf.counts["e2e_tp"] - jpeg.counts["e2e_tp"]) / gt_lines if gt_lines else 0.0
    head = (f"{len(identical)}/{len(records)} receipts render to exactly the decoded JPEG's pixels (same OCR by "
            f"construction); the table compares the {jpeg.n_images} others." if not args.all else
            f"{len(identical)}/{len(records)} receipts render to exactly the decoded JPEG's pixels; all OCR'd.")
    rows = [head, "", f"Line recall difference over all {len(records)} receipts ({gt_lines} labelled lines): "
            f"PDF {pdf.counts['e2e_tp']} vs JPEG {jpeg.counts['e2e_tp']} lines read right on the compared receipts, "
            f"{100 * delta:+.2f} points.", "",
            "| metric (compared receipts) | JPEG | scanned PDF | PDF - JPEG (points) |", "|---|---:|---:|---:|"]
    for name in METRICS:
        a, b = jpeg.metrics.get(name), pdf.metrics.get(name)
        if a is None or b is None:
            continue
        rows.append(f"| {name} | {100 * a:.1f} % | {100 * b:.1f} % | {100 * (b - a):+.1f} |")
    rows.append(f"| seconds ({jpeg.n_images} receipts) | {jpeg_s:.1f} | {pdf_s:.1f} | |")
    text = "\n".join([
        f"DEV receipts ({len(records)}), `{args.model_dir}`, invoice profile; PDF pages drawn at {args.dpi:g} dpi; of "
        f"the compared pages {same}/{jpeg.n_images} rendered at their JPEG's own size (the rest shrunk to the "
        f"detector's {reader.policy.long_side_px} px long side, as the JPEG path shrinks them).",
        "", *rows, "",
        f"`{' '.join(['python', 'bench/pdf_accuracy.py', *(argv if argv is not None else sys.argv[1:])])}`",
    ])
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

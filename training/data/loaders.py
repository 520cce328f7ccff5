"""Loaders for user data: labels.jsonl, ICDAR-2015 txt, crop+text lists (TSV) and PaddleOCR det labels.

Every loader returns light records (paths and labels, no pixels); ``.det_sample()`` /
``.rec_samples()`` read the image only when a training step asks for it, so a large set does not sit
in memory. Recognizer crops are cut from line quads with the service's own perspective crop
(``service.vision.crop.crop_quad``), so training sees crops made the way inference makes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from service.vision.crop import crop_quad
from training.data.samples import DetSample, LineLabel, Point, RecSample

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
DONT_CARE = "###"


def open_rgb(path: str | Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def normalise_box(box: object) -> list[Point] | None:
    """A labels.jsonl/ICDAR box as a quad: [x1,y1,x2,y2], 8 numbers, or a point list; None stays None.

    A 4-point list is kept in its given order (documented clockwise from the text's top-left, which
    also says which way rotated text reads); polygons with more points become their bounding box.
    """
    if box is None:
        return None
    if not isinstance(box, (list, tuple)) or not box:
        raise ValueError(f"unsupported box {box!r}")
    if all(isinstance(v, (int, float)) for v in box):
        v = [float(x) for x in box]
        if len(v) == 4:
            x0, y0, x1, y1 = min(v[0], v[2]), min(v[1], v[3]), max(v[0], v[2]), max(v[1], v[3])
            return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        if len(v) >= 8 and len(v) % 2 == 0:
            box = [v[i: i + 2] for i in range(0, len(v), 2)]
        else:
            raise ValueError(f"box needs 4 numbers or an even count >= 8, got {len(v)}")
    pts = np.asarray(box, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 4:
        raise ValueError(f"unsupported box {box!r}")
    if len(pts) == 4:
        return [(float(x), float(y)) for x, y in pts]
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    return [(float(x0), float(y0)), (float(x1), float(y0)), (float(x1), float(y1)), (float(x0), float(y1))]


def crop_line(image: Image.Image, quad: Sequence[Point]) -> Image.Image:
    """Rectified crop of a quad; a quad covering the whole image (synthetic line crops) returns the image."""
    w, h = image.size
    if [tuple(map(float, p)) for p in quad] == [(0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h))]:
        return image
    return Image.fromarray(crop_quad(np.asarray(image), np.asarray(quad, dtype=np.float64)))


@dataclass(frozen=True)
class Line:
    """A labelled line of a record; ``polygon`` is None where the source gives no box."""

    text: str
    polygon: list[Point] | None
    ignore: bool = False


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image (a page, a scene or a crop), pixels not loaded."""

    path: Path
    lines: list[Line]
    fields: dict = field(default_factory=dict)

    @property
    def plate_text(self) -> str:
        """The plate a plate photo is labelled with: its ``plate`` field, else its first line's text."""
        return str(self.fields.get("plate") or (self.lines[0].text if self.lines else ""))

    @property
    def has_boxes(self) -> bool:
        """True when every line has a box: only then can a detector learn from the image."""
        return bool(self.lines) and all(ln.polygon is not None for ln in self.lines)

    def det_sample(self) -> DetSample:
        if not self.has_boxes:
            raise ValueError(f"{self.path}: lines without boxes cannot train a detector")
        labels = [LineLabel(ln.text, list(ln.polygon), ln.ignore) for ln in self.lines]  # type: ignore[arg-type]
        return DetSample(open_rgb(self.path), labels, dict(self.fields))

    def rec_samples(self, image: Image.Image | None = None) -> list[RecSample]:
        """A crop per boxed, non-ignored line with text."""
        wanted = [ln for ln in self.lines if ln.polygon is not None and not ln.ignore and ln.text]
        if not wanted:
            return []
        img = image if image is not None else open_rgb(self.path)
        return [RecSample(crop_line(img, ln.polygon), ln.text) for ln in wanted]  # type: ignore[arg-type]


@dataclass(frozen=True)
class CropRecord:
    """A ready-cut text line image and its transcript."""

    path: Path
    text: str

    def rec_sample(self) -> RecSample:
        return RecSample(open_rgb(self.path), self.text)


# ----------------------------------------------------------------------------- formats


def read_labels_jsonl(path: str | Path) -> list[ImageRecord]:
    """labels.jsonl (shared/data/README.md); image paths are relative to the file's folder."""
    path = Path(path)
    records = []
    with path.open(encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
                lines = [Line(str(ln["text"]), normalise_box(ln.get("box")), bool(ln.get("ignore", False)))
                         for ln in obj.get("lines", [])]
                records.append(ImageRecord(path.parent / obj["image"], lines, dict(obj.get("fields") or {})))
            except (KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
                raise ValueError(f"{path}:{n}: bad record: {e}") from e
    return records


def parse_icdar2015_line(raw: str) -> Line | None:
    """`x1,y1,...,x4,y4,transcription` (the transcription may hold commas); '###' marks don't-care."""
    raw = raw.strip().lstrip("\ufeff")
    if not raw:
        return None
    parts = raw.split(",", 8)
    if len(parts) < 9:
        raise ValueError(f"need 8 coordinates and a transcription: {raw!r}")
    coords = [float(v) for v in parts[:8]]
    text = parts[8]
    quad = [(coords[i], coords[i + 1]) for i in range(0, 8, 2)]  # ICDAR order is already clockwise from top-left
    return Line(text, quad, ignore=text == DONT_CARE)


def read_icdar2015(images_dir: str | Path, gt_dir: str | Path | None = None) -> list[ImageRecord]:
    """ICDAR-2015 style: `img_N.jpg` with `gt_img_N.txt` (gt_dir defaults to images_dir)."""
    images_dir = Path(images_dir)
    gt_dir = Path(gt_dir) if gt_dir is not None else images_dir
    by_stem = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_EXTS}
    records = []
    for gt in sorted(gt_dir.glob("*.txt")):
        stem = gt.stem.removeprefix("gt_")
        if stem not in by_stem:
            raise FileNotFoundError(f"{gt}: no image named {stem}.* in {images_dir}")
        with gt.open(encoding="utf-8-sig") as f:
            lines = [ln for ln in (parse_icdar2015_line(r) for r in f) if ln is not None]
        records.append(ImageRecord(by_stem[stem], lines))
    return records


def _tab_rows(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a tab-separated label file, skipping blank and '#' comment lines."""
    with path.open(encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            raw = raw.rstrip("\r\n")
            if raw.strip() and not raw.startswith("#"):
                yield n, raw


def read_crop_list(path: str | Path) -> list[CropRecord]:
    """TSV of `image_path<TAB>text` (paths relative to the TSV's folder; '#' lines are comments)."""
    path = Path(path)
    out = []
    for n, raw in _tab_rows(path):
        if "\t" not in raw:
            raise ValueError(f"{path}:{n}: expected `path<TAB>text`")
        img, text = raw.split("\t", 1)
        out.append(CropRecord(path.parent / img, text))
    return out


def _is_paddle_det(text: str) -> bool:
    return text.lstrip().startswith("[") and '"points"' in text


def read_paddle_det(path: str | Path) -> list[ImageRecord]:
    """PaddleOCR detection labels: `image_path<TAB>[{"transcription": "..", "points": [[x,y],..]}, ..]`.

    PaddleOCR marks don't-care regions with the transcription '###' too.
    """
    path = Path(path)
    out = []
    for n, raw in _tab_rows(path):
        try:
            img, payload = raw.split("\t", 1)
            lines = [Line(str(o["transcription"]), normalise_box(o["points"]), str(o["transcription"]) == DONT_CARE)
                     for o in json.loads(payload)]
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{path}:{n}: bad PaddleOCR det label: {e}") from e
        out.append(ImageRecord(path.parent / img, lines))
    return out


def _first_payload(path: Path) -> str:
    with path.open(encoding="utf-8") as f:
        for raw in f:
            if raw.strip() and not raw.startswith("#") and "\t" in raw:
                return raw.split("\t", 1)[1]
    return ""


def load_records(path: str | Path) -> list[ImageRecord] | list[CropRecord]:
    """Read a dataset by what it looks like: *.jsonl, a *.tsv/*.txt crop list or PaddleOCR det label file,
    a folder with labels.jsonl, or an ICDAR folder (images with gt_*.txt beside them, or in a `gt/` subfolder)."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".jsonl":
            return read_labels_jsonl(path)
        if path.suffix in (".tsv", ".txt"):
            return read_paddle_det(path) if _is_paddle_det(_first_payload(path)) else read_crop_list(path)
        raise ValueError(f"{path}: unknown label file type (want .jsonl or .tsv)")
    if (path / "labels.jsonl").is_file():
        return read_labels_jsonl(path / "labels.jsonl")
    for gt in (path / "gt", path):
        if gt.is_dir() and any(gt.glob("gt_*.txt")):
            images = path / "images" if (path / "images").is_dir() else path
            return read_icdar2015(images, gt)
    raise ValueError(f"{path}: no labels.jsonl, *.tsv or ICDAR gt_*.txt found")


def det_samples(records: Iterable[ImageRecord]) -> Iterator[DetSample]:
    """DetSamples of the records whose every line has a box (others cannot supervise a detector)."""
    for r in records:
        if r.has_boxes:
            yield r.det_sample()


def rec_samples(records: Iterable[ImageRecord | CropRecord]) -> Iterator[RecSample]:
    for r in records:
        if isinstance(r, CropRecord):
            yield r.rec_sample()
        else:
            yield from r.rec_samples()

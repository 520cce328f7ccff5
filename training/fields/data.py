"""Receipt pages as word sequences with company/address labels, and OCR-like noisy copies of them.

The labels.jsonl fields are strings typed apart from the line transcripts (spacing and typos differ), so each
field is aligned to the contiguous word span of the page whose alphanumerics match it best (rapidfuzz ratio);
pages where a field finds no span above `MIN_RATIO` are left out rather than taught a wrong span.
Noise copies imitate what the service's detector and recognizer do to the same page: adjacent boxes of one row
merged, a line split in two, dropped lines, character confusions, jittered boxes; word labels travel with them.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rapidfuzz import fuzz

from service.profiles.base import LineBox, group_rows
from service.profiles.invoice_tagger import CLASSES

__all__ = ["Page", "align_field", "labelled_page", "load_pages", "noisy_copy"]

MIN_RATIO = 85.0
_CONFUSIONS = {"O": "0", "0": "O", "I": "1", "1": "I", "S": "5", "5": "S", "B": "8", "8": "B", "E": "F", "G": "6",
               "D": "O", "L": "I", "Z": "2", "A": "4", ".": ",", ",": ".", "U": "V", "N": "M", "H": "N"}


@dataclass(frozen=True)
class Page:
    """Lines in reading order, each line's word labels (indices into CLASSES), and the labelled field strings."""

    name: str
    boxes: list[LineBox]
    labels: list[list[int]]
    fields: dict[str, str]


def _bounds(box: object) -> tuple[float, float, float, float] | None:
    if not box:
        return None
    pts = [box[:2], box[2:]] if len(box) == 4 and not isinstance(box[0], (list, tuple)) else box
    xs, ys = [float(p[0]) for p in pts], [float(p[1]) for p in pts]
    return min(xs), min(ys), max(xs), max(ys)


def reading_order(boxes: Sequence[LineBox]) -> list[LineBox]:
    """The order `service.profiles.base.line_boxes` gives: rows top to bottom, left to right within a row."""
    return [b for row in group_rows(boxes) for b in row]


def _key(s: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", s.upper())


def align_field(words: Sequence[str], value: str, max_extra: int = 3) -> tuple[int, int] | None:
    """The word span [i, j) whose alphanumerics best match `value`; None below MIN_RATIO."""
    target = _key(value)
    n = len(value.split())
    if not target or not words:
        return None
    keys = [_key(w) for w in words]
    best, span = 0.0, None
    for i in range(len(words)):
        if not keys[i] or keys[i][0] != target[0] and fuzz.ratio(keys[i], target[:len(keys[i])]) < 50:
            continue
        joined = ""
        for j in range(i, min(len(words), i + n + max_extra)):
            joined += keys[j]
            if len(joined) > 1.5 * len(target) + 4:
                break
            score = fuzz.ratio(joined, target)
            if score > best:
                best, span = score, (i, j + 1)
    return span if best >= MIN_RATIO else None


def labelled_page(name: str, boxes: Sequence[LineBox], fields: dict[str, str]) -> Page | None:
    """Word labels for one page from its field strings; None when company or address cannot be aligned."""
    ordered = reading_order(boxes)
    words = [w for b in ordered for w in b.text.split()]
    labels = [0] * len(words)
    for k, cls in enumerate(CLASSES[1:], start=1):
        value = (fields.get(cls) or "").strip()
        span = align_field(words, value) if value else None
        if span is None:
            return None
        for i in range(*span):
            if labels[i] == 0:
                labels[i] = k
    per_line, at = [], 0
    for b in ordered:
        n = len(b.text.split())
        per_line.append(labels[at:at + n])
        at += n
    return Page(name, ordered, per_line, {k: str(v) for k, v in fields.items()})


def load_pages(folder: str | Path) -> tuple[list[Page], int]:
    """Aligned pages of a labels.jsonl folder and how many records were left out (no alignment)."""
    pages, skipped = [], 0
    with open(Path(folder) / "labels.jsonl", encoding="utf-8") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            r = json.loads(raw)
            boxes = []
            for i, ln in enumerate(r.get("lines", [])):
                bounds = _bounds(ln.get("box"))
                text = str(ln.get("text", "")).strip()
                if bounds is not None and text:
                    boxes.append(LineBox(text, 1.0, *bounds, i))
            page = labelled_page(r["image"], boxes, dict(r.get("fields") or {}))
            if page is None:
                skipped += 1
            else:
                pages.append(page)
    return pages, skipped


def _noisy_text(words: list[str], rng: random.Random, p_char: float) -> list[str]:
    out = []
    for w in words:
        chars = []
        for c in w:
            u = rng.random()
            if u < p_char:
                chars.append(_CONFUSIONS.get(c, c))
            elif u < 1.3 * p_char:
                continue  # a character the recognizer missed
            else:
                chars.append(c)
        out.append("".join(chars) or w)
    return out


def noisy_copy(page: Page, rng: random.Random, p_merge: float = 0.15, p_split: float = 0.1,
               p_drop: float = 0.03, p_char: float = 0.03, jitter: float = 0.15) -> Page:
    """The page as an imperfect OCR might return it; each word keeps its label."""
    items = [(b, list(b.text.split()), list(lab)) for b, lab in zip(page.boxes, page.labels)]
    out: list[tuple[LineBox, list[str], list[int]]] = []
    for b, words, labels in items:
        if not words or rng.random() < p_drop:
            continue
        if out and rng.random() < p_merge and abs(out[-1][0].cy - b.cy) < 0.5 * min(out[-1][0].height, b.height):
            pb, pw, pl = out.pop()  # the detector joined two boxes of one row
            b = LineBox("", 1.0, min(pb.x0, b.x0), min(pb.y0, b.y0), max(pb.x1, b.x1), max(pb.y1, b.y1), pb.index)
            words, labels = pw + words, pl + labels
        if len(words) > 1 and rng.random() < p_split:
            cut = rng.randint(1, len(words) - 1)
            frac = len(" ".join(words[:cut])) / max(len(" ".join(words)), 1)
            xm = b.x0 + frac * b.width
            out.append((replace(b, x1=xm - 0.2 * b.height), words[:cut], labels[:cut]))
            b, words, labels = replace(b, x0=xm + 0.2 * b.height), words[cut:], labels[cut:]
        out.append((b, words, labels))
    boxes, per_line = [], []
    for i, (b, words, labels) in enumerate(out):
        words = _noisy_text(words, rng, p_char)
        x0, x1, y0, y1 = (v + rng.gauss(0.0, jitter * b.height) for v in (b.x0, b.x1, b.y0, b.y1))
        boxes.append(LineBox(" ".join(words), 1.0, min(x0, x1 - 1), min(y0, y1 - 1), max(x1, x0 + 1),
                             max(y1, y0 + 1), i))
        per_line.append(labels)
    # Re-sort as the service would (jitter can swap the order of boxes in a row); labels follow their box.
    order = {id(b): k for k, b in enumerate(boxes)}
    ordered = reading_order(boxes)
    return Page(page.name, ordered, [per_line[order[id(b)]] for b in ordered], page.fields)

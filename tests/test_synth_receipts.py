"""Synthetic receipts: text styles, determinism, page geometry."""

from __future__ import annotations

import re

import numpy as np

from training.data.synth.common import font_files, load_font, sample_seed
from training.data.synth.receipts import (
    date_string,
    document_page,
    invoice_page,
    mixed_case,
    random_line_text,
    receipt_line,
    receipt_page,
    wrap_text,
)


def test_line_texts_cover_receipt_kinds():
    rng = np.random.default_rng(1)
    texts = [random_line_text(rng) for _ in range(600)]
    joined = "\n".join(texts)
    assert re.search(r"\bTOTAL\b.*\d+\.\d\d", joined)
    assert re.search(r"SDN\.? ?BHD", joined)
    assert re.search(r"\d+ X ", joined)  # "2 X COFFEE 4.50"
    assert re.search(r"(GST|SST)", joined)
    assert re.search(r"\d{1,3},\d{3}\.\d\d", joined)  # thousands separators
    assert sum(t == t.upper() for t in texts) == len(texts)  # generated upper case; mixed case only when rendered


def test_date_formats_vary():
    rng = np.random.default_rng(2)
    dates = {date_string(rng) for _ in range(200)}
    shapes = {re.sub(r"[0-9]", "9", re.sub(r"[A-Z]{3}", "MON", d)) for d in dates}
    assert len(shapes) >= 8


def test_mixed_case_keeps_codes():
    assert mixed_case("GOLDEN STAR SDN BHD 12.30 PM") == "Golden Star SDN BHD 12.30 PM"
    assert mixed_case("BATTERY AA 4S") == "Battery AA 4S"


def test_wrap_text_fits_width():
    font = load_font(font_files("mono")[0], 16)
    parts = wrap_text(font, "LOT 12, JALAN MERANTI 3/4, TAMAN INDAH, 47100 PUCHONG", 200)
    assert len(parts) > 1 and all(font.getlength(p) <= 200 for p in parts)
    assert " ".join(parts) == "LOT 12, JALAN MERANTI 3/4, TAMAN INDAH, 47100 PUCHONG"


def test_line_is_deterministic_and_varied():
    a, b = receipt_line(sample_seed(0, 3)), receipt_line(sample_seed(0, 3))
    assert a.text == b.text and a.image.tobytes() == b.image.tobytes()
    lines = [receipt_line(sample_seed(0, i)) for i in range(15)]
    assert len({s.text for s in lines}) >= 14
    assert all(16 <= s.image.height <= 48 and s.image.mode == "RGB" for s in lines)


def test_page_quads_are_inside_and_do_not_overlap():
    d = receipt_page(sample_seed(4, 0))
    d2 = receipt_page(sample_seed(4, 0))
    assert d.image.tobytes() == d2.image.tobytes() and [ln.text for ln in d.lines] == [ln.text for ln in d2.lines]
    w, h = d.image.size
    assert len(d.lines) >= 10
    boxes = []
    for ln in d.lines:
        q = np.asarray(ln.polygon)
        assert ln.text.strip() and q[:, 0].min() >= 0 and q[:, 1].min() >= 0 and q[:, 0].max() <= w and q[:, 1].max() <= h
        boxes.append((*q.min(axis=0), *q.max(axis=0)))
    # Segments of the same page never overlap much (the layout keeps columns apart).
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
            assert ix * iy < 0.35 * small
    assert d.fields["total"] and any(d.fields["total"] in ln.text for ln in d.lines)


def test_invoice_page_has_table_and_total():
    d = invoice_page(sample_seed(0, 1))
    texts = [ln.text for ln in d.lines]
    w, h = d.image.size
    assert d.fields["layout"] == "invoice" and d.fields["total"] in texts and d.fields["company"] in texts
    assert any(t.upper() in ("QTY",) for t in texts) and len(texts) > 20
    for ln in d.lines:
        q = np.asarray(ln.polygon)
        assert q[:, 0].min() >= 0 and q[:, 1].min() >= 0 and q[:, 0].max() <= w and q[:, 1].max() <= h
    layouts = {document_page(sample_seed(3, i)).fields["layout"] for i in range(8)}
    assert layouts == {"receipt", "invoice"}

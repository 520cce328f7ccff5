"""service.documents without the models: page plans (text layer, OCR needs, render size), rendering, limits."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from api_support import encode, square_doc
from pdf_samples import (
    broken_xref_pdf,
    digital_pdf,
    encrypted_pdf,
    heavy_page_pdf,
    hello_pdf,
    invoice_pages,
    javascript_and_attachment_pdf,
    mixed_pdf,
    page_texts,
    scanned_pdf,
    unmapped_font_pdf,
)
from PIL import Image

from service.documents import DocumentError, PdfPages, RenderPolicy, is_pdf, tiff_page_count

POLICY = RenderPolicy(long_side_px=2000, max_pixels=40_000_000)
JPEG = encode(square_doc(), "JPEG", quality=95)


def plan(data: bytes, index: int = 0, policy: RenderPolicy = POLICY, use_text_layer: bool = True, max_pages: int = 32):
    doc = PdfPages(data, "files[0]", max_pages)
    try:
        return doc.plan(index, policy, use_text_layer)
    finally:
        doc.close()


def error(data: bytes, **kwargs) -> DocumentError:
    with pytest.raises(DocumentError) as info:
        plan(data, **kwargs)
    return info.value


def test_text_layer_lines_are_exact_split_at_columns_and_placed_on_the_page():
    pages = invoice_pages(2, items_per_page=10)
    data = digital_pdf(pages)
    first = plan(data)
    assert not first.ocr and first.regions == []
    assert sorted(line.text for line in first.lines) == sorted(page_texts(pages[0]))
    assert all(line.source == "pdf_text" and line.confidence == 1.0 for line in first.lines)
    # A4 at the detector's 2000 px long side (171 dpi), not 300 dpi's 2480x3508
    assert (first.width, first.height) == (1413, 2000)
    by_text = {line.text: line.polygon for line in first.lines}
    name, amount = by_text["NORTHWIND TRADING LTD"], by_text["3.25"]
    assert name[0][0] == pytest.approx(50 * 2000 / 842, abs=3) and name[0][1] == pytest.approx(40 * 2000 / 842, abs=6)
    assert amount[0][0] == pytest.approx(470 * 2000 / 842, abs=3)  # the amount column is its own line
    assert all(0 <= x <= first.width and 0 <= y <= first.height for poly in by_text.values() for x, y in poly)
    ys = [poly[0][1] for poly in by_text.values()]
    assert min(ys) < 120 < max(ys)  # top of the page is at the top (PDF y runs upwards)


def test_rotated_page_maps_text_into_the_rotated_image():
    data = bytearray(hello_pdf())
    data = bytes(data).replace(b"/MediaBox [0 0 612 792]", b"/MediaBox [0 0 612 792] /Rotate 90")
    p = plan(data)
    assert p.width > p.height  # landscape once rotated
    (line,) = p.lines
    x0, y0 = line.polygon[0]
    x1, y1 = line.polygon[2]
    assert line.text == "Hello World" and y1 - y0 > x1 - x0  # horizontal text turned vertical
    assert 0 <= x0 < x1 <= p.width and 0 <= y0 < y1 <= p.height


def test_scans_render_at_their_own_resolution_and_the_pixels_match_the_jpeg():
    p = plan(scanned_pdf([JPEG], dpi=200))
    assert p.ocr and p.regions is None and not p.lines
    assert (p.width, p.height) == (320, 320)  # not blown up to 2000 px
    doc = PdfPages(scanned_pdf([JPEG], dpi=200), "f", 4)
    try:
        rendered = np.asarray(doc.render(p), np.int16)
    finally:
        doc.close()
    decoded = np.asarray(Image.open(io.BytesIO(JPEG)).convert("RGB"), np.int16)
    assert rendered.shape == decoded.shape and np.abs(rendered - decoded).mean() < 2.0


def test_a_text_free_image_on_a_text_page_is_an_ocr_region():
    p = plan(mixed_pdf([(50, 50, 12, "Statement header")], JPEG, (100, 300, 300, 300)))
    assert [line.text for line in p.lines] == ["Statement header"]
    assert p.ocr and p.regions is not None and len(p.regions) == 1
    x0, y0, x1, y1 = p.regions[0]
    scale = 2000 / 842
    assert (x0, y0, x1, y1) == pytest.approx((100 * scale, 300 * scale, 400 * scale, 600 * scale), abs=1)
    assert p.keeps([(x0 + 5, y0 + 5)] * 4) and not p.keeps([(10.0, 10.0)] * 4)
    forced = plan(mixed_pdf([(50, 50, 12, "Statement header")], JPEG, (100, 300, 300, 300)), use_text_layer=False)
    assert forced.ocr and forced.regions is None and not forced.lines


def test_a_text_layer_without_unicode_is_read_like_a_scan():
    unreadable = plan(unmapped_font_pdf())
    assert unreadable.ocr and unreadable.regions is None and not unreadable.lines
    codes = "".join(f"{ord(c):04X}" for c in "TOTAL 42.50 EUR") + "E001"  # one unmapped glyph in 15
    mostly_readable = plan(unmapped_font_pdf(codes))
    # (the substitute font advances 1 em per glyph, spaces included: each word is its own segment)
    assert not mostly_readable.ocr and " ".join(line.text for line in mostly_readable.lines) == "TOTAL 42.50 EUR\ufffd"


def test_render_size_never_exceeds_max_pixels_and_unreadable_pages_are_refused():
    small = RenderPolicy(2000, 300_000)
    p = plan(hello_pdf(content=b""), policy=small)
    assert p.width * p.height <= 300_000 and p.ocr
    err = error(hello_pdf(content=b""), policy=RenderPolicy(2000, 100_000))  # A4 in 0.1 Mpx: 32 dpi
    assert (err.status, err.code) == (413, "page_too_large")
    err = error(hello_pdf(media_box="0 0 14400 14400", content=b""))  # 200 x 200 inches to OCR
    assert (err.status, err.code) == (413, "page_too_large") and "200.0 x 200.0 in" in err.message
    huge_text = plan(hello_pdf(media_box="0 0 14400 14400"))  # its text layer needs no rendering
    assert [line.text for line in huge_text.lines] == ["Hello World"] and (huge_text.width, huge_text.height) == (2000, 2000)


def test_bad_documents_raise_4xx_document_errors():
    assert (error(hello_pdf(count=100_000)).status, error(hello_pdf(count=100_000)).code) == (413, "too_many_pages")
    assert error(digital_pdf(invoice_pages(3, 2)), max_pages=2).code == "too_many_pages"
    assert (error(encrypted_pdf("secret")).status, error(encrypted_pdf("secret")).code) == (422, "pdf_encrypted")
    assert (error(b"%PDF-1.4\ngarbage").status, error(b"%PDF-1.4\ngarbage").code) == (400, "invalid_pdf")
    cut = hello_pdf()[:200]
    assert error(cut).code == "invalid_pdf"
    with pytest.raises(DocumentError) as info:  # the page tree names a page that is not there
        doc = PdfPages(hello_pdf(count=3), "f", 8)
        try:
            doc.plan(2, POLICY)
        finally:
            doc.close()
    assert (info.value.status, info.value.code) == (400, "invalid_pdf")


def test_repaired_and_hostile_but_readable_pdfs_give_their_text_only():
    assert [line.text for line in plan(broken_xref_pdf()).lines] == ["Hello World"]
    assert [line.text for line in plan(encrypted_pdf("")).lines] == ["Hello World"]  # owner password only
    lines = plan(javascript_and_attachment_pdf()).lines
    assert [line.text for line in lines] == ["Hello World"]  # the embedded file is never read, the script never runs


def test_rendering_stops_at_the_deadline():
    data = heavy_page_pdf()
    doc = PdfPages(data, "f", 4)
    try:
        p = doc.plan(0, POLICY, use_text_layer=False)
        with pytest.raises(TimeoutError):
            doc.render(p, deadline=time.monotonic() - 1)
        started = time.monotonic()
        full = doc.render(p)
        full_s = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            doc.render(p, deadline=time.monotonic() + full_s / 10)
        assert time.monotonic() - started < full_s  # abandoned part-way, not rendered to the end
        assert full.size == (p.width, p.height)
    finally:
        doc.close()


def test_pdf_sniffing_and_tiff_page_counts():
    assert is_pdf(b"%PDF-1.7 ...", "application/pdf") and is_pdf(b"%PDF-1.7 ...", None)
    assert is_pdf(b"\n\n%PDF-1.4", "application/octet-stream") and not is_pdf(b"%PDF-1.4", "image/png")
    assert not is_pdf(JPEG, None)
    pages = [square_doc((f"PAGE {i}",)) for i in range(5)]
    tiff = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert tiff_page_count(tiff, "f", 5) == 5 and tiff_page_count(JPEG, "f", 5) == 1
    assert tiff_page_count(encode(pages[0], "GIF", save_all=True, append_images=pages[1:]), "f", 5) == 1
    with pytest.raises(DocumentError) as info:
        tiff_page_count(tiff, "f", 4)
    assert (info.value.status, info.value.code) == (413, "too_many_pages")

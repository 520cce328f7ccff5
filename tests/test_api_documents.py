"""POST /v1/ocr with PDFs and multi-page TIFFs on the real models/base models: every page answered with its page
number, text layers returned as they are, scans read like the JPEG they hold, fields across pages, limits as 4xx."""
from __future__ import annotations

import threading

import pytest
from api_support import BASE_TEXTS, assert_error, encode, ready_client, square_doc
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
)

# 1 Mpx per page: an A4 page to OCR renders at ~100 dpi (fast enough for a test on a busy 2-core CPU)
LIMITS = dict(max_upload_bytes=2_000_000, max_files=3, max_pages=6, max_pixels=1_000_000)
JPEG = encode(square_doc(), "JPEG", quality=95)
# PDFium is not thread-safe: every sample is built here, before a client's PDF thread exists
INVOICE = invoice_pages(3, items_per_page=12)
INVOICE_PDF = digital_pdf(INVOICE)
BIG_TEXT_PDF = digital_pdf([[(40, 60, 36, BASE_TEXTS[0]), (40, 140, 36, BASE_TEXTS[1])]])
SCAN_PDF = scanned_pdf([JPEG], dpi=200)
MIXED_PDF = mixed_pdf([(40, 40, 14, "Expense report March")], JPEG, (60, 200, 400, 400))
BAD_PDFS = {
    "declares_100000_pages": (hello_pdf(count=100_000), 413, "too_many_pages"),
    "password": (encrypted_pdf("secret"), 422, "pdf_encrypted"),
    "not_a_pdf_body": (b"%PDF-1.4\n" + b"garbage " * 100, 400, "invalid_pdf"),
    "truncated": (hello_pdf()[:250], 400, "invalid_pdf"),
    "page_200_by_200_inches": (hello_pdf(media_box="0 0 14400 14400", content=b""), 413, "page_too_large"),
    "missing_page": (hello_pdf(count=2), 400, "invalid_pdf"),
}
READABLE_PDFS = {
    "broken_xref": broken_xref_pdf(),
    "javascript_and_embedded_file": javascript_and_attachment_pdf(),
    "owner_password_only": encrypted_pdf(""),
    "page_200_by_200_inches_with_text": hello_pdf(media_box="0 0 14400 14400"),
}
HEAVY_PDF = heavy_page_pdf(400_000)


@pytest.fixture(scope="module")
def client(base_model_dir):
    with ready_client(model_dir=base_model_dir, **LIMITS) as c:
        yield c


def pdf(name: str, data: bytes) -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (name, data, "application/pdf"))


def texts(image: dict) -> list[str]:
    return [line["text"] for line in image["lines"]]


def test_a_digital_invoice_answers_every_page_from_its_text_layer_with_fields_across_pages(client):
    r = client.post("/v1/ocr", params={"profile": "invoice"}, files=[pdf("inv.pdf", INVOICE_PDF)])
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(img["file_index"], img["page"]) for img in body["images"]] == [(0, 1), (0, 2), (0, 3)]
    for img, items in zip(body["images"], INVOICE):
        assert sorted(texts(img)) == sorted(page_texts(items))  # exact, every line
        assert all(line["source"] == "pdf_text" and line["confidence"] == 1.0 for line in img["lines"])
        assert img["width"] * img["height"] <= LIMITS["max_pixels"] and img["height"] > img["width"]
        assert img["timings_ms"]["det"] == 0 and img["timings_ms"]["rec"] == 0
    total = f"{sum(3.25 * k for k in range(1, 37)):.2f}"
    first, last = body["images"][0]["fields"], body["images"][2]["fields"]
    assert first["company"] == "NORTHWIND TRADING LTD" and first["total"] != total  # page 1: carried forward
    assert last["company"] != "NORTHWIND TRADING LTD"
    (document,) = body["documents"]
    assert (document["file_index"], document["filename"], document["pages"]) == (0, "inv.pdf", 3)
    fields = document["fields"]
    assert (fields["company"], fields["date"], fields["total"]) == ("NORTHWIND TRADING LTD", "2024-03-12", total)


def test_force_ocr_reads_a_digital_page_with_the_models(client):
    plain = client.post("/v1/ocr", files=[pdf("a.pdf", BIG_TEXT_PDF)])
    forced = client.post("/v1/ocr", data={"force_ocr": "true"}, files=[pdf("a.pdf", BIG_TEXT_PDF)])
    assert plain.status_code == 200 and forced.status_code == 200, (plain.text, forced.text)
    (text_page,), (ocr_page,) = plain.json()["images"], forced.json()["images"]
    assert texts(text_page) == texts(ocr_page) == list(BASE_TEXTS)
    assert {line["source"] for line in text_page["lines"]} == {"pdf_text"}
    assert {line["source"] for line in ocr_page["lines"]} == {"ocr"} and ocr_page["timings_ms"]["det"] > 0
    assert ocr_page["width"] * ocr_page["height"] <= LIMITS["max_pixels"]
    for a, b in zip(text_page["lines"], ocr_page["lines"]):  # both sets of boxes sit on the same text
        assert abs(a["polygon"][0][1] - b["polygon"][0][1]) < 12 and abs(a["polygon"][2][1] - b["polygon"][2][1]) < 12


def test_a_scanned_page_is_read_like_the_jpeg_it_holds(client):
    r = client.post("/v1/ocr", files=[pdf("scan.pdf", SCAN_PDF), ("files", ("scan.jpg", JPEG, "image/jpeg"))])
    assert r.status_code == 200, r.text
    from_pdf, from_jpeg = r.json()["images"]
    assert (from_pdf["width"], from_pdf["height"]) == (from_jpeg["width"], from_jpeg["height"]) == (320, 320)
    assert texts(from_pdf) == texts(from_jpeg) == list(BASE_TEXTS)
    for a, b in zip(from_pdf["lines"], from_jpeg["lines"]):
        assert a["source"] == "ocr" and max(abs(p - q) for pa, pb in zip(a["polygon"], b["polygon"])
                                            for p, q in zip(pa, pb)) <= 3
    assert [d["pages"] for d in r.json()["documents"]] == [1, 1]


def test_a_text_page_with_a_scanned_image_gets_both(client):
    r = client.post("/v1/ocr", files=[pdf("mixed.pdf", MIXED_PDF)])
    assert r.status_code == 200, r.text
    (page,) = r.json()["images"]
    by_source = {s: [line["text"] for line in page["lines"] if line["source"] == s] for s in ("pdf_text", "ocr")}
    assert by_source == {"pdf_text": ["Expense report March"], "ocr": list(BASE_TEXTS)}


def test_every_page_of_a_multipage_tiff(client):
    second = square_doc(("PAGE TWO 77",))
    tiff = encode(square_doc(), "TIFF", save_all=True, append_images=[second.resize((400, 400))])
    r = client.post("/v1/ocr", files=[("files", ("a.png", encode(square_doc(("ONE IMAGE",))), "image/png")),
                                      ("files", ("pages.tif", tiff, "image/tiff"))])
    assert r.status_code == 200, r.text
    body = r.json()
    pages = [(img["filename"], img["file_index"], img["page"], img["width"]) for img in body["images"]]
    assert pages == [("a.png", 0, 1, 320), ("pages.tif", 1, 1, 320), ("pages.tif", 1, 2, 400)]
    assert [texts(img) for img in body["images"]] == [["ONE IMAGE"], list(BASE_TEXTS), ["PAGE TWO 77"]]
    assert [(d["file_index"], d["pages"]) for d in body["documents"]] == [(0, 1), (1, 2)]


@pytest.mark.parametrize("name", list(BAD_PDFS))
def test_bad_pdfs_get_clear_4xx(client, name):
    data, status, code = BAD_PDFS[name]
    error = assert_error(client.post("/v1/ocr", files=[pdf(f"{name}.pdf", data)]), status, code)
    assert "files[0]" in error["message"]


@pytest.mark.parametrize("name", list(READABLE_PDFS))
def test_repaired_or_hostile_pdfs_answer_their_page_text_only(client, name):
    r = client.post("/v1/ocr", files=[pdf(f"{name}.pdf", READABLE_PDFS[name])])
    assert r.status_code == 200, r.text
    assert [texts(img) for img in r.json()["images"]] == [["Hello World"]]
    assert "EMBEDDED" not in r.text


def test_the_page_limit_counts_pages_of_every_file(client):
    tiff = encode(square_doc(), "TIFF", save_all=True, append_images=[square_doc()] * 3)  # 4 pages
    error = assert_error(client.post("/v1/ocr", files=[pdf("a.pdf", INVOICE_PDF), ("files", ("t.tif", tiff, "image/tiff"))]),
                         413, "too_many_pages")  # 3 + 4 pages, over 6
    assert error["message"].startswith("files[1] ('t.tif')")
    error = assert_error(client.post("/v1/ocr", files=[pdf(f"{i}.pdf", INVOICE_PDF) for i in range(3)]),
                         413, "too_many_pages")  # 3 + 3 + 3
    assert error["message"].startswith("files[2] ('2.pdf')")


def test_admission_counts_the_pages_that_need_the_models(client, monkeypatch):
    engine = client.app.state.engine
    admitted: list[int] = []
    original = engine.admitted

    def spy(runner, det_mpx, budget):
        admitted.append(len(det_mpx))  # one price (detector megapixels) per page the models read
        assert all(mpx > 0 for mpx in det_mpx)
        return original(runner, det_mpx, budget)

    monkeypatch.setattr(engine, "admitted", spy)
    tiff = encode(square_doc(), "TIFF", save_all=True, append_images=[square_doc()])
    for files in ([("files", ("t.tif", tiff, "image/tiff"))], [pdf("inv.pdf", INVOICE_PDF)],
                  [pdf("mixed.pdf", MIXED_PDF), pdf("inv.pdf", INVOICE_PDF)]):
        assert client.post("/v1/ocr", files=files).status_code == 200
    assert admitted == [2, 1]  # the 3-page text-layer PDF costs no model time: it is not counted (nor admitted)


def test_a_busy_pdf_thread_does_not_hold_up_images(client):
    release = threading.Event()
    pages = client.app.state.engine.pages
    busy = pages._pdf.submit(release.wait, 120)  # the PDF thread is stuck on some long page
    try:
        r = client.post("/v1/ocr", files=[("files", ("a.jpg", JPEG, "image/jpeg"))])
        assert r.status_code == 200 and texts(r.json()["images"][0]) == list(BASE_TEXTS)
        assert not busy.done()
    finally:
        release.set()
    assert busy.result(timeout=30)


def test_a_pdf_past_the_request_deadline_is_a_504(client, monkeypatch):
    monkeypatch.setattr(client.app.state.engine.settings, "request_timeout_s", 0.3)
    r = client.post("/v1/ocr", data={"force_ocr": "true"}, files=[pdf("heavy.pdf", HEAVY_PDF)])
    assert_error(r, 504, "timeout")
    monkeypatch.undo()
    after = client.post("/v1/ocr", files=[pdf("inv.pdf", INVOICE_PDF)])  # the PDF thread is free again
    assert after.status_code == 200, after.text


def test_openapi_shows_pages_sources_documents_and_force_ocr(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"file_index", "page"} <= set(schema["ImageResult"]["properties"])
    assert schema["TextLine"]["properties"]["source"]["enum"] == ["ocr", "pdf_text"]
    assert "documents" in schema["OcrResponse"]["properties"] and "DocumentResult" in schema
    assert schema["OcrUpload"]["properties"]["force_ocr"]["type"] == "boolean"

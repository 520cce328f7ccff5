"""POST /v1/ocr on the real models/base models: results, options, request IDs, and every bad input as a 4xx."""
from __future__ import annotations

import logging

import pytest
from PIL import Image

from api_support import BASE_TEXTS, assert_error, encode, ready_client, square_doc
from test_uploads import png_header_only

LIMITS = dict(max_upload_bytes=300_000, max_files=3, max_pixels=2_000_000)


@pytest.fixture(scope="module")
def client(base_model_dir):
    with ready_client(model_dir=base_model_dir, **LIMITS) as c:
        yield c


def test_ocr_reads_rendered_text_with_request_id_and_no_text_in_logs(client, doc_png):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("ocrnet")
    logger.addHandler(handler)
    try:
        r = client.post("/v1/ocr", headers={"X-Request-ID": "req-42.a"},
                        files=[("files", ("doc.png", doc_png, "image/png"))])
    finally:
        logger.removeHandler(handler)
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["x-request-id"] == "req-42.a" and body["request_id"] == "req-42.a"
    assert body["model"]["name"] == "base" and body["execution_provider"] == "CPUExecutionProvider"
    assert body["profile"] == "generic" and body["images"][0]["fields"] == {}
    (image,) = body["images"]
    assert (image["filename"], image["width"], image["height"]) == ("doc.png", 320, 320)
    assert [line["text"] for line in image["lines"]] == list(BASE_TEXTS)
    for line in image["lines"]:
        assert 0.9 < line["confidence"] <= 1.0
        assert len(line["polygon"]) == 4
        assert all(0 <= x <= 320 and 0 <= y <= 320 for x, y in line["polygon"])
    timings = image["timings_ms"]
    assert timings["total"] >= timings["det"] > 0 and timings["rec"] > 0
    messages = [rec.getMessage() for rec in records]
    assert any("/v1/ocr" in m for m in messages)
    assert all(text not in m for m in messages for text in (*BASE_TEXTS, "INVOICE", "42.50"))


def test_several_files_profile_and_options_form_over_query(client, doc_png):
    files = [("files", ("a.png", doc_png, "image/png")), ("files", ("b.jpg", encode(square_doc(), "JPEG"), "image/jpeg"))]
    r = client.post("/v1/ocr", params={"profile": "plate", "min_confidence": "0.5"},
                    data={"profile": "invoice", "return_polygons": "false", "min_confidence": "0.9"}, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["profile"] == "invoice"
    assert [img["filename"] for img in body["images"]] == ["a.png", "b.jpg"]
    for img in body["images"]:
        assert img["lines"] and all(line["polygon"] is None and line["confidence"] >= 0.9 for line in img["lines"])
        assert img["fields"]["total"] == "42.50" and img["fields"]["currency"] == "EUR"


def test_bad_request_id_header_is_replaced_not_echoed(client):
    r = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces" and len(r.headers["x-request-id"]) == 32


def _truncated_png() -> bytes:
    data = encode(square_doc())
    return data[: len(data) // 2]


BAD_UPLOADS = [
    ("empty", [("files", ("e.png", b"", "image/png"))], {}, 400, "empty_file"),
    ("text", [("files", ("t.png", b"hello, I am text", "image/png"))], {}, 400, "invalid_image"),
    ("truncated", [("files", ("t.png", _truncated_png(), "image/png"))], {}, 400, "invalid_image"),
    ("ico", [("files", ("i.ico", encode(Image.new("RGB", (32, 32)), "ICO"), "image/x-icon"))], {}, 415,
     "unsupported_image_format"),
    ("pdf without a body", [("files", ("d.pdf", b"%PDF-1.4", "application/pdf"))], {}, 400, "invalid_pdf"),
    ("other type", [("files", ("d.txt", b"hello", "text/plain"))], {}, 415, "unsupported_media_type"),
    ("too big", [("files", ("b.png", b"\0" * 400_000, "image/png"))], {}, 413, "file_too_large"),
    ("bomb", [("files", ("bomb.png", png_header_only(30_000, 30_000), "image/png"))], {}, 413, "image_too_large"),
    ("over max_pixels", [("files", ("w.png", encode(Image.new("L", (2000, 1001))), "image/png"))], {}, 413,
     "image_too_large"),
    ("too many", [("files", (f"{i}.png", b"x", "image/png")) for i in range(4)], {}, 413, "too_many_files"),
    ("unknown profile", [("files", ("a.png", b"x", "image/png"))], {"profile": "passport"}, 422, "unknown_profile"),
    ("bad option", [("files", ("a.png", b"x", "image/png"))], {"min_confidence": "high"}, 422, "validation_error"),
    ("no files", [], {"profile": "generic"}, 422, "no_files"),
    ("wrong field", [("file", ("a.png", b"x", "image/png"))], {}, 422, "unexpected_field"),
]


@pytest.mark.parametrize("files,data,status,code", [case[1:] for case in BAD_UPLOADS], ids=[c[0] for c in BAD_UPLOADS])
def test_bad_uploads_get_clear_4xx(client, files, data, status, code):
    if not files:  # httpx only sends multipart when a file is present: build the body by hand
        body = b'--b\r\nContent-Disposition: form-data; name="profile"\r\n\r\ngeneric\r\n--b--\r\n'
        r = client.post("/v1/ocr", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    else:
        r = client.post("/v1/ocr", files=files, data=data)
    error = assert_error(r, status, code)
    if code == "file_too_large":
        assert "300000" in error["message"]


def test_non_multipart_and_query_validation_and_unknown_route(client):
    assert_error(client.post("/v1/ocr", json={"files": []}), 415, "unsupported_media_type")
    err = assert_error(client.post("/v1/ocr", params={"min_confidence": 2}, files=[("files", ("a.png", b"x"))]),
                       422, "validation_error")
    assert err["details"][0]["loc"] == ["query", "min_confidence"]
    # form fields win over the query string (checked before any model runs)
    r = client.post("/v1/ocr", params={"profile": "generic"}, data={"profile": "passport"}, files=[("files", ("a.png", b"x"))])
    assert "passport" in assert_error(r, 422, "unknown_profile")["message"]
    assert_error(client.get("/v1/nope"), 404, "not_found")
    assert_error(client.get("/v1/ocr"), 405, "method_not_allowed")

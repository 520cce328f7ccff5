"""The OpenAPI schema generates a working client: a real uvicorn server on a free port serves models/base, the
schema it serves goes through ``openapi-python-client generate``, and the generated package OCRs a rendered image."""
from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys

import httpx
import pytest

from api_support import BASE_TEXTS, encode, square_doc, uvicorn_server
from pdf_samples import digital_pdf

# two pages of text layer (built before the server's PDF thread could exist: PDFium is not thread-safe)
TWO_PAGE_PDF = digital_pdf([[(40, 60, 24, BASE_TEXTS[0])], [(40, 60, 24, BASE_TEXTS[1])]])

KEY = "client-test-key"


@pytest.fixture(scope="module")
def server(base_model_dir, repo_root, tmp_path_factory):
    env = {**os.environ, "OCRNET_MODEL_DIR": str(base_model_dir), "OCRNET_PROVIDERS": "cpu",
           "OCRNET_INTRA_THREADS": "2", "OCRNET_API_KEY": KEY,
           "OCRNET_MODELS_ROOT": str(tmp_path_factory.mktemp("no-profiles"))}  # base serves every profile
    log_path = tmp_path_factory.mktemp("server") / "uvicorn.log"
    with uvicorn_server(["service.api.app:create_app", "--factory"], env, repo_root, "/readyz", 120, log_path) as base:
        yield base


@pytest.fixture(scope="module")
def generated(server, tmp_path_factory):
    out = tmp_path_factory.mktemp("client")
    config = out / "config.yml"
    config.write_text("package_name_override: ocrnet_client\nproject_name_override: ocrnet-client\npost_hooks: []\n")
    result = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--url", f"{server}/openapi.json",
         "--meta", "none", "--config", str(config), "--output-path", str(out / "ocrnet_client"),
         "--fail-on-warning"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("ocrnet_client")
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == "ocrnet_client" or m.startswith("ocrnet_client.")]:
            del sys.modules[name]


def test_generated_client_ocrs_an_image(server, generated):
    api_ocr = importlib.import_module("ocrnet_client.api.ocr.ocr")
    api_models = importlib.import_module("ocrnet_client.api.models.list_models")
    models = importlib.import_module("ocrnet_client.models")
    types = importlib.import_module("ocrnet_client.types")

    client = generated.AuthenticatedClient(base_url=server, token=KEY, prefix="", auth_header_name="X-API-Key",
                                           timeout=httpx.Timeout(300))
    body = models.OcrUpload(
        files=[types.File(payload=io.BytesIO(encode(square_doc())), file_name="doc.png", mime_type="image/png")],
        profile=models.OcrUploadProfile.INVOICE,
    )
    response = api_ocr.sync_detailed(client=client, body=body)
    assert response.status_code == 200, response.content
    result = response.parsed
    assert isinstance(result, models.OcrResponse)
    assert result.profile == "invoice" and result.model.name == "base"
    assert [line.text for line in result.images[0].lines] == list(BASE_TEXTS)
    assert result.images[0].fields.additional_properties["total"] == "42.50"

    pdf_body = models.OcrUpload(
        files=[types.File(payload=io.BytesIO(TWO_PAGE_PDF), file_name="inv.pdf", mime_type="application/pdf")],
        profile=models.OcrUploadProfile.INVOICE, force_ocr=False,
    )
    pdf_result = api_ocr.sync(client=client, body=pdf_body)
    assert isinstance(pdf_result, models.OcrResponse)
    assert [(page.page, page.file_index) for page in pdf_result.images] == [(1, 0), (2, 0)]
    assert [[line.text for line in page.lines] for page in pdf_result.images] == [[BASE_TEXTS[0]], [BASE_TEXTS[1]]]
    assert pdf_result.images[0].lines[0].source == models.TextLineSource.PDF_TEXT
    (document,) = pdf_result.documents
    assert document.pages == 2 and document.fields.additional_properties["total"] == "42.50"

    listed = api_models.sync(client=client)
    assert isinstance(listed, models.ModelsResponse) and listed.models[0].name == "base"

    anonymous = generated.Client(base_url=server)
    denied = api_models.sync_detailed(client=anonymous)
    assert denied.status_code == 401
    assert isinstance(denied.parsed, models.ErrorResponse) and denied.parsed.error.code == "unauthorized"

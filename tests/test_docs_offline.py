"""/docs renders with no network: a headless Chromium (Debian `chromium`) loads the Swagger UI page from a live
server while every host name but the server's own fails to resolve, and the rendered DOM must hold each operation.

A control run against a plain FastAPI app (Swagger UI from the CDN) must render nothing under the same rules, so
the test can tell an offline page from a blank one. Skipped when Chromium is not installed (`make test` and
`.ci/run` install it on Debian as root).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import uvicorn_server

OPERATIONS = ("ocr", "list_models", "healthz", "readyz", "metrics")
CONTROL_APP = '''
from fastapi import FastAPI
app = FastAPI()

@app.get("/ping", operation_id="ping")
def ping() -> dict:
    return {}
'''


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def serve(args: list[str], cwd: Path, env: dict[str, str]) -> Iterator[str]:
    with uvicorn_server(args, env, cwd, "/openapi.json", 60) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> str:
    path = chromium()
    if not path:
        pytest.skip("chromium not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def ocrnet_server(repo_root: Path) -> Iterator[str]:
    # No lifespan: the docs need no models, and the test should not spend the CPU loading them.
    yield from serve(["service.api.app:create_app", "--factory", "--lifespan", "off"], repo_root, dict(os.environ))


@pytest.fixture(scope="module")
def control_server(tmp_path_factory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("control")
    (folder / "control_app.py").write_text(CONTROL_APP)
    yield from serve(["control_app:app"], folder, dict(os.environ))


def rendered_dom(browser: str, url: str, profile: Path) -> str:
    """The DOM after scripts ran, with every host but 127.0.0.1 unresolvable (no CDN, no internet)."""
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_docs_page_references_only_local_assets(ocrnet_server: str) -> None:
    html = httpx.get(f"{ocrnet_server}/docs").text
    assets = re.findall(r"""(?:src|href)=["']?([^"'\s>]+)""", html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    for asset in assets:
        assert httpx.get(f"{ocrnet_server}{asset}").status_code == 200, asset


def test_docs_render_every_operation_offline(browser: str, ocrnet_server: str, tmp_path: Path) -> None:
    dom = rendered_dom(browser, f"{ocrnet_server}/docs", tmp_path / "profile")
    for op in OPERATIONS:
        assert re.search(rf'id="operations-[\w-]+-{op}"', dom), f"operation {op} not rendered"
    assert "/v1/ocr" in dom


def test_redoc_renders_offline(browser: str, ocrnet_server: str, tmp_path: Path) -> None:
    dom = rendered_dom(browser, f"{ocrnet_server}/redoc", tmp_path / "profile")
    assert "operation/ocr" in dom or 'id="operation/ocr"' in dom, "ReDoc did not render the ocr operation"


def test_control_cdn_docs_stay_blank_offline(browser: str, control_server: str, tmp_path: Path) -> None:
    """FastAPI's default /docs (CDN assets) renders no operation under the same rules: the check above is real."""
    dom = rendered_dom(browser, f"{control_server}/docs", tmp_path / "profile")
    assert "swagger-ui" in dom and not re.search(r'id="operations-[\w-]+-ping"', dom)


def test_upload_description_names_every_decodable_format(ocrnet_server: str) -> None:
    from service.api.uploads import DECODABLE_FORMATS

    schema = httpx.get(f"{ocrnet_server}/openapi.json").json()
    text = json.dumps(schema["components"]["schemas"]).upper()
    described = re.search(r"ONE OR MORE IMAGES \(([^)]*)\)", text)
    assert described, "upload description"
    missing = {f for f in DECODABLE_FORMATS - {"MPO"} if f not in described.group(1)}  # MPO: a JPEG variant
    assert not missing, missing

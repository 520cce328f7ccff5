"""Security properties of the API, each proven in code and in behaviour.

- Optional API key: compared with ``hmac.compare_digest`` (never ``==``), 401 without / with a wrong key (prefix,
  extension, non-ASCII), probes stay open, and the key check runs before a single body byte is read.
- CORS off by default (no Access-Control-Allow-Origin, even on a preflight); on for the configured origins only.
- Upload size enforced while streaming: a chunked body with no Content-Length is cut off at the limit (server-side
  counter of the bytes the app pulled), a huge declared Content-Length is refused without reading.
- User input never reaches the filesystem: path-like filenames are echoed as text but never opened (audit hook).
"""
from __future__ import annotations

import ast
import inspect
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import service.api.security as security_module
from api_support import assert_error, encode, ready_client
from hardening_support import fast_bundle
from hostile_inputs import BOUNDARY, MULTIPART, image_part, multipart, small_doc
from service.api.app import create_app
from service.api.config import Settings

KEY = "s3cret-Key-0123456789abcdef"
MAX_UPLOAD = 1024 * 1024


# ------------------------------------------------------------------ API key
def test_api_key_is_compared_in_constant_time():
    tree = ast.parse(inspect.getsource(security_module))
    func = next(n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)
                and n.name == "require_api_key")
    calls = [ast.unparse(n.func) for n in ast.walk(func) if isinstance(n, ast.Call)]
    assert "hmac.compare_digest" in calls, calls
    equality = [ast.unparse(n) for n in ast.walk(func) if isinstance(n, ast.Compare)
                and any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in n.ops)]
    assert equality == [], f"the key must not be compared with ==/in: {equality}"


@pytest.fixture(scope="module")
def keyed_client():
    """No lifespan (models not loaded): authentication comes before readiness, so it is testable without them."""
    return TestClient(create_app(Settings(api_key=KEY, providers=["cpu"])))


@pytest.mark.parametrize("header", [None, "", "wrong", KEY[:-1], KEY + "x", KEY.upper(), " " + KEY,
                                    "\u00e9" * len(KEY)], ids=lambda h: repr(h)[:12])
def test_missing_or_wrong_api_key_is_401(keyed_client, header):
    headers = {} if header is None else {"X-API-Key": header.encode("utf-8")}
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/ocr")):
        r = keyed_client.request(method, path, headers=headers)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "ApiKey"
        assert KEY not in r.text


def test_right_api_key_passes_and_probes_need_none(keyed_client):
    assert keyed_client.get("/v1/models", headers={"X-API-Key": KEY}).status_code == 200
    assert keyed_client.get("/healthz").status_code == 200
    assert keyed_client.get("/readyz").status_code == 503  # not ready (no lifespan), but not 401
    assert keyed_client.get("/metrics").status_code == 200


# ------------------------------------------------------------------ CORS
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}


def test_cors_is_off_by_default():
    client = TestClient(create_app(Settings(providers=["cpu"])))
    for origin in ("https://evil.example", "null"):
        pre = client.options("/v1/ocr", headers={"Origin": origin, **PREFLIGHT})
        assert pre.status_code in (400, 405)
        simple = client.get("/healthz", headers={"Origin": origin})
        for r in (pre, simple):
            assert not any(h.lower().startswith("access-control-") for h in r.headers), dict(r.headers)


def test_cors_allows_only_configured_origins():
    client = TestClient(create_app(Settings(providers=["cpu"], cors_origins=["https://app.example"])))
    pre = client.options("/v1/ocr", headers={"Origin": "https://app.example", **PREFLIGHT})
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert client.get("/healthz", headers={"Origin": "https://app.example"}).headers[
        "access-control-allow-origin"] == "https://app.example"
    evil = client.options("/v1/ocr", headers={"Origin": "https://evil.example", **PREFLIGHT})
    assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers
    assert "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": "https://evil.example"}).headers


# ------------------------------------------------------------------ streaming limits (server-side byte counter)
@pytest.fixture(scope="module")
def ready(base_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    bundle = fast_bundle(root / "fast", base_model_dir)
    with ready_client(model_dir=bundle, models_root=root / "none", max_upload_bytes=MAX_UPLOAD, max_files=2,
                      api_key=KEY) as client:
        yield client


async def _asgi_post(app, headers: list[tuple[bytes, bytes]], offered: int, chunk: int = 64 * 1024) -> dict:
    """POST /v1/ocr straight into the ASGI app with a body generator; counts the bytes the app actually pulled."""
    part_head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
                 f"Content-Type: image/png\r\n\r\n").encode()
    state = {"pulled": 0, "status": None, "body": b""}

    async def receive():
        if state["pulled"] == 0:
            state["pulled"] = len(part_head)
            return {"type": "http.request", "body": part_head, "more_body": True}
        size = min(chunk, offered - state["pulled"])
        state["pulled"] += size
        return {"type": "http.request", "body": b"\x00" * size, "more_body": state["pulled"] < offered}

    async def send(message):
        if message["type"] == "http.response.start":
            state["status"] = message["status"]
        elif message["type"] == "http.response.body":
            state["body"] += message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/ocr", "raw_path": b"/v1/ocr", "root_path": "", "query_string": b"",
             "headers": [(b"host", b"t"), (b"content-type", MULTIPART.encode()), *headers],
             "client": ("127.0.0.1", 1), "server": ("t", 80)}
    await app(scope, receive, send)
    return state


def test_chunked_upload_is_cut_off_at_the_limit_while_streaming(ready):
    offered = 64 * 2**20
    state = ready.portal.call(_asgi_post, ready.app, [(b"transfer-encoding", b"chunked"), (b"x-api-key", KEY.encode())],
                              offered)
    print(f"\nchunked 64 MiB upload, 1 MiB limit: app pulled {state['pulled'] / 2**20:.2f} MiB before answering "
          f"{state['status']}")
    assert state["status"] == 413 and b"file_too_large" in state["body"]
    assert state["pulled"] <= MAX_UPLOAD + 2 * 64 * 1024


def test_declared_oversize_and_unauthenticated_uploads_are_not_read_at_all(ready):
    huge = ready.portal.call(_asgi_post, ready.app, [(b"content-length", str(10**10).encode()),
                                                     (b"x-api-key", KEY.encode())], 10**10)
    assert huge["status"] == 413 and b"request_too_large" in huge["body"]
    assert huge["pulled"] == 0
    anonymous = ready.portal.call(_asgi_post, ready.app, [(b"transfer-encoding", b"chunked")], 64 * 2**20)
    assert anonymous["status"] == 401 and anonymous["pulled"] == 0


# ------------------------------------------------------------------ filenames never touch the filesystem
def test_path_like_filenames_are_never_opened(ready, tmp_path):
    marker = f"ocrnet-marker-{uuid.uuid4().hex[:12]}"
    target = tmp_path / marker
    target.mkdir()
    (target / "evil.png").write_bytes(b"not what the client sent")
    names = [f"../../../../../..{target}/evil.png", f"{target}/evil.png", f"..\\..\\{marker}\\evil.png",
             f"file://{target}/evil.png", f"~/{marker}/evil.png"]
    png = encode(small_doc(), "PNG")
    body = multipart([image_part(png, names[0]), image_part(png, names[1])])
    events: list[tuple[str, str]] = []
    recording = [True]

    def hook(event: str, args: tuple) -> None:
        if recording[0] and marker in repr(args):
            events.append((event, repr(args)[:200]))

    sys.addaudithook(hook)  # cannot be removed: it goes quiet when the test ends
    with open(target / "evil.png", "rb"):  # control: the hook does see an open of the marked path
        pass
    assert [event for event, _ in events] == ["open"], events
    events.clear()
    try:
        responses = [ready.post("/v1/ocr", content=body, headers={"content-type": MULTIPART, "X-API-Key": KEY})]
        for name in names[2:]:
            responses.append(ready.post("/v1/ocr", content=multipart([image_part(png, name)]),
                                        headers={"content-type": MULTIPART, "X-API-Key": KEY}))
    finally:
        recording[0] = False
    for r in responses:
        assert r.status_code == 200, r.text
        assert r.json()["images"][0]["height"] == 48  # the uploaded image was read, not the file on disk
    echoed = [img["filename"] for r in responses for img in r.json()["images"]]
    assert any(marker in name for name in echoed), echoed  # the names did flow through the service
    assert events == [], f"filesystem/OS calls touched user-supplied paths: {events}"
    assert (target / "evil.png").read_bytes() == b"not what the client sent"
    assert sorted(p.name for p in Path(target).iterdir()) == ["evil.png"]

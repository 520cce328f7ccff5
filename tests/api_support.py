"""Helpers for the API tests: rendered square documents, a ready TestClient, Prometheus parsing."""
from __future__ import annotations

import io
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from prometheus_client.parser import text_string_to_metric_families

from rendering import DEJAVU_SANS, load_font
from service.api.app import create_app
from service.api.config import Settings

BASE_TEXTS = ("INVOICE 12345", "Total 42.50 EUR")


def square_doc(texts: tuple[str, ...] = BASE_TEXTS, size: int = 320, font_size: int = 28) -> Image.Image:
    """Square page (det input lands in the warmed-up bucket), one black line of text per entry."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    font = load_font(DEJAVU_SANS, font_size)
    for i, text in enumerate(texts):
        draw.text((16, 30 + i * 2 * font_size), text, font=font, fill="black")
    return img


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


@contextmanager
def ready_client(timeout_s: float = 300.0, **overrides) -> Iterator[TestClient]:
    """TestClient over create_app(Settings(**overrides)) once /readyz says 200 (lifespan runs load + warm-up)."""
    # generous deadline: these tests share a small, busy CPU; the 504 path is tested explicitly.
    # models_root points at an empty folder: one bundle (model_dir) serves every profile unless a test says
    # otherwise; discovery of the shipped models/<profile>/ dirs is tested on its own.
    settings = Settings(**{"providers": ["cpu"], "intra_threads": 2, "request_timeout_s": 300.0,
                           "models_root": Path(tempfile.mkdtemp(prefix="ocrnet-no-profiles-")), **overrides})
    app = create_app(settings)
    with TestClient(app) as client:
        deadline = time.monotonic() + timeout_s
        while client.get("/readyz").status_code != 200:
            if app.state.engine.error or time.monotonic() > deadline:
                raise RuntimeError(f"app never became ready: {app.state.engine.error}")
            time.sleep(0.05)
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def uvicorn_server(app_args: list[str], env: dict[str, str], cwd: Path, ready_path: str, timeout_s: float,
                   log_path: Path | None = None) -> Iterator[str]:
    """A real ``uvicorn`` process on a free loopback port: yields its base URL once ``ready_path`` answers 200,
    stops it afterwards. Output goes to ``log_path`` (shown when start-up fails), else is dropped."""
    port = free_port()
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", *app_args, "--host", "127.0.0.1", "--port",
                                 str(port)], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        if log_path:
            log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(proc, f"{base}{ready_path}", timeout_s,
                        log_path.read_text if log_path else lambda: "server did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_for_server(proc, url: str, timeout_s: float, why=lambda: "server did not start") -> None:
    """Poll ``url`` until it answers 200 while ``proc`` (a started server) stays alive; fail with ``why()`` (e.g.
    the server's log) if it exits or ``timeout_s`` passes."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, why()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, why()
        time.sleep(0.2)


def wait_until(predicate, timeout_s: float = 120.0) -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """All samples with this exact sample name (e.g. ``ocrnet_batch_size_count``)."""
    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out.append((dict(sample.labels), float(sample.value)))
    return out


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for sample_labels, value in metric_samples(text, name):
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            total += value
    return total


def assert_error(response, status: int, code: str) -> dict:
    """The one error model, with the request ID the response header carries."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]

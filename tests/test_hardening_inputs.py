"""Hostile/odd uploads against a real uvicorn server: every input gets its exact 4xx code or a correct result,
the process stays up, and neither the peak nor the settled RSS moves far from the baseline.

Huge declared images (20000x20000 PNG/JPEG/GIF/BMP headers, a 16000x16000 decompression bomb) must be refused
from the header: a unit test proves Pillow's pixel decoder never runs for them, and the server's peak RSS
(VmHWM, reset before the corpus) proves no gigabyte-sized buffer was ever allocated.
"""
from __future__ import annotations

import gc
import time
from pathlib import Path

import httpx
import pytest
from PIL import ImageFile

from hardening_support import fast_bundle, run_server, server_env
from hostile_inputs import (
    HostileCase,
    bmp_with_size,
    build_corpus,
    gif_with_screen,
    image_part,
    jpeg_with_size,
    multipart,
    png_bomb,
    png_header_only,
    small_doc,
    encode,
)
from service.api.errors import ApiError
from service.api.uploads import UploadedFile, decode_image

MAX_FILES, MAX_UPLOAD, MAX_PIXELS, MAX_REQUEST_PIXELS = 4, 2 * 1024 * 1024, 40_000_000, 120_000_000
PASSES = 2
RSS_SETTLED_SLACK = 96 * 2**20  # allocator caches and thread arenas; a decoded 20000^2 RGB image would be 1.2 GB
RSS_PEAK_SLACK = 320 * 2**20


def check(case: HostileCase, response: httpx.Response) -> str | None:
    """None when the answer is the required one, else a short description of what was wrong."""
    if response.status_code != case.status:
        return f"status {response.status_code} != {case.status}: {response.text[:200]}"
    body = response.json()
    if response.headers.get("x-request-id") is None:
        return "no X-Request-ID header"
    if case.status != 200:
        error = body.get("error", {})
        if error.get("code") != case.code or not error.get("message"):
            return f"error {error} != code {case.code}"
        return None
    sizes = tuple((img["width"], img["height"]) for img in body["images"])
    names = tuple(img["filename"] for img in body["images"])
    if sizes != case.sizes:
        return f"sizes {sizes} != {case.sizes}"
    if names != case.filenames:
        return f"filenames {names!r} != {case.filenames!r}"
    return None


def _rss_peak_reset(pid: int) -> None:
    """Reset VmHWM (peak RSS) of ``pid`` (Linux >= 4.0: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture(scope="module")
def server(base_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    bundle = fast_bundle(root / "fast", base_model_dir)
    env = server_env(bundle, root / "no-profile-models", max_files=str(MAX_FILES),
                     max_upload_bytes=str(MAX_UPLOAD), max_pixels=str(MAX_PIXELS), max_request_pixels=str(MAX_REQUEST_PIXELS),
                     request_timeout_s="60")
    with run_server(env) as srv:
        yield srv


@pytest.mark.slow
def test_hostile_corpus_on_real_server(server):
    corpus = build_corpus(MAX_FILES, MAX_UPLOAD, MAX_PIXELS, MAX_REQUEST_PIXELS)
    assert any(case.code == "request_too_many_pixels" for case in corpus)
    png = encode(small_doc(), "PNG")
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        warm = client.post("/v1/ocr", content=multipart([image_part(png), image_part(png)]),
                           headers={"content-type": corpus[0].content_type})
        assert warm.status_code == 200, warm.text
        time.sleep(0.5)
        rss_before = server.rss()
        _rss_peak_reset(server.proc.pid)
        failures, tried = [], 0
        started = time.monotonic()
        for _ in range(PASSES):
            for case in corpus:
                response = client.post("/v1/ocr", content=case.body, headers={"content-type": case.content_type})
                tried += 1
                problem = check(case, response)
                if problem:
                    failures.append(f"{case.name}: {problem}")
                assert server.alive, f"server died on {case.name}:\n{server.log_text()[-3000:]}"
        elapsed = time.monotonic() - started
        peak = _vm_hwm(server.proc.pid)
        gc.collect()
        time.sleep(1.0)
        rss_after = server.rss()
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        again = client.post("/v1/ocr", content=multipart([image_part(png)]), headers={"content-type": corpus[0].content_type})
        assert again.status_code == 200
    mib = 2**20
    print(f"\nhostile corpus: {len(corpus)} cases x {PASSES} passes = {tried} requests in {elapsed:.1f} s; "
          f"RSS before {rss_before / mib:.0f} MiB, after {rss_after / mib:.0f} MiB, peak {peak / mib:.0f} MiB")
    assert not failures, "\n".join(failures)
    assert "Traceback" not in server.log_text()
    assert rss_after - rss_before < RSS_SETTLED_SLACK, (rss_before, rss_after)
    assert peak - rss_before < RSS_PEAK_SLACK, (rss_before, peak)


HUGE = {
    "png_header_20000": png_header_only(20_000, 20_000),
    "jpeg_header_20000": jpeg_with_size(20_000, 20_000),
    "gif_screen_20000": gif_with_screen(20_000, 20_000),
    "bmp_header_20000": bmp_with_size(20_000, 20_000),
    "png_bomb_16000": png_bomb(16_000),
}


@pytest.mark.parametrize("name", sorted(HUGE))
def test_huge_images_refused_from_header_without_decoding(name, monkeypatch):
    loads = []
    real_load = ImageFile.ImageFile.load

    def counting_load(self):
        loads.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    data = HUGE[name]
    assert len(data) < 100_000, "the bomb is small on the wire"
    with pytest.raises(ApiError) as info:
        decode_image(UploadedFile("x", "image/png", bytearray(data)), 0, MAX_PIXELS)
    assert (info.value.status, info.value.code) == (413, "image_too_large")
    assert loads == [], f"pixel data was decoded for {name}: {loads}"


def test_bomb_is_a_real_image_when_allowed():
    """The bomb is not just a bad header: with a big enough limit it decodes (so the 413 above is the limit)."""
    small_bomb = png_bomb(2_000)
    decoded = decode_image(UploadedFile("b.png", "image/png", bytearray(small_bomb)), 0, 2_000 * 2_000)
    assert (decoded.width, decoded.height) == (2_000, 2_000)

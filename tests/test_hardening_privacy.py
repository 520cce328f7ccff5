"""Privacy: image bytes and recognized text never reach the logs or the filesystem; request IDs do reach both logs
and responses.

A real uvicorn server runs with every logger at DEBUG (root logger, uvicorn's error + access loggers, the service
loggers), its cwd and TMPDIR in fresh directories, and OCRs a rendered page carrying a unique number. Then:
- the recognized text, the number, an invalid upload's canary and windows of the image bytes (raw, hex, base64,
  repr) appear nowhere in the server's output;
- the cwd and TMPDIR stay empty, and no file created or modified anywhere under the repo or /tmp during the
  requests contains any of those secrets (other engineers' files may change meanwhile: contents are what count);
- the client's safe X-Request-ID is echoed and shows up in the log; an unsafe one is replaced, never logged.
"""
from __future__ import annotations

import base64
import os
import secrets
import time
from pathlib import Path

import httpx
import pytest

from api_support import encode, square_doc
from hardening_support import REPO_ROOT, run_server, server_env
from hostile_inputs import MULTIPART, image_part, multipart

SCAN_LIMIT = 20 * 2**20

pytestmark = pytest.mark.slow


def _snapshot(roots: list[Path]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for root in roots:
        for dirpath, _, filenames in os.walk(root, followlinks=False):
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                out[path] = (st.st_mtime_ns, st.st_size)
    return out


def _image_fingerprints(data: bytes) -> list[str]:
    """Substrings that would show up if any form of the image bytes were logged or written."""
    out = []
    b64 = base64.b64encode(data).decode()
    for start in range(len(data) // 5, len(data) - 40, max(1, len(data) // 7)):
        window = data[start:start + 24]
        out += [window.hex(), repr(window)[2:-1]]
    out += [b64[k:k + 32] for k in range(len(b64) // 5, len(b64) - 40, max(1, len(b64) // 7))]
    return out


def test_no_image_bytes_or_text_in_logs_or_files_and_request_ids_flow(base_model_dir, tmp_path):
    number = f"{secrets.randbelow(10**7) + 10**7}"
    canary = f"CANARY{secrets.token_hex(8)}"
    page = encode(square_doc((f"REF {number}", "QUOKKA PAYMENT"), size=320, font_size=30), "PNG")
    work, tmpdir = tmp_path / "cwd", tmp_path / "tmpdir"
    work.mkdir()
    tmpdir.mkdir()
    env = {**server_env(base_model_dir, tmp_path / "none", log_level="DEBUG"), "TMPDIR": str(tmpdir)}
    safe_id = f"privacy-{secrets.token_hex(6)}"
    unsafe_id = "not safe <" + secrets.token_hex(4) + ">"
    roots = [REPO_ROOT, Path("/tmp")]
    with run_server(env, cwd=work, debug=True) as server, httpx.Client(base_url=server.base_url, timeout=120) as client:
        logged_before = len(server.lines)
        before = _snapshot(roots)
        started = time.time()
        ok = client.post("/v1/ocr", content=multipart([image_part(page, "page.png")]),
                         headers={"content-type": MULTIPART, "X-Request-ID": safe_id})
        bad = client.post("/v1/ocr", content=multipart([image_part(canary.encode() * 20, "c.png")]),
                          headers={"content-type": MULTIPART, "X-Request-ID": unsafe_id})
        time.sleep(1.0)  # let the output drain
        after = _snapshot(roots)
        log = "\n".join(server.lines[logged_before:])
        all_log = server.log_text()

    assert ok.status_code == 200, ok.text
    texts = [line["text"] for img in ok.json()["images"] for line in img["lines"]]
    assert any(number in t for t in texts), f"OCR did not read the number, the test would prove nothing: {texts}"
    assert ok.headers["x-request-id"] == safe_id and ok.json()["request_id"] == safe_id
    assert bad.status_code == 400
    replaced = bad.headers["x-request-id"]
    assert replaced != unsafe_id and len(replaced) == 32 and bad.json()["error"]["request_id"] == replaced

    # logs: request IDs in, content out
    assert any(safe_id in line and "/v1/ocr" in line and "200" in line for line in log.splitlines()), log
    assert any(replaced in line for line in log.splitlines()), log
    assert any("uvicorn.access" in line and "POST /v1/ocr" in line for line in log.splitlines()), log
    assert any(line.startswith("DEBUG ") for line in all_log.splitlines()), "root logger was not at DEBUG"
    secrets_ = [t for t in texts if len(t) >= 4] + [number, canary, "QUOKKA", unsafe_id]
    leaked = [s for s in secrets_ + _image_fingerprints(page) if s in all_log]
    assert leaked == [], f"leaked into the logs: {leaked}"

    # filesystem: nothing in the server's cwd / TMPDIR, no secret in any file touched during the requests
    changed = [p for p, meta in after.items() if before.get(p) != meta]
    own = [p for p in changed if p.startswith((str(work), str(tmpdir)))]
    assert own == [], f"the server wrote files while serving: {own}"
    assert list(work.iterdir()) == []  # (onnxruntime drops a 51-byte session-id '.ses' file in TMPDIR at start-up)
    needles = [s.encode() for s in secrets_ if s != unsafe_id] + [page[k:k + 24] for k in range(100, len(page) - 24, 997)]
    hits = []
    for path in changed:
        try:
            if os.path.getsize(path) > SCAN_LIMIT:
                continue
            data = Path(path).read_bytes()
        except OSError:
            continue
        hits += [(path, n[:16]) for n in needles if n in data]
    print(f"\nprivacy: {len(texts)} lines recognized, {len(all_log.splitlines())} log lines checked, "
          f"{len(before)} files snapshotted, {len(changed)} files changed meanwhile scanned, "
          f"window {time.time() - started:.1f} s")
    assert hits == [], f"request content written to disk: {hits}"

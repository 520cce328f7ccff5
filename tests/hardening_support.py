"""Real-server helpers for the hardening tests: a uvicorn subprocess on a free port whose whole output is captured.

Why a subprocess and not TestClient: slow uploads, connection bursts, RSS and "the process stays up" are
properties of the real server process (uvicorn + h11 + the app), which an in-process ASGI client never exercises.
The output is drained by a thread into memory (never a file), so the privacy test can read every log line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from api_support import free_port

from service.model_bundle import MANIFEST

REPO_ROOT = Path(__file__).resolve().parent.parent

# Root logger at DEBUG (every library logger, uvicorn's access and error loggers included) when asked; else
# uvicorn's own logging config at INFO, as `uvicorn ... --factory` runs in production.
_LAUNCHER = """
import logging, sys, uvicorn
port, debug = int(sys.argv[1]), sys.argv[2] == "1"
if debug:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
uvicorn.run("service.api.app:create_app", factory=True, host="127.0.0.1", port=port, access_log=True,
            log_level="debug" if debug else "info", log_config=None if debug else uvicorn.config.LOGGING_CONFIG)
"""


@dataclass
class Server:
    base_url: str
    port: int
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss(self) -> int:
        """Resident set size of the server process (bytes)."""
        return psutil.Process(self.proc.pid).memory_info().rss

    def log_text(self) -> str:
        return "\n".join(self.lines)

    def wait_until(self, predicate: Callable[[httpx.Response], bool], path: str = "/readyz",
                   timeout_s: float = 180.0) -> httpx.Response:
        """Poll ``path`` until ``predicate(response)``; fails with the server log if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            try:
                response = httpx.get(self.base_url + path, timeout=5)
                if predicate(response):
                    return response
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not in the expected state after {timeout_s} s:\n{self.log_text()[-4000:]}")
            time.sleep(0.2)


def _drain(stream, lines: list[str]) -> None:
    for raw in iter(stream.readline, b""):
        lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
    stream.close()


def server_env(model_dir: Path, models_root: Path, **settings: str) -> dict[str, str]:
    """OCRNET_* environment for one CPU bundle (models_root points at an empty dir so no other bundle loads)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCRNET_")}
    env.update({"OCRNET_MODEL_DIR": str(model_dir), "OCRNET_MODELS_ROOT": str(models_root),
                "OCRNET_PROVIDERS": "cpu", "OCRNET_INTRA_THREADS": "2",
                "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"})
    env.update({f"OCRNET_{k.upper()}": v for k, v in settings.items()})
    return env


@contextmanager
def run_server(env: dict[str, str], *, cwd: Path = REPO_ROOT, debug: bool = False, wait_ready: bool = True,
               timeout_s: float = 180.0) -> Iterator[Server]:
    """Start ``uvicorn service.api.app:create_app --factory`` on a free port; stop it on exit."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(port), "1" if debug else "0"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", port, proc)
    reader = threading.Thread(target=_drain, args=(proc.stdout, server.lines), daemon=True)
    reader.start()
    try:
        if wait_ready:
            server.wait_until(lambda r: r.status_code == 200, timeout_s=timeout_s)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        reader.join(timeout=10)


def fast_bundle(dst: Path, base: Path, limit_side: int = 128) -> Path:
    """A model dir reusing ``base``'s ONNX files (absolute paths) with a small detector input (``limit_side``, max).

    The hardening tests exercise limits, queues and error paths, not accuracy: a 128-px detector input keeps each
    model call ~40x cheaper than the default 736-px minimum side, so bursts and fuzzing fit a 2-core CI box.
    """
    manifest = json.loads((base / MANIFEST).read_text(encoding="utf-8"))
    for key, default in (("det", "det.onnx"), ("rec", "rec.onnx"), ("charset", "charset.json")):
        manifest[key] = str((base / manifest.get(key, default)).resolve())
    manifest.update(det_limit_side=limit_side, det_limit_type="max")
    dst.mkdir(parents=True, exist_ok=True)
    (dst / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return dst

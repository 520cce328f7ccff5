"""Start-up faults, handled the way a Kubernetes operator expects.

A missing or corrupt model file: the process stays alive (liveness /healthz 200, so no restart loop), never
becomes ready (/readyz 503 ``models_failed``, /v1/ocr 503), and the log carries one ERROR line naming the file,
with no traceback at the default level. A requested GPU execution provider that cannot run here (CUDA/TensorRT on
a CPU box) falls back to CPU with a WARNING, and the service serves.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import httpx
import pytest

import service.runtime
from api_support import assert_error, encode, ready_client
from hardening_support import fast_bundle, run_server, server_env
from hostile_inputs import MULTIPART, image_part, multipart, small_doc


def _bundle_copy(dst: Path, base: Path) -> Path:
    """A real copy of the base bundle (files, not links) that the test can break."""
    shutil.copytree(base, dst)
    return dst


def _broken_bundles(root: Path, base: Path) -> dict[str, tuple[Path, str]]:
    missing = _bundle_copy(root / "missing_rec", base)
    manifest = json.loads((missing / "model.json").read_text())
    (missing / manifest.get("rec", "rec.onnx")).unlink()
    corrupt = _bundle_copy(root / "corrupt_det", base)
    det = corrupt / manifest.get("det", "det.onnx")
    det.write_bytes(det.read_bytes()[:4096])  # truncated protobuf
    return {"missing": (missing, manifest.get("rec", "rec.onnx")), "corrupt": (corrupt, manifest.get("det", "det.onnx"))}


@pytest.mark.parametrize("fault", ["missing", "corrupt"])
def test_broken_model_file_keeps_process_alive_not_ready_one_clear_log_line(fault, base_model_dir, tmp_path):
    bundle, filename = _broken_bundles(tmp_path, base_model_dir)[fault]
    env = server_env(bundle, tmp_path / "no-profile-models")
    with run_server(env, wait_ready=False) as server:
        failed = server.wait_until(lambda r: r.status_code == 503 and r.json()["error"]["code"] == "models_failed",
                                   timeout_s=120)
        assert filename in failed.json()["error"]["message"]
        time.sleep(2.0)  # it does not exit, retry, or flip to ready later
        assert server.alive
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            assert client.get("/healthz").status_code == 200
            assert_error(client.get("/readyz"), 503, "models_failed")
            ocr = client.post("/v1/ocr", content=multipart([image_part(encode(small_doc(), "PNG"))]),
                              headers={"content-type": MULTIPART})
            assert_error(ocr, 503, "models_failed")
            assert filename not in ocr.text  # the file path is for operators (log, readiness), not API clients
        log = server.log_text()
    errors = [line for line in log.splitlines() if "ERROR" in line]
    print(f"\n{fault}: {errors}")
    assert len(errors) == 1, log
    assert filename in errors[0] and str(bundle) in errors[0]
    assert "Traceback" not in log


def test_unavailable_gpu_providers_fall_back_to_cpu_with_warning(base_model_dir, tmp_path, monkeypatch):
    """Requesting TensorRT + CUDA here: the service warns, runs on CPU, reports it, and serves.

    ``get_available_providers`` is made to claim CUDA and TensorRT exist, so the session factory really asks
    onnxruntime for them and has to cope with onnxruntime not delivering them (the 'fails to initialise' path)."""
    real = service.runtime.ort.get_available_providers()
    monkeypatch.setattr(service.runtime.ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", *real])
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(level=logging.DEBUG)
    runtime_log = logging.getLogger("service.runtime")
    runtime_log.addHandler(handler)
    try:
        bundle = fast_bundle(tmp_path / "fast", base_model_dir)
        with ready_client(model_dir=bundle, models_root=tmp_path / "none",
                          providers=["tensorrt", "cuda"]) as client:
            models = client.get("/v1/models").json()
            ocr = client.post("/v1/ocr", content=multipart([image_part(encode(small_doc(), "PNG"))]),
                              headers={"content-type": MULTIPART})
    finally:
        runtime_log.removeHandler(handler)
    assert ocr.status_code == 200, ocr.text
    assert ocr.json()["execution_provider"] == "CPUExecutionProvider"
    assert models["models"][0]["providers"] == ["CPUExecutionProvider"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    print(f"\nprovider warnings: {warnings}")
    assert any("CUDAExecutionProvider" in w and "CPUExecutionProvider" in w for w in warnings), warnings


def test_gpu_providers_requested_by_env_on_cpu_server_serve_on_cpu(base_model_dir, tmp_path):
    """The operator's path: OCRNET_PROVIDERS=tensorrt,cuda on a CPU-only onnxruntime, real uvicorn process."""
    bundle = fast_bundle(tmp_path / "fast", base_model_dir)
    env = server_env(bundle, tmp_path / "none", providers="tensorrt,cuda")
    with run_server(env) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        providers = client.get("/v1/models").json()["models"][0]["providers"]
        ocr = client.post("/v1/ocr", content=multipart([image_part(encode(small_doc(), "PNG"))]),
                          headers={"content-type": MULTIPART})
        log = server.log_text()
    assert providers == ["CPUExecutionProvider"]
    assert ocr.status_code == 200 and ocr.json()["execution_provider"] == "CPUExecutionProvider"
    warnings = [line for line in log.splitlines() if "WARNING" in line and "CUDAExecutionProvider" in line]
    print(f"\nenv-requested GPU providers: {warnings}")
    assert warnings, log
    assert "Traceback" not in log and "ERROR" not in log

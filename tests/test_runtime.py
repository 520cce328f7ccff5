import logging
from pathlib import Path

import onnxruntime as ort
import pytest

import service.runtime as runtime
from service.runtime import CPU, CUDA, TRT, create_session, resolve_providers, session_options


def test_resolve_orders_trt_cuda_cpu_and_keeps_available_only():
    everything = [TRT, CUDA, CPU]
    assert resolve_providers(None, everything) == [CUDA, CPU]  # TensorRT only when opted in
    assert resolve_providers(["cpu", "cuda", "tensorrt"], everything) == [TRT, CUDA, CPU]
    assert resolve_providers(["cuda"], [CPU]) == [CPU]
    assert resolve_providers(["cpu"], everything) == [CPU]
    with pytest.raises(ValueError):
        resolve_providers(["openvino"], everything)


def test_session_options_threads():
    so = session_options(intra_threads=2, inter_threads=1)
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="tests the CPU fallback path")
def test_requesting_cuda_on_a_cpu_build_falls_back_with_a_warning(base_model_dir, caplog, monkeypatch):
    monkeypatch.setattr(runtime, "_reported_missing", set())
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        sess, obtained = create_session(base_model_dir / "rec.onnx", providers=["cuda"], intra_threads=1)
    assert obtained == [CPU] and sess.get_providers() == [CPU]
    assert any(CUDA in r.getMessage() for r in caplog.records)


def test_session_options_do_not_busy_wait_between_ops():
    assert session_options(intra_threads=2).get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_cuda_library_preload_is_best_effort_and_runs_once(monkeypatch):
    """onnxruntime-gpu's preload_dlls loads pip nvidia-* CUDA/cuDNN; a failure there must not stop the service."""
    import service.runtime as runtime

    calls = []

    def failing_preload():
        calls.append(1)
        raise OSError("libcudnn.so.9: cannot open shared object file")

    monkeypatch.setattr(runtime.ort, "preload_dlls", failing_preload, raising=False)
    monkeypatch.setattr(runtime, "_preloaded", False)
    runtime.preload_cuda_libraries()
    runtime.preload_cuda_libraries()
    assert calls == [1]


def test_bundles_that_reuse_a_model_file_share_one_session(tmp_path):
    """A bundle that points at ../base/rec.onnx gets the same session as models/base, and models/plate and models/id
    on CPU the same ../base/det_int8.onnx session."""
    import json

    from service.pipeline import OcrPipeline

    repo = Path(__file__).resolve().parent.parent
    base = OcrPipeline.from_dir(repo / "models" / "base", providers=["cpu"], intra_threads=2)
    plate = OcrPipeline.from_dir(repo / "models" / "plate", providers=["cpu"], intra_threads=2)
    id_docs = OcrPipeline.from_dir(repo / "models" / "id", providers=["cpu"], intra_threads=2)
    other_threads = OcrPipeline.from_dir(repo / "models" / "plate", providers=["cpu"], intra_threads=1)
    manifest = json.loads((repo / "models" / "plate" / "model.json").read_text())
    reuse = {key: str((repo / "models" / "base" / name).resolve())
             for key, name in (("det", "det.onnx"), ("det_cpu", "det_int8.onnx"), ("rec", "rec.onnx"),
                               ("charset", "charset.json"))}
    if manifest.get("fields_model"):  # the plate picker: not what this test is about, read from its own folder
        reuse["fields_model"] = str((repo / "models" / "plate" / manifest["fields_model"]).resolve())
    (tmp_path / "model.json").write_text(json.dumps({**manifest, **reuse}))
    base_rec_user = OcrPipeline.from_dir(tmp_path, providers=["cpu"], intra_threads=2)
    assert base_rec_user.rec_session is base.rec_session and plate.det_session is id_docs.det_session
    assert plate.det_session is not base.det_session  # int8 copy on CPU, float for the reference bundle
    assert other_threads.det_session is not plate.det_session  # different options, different session


def test_a_missing_provider_is_reported_once_and_only_warned_about_when_asked_for(caplog, monkeypatch):
    monkeypatch.setattr(runtime, "_reported_missing", set())
    with caplog.at_level(logging.INFO, logger="service.runtime"):
        for _ in range(3):
            assert resolve_providers(None, [CPU]) == [CPU]  # the default: CUDA if there is one
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="service.runtime"):
        for _ in range(3):
            assert resolve_providers(["cuda"], [CPU]) == [CPU]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert CUDA in caplog.records[0].getMessage()

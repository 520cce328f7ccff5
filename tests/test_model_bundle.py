import hashlib
import json
from pathlib import Path

import pytest

from service.model_bundle import ModelBundle


def _write_bundle(root, **overrides):
    root.mkdir(parents=True, exist_ok=True)
    (root / "det.onnx").write_bytes(b"det-bytes")
    (root / "rec.onnx").write_bytes(b"rec-bytes")
    (root / "charset.json").write_text(json.dumps({"blank_index": 0, "characters": ["a", "b"]}))
    manifest = {"name": "demo", "version": "1", "det": "det.onnx", "rec": "rec.onnx", "charset": "charset.json"}
    manifest.update(overrides)
    (root / "model.json").write_text(json.dumps(manifest))
    return root


def test_bundle_resolves_paths_charset_and_hashes(tmp_path):
    b = ModelBundle(_write_bundle(tmp_path / "m"))
    assert b.name == "demo" and b.classes == ["", "a", "b"]
    assert b.sha256["det"] == hashlib.sha256(b"det-bytes").hexdigest()
    assert b.sha256["rec"] == hashlib.sha256(b"rec-bytes").hexdigest()


def test_bundle_relative_paths_can_point_to_a_sibling(tmp_path):
    _write_bundle(tmp_path / "base")
    child = tmp_path / "child"
    child.mkdir()
    (child / "model.json").write_text(json.dumps({"name": "c", "version": "2", "det": "../base/det.onnx",
                                                  "rec": "../base/rec.onnx", "charset": "../base/charset.json"}))
    b = ModelBundle(child)
    assert b.det_path == (tmp_path / "base" / "det.onnx").resolve()


def test_missing_files_are_reported(tmp_path):
    root = _write_bundle(tmp_path / "m", rec="nope.onnx")
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        ModelBundle(root)
    with pytest.raises(FileNotFoundError):
        ModelBundle(tmp_path / "empty")


def test_speed_settings_default_to_rapidocr_behaviour_and_parse(tmp_path):
    m = ModelBundle(_write_bundle(tmp_path / "d")).manifest
    assert (m.det_max_upscale, m.det_buckets, m.rec_min_side) == (None, None, 0.0)
    m = ModelBundle(_write_bundle(tmp_path / "s", det_limit_type="max", det_max_upscale=1.5, det_buckets=[],
                                  rec_min_side=8)).manifest
    assert (m.det_limit_type, m.det_max_upscale, m.det_buckets, m.rec_min_side) == ("max", 1.5, (), 8.0)


def test_repo_plate_bundle_reuses_shared_networks():
    repo_models = Path(__file__).resolve().parent.parent / "models"
    if not (repo_models / "plate" / "model.json").is_file() or not (repo_models / "base" / "det.onnx").is_file():
        pytest.skip("models/plate or models/base not present")
    b = ModelBundle(repo_models / "plate")
    assert b.det_path.parent.name == "base"  # no second copy of the detector
    assert b.manifest.det_limit_type == "max" and b.rec_path.is_file() and b.charset_path.is_file()


def test_cpu_only_hosts_get_the_int8_detector_accelerators_the_float_one(tmp_path):
    root = _write_bundle(tmp_path / "q", det_cpu="det_int8.onnx")
    with pytest.raises(FileNotFoundError, match="det_int8.onnx"):
        ModelBundle(root)
    (root / "det_int8.onnx").write_bytes(b"int8-bytes")
    b = ModelBundle(root)
    assert b.det_path_for(["CPUExecutionProvider"]) == root.resolve() / "det_int8.onnx"
    assert b.det_path_for(["CUDAExecutionProvider", "CPUExecutionProvider"]) == root.resolve() / "det.onnx"
    assert b.sha256["det_cpu"] == hashlib.sha256(b"int8-bytes").hexdigest()
    plain = ModelBundle(_write_bundle(tmp_path / "f"))
    assert plain.det_path_for(["CPUExecutionProvider"]) == plain.det_path and "det_cpu" not in plain.sha256


def test_cpu_only_hosts_get_the_int8_recognizer_accelerators_the_float_one(tmp_path):
    root = _write_bundle(tmp_path / "q", rec_cpu="rec_int8.onnx")
    with pytest.raises(FileNotFoundError, match="rec_int8.onnx"):
        ModelBundle(root)
    (root / "rec_int8.onnx").write_bytes(b"rec-int8-bytes")
    b = ModelBundle(root)
    assert b.rec_path_for(["CPUExecutionProvider"]) == root.resolve() / "rec_int8.onnx"
    assert b.rec_path_for(["CUDAExecutionProvider", "CPUExecutionProvider"]) == b.rec_path
    assert b.sha256["rec_cpu"] == hashlib.sha256(b"rec-int8-bytes").hexdigest()
    plain = ModelBundle(_write_bundle(tmp_path / "f"))
    assert plain.rec_path_for(["CPUExecutionProvider"]) == plain.rec_path and "rec_cpu" not in plain.sha256


def test_a_named_lexicon_must_exist(tmp_path):
    root = _write_bundle(tmp_path / "m", lexicon="lexicon.json")
    with pytest.raises(FileNotFoundError, match="lexicon.json"):
        ModelBundle(root)
    (root / "lexicon.json").write_text(json.dumps({"words": ["TOTAL"]}))
    assert ModelBundle(root).lexicon_path == (root / "lexicon.json").resolve()
    assert ModelBundle(_write_bundle(tmp_path / "n")).lexicon_path is None

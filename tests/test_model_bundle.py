import hashlib
import json

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

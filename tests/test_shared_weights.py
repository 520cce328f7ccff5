"""A model stored with the weights it shares with its base computes exactly what the whole model computes, and a
base that changed since the export is refused rather than mixed in."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from service.runtime import create_session
from service.shared_weights import load_shared_weights, sidecar_path
from training.export import share_weights_with

BASE_DET = Path(__file__).resolve().parents[1] / "models" / "base" / "det.onnx"


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> tuple[Path, Path]:
    """models/base's detector with its probability head changed, as a frozen-backbone finetune leaves it."""
    root = tmp_path_factory.mktemp("shared")
    (root / "base").mkdir()
    base = root / "base" / "det.onnx"
    shutil.copyfile(BASE_DET, base)
    model = onnx.load(str(base))
    for init in model.graph.initializer:
        if init.name.startswith("head."):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    whole = root / "whole.onnx"
    onnx.save_model(model, str(whole))
    return base, whole


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session, _ = create_session(path, providers=["CPUExecutionProvider"], intra_threads=1)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_shared_model_is_small_and_computes_what_the_whole_model_does(finetuned):
    base, whole = finetuned
    dst = base.parent.parent / "invoice" / "det.onnx"
    share_weights_with(whole, base, dst)
    spec = json.loads(sidecar_path(dst).read_text())
    assert spec["base"] == "../base/det.onnx"
    names = {t["name"] for t in spec["tensors"]}
    assert any(n.startswith("backbone.") for n in names) and not any(n.startswith("head.") for n in names)
    assert dst.stat().st_size < whole.stat().st_size / 5
    x = np.random.default_rng(3).uniform(-1, 1, (1, 3, 160, 224)).astype(np.float32)
    np.testing.assert_array_equal(_run(dst, x), _run(whole, x))
    assert not np.array_equal(_run(dst, x), _run(base, x))  # the changed head is the finetuned one, not base's


def test_a_changed_base_is_refused(finetuned, tmp_path):
    base, whole = finetuned
    other_base = tmp_path / "base" / "det.onnx"
    other_base.parent.mkdir()
    shutil.copyfile(base, other_base)
    dst = tmp_path / "invoice" / "det.onnx"
    share_weights_with(whole, other_base, dst)
    with open(other_base, "r+b") as fh:  # same size, one byte different
        fh.seek(other_base.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ValueError, match="SHA-256"):
        load_shared_weights(dst)


def test_a_whole_model_has_no_shared_weights():
    assert load_shared_weights(BASE_DET) is None

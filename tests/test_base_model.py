"""The shipped models/base must be our own export of PP-OCRv6 small, numerically equal to the source."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from training.export import onnx_max_abs_diff
from training.pretrained import locate_pretrained

BASE = Path(__file__).resolve().parents[1] / "models" / "base"


def test_base_is_our_export_not_a_copy() -> None:
    for name in ("det.onnx", "rec.onnx"):
        props = {p.key: p.value for p in onnx.load(str(BASE / name), load_external_data=False).metadata_props}
        assert props.get("exporter") == "ocrnet import-pretrained", name
    manifest = json.loads((BASE / "model.json").read_text())
    assert manifest["name"] == "base"
    charset = json.loads((BASE / "charset.json").read_text())
    assert charset["blank_index"] == 0 and len(charset["characters"]) + 1 == 18710
    assert charset["characters"][-1] == " "


# The recognizer's classifier is stored as float16 (models/base/MODEL_CARD.md): its softmax moves by ~2e-4, the
# same text on every DEV crop; the detector is the float32 export.
@pytest.mark.parametrize("kind,shape,tolerance", [("det", (1, 3, 256, 352), 1e-4), ("rec", (3, 3, 48, 272), 5e-4)])
def test_base_matches_pretrained_source(kind: str, shape: tuple[int, ...], tolerance: float) -> None:
    files = locate_pretrained()
    source = files.det if kind == "det" else files.rec
    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    assert onnx_max_abs_diff(BASE / f"{kind}.onnx", None, [x], reference_onnx=source) < tolerance


def test_models_dir_within_budget() -> None:
    total = sum(p.stat().st_size for p in BASE.parent.rglob("*") if p.is_file())
    assert total < 40e6, f"models/ is {total / 1e6:.1f} MB; the budget is 40 MB"

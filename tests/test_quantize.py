"""``ocrnet quantize``: the int8 detector stays close to the float one; the shipped one is what the CLI makes."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from service.model_bundle import ModelBundle, sha256_file
from service.vision.det_preprocess import DetPreprocessConfig
from training.quantize import compare_detectors, quantize_convs, synthetic_det_inputs

MODELS = Path(__file__).resolve().parents[1] / "models"
SMALL = dict.fromkeys(("plates", "receipts", "ids"), DetPreprocessConfig(limit_side_len=320, limit_type="max", buckets=()))


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_quantized_detector_is_int8_convs_and_agrees_with_the_float_one(tmp_path):
    src = MODELS / "base" / "det.onnx"
    out = quantize_convs(src, tmp_path / "det_int8.onnx", synthetic_det_inputs(["plates", "ids"], 2, 3, SMALL),
                            metadata={"calibration": "test"})
    graph = onnx.load(str(out)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(n.input[1].endswith("_DequantizeLinear_Output") for n in convs)  # int8 weights, every Conv
    assert out.stat().st_size < src.stat().st_size / 3
    assert _props(out)["float_source_sha256"] == sha256_file(src) and _props(out)["calibration"] == "test"
    check = compare_detectors(src, out, synthetic_det_inputs(["plates", "receipts"], 1, 99, SMALL))
    assert check.images == 2 and check.flipped_pixels < 0.02 and check.mean_abs_diff < 0.03
    assert 0.8 < check.text_pixels_int8 / check.text_pixels_float < 1.25


@pytest.mark.parametrize("bundle", ["plate", "invoice", "id"])
def test_shipped_domain_bundles_detect_with_the_int8_copy_of_the_base_detector_on_cpu(bundle):
    b = ModelBundle(MODELS / bundle)
    assert b.det_path == (MODELS / "base" / "det.onnx").resolve()
    assert b.det_cpu_path == (MODELS / "base" / "det_int8.onnx").resolve()
    props = _props(b.det_cpu_path)
    # quantized from det.onnx, or from det.onnx as it was before `ocrnet fuse-gelu` rewrote both
    source = {sha256_file(b.det_path), _props(b.det_path).get("fuse_gelu_source_sha256")}
    assert props["exporter"] == "ocrnet quantize" and props["float_source_sha256"] in source


def test_pipeline_on_cpu_loads_the_int8_detector_and_reads_a_plate():
    from rendering import render_text_line

    from service.pipeline import OcrPipeline
    from service.profiles.plate_layouts import plate_key

    pipe = OcrPipeline.from_dir(MODELS / "plate", providers=["cpu"], intra_threads=2)
    assert pipe.det_path.name == "det_int8.onnx"
    # the plate recognizer (models/plate_rec) may leave out a plate's space: the plate key is what must come back
    assert [plate_key(line.text) for line in pipe.read(render_text_line("MXY 123", height=64))] == ["MXY123"]

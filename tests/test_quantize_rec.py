"""`ocrnet quantize-rec`: which convolutions go int8, and the plain float model the quantizer is handed."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper

from training.quantize import quantize_convs
from training.quantize_rec import pointwise_convs, standalone_float


def _model(int8_stored_head: bool = False) -> onnx.ModelProto:
    """x -> 3x3 conv -> 1x1 conv -> squeeze-excitation 1x1 conv (named like PP-OCRv6's) -> depthwise 3x3 conv."""
    rng = np.random.default_rng(0)
    weights = {
        "model.backbone.stem.weight": rng.normal(size=(8, 3, 3, 3)),
        "model.backbone.blocks.0.pw1.weight": rng.normal(size=(8, 8, 1, 1)),
        "model.backbone.blocks.0.se.reduce.weight": rng.normal(size=(8, 8, 1, 1)),
        "model.backbone.blocks.0.dw.weight": rng.normal(size=(8, 1, 3, 3)),
    }
    inits = [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()]
    nodes = [
        helper.make_node("Conv", ["x", "model.backbone.stem.weight"], ["a"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "model.backbone.blocks.0.pw1.weight"], ["b"], name="pw1"),
        helper.make_node("Conv", ["b", "model.backbone.blocks.0.se.reduce.weight"], ["c"], name="se"),
        helper.make_node("Conv", ["c", "model.backbone.blocks.0.dw.weight"], ["y"], name="dw", group=8,
                         pads=[1, 1, 1, 1]),
    ]
    if int8_stored_head:  # a weight stored as int8 + DequantizeLinear, as `--int8-weights` exports write them
        q = np.arange(-8, 8, dtype=np.int8).reshape(2, 8, 1, 1)
        inits += [numpy_helper.from_array(q, "head__int8"),
                  numpy_helper.from_array(np.array([0.5, 2.0], np.float32), "head__scale"),
                  numpy_helper.from_array(np.zeros((2, 8, 1, 1), np.float32), "unused")]
        nodes.insert(0, helper.make_node("DequantizeLinear", ["head__int8", "head__scale"], ["head"], axis=0))
        nodes.append(helper.make_node("Conv", ["y", "head"], ["z"], name="head_conv"))
    out = "z" if int8_stored_head else "y"
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 16])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 2 if int8_stored_head else 8,
                                                                                      8, 16])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_only_pointwise_convs_outside_squeeze_excitation_are_quantized():
    model = _model()
    assert pointwise_convs(model) == ["pw1"]
    assert pointwise_convs(model, keep_float=()) == ["pw1", "se"]


@pytest.mark.parametrize("as_written", ["dequantize_linear", "cast_mul"])
def test_standalone_float_turns_int8_stored_weights_back_into_float(tmp_path, as_written):
    """The restoring nodes of a weight-only int8 export (DequantizeLinear before 2026-12-02, Cast + Mul since)
    become the float tensor they stand for (the quantizer wants initializers as conv weights); the 1x1 head conv
    is then found too."""
    model = _model(int8_stored_head=True)
    if as_written == "cast_mul":
        scale = next(i for i in model.graph.initializer if i.name == "head__scale")
        scale.CopyFrom(numpy_helper.from_array(np.array([0.5, 2.0], np.float32).reshape(2, 1, 1, 1), "head__scale"))
        nodes = [helper.make_node("Cast", ["head__int8"], ["head_f"], to=TensorProto.FLOAT),
                 helper.make_node("Mul", ["head_f", "head__scale"], ["head"]), *model.graph.node[1:]]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    onnx.save(model, tmp_path / "m.onnx")
    plain = onnx.load(standalone_float(tmp_path / "m.onnx", tmp_path / "plain.onnx"))
    assert not [n for n in plain.graph.node if n.op_type in ("DequantizeLinear", "Cast", "Mul")]
    head = numpy_helper.to_array(next(i for i in plain.graph.initializer if i.name == "head"))
    np.testing.assert_array_equal(head[:, :, 0, 0], np.arange(-8, 8).reshape(2, 8) * np.array([[0.5], [2.0]]))
    assert "unused" not in {i.name for i in plain.graph.initializer}
    assert pointwise_convs(plain) == ["pw1", "head_conv"]


def test_quantized_model_keeps_the_other_convs_float_and_stays_close(tmp_path):
    import onnxruntime as ort

    onnx.save(_model(), tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    calibration = (rng.uniform(-1, 1, (1, 3, 8, 16)).astype(np.float32) for _ in range(8))
    out = quantize_convs(tmp_path / "m.onnx", tmp_path / "q.onnx", calibration, select=pointwise_convs)
    quantized = onnx.load(out)
    int8_weights = {i.name for i in quantized.graph.initializer if i.data_type == TensorProto.INT8}
    assert any("pw1" in name for name in int8_weights)
    assert not any(key in name for name in int8_weights for key in ("stem", "se.reduce", "dw"))
    x = rng.uniform(-1, 1, (1, 3, 8, 16)).astype(np.float32)
    want, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
                 for p in (tmp_path / "m.onnx", out))
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()

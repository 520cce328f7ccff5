"""``ocrnet fuse-gelu``: the spelled-out GELU of older exports becomes one Gelu node, computing the same, and models
that share weights with a rewritten base still find them."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.shared_weights import sidecar_path
from training.export import cpu_session, share_weights_with
from training.graph_rewrites import (
    fuse_gelu,
    fuse_gelu_file,
    int8_cast_mul_file,
    int8_storage_as_cast_mul,
    store_large_weights_fp16,
)

MODELS = Path(__file__).resolve().parents[1] / "models"


def _gelu_chain(x: str, out: str, tag: str, half_first: bool) -> tuple[list, list]:
    """x * (0.5 * (1 + erf(x / sqrt 2))) as PyTorch's exporter writes it (or with the factors the other way)."""
    consts = [numpy_helper.from_array(np.array(v, np.float32), f"{tag}_{k}")
              for k, v in (("sqrt2", np.sqrt(2)), ("one", 1.0), ("half", 0.5))]
    nodes = [helper.make_node("Div", [x, f"{tag}_sqrt2"], [f"{tag}_d"]),
             helper.make_node("Erf", [f"{tag}_d"], [f"{tag}_e"]),
             helper.make_node("Add", [f"{tag}_e", f"{tag}_one"], [f"{tag}_a"])]
    if half_first:
        nodes += [helper.make_node("Mul", [f"{tag}_half", f"{tag}_a"], [f"{tag}_h"]),
                  helper.make_node("Mul", [x, f"{tag}_h"], [out])]
    else:
        nodes += [helper.make_node("Mul", [x, f"{tag}_a"], [f"{tag}_h"]),
                  helper.make_node("Mul", [f"{tag}_h", f"{tag}_half"], [out])]
    return nodes, consts


def _model(weight: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """Conv -> GELU -> Conv -> GELU (both factor orders), opset 18, a fixed 1x4x8x8 input."""
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c1"], pads=[1, 1, 1, 1])]
    chain1, consts1 = _gelu_chain("c1", "g1", "one", half_first=True)
    nodes += chain1 + [helper.make_node("Conv", ["g1", "w", "b"], ["c2"], pads=[1, 1, 1, 1])]
    chain2, consts2 = _gelu_chain("c2", "y", "two", half_first=False)
    graph = helper.make_graph(nodes + chain2, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              inits + consts1 + consts2)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _weights(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.5, (4, 4, 3, 3)).astype(np.float32), rng.normal(0, 0.1, 4).astype(np.float32)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_both_spellings_become_one_gelu_each_and_compute_the_same():
    model = _model(*_weights(0))
    x = np.random.default_rng(1).normal(0, 2, (1, 4, 8, 8)).astype(np.float32)
    want = _run(model, x)
    assert fuse_gelu(model) == 2
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops == {"Conv": 2, "Gelu": 2}
    assert {o.version for o in model.opset_import if o.domain == ""} == {20}
    assert {t.name for t in model.graph.initializer} == {"w", "b"}  # the chains' constants are gone
    onnx.checker.check_model(model)
    np.testing.assert_allclose(_run(model, x), want, atol=1e-5)
    assert fuse_gelu(model) == 0  # nothing left to fuse


def test_a_base_rewritten_in_place_keeps_the_models_that_share_its_weights(tmp_path):
    weight, bias = _weights(0)
    (tmp_path / "base").mkdir()
    (tmp_path / "tuned").mkdir()
    base, src, tuned = tmp_path / "base" / "m.onnx", tmp_path / "src.onnx", tmp_path / "tuned" / "m.onnx"
    onnx.save(_model(weight, bias), str(base))
    onnx.save(_model(weight, bias + 1.0), str(src))  # finetuned: another bias, the same conv weight
    assert share_weights_with(src, base, tuned) == 0.0
    spec = json.loads(sidecar_path(tuned).read_text())
    assert [t["name"] for t in spec["tensors"]] == ["w"]
    x = np.random.default_rng(2).normal(0, 1, (1, 4, 8, 8)).astype(np.float32)
    before = cpu_session(tuned).run(None, {"x": x})[0]

    assert fuse_gelu_file(base, shared_by=[tuned]) == 2
    after_spec = json.loads(sidecar_path(tuned).read_text())
    assert after_spec["base_sha256"] != spec["base_sha256"] and after_spec["base_size"] == base.stat().st_size
    assert Counter(n.op_type for n in onnx.load(str(base)).graph.node)["Erf"] == 0
    np.testing.assert_allclose(cpu_session(tuned).run(None, {"x": x})[0], before, atol=1e-5)
    assert fuse_gelu_file(tuned) == 2  # the sharing model's own graph, sidecar kept
    np.testing.assert_allclose(cpu_session(tuned).run(None, {"x": x})[0], before, atol=1e-5)


def test_fp16_storage_in_place_leaves_the_tensors_other_models_share(tmp_path):
    """`ocrnet store-fp16` (models/base's recognizer head): large weights of the base become float16, except the
    ones a sharing model reads, which keeps computing exactly what it did."""
    weight, bias = _weights(0)
    (tmp_path / "base").mkdir()
    (tmp_path / "tuned").mkdir()
    base, src, tuned = tmp_path / "base" / "m.onnx", tmp_path / "src.onnx", tmp_path / "tuned" / "m.onnx"
    onnx.save(_model(weight, bias), str(base))
    onnx.save(_model(weight, bias + 1.0), str(src))
    share_weights_with(src, base, tuned)
    x = np.random.default_rng(2).normal(0, 1, (1, 4, 8, 8)).astype(np.float32)
    base_before, tuned_before = (cpu_session(p).run(None, {"x": x})[0] for p in (base, tuned))

    assert store_large_weights_fp16(base, shared_by=[tuned], min_elements=4) == 1  # the bias; the shared weight stays
    stored = {i.name: i.data_type for i in onnx.load(str(base)).graph.initializer}
    assert stored["w"] == TensorProto.FLOAT and stored["b__fp16"] == TensorProto.FLOAT16
    np.testing.assert_array_equal(cpu_session(tuned).run(None, {"x": x})[0], tuned_before)
    np.testing.assert_allclose(cpu_session(base).run(None, {"x": x})[0], base_before, atol=1e-3)
    kept = base.read_bytes()
    with pytest.raises(AssertionError, match="differs"):  # the weight too: past the probe tolerance, file untouched
        store_large_weights_fp16(base, min_elements=4)
    assert base.read_bytes() == kept


def test_every_shipped_network_runs_gelu_as_one_op():
    for path in sorted(MODELS.glob("*/*.onnx")):
        ops = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
        assert ops["Erf"] == 0 and ops["Gelu"] > 0, path


def _dequantize_linear_model(path: Path) -> None:
    """An older ``--int8-weights`` export: a Conv whose int8 weight a DequantizeLinear restores on every call."""
    rng = np.random.default_rng(3)
    q = rng.integers(-127, 128, (6, 3, 3, 3)).astype(np.int8)
    scale = rng.uniform(0.001, 0.01, 6).astype(np.float32)
    inits = [numpy_helper.from_array(q, "w__int8"), numpy_helper.from_array(scale, "w__scale"),
             numpy_helper.from_array(np.zeros(6, np.int8), "w__zero")]
    nodes = [helper.make_node("DequantizeLinear", ["w__int8", "w__scale", "w__zero"], ["w"], axis=0),
             helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_int8_weights_restored_by_dequantize_linear_become_cast_mul_with_identical_outputs(tmp_path):
    path = tmp_path / "old.onnx"
    _dequantize_linear_model(path)
    x = np.random.default_rng(4).normal(size=(1, 3, 8, 8)).astype(np.float32)
    before = cpu_session(path, optimized=False).run(None, {"x": x})[0]
    assert int8_cast_mul_file(path) == 1
    model = onnx.load(str(path))
    assert [n.op_type for n in model.graph.node] == ["Cast", "Mul", "Conv"]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert set(inits) == {"w__int8", "w__scale"} and inits["w__scale"].shape == (6, 1, 1, 1)  # zero point dropped
    assert np.array_equal(cpu_session(path, optimized=False).run(None, {"x": x})[0], before)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(tmp_path / "as_run.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    assert [n.op_type for n in onnx.load(str(tmp_path / "as_run.onnx")).graph.node] == ["Conv"]  # folded at load
    assert int8_cast_mul_file(path) == 0  # nothing left to rewrite: the file is not touched again


def test_a_dequantize_linear_with_a_zero_point_is_left_alone():
    """A real zero point is not the symmetric weight storage this rewrites (a QDQ-quantized model's, say)."""
    zero = numpy_helper.from_array(np.full(6, 3, np.int8), "w__zero")
    graph = helper.make_graph([helper.make_node("DequantizeLinear", ["w__int8", "w__scale", "w__zero"], ["w"])], "g",
                              [], [helper.make_tensor_value_info("w", TensorProto.FLOAT, [6])],
                              [numpy_helper.from_array(np.ones(6, np.int8), "w__int8"),
                               numpy_helper.from_array(np.float32(0.1), "w__scale"), zero])
    model = helper.make_model(graph)
    assert int8_storage_as_cast_mul(model) == 0 and model.graph.node[0].op_type == "DequantizeLinear"


def test_no_shipped_recognizer_dequantizes_its_weights_on_every_call():
    for path in sorted(MODELS.glob("*/rec*.onnx")):
        ops = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
        assert ops["DequantizeLinear"] == 0, path

"""fp16 / int8 weight storage for shipped models: smaller files, float32 compute, outputs within rounding."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.export import store_weights_fp16, store_weights_int8


def _conv_matmul_model(path) -> None:
    """x (1,8,6,6) -> Conv 32x8x3x3 -> flatten -> MatMul 512x40 (+ a 1-D scale that must stay float32)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.2, (32, 8, 3, 3)).astype(np.float32), "conv_w"),
             numpy_helper.from_array(rng.normal(0, 0.1, (32,)).astype(np.float32), "conv_b"),
             numpy_helper.from_array(np.array([1, 512], np.int64), "flat"),
             numpy_helper.from_array(rng.normal(0, 0.05, (512, 40)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(rng.normal(1, 0.1, (1200,)).astype(np.float32), "unused_scale")]
    nodes = [helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[0, 0, 0, 0]),
             helper.make_node("Reshape", ["c", "flat"], ["f"]),
             helper.make_node("MatMul", ["f", "fc_w"], ["m"]),
             helper.make_node("ReduceSum", ["unused_scale"], ["s"], keepdims=0),
             helper.make_node("Mul", ["m", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 40])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("store,ratio,tol", [(store_weights_fp16, 0.55, 2e-3), (store_weights_int8, 0.45, 2e-2)])
def test_stored_weights_shrink_the_file_and_keep_the_outputs(tmp_path, store, ratio, tol):
    src = tmp_path / "f32.onnx"
    _conv_matmul_model(src)
    dst = store(src, tmp_path / "stored.onnx")
    assert dst.stat().st_size < ratio * src.stat().st_size
    x = np.random.default_rng(1).normal(size=(1, 8, 6, 6)).astype(np.float32)
    want, got = _run(src, x), _run(dst, x)
    assert np.abs(got - want).max() <= tol * np.abs(want).max()


def test_int8_storage_is_per_output_channel_and_only_for_conv_and_matmul(tmp_path):
    src = tmp_path / "f32.onnx"
    _conv_matmul_model(src)
    model = onnx.load(str(store_weights_int8(src, tmp_path / "w8.onnx")))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits["conv_w__int8"].dtype == np.int8 and inits["conv_w__scale"].shape == (32, 1, 1, 1)
    assert inits["fc_w__int8"].dtype == np.int8 and inits["fc_w__scale"].shape == (1, 40)
    assert inits["unused_scale"].dtype == np.float32  # not a Conv/MatMul weight: kept as it was
    original = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(src)).graph.initializer}
    for name in ("conv_w", "fc_w"):
        restored = inits[name + "__int8"] * inits[name + "__scale"]
        assert np.abs(restored - original[name]).max() <= inits[name + "__scale"].max() / 2 + 1e-7


@pytest.mark.parametrize("store", [store_weights_fp16, store_weights_int8])
def test_onnxruntime_restores_stored_weights_once_when_the_session_is_created(tmp_path, store):
    """The restoring nodes are constants, so onnxruntime folds them into float32 weights at load: none is left
    in the graph it runs (a DequantizeLinear would be, kept for QDQ fusion, and run on every call)."""
    src = tmp_path / "f32.onnx"
    _conv_matmul_model(src)
    stored = store(src, tmp_path / "stored.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(tmp_path / "as_run.onnx")
    ort.InferenceSession(str(stored), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "as_run.onnx")).graph.node]
    assert ops == ["Conv", "Reshape", "MatMul", "Mul"]  # the model's own nodes only (its ReduceSum is folded too)

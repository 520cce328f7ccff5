"""Export OCRNet modules to ONNX (torch.export / dynamo path) and check them against onnxruntime.

The exported graphs keep the PP-OCRv6 I/O contract the service relies on: det takes ``x`` N,3,H,W and
returns the probability map N,1,H,W; rec takes ``x`` N,3,48,W and returns softmax probabilities N,T,C.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from training.models.rec import OCRNetRec, RecProbs

log = logging.getLogger(__name__)

OPSET = 20  # Gelu is an operator from 20 on (one kernel instead of five elementwise passes, graph_rewrites)


def _export(module: nn.Module, sample: torch.Tensor, path: Path, output: str,
            dynamic_dims: dict[int, torch.export.Dim], metadata: dict[str, str] | None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", category=FutureWarning)
        program = torch.onnx.export(
            module, (sample,), dynamo=True, external_data=False, opset_version=OPSET,
            input_names=["x"], output_names=[output], dynamic_shapes={"x": dynamic_dims}, verbose=False,
        )
    model = program.model_proto
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def export_det(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Export a detector with dynamic batch, height and width (both multiples of 32)."""
    sample = torch.zeros(1, 3, 320, 480)
    dims = {0: torch.export.Dim("batch", min=1, max=256),
            2: 32 * torch.export.Dim("h32", min=1, max=128),
            3: 32 * torch.export.Dim("w32", min=1, max=128)}
    return _export(model, sample, Path(path), "prob", dims, metadata)


def export_rec(model: OCRNetRec, path: str | Path, height: int = 48,
               metadata: dict[str, str] | None = None) -> Path:
    """Export a recognizer (softmax output) with dynamic batch and width; height stays fixed."""
    sample = torch.zeros(2, 3, height, 320)
    dims = {0: torch.export.Dim("batch", min=1, max=1024),
            3: torch.export.Dim("width", min=16, max=4096)}
    return _export(RecProbs(model), sample, Path(path), "probs", dims, metadata)


def cpu_session(path: str | Path, optimized: bool = True) -> ort.InferenceSession:
    """A CPU session of ``path``, with the weights it shares with a base model (service.shared_weights).
    ``optimized=False``: the graph as written, without onnxruntime's fusions (some of which approximate)."""
    from service.shared_weights import load_shared_weights

    options = ort.SessionOptions()
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    shared = load_shared_weights(path)
    if shared is not None:
        shared.apply(options)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session._ocrnet_shared_weights = shared  # type: ignore[attr-defined]  # their memory must outlive it
    return session


def probe_input(model: onnx.ModelProto) -> np.ndarray:
    """A random input of ``model``'s input shape: fixed dims as they are (rec height 48), free ones as in the
    export samples (batch 1, det 320x480, rec width 480)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    exported = (1, 3, 320, 480)
    shape = [d.dim_value or exported[k] for k, d in enumerate(dims)]
    return np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)


def onnx_max_abs_diff(onnx_path: str | Path, reference: nn.Module | None, inputs: Sequence[np.ndarray],
                      reference_onnx: str | Path | None = None, optimized: bool = True) -> float:
    """Largest |onnx - reference| over ``inputs``; the reference is a torch module or another ONNX file.
    ``optimized=False`` compares the graphs as written (see ``cpu_session``)."""
    session = cpu_session(onnx_path, optimized)
    ref_session = cpu_session(reference_onnx, optimized) if reference_onnx is not None else None
    worst = 0.0
    for array in inputs:
        got = session.run(None, {session.get_inputs()[0].name: array})[0]
        if ref_session is not None:
            want = ref_session.run(None, {ref_session.get_inputs()[0].name: array})[0]
        else:
            assert reference is not None
            with torch.no_grad():
                want = reference.eval()(torch.from_numpy(array)).numpy()
        if got.shape != want.shape:
            raise ValueError(f"shape mismatch {got.shape} vs {want.shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def _rewrite_weights(src: str | Path, dst: str | Path, label: str,
                     convert: Callable[[onnx.TensorProto, list[tuple[str, int]]],
                                       tuple[list, list[onnx.NodeProto]] | None],
                     ) -> Path:
    """Replace initializers by a stored form plus the nodes that turn it back into float32 at load time.

    ``convert(initializer, its (op_type, input position) uses)`` returns (new initializers, restoring nodes, the
    last one's output being the original name) or None to keep the initializer as it is.
    """
    model = onnx.load(str(src))
    graph = model.graph
    uses: dict[str, list[tuple[str, int]]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            uses.setdefault(name, []).append((node.op_type, position))
    restoring = []
    for init in list(graph.initializer):
        converted = convert(init, uses.get(init.name, []))
        if converted is None:
            continue
        stored, nodes = converted
        graph.initializer.remove(init)
        graph.initializer.extend(stored)
        restoring.extend(nodes)
    nodes = [*restoring, *graph.node]  # the restoring nodes first (a repeated field takes no slice assignment)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(dst))
    log.info("%s: %d initializers stored as %s (%.1f -> %.1f MB)", dst, len(restoring), label,
             Path(src).stat().st_size / 1e6, dst.stat().st_size / 1e6)
    return dst


def channel_broadcast_shape(ndim: int, axis: int) -> list[int]:
    """The shape a per-channel scale takes to broadcast over an ``ndim`` weight along ``axis``."""
    shape = [1] * ndim
    shape[axis] = -1
    return shape


def int8_restoring_nodes(stored: str, scale: str, output: str) -> list[onnx.NodeProto]:
    """Cast + Mul that give back the float32 weight ``output`` = int8 ``stored`` x broadcast-shaped ``scale``
    (the form ``store_weights_int8`` writes and ``quantize_rec.standalone_float`` reads)."""
    from onnx import TensorProto, helper

    as_float = output + "__int8_as_fp32"
    return [helper.make_node("Cast", [stored], [as_float], to=TensorProto.FLOAT, name=output + "__int8_to_fp32"),
            helper.make_node("Mul", [as_float, scale], [output], name=output + "__scale_mul")]


def store_weights_int8(src: str | Path, dst: str | Path, min_elements: int = 1024,
                       keep: Callable[[onnx.TensorProto], bool] | None = None) -> Path:
    """Store the large Conv and MatMul weights as int8 (symmetric, one scale per output channel) followed by a
    Cast to float32 and a Mul by the scale.

    Not a DequantizeLinear: onnxruntime keeps those in the graph for QDQ fusion and dequantizes every weight on
    every run (a whole int8-stored recognizer ran 20 % slower than its float export); Cast and Mul of
    constants are folded into float32 weights when the session is created, so speed is the float model's.

    A quarter of the float32 file where fp16 storage only halves it; activations stay float32, so unlike a fully
    quantized model (which cost the domains recognizer 3 of 36 MRZ on DEV) the only error is the weights' rounding.
    Other initializers (norms, biases, anything shared, anything ``keep`` returns True for) stay float32.
    """
    from onnx import numpy_helper

    def to_int8(init: onnx.TensorProto, uses: list[tuple[str, int]]):
        if keep is not None and keep(init):
            return None
        weights = numpy_helper.to_array(init)
        if (weights.dtype != np.float32 or weights.size < min_elements or len(uses) != 1
                or uses[0] not in {("Conv", 1), ("MatMul", 1)} or weights.ndim < 2):
            return None
        axis = 0 if uses[0][0] == "Conv" else weights.ndim - 1  # output channels
        reduce = tuple(a for a in range(weights.ndim) if a != axis)
        scale = np.abs(weights).max(axis=reduce) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        scale = scale.reshape(channel_broadcast_shape(weights.ndim, axis))  # broadcasts over the weight in the Mul
        q = np.clip(np.round(weights / scale), -127, 127).astype(np.int8)
        stored = [numpy_helper.from_array(q, init.name + "__int8"),
                  numpy_helper.from_array(scale, init.name + "__scale")]
        return stored, int8_restoring_nodes(init.name + "__int8", init.name + "__scale", init.name)

    return _rewrite_weights(src, dst, "int8", to_int8)


def store_weights_fp16(src: str | Path, dst: str | Path, min_elements: int = 1024,
                       keep: Callable[[onnx.TensorProto], bool] | None = None) -> Path:
    """Store large float32 initializers as float16 followed by a Cast back to float32.

    Halves the file (models/ has a size budget) while the runtime still computes in float32:
    onnxruntime folds the Casts into float32 constants when the session is created, so speed is
    unchanged and the only error is fp16 rounding of the weights (measured per model in its card).
    Initializers ``keep`` returns True for stay float32.
    """
    from onnx import TensorProto, helper, numpy_helper

    def to_fp16(init: onnx.TensorProto, _uses: list[tuple[str, int]]):
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements or (keep and keep(init)):
            return None
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "__fp16")
        return [half], [helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                         name=init.name + "__to_fp32")]

    return _rewrite_weights(src, dst, "fp16", to_fp16)


def _unique_offset(haystack: bytes, raw: bytes) -> int | None:
    """Where ``raw`` lies in ``haystack`` when it occurs exactly once there (a shared tensor must be unambiguous)."""
    offset = haystack.find(raw)
    return offset if offset >= 0 and haystack.find(raw, offset + 1) < 0 else None


def rebase_shared_weights(model_path: str | Path, old_base: bytes) -> None:
    """Point ``model_path``'s shared tensors (sidecar and the ONNX file's external-data entries) at the same bytes in
    its base file after the base was rewritten without changing its tensors (``ocrnet fuse-gelu``); ``old_base``
    is the base file's content before. Raises when a tensor is no longer found exactly once."""
    from service.shared_weights import sha256_file, sidecar_path

    model_path = Path(model_path)
    sidecar = sidecar_path(model_path)
    spec = json.loads(sidecar.read_text())
    base = (sidecar.parent / spec["base"]).resolve()
    new_base = base.read_bytes()
    moved: dict[str, int] = {}
    for tensor in spec["tensors"]:
        raw = old_base[tensor["offset"]:tensor["offset"] + tensor["length"]]
        offset = _unique_offset(new_base, raw)
        if offset is None:
            raise ValueError(f"{model_path}: {tensor['name']} is not in the new {base.name} exactly once")
        tensor["offset"] = moved[tensor["name"]] = offset
    spec["base_size"], spec["base_sha256"] = len(new_base), sha256_file(base)
    model = onnx.load(str(model_path), load_external_data=False)
    for init in model.graph.initializer:
        if init.name in moved:
            for entry in init.external_data:
                if entry.key == "offset":
                    entry.value = str(moved[init.name])
    onnx.save_model(model, str(model_path))
    sidecar.write_text(json.dumps(spec, indent=1) + "\n")


def share_weights_with(src: str | Path, base: str | Path, dst: str | Path, min_bytes: int = 64,
                       int8_rest: bool = False) -> float:
    """Write ``src`` as ``dst`` keeping only the tensors that differ from ``base``'s; the others become external
    data pointing into ``base`` and are listed (byte offset, length, dtype, shape) in ``dst``'s sidecar, which the
    service reads (service.shared_weights). For a model finetuned from ``base`` with a frozen backbone this is the
    neck and head only (1 of 10.3 MB for the detector, 1.8 of 12.5 MB for a cut-charset recognizer).

    A weight tensor (float or int8; never the int64 shapes and pads onnxruntime needs while loading) is shared
    when ``base`` holds a tensor of the same dtype, shape and raw bytes, whatever the two exports named it, and
    those bytes occur once in the base file. ``int8_rest``: the large Conv/MatMul weights that stay in ``dst``
    are stored as int8 (see store_weights_int8). Returns max |dst - src| on a probe input: 0 without
    ``int8_rest`` (checked), the weights' rounding with it."""
    import tempfile

    from onnx import TensorProto

    from service.shared_weights import sha256_file, sidecar_path

    shareable = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT8, TensorProto.UINT8}
    src, base, dst = Path(src), Path(base), Path(dst)
    base_bytes = base.read_bytes()
    base_model = onnx.load(str(base), load_external_data=False)
    in_base = {(i.data_type, tuple(i.dims), i.raw_data) for i in base_model.graph.initializer if i.raw_data}

    def in_base_file(init: onnx.TensorProto) -> bool:
        return (init.data_type in shareable and len(init.raw_data) >= min_bytes
                and (init.data_type, tuple(init.dims), init.raw_data) in in_base)

    with tempfile.TemporaryDirectory() as tmp:
        stored = Path(tmp) / "int8.onnx"
        if int8_rest:
            store_weights_int8(src, stored, keep=in_base_file)
        model = onnx.load(str(stored if int8_rest else src))
    location = os.path.relpath(base, dst.parent)
    tensors = []
    for init in model.graph.initializer:
        raw = init.raw_data
        if not in_base_file(init):
            continue
        offset = _unique_offset(base_bytes, raw)
        if offset is None:
            continue  # not locatable unambiguously in the file: keep it inline
        tensors.append({"name": init.name, "dtype": int(init.data_type), "shape": [int(d) for d in init.dims],
                        "offset": offset, "length": len(raw)})
        init.ClearField("raw_data")
        init.data_location = TensorProto.EXTERNAL
        del init.external_data[:]
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = init.external_data.add()
            entry.key, entry.value = key, value
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(dst))
    sidecar_path(dst).write_text(json.dumps({"base": location, "base_size": len(base_bytes),
                                             "base_sha256": sha256_file(base), "tensors": tensors}, indent=1) + "\n")
    diff = onnx_max_abs_diff(dst, None, [probe_input(model)], reference_onnx=src)
    if diff > 0 and not int8_rest:
        raise AssertionError(f"{dst} differs from {src} by {diff} on a probe input")
    log.info("%s: %d of %d initializers shared with %s%s (%.1f -> %.1f MB, max |diff| %.1e)", dst, len(tensors),
             len(model.graph.initializer), base, ", the rest int8-stored" if int8_rest else "",
             src.stat().st_size / 1e6, dst.stat().st_size / 1e6, diff)
    return diff

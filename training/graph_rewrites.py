"""``ocrnet fuse-gelu``: one Gelu node where an ONNX export spelled GELU out in five.

PyTorch's exporter at opset 18 writes ``nn.GELU`` as ``x * (0.5 * (1 + erf(x / sqrt(2))))``: Div, Erf, Add, Mul,
Mul. onnxruntime's own GELU fusion expects the factors in another order, so on a CPU every GELU of PP-OCRv6 (13 in
the recognizer, 13 in the detector) ran as five passes over the activations, plus the layout reorders around
them: a quarter of the recognizer's time. ONNX has a Gelu operator since opset 20 (onnxruntime runs it as one
kernel on CPU and CUDA); exports now target opset 20 and emit it directly (``training.export.OPSET``). This rewrites
models exported before, in place: only nodes change, never an initializer, so a model that shares weights with a
base file (``<model>.shared.json``) keeps its sidecar, and the result is checked against the original on a probe
input before it replaces it. The rewritten file records the SHA-256 it had (``fuse_gelu_source_sha256``), so an
int8 copy quantized from the file before still names its source.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

GELU_OPSET = 20
# A probe input's outputs may differ by rounding only (erf evaluated by another kernel).
MAX_PROBE_DIFF = 1e-4


def _scalars(graph: onnx.GraphProto) -> dict[str, float]:
    """Single-element constants (initializers and Constant nodes) by name."""
    import onnx
    from onnx import numpy_helper

    values: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer
                                     if t.data_location != onnx.TensorProto.EXTERNAL and math.prod(t.dims) == 1}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            array = numpy_helper.to_array(node.attribute[0].t)
            if array.size == 1:
                values[node.output[0]] = array
    return {name: float(array.reshape(-1)[0]) for name, array in values.items()}


def fuse_gelu(model: onnx.ModelProto) -> int:
    """Replace every ``Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(0.5) -> Mul(x)`` chain (factors in either order)
    by ``Gelu(x)``, raise the default opset to 20 when one was fused, drop the constants nothing reads any more.
    Returns how many were fused."""
    from onnx import helper

    graph = model.graph
    scalars = _scalars(graph)
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def only_consumer(node: onnx.NodeProto, op_type: str) -> onnx.NodeProto | None:
        users = consumers.get(node.output[0], [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def other_input(node: onnx.NodeProto, known: str) -> str | None:
        rest = [name for name in node.input if name != known]
        return rest[0] if len(node.input) == 2 and len(rest) == 1 else None

    def is_const(name: str | None, value: float) -> bool:
        return name is not None and name in scalars and abs(scalars[name] - value) < 1e-4 * max(abs(value), 1)

    replaced: dict[int, onnx.NodeProto] = {}  # id(last node of a chain) -> its Gelu
    removed: set[int] = set()
    for erf in graph.node:
        if erf.op_type != "Erf":
            continue
        div = producer.get(erf.input[0])
        if div is None or div.op_type != "Div" or not is_const(div.input[1], math.sqrt(2)):
            continue
        x = div.input[0]
        add = only_consumer(erf, "Add")
        if add is None or not is_const(other_input(add, erf.output[0]), 1.0):
            continue
        first = only_consumer(add, "Mul")
        if first is None:
            continue
        factor = other_input(first, add.output[0])
        second = only_consumer(first, "Mul")
        if is_const(factor, 0.5) and second is not None and other_input(second, first.output[0]) == x:
            last = second  # (0.5 * (1 + erf)) * x
        elif factor == x and second is not None and is_const(other_input(second, first.output[0]), 0.5):
            last = second  # (x * (1 + erf)) * 0.5
        else:
            continue
        if len(consumers.get(div.output[0], [])) != 1:
            continue
        chain = (div, erf, add, first, last)
        removed.update(id(node) for node in chain)
        replaced[id(last)] = helper.make_node("Gelu", [x], [last.output[0]], name=f"{last.name or x}_gelu")
    if not replaced:
        return 0
    nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in removed or id(node) in replaced]
    del graph.node[:]
    graph.node.extend(nodes)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, GELU_OPSET)
    _drop_dangling(graph)
    return len(replaced)


def _drop_dangling(graph: onnx.GraphProto) -> None:
    """Inline initializers and Constant nodes no node or output reads (the chains' sqrt 2, 1 and 0.5), and the
    shape annotations of the intermediate tensors that are gone."""
    import onnx

    read = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
    kept = [t for t in graph.initializer if t.name in read or t.data_location == onnx.TensorProto.EXTERNAL]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [n for n in graph.node if n.op_type != "Constant" or any(out in read for out in n.output)]
    del graph.node[:]
    graph.node.extend(nodes)
    produced = {out for node in graph.node for out in node.output}
    annotated = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(annotated)


def fuse_gelu_file(path: str | Path, shared_by: Sequence[str | Path] = ()) -> int:
    """Rewrite ``path`` in place (see module docstring); returns the number of GELUs fused (0: file untouched).
    Raises when the rewritten model's output on a probe differs from the original's by more than rounding.
    ``shared_by``: models that take weights from ``path`` (their sidecars name it as base); their byte ranges are
    re-found in the rewritten file and each is checked to compute what it computed before."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    fused = fuse_gelu(model)
    if fused:
        replace_checked(path, model, shared_by, "fuse_gelu_source_sha256")
        log.info("%s: %d GELUs fused", path, fused)
    return fused


def replace_checked(path: str | Path, model: onnx.ModelProto, shared_by: Sequence[str | Path], provenance_key: str,
                    max_diff: float = MAX_PROBE_DIFF) -> float:
    """Write ``model`` over ``path`` when its output on a probe input is within ``max_diff`` of the file's (raises
    otherwise, leaving the file as it was); ``provenance_key`` in its metadata records the SHA-256 it replaced. The
    models in ``shared_by`` take tensors from ``path``: their byte ranges are re-found in the new file and each is
    checked to compute exactly what it computed before. Returns the probe difference."""
    import onnx

    from service.shared_weights import sha256_file, sidecar_path
    from training.export import (
        cpu_session,
        onnx_max_abs_diff,
        probe_input,
        rebase_shared_weights,
    )

    path = Path(path)
    old_bytes = path.read_bytes()
    before = {}
    for sharer in map(Path, shared_by):
        session = cpu_session(sharer, optimized=False)
        probe = probe_input(onnx.load(str(sharer), load_external_data=False))
        before[sharer] = (probe, session.run(None, {session.get_inputs()[0].name: probe})[0])
    entry = model.metadata_props.add()  # provenance: what this file was (an int8 copy names that as its source)
    entry.key, entry.value = provenance_key, sha256_file(path)
    staged = path.with_name(path.stem + ".rewriting" + path.suffix)
    onnx.save_model(model, str(staged))
    sidecar = sidecar_path(path)
    try:
        if sidecar.is_file():
            shutil.copyfile(sidecar, sidecar_path(staged))  # same folder: its relative base path still holds
        # the graphs as written: onnxruntime's own fusions of int8-stored weights approximate (~1e-2 on a probe)
        # and would hide what the rewrite itself changed
        diff = onnx_max_abs_diff(staged, None, [probe_input(model)], reference_onnx=path, optimized=False)
        if diff > max_diff:
            raise AssertionError(f"{path}: the rewritten model differs by {diff:.2e} on a probe input; left unchanged")
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
        sidecar_path(staged).unlink(missing_ok=True)
    log.info("%s: rewritten (max |diff| %.1e on a probe)", path, diff)
    for sharer, (probe, want) in before.items():
        rebase_shared_weights(sharer, old_bytes)
        session = cpu_session(sharer, optimized=False)
        moved = float(np.abs(session.run(None, {session.get_inputs()[0].name: probe})[0] - want).max())
        if moved > 0:
            raise AssertionError(f"{sharer}: differs by {moved:.2e} after its base {path.name} was rewritten")
        log.info("%s: shared weights re-found in the rewritten %s", sharer, path.name)
    return diff


# The classifier of PP-OCRv6's recognizer (120 x 18,710 weights, 9 MB of the 21 MB file) is the only tensor this large.
FP16_MIN_ELEMENTS = 1_000_000
# fp16 rounding of those weights moves a softmax output by ~1e-4 (measured: see models/base/MODEL_CARD.md).
MAX_FP16_PROBE_DIFF = 1e-3


def store_large_weights_fp16(path: str | Path, shared_by: Sequence[str | Path] = (),
                             min_elements: int = FP16_MIN_ELEMENTS) -> int:
    """Store ``path``'s float32 initializers of at least ``min_elements`` as float16 + Cast, in place; returns how
    many were stored so. Tensors the models in ``shared_by`` read from the file stay as they are (those models
    compute exactly what they did: checked)."""
    import json
    import tempfile

    import onnx

    from service.shared_weights import sidecar_path
    from training.export import store_weights_fp16

    path = Path(path)
    data = path.read_bytes()
    shared = set()
    for sharer in map(Path, shared_by):
        for tensor in json.loads(sidecar_path(sharer).read_text())["tensors"]:
            shared.add(data[tensor["offset"]:tensor["offset"] + tensor["length"]])
    with tempfile.TemporaryDirectory() as tmp:
        stored = store_weights_fp16(path, Path(tmp) / path.name, min_elements, keep=lambda i: i.raw_data in shared)
        model = onnx.load(str(stored))
    count = sum(node.op_type == "Cast" and node.name.endswith("__to_fp32") for node in model.graph.node)
    if count:
        replace_checked(path, model, shared_by, "fp16_weights_source_sha256", MAX_FP16_PROBE_DIFF)
    return count


def main_fp16(argv: Sequence[str] | None = None) -> int:
    """``ocrnet store-fp16``: a model's largest weights stored as float16, in place, sharers re-pointed."""
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet store-fp16", description=store_large_weights_fp16.__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("model", type=Path, help="ONNX file to rewrite in place")
    ap.add_argument("--min-elements", type=int, default=FP16_MIN_ELEMENTS,
                    help="float32 initializers at least this large are stored as float16")
    ap.add_argument("--shared-by", nargs="*", type=Path, default=[],
                    help="the models whose sidecars take weights from it (re-pointed, checked)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    print(f"{args.model}: {store_large_weights_fp16(args.model, args.shared_by, args.min_elements)} "
          "initializers stored as float16")
    return 0


def int8_storage_as_cast_mul(model: onnx.ModelProto) -> int:
    """Rewrite each weight an older ``--int8-weights`` export restores with a DequantizeLinear (int8 initializer,
    per-channel scale, no zero point) as the Cast + Mul that ``training.export.store_weights_int8`` writes now; the
    scale is stored broadcast-shaped. Returns how many were rewritten.

    Why: onnxruntime keeps a DequantizeLinear of a constant in the graph (for QDQ fusion) and dequantizes the weight
    on every call; a Cast and a Mul of constants are folded into a float32 weight when the session is created. The
    weights are the same numbers either way: (q - 0) * scale."""
    from onnx import TensorProto, numpy_helper

    from training.export import channel_broadcast_shape, int8_restoring_nodes

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    nodes, rewritten = [], 0
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            nodes.append(node)
            continue
        q, scale = inits.get(node.input[0]), inits.get(node.input[1])
        zero_point = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if (q is None or scale is None or q.data_type != TensorProto.INT8
                or (zero_point is not None and numpy_helper.to_array(zero_point).any())):
            nodes.append(node)
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % len(q.dims)
        values = numpy_helper.to_array(scale)
        if values.ndim:
            values = values.reshape(channel_broadcast_shape(len(q.dims), axis))
        scale.CopyFrom(numpy_helper.from_array(values, scale.name))
        nodes += int8_restoring_nodes(q.name, scale.name, node.output[0])
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        _drop_dangling(graph)
    return rewritten


def int8_cast_mul_file(path: str | Path, shared_by: Sequence[str | Path] = ()) -> int:
    """``int8_storage_as_cast_mul`` on ``path`` in place, checked on a probe input (see ``replace_checked``)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    count = int8_storage_as_cast_mul(model)
    if count:
        replace_checked(path, model, shared_by, "int8_cast_mul_source_sha256", max_diff=0.0)
        log.info("%s: %d int8 weights now restored by Cast + Mul", path, count)
    return count


def main_int8_cast_mul(argv: Sequence[str] | None = None) -> int:
    """``ocrnet int8-cast-mul``: older int8-stored exports restored by Cast + Mul (float speed), in place."""
    return _rewrite_in_place_main("int8-cast-mul", int8_storage_as_cast_mul.__doc__, int8_cast_mul_file,
                                  "weights rewritten", argv)


def _rewrite_in_place_main(command: str, description: str | None,
                           rewrite: Callable[[Path, Sequence[Path]], int], done: str,
                           argv: Sequence[str] | None) -> int:
    """The command line of an in-place rewrite: models, optionally the models sharing one's weights."""
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog=f"ocrnet {command}", description=description, formatter_class=HelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="ONNX files to rewrite in place")
    ap.add_argument("--shared-by", nargs="*", type=Path, default=[],
                    help="with one model: the models whose sidecars take weights from it (re-pointed, checked)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.shared_by and len(args.models) != 1:
        ap.error("--shared-by goes with one model (their base)")
    for path in args.models:
        print(f"{path}: {rewrite(path, args.shared_by)} {done}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``ocrnet fuse-gelu``."""
    return _rewrite_in_place_main("fuse-gelu", __doc__, fuse_gelu_file, "GELUs fused", argv)

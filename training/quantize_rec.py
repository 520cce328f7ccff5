"""``ocrnet quantize-rec``: an int8 copy of a bundle's recognizer for CPU serving, calibrated on real line crops.

Why: with the detector in int8, the recognizer is the larger half of a receipt on a CPU (~480 of ~1,140 ms for
~52 lines on 2 cores). Only the pointwise (1x1) convolutions are quantized (static QDQ, per-channel int8 weights,
uint8 activations): they hold most of the multiply-adds and tolerate it, while quantizing every Conv (the stem and
the depthwise ones too) read 46.8 % of 600 DEV receipt crops exactly instead of 91.5 %. Calibration crops come
from a TRAIN crop list (``ocrnet crops``); ``--check`` reads another list (DEV crops: model selection only) with
both models and prints how many lines read the same and each model's accuracy against the labels. The service
loads the result on CPU-only hosts when the bundle's model.json names it ``rec_cpu``; accelerators keep ``rec``.
Measured on this project's 2-core CPU it does not pay (1.17-1.26x per recognizer call, 1.025x per receipt,
bench/README.md), so no shipped bundle names one; a CPU with faster int8 kernels (AMX) may differ: measure there.
"""
from __future__ import annotations

import argparse
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.quantize import CALIBRATION_METHODS, quantize_convs

if TYPE_CHECKING:  # onnx and onnxruntime load when the command runs, not for --help
    import onnx

    from service.vision.rec_preprocess import RecBatch


def standalone_float(model_path: str | Path, out: str | Path) -> Path:
    """``model_path`` as one plain float ONNX file, which onnxruntime's quantizer needs: the tensors it shares with
    its base model (``<model>.shared.json``) copied in, and weights stored as int8 (``--int8-weights`` exports:
    Cast + Mul by the scale, or DequantizeLinear before 2026-12-02) turned back into the float32 tensors they
    stand for."""
    import onnx
    from onnx import numpy_helper

    from service.shared_weights import load_shared_weights

    model = onnx.load(str(model_path), load_external_data=False)
    shared = load_shared_weights(model_path)
    if shared is not None:
        values = dict(zip(shared.names, shared.values))
        for init in model.graph.initializer:
            if init.name in values:
                init.CopyFrom(numpy_helper.from_array(values[init.name].numpy(), init.name))
    inits = {i.name: i for i in model.graph.initializer}
    casts = {node.output[0]: node for node in model.graph.node
             if node.op_type == "Cast" and node.input[0] in inits
             and next((a.i for a in node.attribute if a.name == "to"), None) == onnx.TensorProto.FLOAT}
    for node in list(model.graph.node):  # int8 * scale as the exports since 2026-12-02 write it: Cast, then Mul
        if node.op_type == "Mul" and node.input[0] in casts and node.input[1] in inits:
            q = numpy_helper.to_array(inits[casts[node.input[0]].input[0]])
            weights = (q.astype(np.float32) * numpy_helper.to_array(inits[node.input[1]])).astype(np.float32)
            model.graph.initializer.append(numpy_helper.from_array(weights, node.output[0]))
            model.graph.node.remove(node)
            model.graph.node.remove(casts[node.input[0]])
    for node in list(model.graph.node):  # and as a DequantizeLinear, as earlier exports wrote it
        if node.op_type != "DequantizeLinear" or not all(name in inits for name in node.input[:2]):
            continue
        q, scale = (numpy_helper.to_array(inits[name]) for name in node.input[:2])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if scale.ndim:
            shape[axis] = -1
        zero = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else 0
        weights = ((q.astype(np.float32) - np.reshape(zero, shape if np.ndim(zero) else ())) *
                   scale.reshape(shape)).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(weights, node.output[0]))
        model.graph.node.remove(node)
    used = {name for node in model.graph.node for name in node.input}
    for init in list(model.graph.initializer):
        if init.name not in used:
            model.graph.initializer.remove(init)
    onnx.checker.check_model(model)
    out = Path(out)
    onnx.save_model(model, str(out))
    return out


# Squeeze-excitation convs work on one pooled vector per image (no compute to save) and gate whole channels, so an
# error there scales every pixel of the block's output.
KEEP_FLOAT = (".se.",)


def pointwise_convs(model: onnx.ModelProto, keep_float: Sequence[str] = KEEP_FLOAT) -> list[str]:
    """Names of the Conv nodes with a 1x1 kernel and no grouping (the ones worth quantizing), except those whose
    weight name contains one of ``keep_float``."""
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        dims = shapes.get(node.input[1], ())
        if group == 1 and len(dims) == 4 and dims[2:] == (1, 1) and not any(k in node.input[1] for k in keep_float):
            names.append(node.name)
    return names


def sample_crops(tsv: str | Path, n: int | None = None, seed: int = 0) -> list[tuple[np.ndarray, str]]:
    """(BGR crop, label) of ``n`` rows of a crop list (all when None), drawn with ``seed``."""
    from service.vision.images import to_bgr_array
    from training.data.loaders import open_rgb, read_crop_list

    records = read_crop_list(tsv)
    if n is not None and n < len(records):
        records = random.Random(seed).sample(records, n)
    return [(to_bgr_array(open_rgb(r.path)), r.text) for r in records]


def rec_inputs(crops: Sequence[np.ndarray], height: int, max_batch: int = 1) -> Iterator[RecBatch]:
    """The recognizer batches the service would make of ``crops`` (width buckets; one crop each by default, the
    calibration's unit)."""
    from service.vision.rec_preprocess import make_rec_batches

    yield from make_rec_batches(crops, max_batch=max_batch, height=height)


@dataclass
class RecCheck:
    """How the int8 recognizer reads a crop list next to the float one."""

    crops: int
    same_text: int
    float_exact: int
    int8_exact: int

    def summary(self) -> str:
        n = max(self.crops, 1)
        return (f"{self.crops} check crops: same text {100 * self.same_text / n:.1f} %, read exactly "
                f"(case-insensitive) float {100 * self.float_exact / n:.1f} % / int8 {100 * self.int8_exact / n:.1f} %")


def compare_recognizers(float_path: str | Path, int8_path: str | Path, classes: Sequence[str],
                        crops: Sequence[tuple[np.ndarray, str]], height: int, threads: int = 2) -> RecCheck:
    from service.runtime import create_session
    from service.vision.ctc import ctc_greedy_decode

    sessions = [create_session(p, providers=["CPUExecutionProvider"], intra_threads=threads)[0]
                for p in (float_path, int8_path)]
    name = sessions[0].get_inputs()[0].name
    check = RecCheck(len(crops), 0, 0, 0)
    for batch in rec_inputs([c for c, _ in crops], height, max_batch=32):
        reads = [ctc_greedy_decode(s.run(None, {name: batch.tensor})[0], classes, top_k=0) for s in sessions]
        for i, a, b in zip(batch.indices, *reads):
            label = crops[i][1].strip().upper()
            check.same_text += a.text == b.text
            check.float_exact += a.text.strip().upper() == label
            check.int8_exact += b.text.strip().upper() == label
    return check


def build_parser() -> argparse.ArgumentParser:
    from training.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="ocrnet quantize-rec", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--bundle", type=Path, required=True, help="model dir whose float recognizer (rec) to quantize")
    p.add_argument("--calibration", type=Path, required=True, help="crop list (labels.tsv) to calibrate on (TRAIN)")
    p.add_argument("--n", type=int, default=300, help="calibration crops drawn from --calibration")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw")
    p.add_argument("--out", type=Path, required=True, help="int8 recognizer ONNX to write")
    p.add_argument("--share-weights-with", type=Path, metavar="ONNX",
                   help="store only the tensors that differ from this file's (e.g. models/base/rec.onnx, or another "
                        "int8 recognizer of the same backbone: its pointwise weights quantize to the same bytes)")
    p.add_argument("--method", choices=CALIBRATION_METHODS, default="minmax",
                   help="activation ranges: the extremes over all calibration crops, or the mean of each crop's")
    p.add_argument("--keep-float", default=",".join(KEEP_FLOAT),
                   help="comma-separated parts of weight names whose pointwise convs stay float")
    p.add_argument("--check", type=Path, help="crop list to compare the two models on (e.g. DEV crops)")
    p.add_argument("--check-n", type=int, default=600, help="crops drawn from --check")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads for the check")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for path in (args.calibration, args.check):
        if path is not None and not path.is_file():
            raise SystemExit(f"{path} not found (crop lists: `ocrnet crops`, which needs the TRAIN images)")
    from service.model_bundle import ModelBundle

    bundle = ModelBundle(args.bundle)
    calibration = sample_crops(args.calibration, args.n, args.seed)
    height = bundle.manifest.rec_height
    with tempfile.TemporaryDirectory() as tmp:
        plain = standalone_float(bundle.rec_path, Path(tmp) / "float.onnx")
        whole = args.out if args.share_weights_with is None else Path(tmp) / "int8.onnx"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        keep_float = [k for k in args.keep_float.split(",") if k]
        tensors = (batch.tensor for batch in rec_inputs([c for c, _ in calibration], height))
        quantize_convs(plain, whole, tensors, {"calibration": f"{args.method} on {len(calibration)} crops of "
                                                              f"{args.calibration.name}, seed {args.seed}"},
                       args.method, select=lambda model: pointwise_convs(model, keep_float))
        if args.share_weights_with is not None:
            from training.export import share_weights_with

            share_weights_with(whole, args.share_weights_with, args.out, int8_rest=True)
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB; float {plain.stat().st_size / 1e6:.1f} MB)")
        if args.check is not None:
            check = compare_recognizers(plain, args.out, bundle.classes,
                                        sample_crops(args.check, args.check_n, args.seed), height, args.threads)
            print(check.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

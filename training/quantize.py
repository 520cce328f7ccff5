"""``ocrnet quantize``: an int8 copy of the detector for CPU serving, calibrated on synthetic pages.

Why: on a CPU the detector is most of a request (~290 of ~376 ms for a plate photo on 2 cores), and int8
convolutions with VNNI/AVX2 run it ~2.5x faster. Only the Conv nodes are quantized (static, QDQ, per-channel int8
weights, uint8 activations): quantizing the GELU/Mul/Add/Resize tensors too broke the probability map (no text
found at all), while Conv-only keeps it. Calibration pages come from the synthetic generators, never from the DEV
sets, and a second synthetic set (another seed) checks the result: probability-map error and how many pixels
flip at the DB threshold. Accelerators keep the float model (``det`` in model.json; ``det_cpu`` names this one).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.data.synth import DOMAINS

if TYPE_CHECKING:  # onnx, onnxruntime and the generators load when the command runs, not for --help
    import onnx

    from service.vision.det_preprocess import DetPreprocessConfig

QUANTIZED_OPS = ("Conv",)
DB_THRESH = 0.3


# Each domain's pages are sized the way the service sizes them for that domain (plate photos: long side 736).
DOMAIN_BUNDLES = {"plates": "plate", "receipts": "invoice", "ids": "id"}


def domain_det_configs(models_root: Path, domains: Sequence[str]) -> dict[str, DetPreprocessConfig]:
    from service.model_bundle import ModelBundle

    return {d: ModelBundle(models_root / DOMAIN_BUNDLES[d]).manifest.det_preprocess() for d in domains}


def synthetic_det_inputs(domains: Sequence[str], n: int, seed: int,
                         configs: dict[str, DetPreprocessConfig] | None = None) -> Iterator[np.ndarray]:
    """(1,3,H,W) detector tensors of ``n`` synthetic pages per domain, preprocessed as the service does."""
    from service.vision.det_preprocess import DetPreprocessConfig, prepare_det_input
    from service.vision.images import to_bgr_array
    from training.data.synth.registry import SyntheticSamples

    for domain in domains:
        config = (configs or {}).get(domain) or DetPreprocessConfig(buckets=())
        for sample in SyntheticSamples(domain, "pages", n, seed=seed):
            yield prepare_det_input(to_bgr_array(sample.image), config).tensor[None]


def _calibration_reader(name: str, arrays: Iterator[np.ndarray]):
    """onnxruntime's CalibrationDataReader over ``arrays`` fed to input ``name``."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Inputs(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            array = next(arrays, None)
            return None if array is None else {name: array}

    return _Inputs()


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        root.setLevel(level)


# Histogram methods (percentile, entropy) stack every calibration output into one array, so they need all pages
# at one shape; ours keep their own. "average": the mean of each page's min/max instead of the extremes.
CALIBRATION_METHODS = ("minmax", "average")


def quantize_convs(src: str | Path, out: str | Path, calibration: Iterator[np.ndarray],
                   metadata: dict[str, str] | None = None, method: str = "minmax",
                   select: Callable[[onnx.ModelProto], list[str]] | None = None) -> Path:
    """Static int8 quantization of ``src``'s Conv nodes (those ``select`` names, when given: the recognizer keeps
    some float, training.quantize_rec), calibrated on ``calibration`` tensors by ``method``."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from service.model_bundle import sha256_file

    src, out = Path(src), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    input_name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    # onnxruntime's quantizer logs every per-channel scale tweak on the root logger at INFO, and divides by a zero
    # range for the all-zero (pruned) channels of PP-OCRv6; both are expected, neither is news to the user.
    with tempfile.TemporaryDirectory() as tmp, _quiet_quantizer():
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        nodes = None if select is None else select(onnx.load(str(prepared)))
        quantize_static(str(prepared), str(out), _calibration_reader(input_name, calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"CalibMovingAverage": method == "average"}, op_types_to_quantize=list(QUANTIZED_OPS),
                        nodes_to_quantize=nodes)
    model = onnx.load(str(out))
    props = {"exporter": "ocrnet quantize", "float_source_sha256": sha256_file(src), **(metadata or {})}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(out))
    return out


@dataclass
class QuantizationCheck:
    """How far the int8 detector's probability maps are from the float one's, on held-out inputs."""

    images: int
    mean_abs_diff: float
    max_abs_diff: float
    flipped_pixels: float  # share of pixels on the other side of the DB threshold
    text_pixels_float: int
    text_pixels_int8: int

    def summary(self) -> str:
        return (f"{self.images} held-out pages: mean |diff| {self.mean_abs_diff:.2e}, max {self.max_abs_diff:.3f}, "
                f"{100 * self.flipped_pixels:.3f} % of pixels flip at {DB_THRESH} "
                f"(text pixels {self.text_pixels_float} float vs {self.text_pixels_int8} int8)")


def compare_detectors(float_path: str | Path, int8_path: str | Path, inputs: Iterator[np.ndarray]) -> QuantizationCheck:
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (float_path, int8_path)]
    name = sessions[0].get_inputs()[0].name
    n = 0
    abs_sum = pixels = flipped = text_float = text_int8 = 0
    worst = 0.0
    for x in inputs:
        want, got = (s.run(None, {name: x})[0] for s in sessions)
        diff = np.abs(got - want)
        n += 1
        abs_sum += float(diff.sum())
        pixels += diff.size
        worst = max(worst, float(diff.max()))
        flipped += int(((want > DB_THRESH) != (got > DB_THRESH)).sum())
        text_float += int((want > DB_THRESH).sum())
        text_int8 += int((got > DB_THRESH).sum())
    if not n:
        raise ValueError("no inputs to compare the detectors on")
    return QuantizationCheck(n, abs_sum / pixels, worst, flipped / pixels, text_float, text_int8)


def build_parser() -> argparse.ArgumentParser:
    from training.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="ocrnet quantize", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/base/det.onnx"), help="float detector ONNX")
    p.add_argument("--out", type=Path, default=Path("models/base/det_int8.onnx"), help="int8 detector ONNX to write")
    p.add_argument("--domains", default=",".join(DOMAINS), help="synthetic page generators to calibrate on")
    p.add_argument("--n", type=int, default=16, help="calibration pages per domain")
    p.add_argument("--seed", type=int, default=7, help="seed of the calibration pages")
    p.add_argument("--method", choices=CALIBRATION_METHODS, default="minmax",
                   help="how activation ranges are taken from the calibration pages")
    p.add_argument("--models-root", type=Path, default=Path("models"),
                   help="size each domain's pages like its bundle here does (plates: models/plate, ...)")
    p.add_argument("--check-n", type=int, default=8, help="held-out pages per domain for the check (0: skip)")
    p.add_argument("--check-seed", type=int, default=1007, help="seed of the held-out check pages")
    p.add_argument("--share-weights-with", type=Path, metavar="ONNX",
                   help="the int8 copy of the model --model was finetuned from (e.g. models/base/det_int8.onnx): "
                        "store only the tensors that differ from it (a frozen backbone quantizes to the same bytes "
                        "with the same calibration pages)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    unknown = sorted(set(domains) - set(DOMAINS))
    if unknown:
        raise SystemExit(f"unknown domains {unknown}; choose from {list(DOMAINS)}")
    configs = domain_det_configs(args.models_root, domains)
    with tempfile.TemporaryDirectory() as tmp:
        whole = Path(tmp) / "det_int8.onnx" if args.share_weights_with else args.out
        quantize_convs(args.model, whole, synthetic_det_inputs(domains, args.n, args.seed, configs), metadata={
            "calibration": f"{args.method} on synthetic pages {','.join(domains)} x{args.n}, seed {args.seed}"},
            method=args.method)
        if args.share_weights_with:
            from training.export import share_weights_with

            share_weights_with(whole, args.share_weights_with, args.out)
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, float {args.model.stat().st_size / 1e6:.1f} MB)")
        if args.check_n:
            check = compare_detectors(args.model, whole,
                                      synthetic_det_inputs(domains, args.check_n, args.check_seed, configs))
            print(check.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

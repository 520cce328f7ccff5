"""OCRNet pipeline vs RapidOCR (PP-OCRv6 small det/rec), in one process, same images, same thread budget.

Both engines read the same encoded image bytes (decode included in both timings), one image at a time, with
onnxruntime limited to `--threads` intra-op threads. Images alternate which engine goes first so machine-load drift
hits both equally. Reports images/s for each and the ratio, plus licence-plate exact match on the plate set:
the same plate picker turns each engine's text lines into one plate (service.profiles.plate when importable,
else the longest alphanumeric line) and plates compare after removing spaces/hyphens and upper-casing.
RapidOCR runs without its angle classifier (OCRNet has none), so both do det + rec only; RapidOCR's own default
(`Global.use_cls: true`) would add a classifier pass per line and make it slower, so this is the harder comparison.
RapidOCR keeps its default detector settings (limit_side_len 736, limit_type min) unless `--rapidocr-det-like-ours`
gives it the OCRNet model dir's det_limit_side/det_limit_type too (same-settings comparison: isolates the engine
from the per-profile settings in models/<profile>/model.json).

RapidOCR needs opencv, which the main .venv must not carry: run this with the bench venv
(`bench/setup_rapidocr_venv.sh` makes .cache/rapidocr-venv, which also sees every .venv package):

    .cache/rapidocr-venv/bin/python bench/compare_rapidocr.py --threads 2 --out bench/results/compare_rapidocr.json
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_PLATES, REPO, emit_report, git_commit, machine_description, markdown_table  # noqa: E402

sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Line:
    """The TextLine shape profiles consume, built from either engine's output."""

    text: str
    confidence: float
    polygon: list[tuple[float, float]]


def normalise_plate(text: str | None) -> str:
    """Comparison key of the brief: spaces and hyphens removed, upper-case."""
    return re.sub(r"[\s\-]", "", text or "").upper()


def longest_alnum_line(lines: Sequence[Line]) -> str | None:
    """Fallback plate picker: the line with the most alphanumerics."""
    best = max(lines, key=lambda ln: sum(ch.isalnum() for ch in ln.text), default=None)
    return best.text if best is not None else None


def make_plate_picker() -> tuple[str, Callable[[Sequence[Line], tuple[int, int]], str | None]]:
    try:
        from service.profiles.plate import PlateProfile
    except ImportError:
        return "longest-alphanumeric-line heuristic", lambda lines, size: longest_alnum_line(lines)
    profile = PlateProfile()
    return "service.profiles.plate.PlateProfile", lambda lines, size: profile.extract(lines, size).plate


def load_labels(data_dir: Path) -> dict[str, str]:
    labels = {}
    for row in (data_dir / "labels.jsonl").read_text().splitlines():
        if row.strip():
            rec = json.loads(row)
            labels[rec["image"]] = rec["fields"]["plate"]
    return labels


def ocrnet_engine(model_dir: Path, threads: int, second_look: bool = True) -> Callable[[bytes], list[Line]]:
    """OCRNet as the service runs it for the plate profile, including the profile's second look (a second read at
    higher detector resolution when no plausible plate was found), timed with the rest."""
    from service.pipeline import OcrPipeline
    from service.profiles.plate import PlateProfile

    pipe = OcrPipeline.from_dir(model_dir, providers=["CPUExecutionProvider"], intra_threads=threads,
                                inter_threads=1)
    profile = PlateProfile()

    def lines_of(data: bytes, det_limit: tuple[int, str] | None = None) -> list[Line]:
        return [Line(t.text, t.confidence, [tuple(map(float, p)) for p in t.polygon])
                for t in pipe.read_batch([data], det_limit)[0]]

    def run(data: bytes) -> list[Line]:
        lines = lines_of(data)
        if second_look:
            chosen, _ = profile.with_second_look(lines, image_size(data), lambda limit: lines_of(data, limit))
            lines = list(chosen)
        return lines

    return run


def rapidocr_engine(threads: int, det_limit: tuple[int, str] | None = None) -> Callable[[bytes], list[Line]]:
    import rapidocr
    from rapidocr import ModelType, OCRVersion, RapidOCR

    models = Path(rapidocr.__file__).parent / "models"
    det_params = {"Det.limit_side_len": det_limit[0], "Det.limit_type": det_limit[1]} if det_limit else {}
    engine = RapidOCR(params={
        **det_params,
        "Global.use_cls": False,
        "Global.log_level": "warning",
        "Det.ocr_version": OCRVersion.PPOCRV6, "Det.model_type": ModelType.SMALL,
        "Det.model_path": str(models / "PP-OCRv6_det_small.onnx"),
        "Rec.ocr_version": OCRVersion.PPOCRV6, "Rec.model_type": ModelType.SMALL,
        "Rec.model_path": str(models / "PP-OCRv6_rec_small.onnx"),
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    })

    def run(data: bytes) -> list[Line]:
        out = engine(data)
        if out.boxes is None or out.txts is None:
            return []
        return [Line(t, float(s), [tuple(map(float, p)) for p in box])
                for box, t, s in zip(out.boxes, out.txts, out.scores, strict=True)]

    return run


def image_size(data: bytes) -> tuple[int, int]:
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(data)) as im:
        return im.size


def ocrnet_det_limit(model_dir: Path) -> tuple[int, str]:
    from service.model_bundle import ModelBundle

    m = ModelBundle(model_dir).manifest
    return m.det_limit_side, m.det_limit_type


def compare(data_dir: Path, model_dir: Path, threads: int, limit: int | None, warmup: int, every: int = 1,
            rapidocr_det_like_ours: bool = False, second_look: bool = True) -> dict:
    labels = load_labels(data_dir)
    names = sorted(labels)[::every]
    names = names[:limit] if limit else names
    blobs = {n: (data_dir / n).read_bytes() for n in names}
    picker_name, pick = make_plate_picker()
    rapid_det = ocrnet_det_limit(model_dir) if rapidocr_det_like_ours else None
    engines = {"ocrnet": ocrnet_engine(model_dir, threads, second_look),
               "rapidocr": rapidocr_engine(threads, rapid_det)}
    for name in names[:warmup]:
        for run in engines.values():
            run(blobs[name])
    seconds = {k: 0.0 for k in engines}
    correct = {k: 0 for k in engines}
    any_line = {k: 0 for k in engines}
    per_image = []
    order = list(engines)
    for i, name in enumerate(names):
        truth = normalise_plate(labels[name])
        size = image_size(blobs[name])
        row = {"image": name, "truth": truth}
        for key in order if i % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            lines = engines[key](blobs[name])
            seconds[key] += time.perf_counter() - t0
            plate = normalise_plate(pick(lines, size))
            correct[key] += plate == truth
            any_line[key] += any(normalise_plate(ln.text) == truth for ln in lines)
            row[key] = plate
        per_image.append(row)
        print(f"[{i + 1}/{len(names)}] {name}: truth {truth} ocrnet {row['ocrnet']} rapidocr {row['rapidocr']}",
              file=sys.stderr, flush=True)
    n = len(names)
    summary = {
        key: {"images_per_s": round(n / seconds[key], 3), "seconds": round(seconds[key], 2),
              "plate_exact": round(correct[key] / n, 4), "plate_exact_count": correct[key],
              "any_line_exact": round(any_line[key] / n, 4)}
        for key in engines
    }
    return {
        "machine": machine_description(), "commit": git_commit(), "threads": threads, "images": n,
        "data": str(data_dir),
        "model_dir": str(model_dir), "subset_every": every, "rapidocr_use_cls": False,
        "ocrnet_second_look": second_look,
        "rapidocr_det_limit": list(rapid_det) if rapid_det else "rapidocr default (736, min)", "plate_picker": picker_name, "warmup_images": warmup,
        "speed_ratio_ocrnet_over_rapidocr": round(summary["ocrnet"]["images_per_s"] /
                                                  summary["rapidocr"]["images_per_s"], 3),
        "engines": summary, "per_image": per_image,
    }


def to_markdown(report: dict) -> str:
    rows = [[k, v["images_per_s"], f"{v['plate_exact']:.1%} ({v['plate_exact_count']}/{report['images']})",
             f"{v['any_line_exact']:.1%}"] for k, v in report["engines"].items()]
    table = markdown_table(["engine", "images/s", "plate exact match", "plate in any line"], rows)
    return (f"{table}\n\nOCRNet/RapidOCR speed ratio: {report['speed_ratio_ocrnet_over_rapidocr']}. "
            f"{report['images']} images, {report['threads']} intra-op threads each, OCRNet model dir: "
            f"{report['model_dir']}, RapidOCR det limit: {report['rapidocr_det_limit']}, no cls; plate picker: "
            f"{report['plate_picker']}. Machine: {report['machine']}.\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_PLATES, help="plates folder with labels.jsonl")
    ap.add_argument("--model-dir", type=Path, default=REPO / "models" / "base")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N images (name order)")
    ap.add_argument("--every", type=int, default=1, help="every Nth image (name order): a spread-out subset")
    ap.add_argument("--warmup", type=int, default=2, help="images run once per engine before timing")
    ap.add_argument("--rapidocr-det-like-ours", action="store_true",
                    help="give RapidOCR the det_limit_side/det_limit_type of --model-dir (same-settings run)")
    ap.add_argument("--no-second-look", action="store_true",
                    help="one OCRNet read per image (without the plate profile's high-resolution retry)")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON report here (and a .md next to it)")
    args = ap.parse_args(argv)
    try:
        import rapidocr  # noqa: F401
    except ImportError:
        print("rapidocr is not importable here: run bench/setup_rapidocr_venv.sh and use "
              ".cache/rapidocr-venv/bin/python", file=sys.stderr)
        return 2
    report = compare(args.data, args.model_dir, args.threads, args.limit, args.warmup, args.every,
                     args.rapidocr_det_like_ours, not args.no_second_look)
    emit_report(report, to_markdown(report), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

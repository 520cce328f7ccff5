"""OCRNet vs RapidOCR (PP-OCRv6 small det/rec) on any labelled folder: images/s, ratio, peak RSS, domain metrics.

Both engines read the same encoded image bytes (decode included in both timings), one image at a time, with
onnxruntime limited to `--threads` intra-op threads. Each engine runs in its own worker process, so its peak RSS is
its own (`ru_maxrss` of the worker: interpreter, libraries, sessions and the largest request together), and the
workers take turns: image i goes to one engine, then the other, the first engine alternating per image, so load
drift on a shared machine hits both equally and they never run at the same time.

OCRNet reads each image as the service reads it for the domain's profile (`service.reading.read_for_profile`:
the plate profile's second look, the id profile's MRZ band); RapidOCR gives one full-page read, as in its API.
Both engines' lines are scored by `training.evaluation` exactly like `ocrnet evaluate` (the profile of the domain,
then the domain's scorer): plates plate exact, receipts line recall / F1 and fields, ids MRZ exact and validity.
RapidOCR runs without its angle classifier (OCRNet has none), so both do det + rec only; its own default
(`Global.use_cls: true`) would add a classifier pass per line and make it slower, so this is the harder
comparison. RapidOCR keeps its default detector settings (limit_side_len 736, limit_type min, max 2000) unless
`--rapidocr-det-like-ours` gives it the OCRNet model dir's det_limit_side/det_limit_type too.

RapidOCR needs opencv, which the main .venv must not carry: run this with the bench venv
(`bench/setup_rapidocr_venv.sh` makes .cache/rapidocr-venv, which also sees every .venv package):

    .cache/rapidocr-venv/bin/python bench/compare_rapidocr.py --data ../shared/data/receipts --threads 2 \\
        --out bench/results/compare_rapidocr_receipts.json
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEFAULT_PLATES,
    REPO,
    emit_report,
    git_commit,
    machine_description,
    markdown_table,
)

sys.path.insert(0, str(REPO))
from training.evaluation.run import SavedLine

# The figures each domain is judged by (all of the scorer's metrics go to the JSON).
HEADLINE_METRICS = {
    "plates": ("plate_exact",),
    "receipts": ("e2e_recall", "e2e_f1", "field_company", "field_date", "field_address", "field_total"),
    "ids": ("mrz_exact", "mrz_valid", "mrz_valid_but_wrong"),
}


Engine = Callable[[bytes], list[SavedLine]]  # TextLine's fields as plain data, picklable across the engine pipes


def ocrnet_engine(model_dir: Path, threads: int, profile: str, second_look: bool = True,
                  options: dict[str, Any] | None = None) -> Engine:
    """OCRNet as the service runs it for ``profile`` (second look, MRZ band, ...), timed with the rest."""
    from service.pipeline import OcrPipeline
    from service.profiles import get_profile
    from service.reading import ReadOptions, read_for_profile

    pipe = OcrPipeline.from_dir(model_dir, providers=["CPUExecutionProvider"], intra_threads=threads,
                                inter_threads=1, cpu_mem_arena=None)  # None: the service's CPU default (off)
    impl = get_profile(profile)
    read_options = ReadOptions(**(options or {}), second_look=second_look)

    def run(data: bytes) -> list[SavedLine]:
        lines = read_for_profile(pipe, impl, data, read_options).lines
        return [SavedLine(t.text, t.confidence, [tuple(map(float, p)) for p in t.polygon],
                          tuple(t.char_confidences), tuple(t.char_evidence))
                for t in lines]

    return run


def rapidocr_engine(threads: int, det_limit: tuple[int, str] | None = None) -> Engine:
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

    def run(data: bytes) -> list[SavedLine]:
        out = engine(data)
        if out.boxes is None or out.txts is None:
            return []
        return [SavedLine(t, float(s), [tuple(map(float, p)) for p in box])
                for box, t, s in zip(out.boxes, out.txts, out.scores, strict=True)]

    return run


def ocrnet_det_limit(model_dir: Path) -> tuple[int, str]:
    from service.model_bundle import ModelBundle

    m = ModelBundle(model_dir).manifest
    return m.det_limit_side, m.det_limit_type


def peak_rss_mib() -> float:
    """This process's peak resident set (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(conn: Connection, kind: str, kwargs: dict[str, Any]) -> None:
    """Serve ("run", bytes) -> (seconds, lines) and ("rss",) -> peak MiB until ("stop",)."""
    rss_before_engine = peak_rss_mib()
    run = ocrnet_engine(**kwargs) if kind == "ocrnet" else rapidocr_engine(**kwargs)
    conn.send(("ready", rss_before_engine))
    while True:
        msg = conn.recv()
        if msg[0] == "run":
            t0 = time.perf_counter()
            lines = run(msg[1])
            conn.send((time.perf_counter() - t0, lines))
        elif msg[0] == "rss":
            conn.send(peak_rss_mib())
        else:
            return


class EngineProcess:
    """One engine in a worker process (spawned with this interpreter, so RapidOCR's venv serves both)."""

    def __init__(self, kind: str, **kwargs: Any) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, kind, kwargs), daemon=True)
        self.proc.start()
        status, self.rss_at_start = self.conn.recv()
        assert status == "ready"

    def run(self, data: bytes) -> tuple[float, list[SavedLine]]:
        self.conn.send(("run", data))
        return self.conn.recv()

    def peak_rss_mib(self) -> float:
        self.conn.send(("rss",))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(("stop",))
        self.proc.join(timeout=30)


def default_domain(data_dir: Path) -> str:
    from training.evaluation.run import DOMAIN_PROFILES

    name = data_dir.resolve().name
    if name not in DOMAIN_PROFILES:
        raise SystemExit(f"cannot tell the domain of {data_dir}: pass --domain ({', '.join(DOMAIN_PROFILES)})")
    return name


def default_model_dir(profile: str) -> Path:
    """The bundle the service serves the profile with: models/<profile> when present, else models/base."""
    own = REPO / "models" / profile
    return own if (own / "model.json").is_file() else REPO / "models" / "base"


def compare(data_dir: Path, domain: str, model_dir: Path, threads: int, limit: int | None, warmup: int,
            every: int = 1, rapidocr_det_like_ours: bool = False, second_look: bool = True,
            options: dict[str, Any] | None = None) -> dict:
    from training.evaluation.run import (
        DOMAIN_PROFILES,
        _image,
        load_labels,
        score_predictions,
    )

    profile = DOMAIN_PROFILES[domain]
    records = load_labels(data_dir)[::every]
    records = records[:limit] if limit else records
    loaded = [_image(r.image) for r in records]
    rapid_det = ocrnet_det_limit(model_dir) if rapidocr_det_like_ours else None
    engines = {"ocrnet": EngineProcess("ocrnet", model_dir=model_dir, threads=threads, profile=profile,
                                       second_look=second_look, options=options),
               "rapidocr": EngineProcess("rapidocr", threads=threads, det_limit=rapid_det)}
    try:
        for data, _ in loaded[:warmup]:
            for engine in engines.values():
                engine.run(data)
        seconds = {k: 0.0 for k in engines}
        preds: dict[str, list[list[SavedLine]]] = {k: [] for k in engines}
        order = list(engines)
        for i, (record, (data, _)) in enumerate(zip(records, loaded)):
            for key in order if i % 2 == 0 else order[::-1]:
                spent, lines = engines[key].run(data)
                seconds[key] += spent
                preds[key].append(lines)
            print(f"[{i + 1}/{len(records)}] {record.image.name}: ocrnet {len(preds['ocrnet'][-1])} lines, "
                  f"rapidocr {len(preds['rapidocr'][-1])} lines", file=sys.stderr, flush=True)
        rss = {k: (e.rss_at_start, e.peak_rss_mib()) for k, e in engines.items()}
    finally:
        for engine in engines.values():
            engine.close()
    n = len(records)
    sizes = [size for _, size in loaded]
    summary = {}
    for key in engines:
        report = score_predictions(domain, records, preds[key], sizes)
        summary[key] = {"images_per_s": round(n / seconds[key], 3), "seconds": round(seconds[key], 2),
                        "peak_rss_mib": round(rss[key][1], 1), "rss_before_engine_mib": round(rss[key][0], 1),
                        "metrics": report.metrics, "counts": report.counts,
                        "per_image": [{k: v for k, v in item.items() if k != "pred_lines"}
                                      for item in report.per_image]}
    return {
        "machine": machine_description(), "commit": git_commit(), "threads": threads, "images": n,
        "data": str(data_dir), "domain": domain, "profile": profile, "model_dir": str(model_dir),
        "subset_every": every, "rapidocr_use_cls": False, "ocrnet_second_look": second_look,
        "ocrnet_options": options or {},
        "rapidocr_det_limit": list(rapid_det) if rapid_det else "rapidocr default (736, min)",
        "warmup_images": warmup,
        "speed_ratio_ocrnet_over_rapidocr": round(summary["ocrnet"]["images_per_s"] /
                                                  summary["rapidocr"]["images_per_s"], 3),
        "engines": summary,
    }


def _fmt(value: Any) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, float) else "-"


def to_markdown(report: dict) -> str:
    names = HEADLINE_METRICS[report["domain"]]
    rows = [[k, v["images_per_s"], v["peak_rss_mib"], *(_fmt(v["metrics"].get(m)) for m in names)]
            for k, v in report["engines"].items()]
    table = markdown_table(["engine", "images/s", "peak RSS MiB", *names], rows)
    return (f"{table}\n\nOCRNet/RapidOCR speed ratio: **{report['speed_ratio_ocrnet_over_rapidocr']}** "
            f"({report['domain']}, profile {report['profile']}). {report['images']} images from {report['data']}, "
            f"{report['threads']} intra-op threads each, one engine process each, turns alternating per image. "
            f"OCRNet model dir: {report['model_dir']}, options {report['ocrnet_options']}; RapidOCR det limit: "
            f"{report['rapidocr_det_limit']}, no cls. Commit {report['commit']}. Machine: {report['machine']}.\n")


def _option(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    parsed: Any = {"true": True, "false": False}.get(value.lower(), value)
    return key, parsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_PLATES, help="folder with labels.jsonl and the images")
    ap.add_argument("--domain", choices=sorted(HEADLINE_METRICS), default=None,
                    help="scorer and profile (default: the folder's name, e.g. ../shared/data/receipts)")
    ap.add_argument("--model-dir", type=Path, default=None,
                    help="OCRNet bundle (default: models/<profile> when present, else models/base)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N images (labels order)")
    ap.add_argument("--every", type=int, default=1, help="every Nth image (labels order): a spread-out subset")
    ap.add_argument("--warmup", type=int, default=2, help="images run once per engine before timing")
    ap.add_argument("--rapidocr-det-like-ours", action="store_true",
                    help="give RapidOCR the det_limit_side/det_limit_type of --model-dir (same-settings run)")
    ap.add_argument("--no-second-look", action="store_true",
                    help="one OCRNet read per image (without the plate profile's high-resolution retry)")
    ap.add_argument("--option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                    help="OCRNet read option as the API takes it, e.g. all_text=true (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON report here (and a .md next to it)")
    args = ap.parse_args(argv)
    try:
        import rapidocr  # noqa: F401
    except ImportError:
        print("rapidocr is not importable here: run bench/setup_rapidocr_venv.sh and use "
              ".cache/rapidocr-venv/bin/python", file=sys.stderr)
        return 2
    from training.evaluation.run import DOMAIN_PROFILES

    domain = args.domain or default_domain(args.data)
    model_dir = args.model_dir or default_model_dir(DOMAIN_PROFILES[domain])
    report = compare(args.data, domain, model_dir, args.threads, args.limit, args.warmup, args.every,
                     args.rapidocr_det_like_ours, not args.no_second_look, dict(args.option))
    emit_report(report, to_markdown(report), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

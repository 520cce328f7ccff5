"""RapidOCR 3.10 (PP-OCRv6 small det/rec) scored exactly like OCRNet: same DEV images, same profiles, same metrics.

RapidOCR's text lines go through training.evaluation's `evaluate_dataset` (the profile of each domain, then the
scorer), so its numbers sit in the same table as `ocrnet evaluate --model-dir ...`. The JSON has the layout of
`ocrnet evaluate --json`, so `--replay` re-scores it after a profile change without rerunning RapidOCR.

RapidOCR needs opencv, which the main .venv must not carry: run this with the bench venv
(`bench/setup_rapidocr_venv.sh` makes .cache/rapidocr-venv, which also sees every .venv package):

    .cache/rapidocr-venv/bin/python bench/rapidocr_accuracy.py --domains ids,receipts \\
        --out bench/results/rapidocr_accuracy.md --json bench/results/rapidocr_accuracy.json
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO  # noqa: E402

sys.path.insert(0, str(REPO))
from compare_rapidocr import Line, rapidocr_engine  # noqa: E402
from training.evaluation.run import DEFAULT_DATA, _emit, domain_dir, evaluate_dataset  # noqa: E402

MODEL_NAME = "rapidocr-3.10.0-ppocrv6-small"


class RapidOcrReader:
    """The `read_batch` interface evaluate_dataset expects, over RapidOCR (default det settings, no classifier)."""

    def __init__(self, threads: int) -> None:
        self.run = rapidocr_engine(threads)

    def read_batch(self, images: Sequence[bytes]) -> list[list[Line]]:
        return [self.run(data) for data in images]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with <domain>/labels.jsonl")
    ap.add_argument("--domains", default="plates,receipts,ids")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N images per domain")
    ap.add_argument("--out", help="markdown report")
    ap.add_argument("--json", dest="json_out", help="per-image predictions (ocrnet evaluate --json layout)")
    args = ap.parse_args(argv)
    reader = RapidOcrReader(args.threads)
    reports = []
    for domain in (d.strip() for d in args.domains.split(",") if d.strip()):
        if not (domain_dir(args.data, domain) / "labels.jsonl").is_file():
            print(f"no {domain}/labels.jsonl under {args.data}; skipped", file=sys.stderr)
            continue
        report = evaluate_dataset(reader, args.data, domain, args.limit, batch_size=1)
        report.model = MODEL_NAME
        reports.append(report)
    return _emit({MODEL_NAME: reports}, args.out, args.json_out)


if __name__ == "__main__":
    raise SystemExit(main())

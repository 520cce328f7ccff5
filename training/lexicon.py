"""``ocrnet lexicon``: the word list a bundle's recognizer may correct unknown words towards.

Words of the training transcripts (``labels.jsonl`` lines, or crop-list TSVs), upper-cased, kept when seen at least
``--min-count`` times: a word seen once is as likely an annotator's typo as a real word. Only labels are read (no
images), so the shipped list rebuilds from the TRAIN labels in ``../shared/data`` alone:

    ocrnet lexicon --labels ../shared/data/train/receipts/labels.jsonl --out models/invoice/lexicon.json

How the service uses it: ``service.vision.lexicon`` (a word changes only towards the recogniser's own close
alternatives).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["count_words", "main"]


def count_words(texts: Iterable[str]) -> Counter[str]:
    """Upper-case whitespace-separated words of ``texts`` with their counts."""
    return Counter(word.upper() for text in texts for word in text.split())


def _texts(path: Path) -> list[str]:
    from training.data.loaders import read_crop_list, read_labels_jsonl

    if path.suffix == ".jsonl":
        return [ln.text for record in read_labels_jsonl(path) for ln in record.lines if not ln.ignore]
    return [record.text for record in read_crop_list(path)]


def main(argv: Sequence[str] | None = None) -> int:
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet lexicon", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--labels", required=True, type=Path, action="append",
                    help="labels.jsonl or crop-list TSV (repeat for several)")
    ap.add_argument("--min-count", type=int, default=2, help="keep words seen at least this many times")
    ap.add_argument("--close-ratio", type=float, default=0.1,
                    help="an alternative needs this fraction of the read character's probability")
    ap.add_argument("--out", required=True, type=Path, help="lexicon.json to write (next to a bundle's model.json)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    counts = count_words(text for path in args.labels for text in _texts(path))
    words = sorted(w for w, n in counts.items() if n >= args.min_count)
    args.out.write_text(json.dumps({
        "source": [str(p) for p in args.labels], "min_count": args.min_count, "close_ratio": args.close_ratio,
        "words": words}, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"{len(words)} of {len(counts)} distinct words (seen >= {args.min_count} times) -> {args.out}")
    return 0

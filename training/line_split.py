"""Train a bundle's line splitter (model.json `line_split_model`) on labelled pages: where a read line is two.

The pages are read once through the bundle's own pipeline (detector boxes and recogniser output kept). First the
margin the returned boxes keep around their characters (model.json `line_char_margin`) is picked by line F1 on the
last pages; the splitter then learns on those boxes. Every
space of every read line is then a training example: the line is cut at all its spaces (the service's own
`OcrPipeline.split_line`), each piece is given to the labelled line that holds most of it, and a space is "cut"
when the pieces on either side belong to different labelled lines, "keep" when to the same one (pieces that fall in
no labelled line teach nothing). A logistic model with an L2 penalty is fitted on the first pages by Newton steps;
its threshold is the one with the best end-to-end line F1 on the remaining pages (scored with the evaluation's own
metrics, "no cuts" competing), and the model is then refitted on all pages. Fit on TRAIN, never on DEV:

    ocrnet train-line-split --model-dir models/invoice --data .data/train --out models/invoice/line_split.json

(.data/train needs the TRAIN images: ../shared/data/train/README.md says how to fetch them.)
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_MARGINS = (0.25, 0.3, 0.35, 0.4, 0.5)


@dataclass
class PageRead:
    """One page as the pipeline read it, before lines are assembled (so any splitter can be applied afterwards)."""

    size: tuple[int, int]
    dets: Any  # service.pipeline.Detections
    decoded: list[Any]  # service.vision.ctc.Decoded per detected box


def read_pages(pipeline: Any, images: Sequence[Path]) -> list[PageRead]:
    """Detector boxes and recogniser output of each page, read as `OcrPipeline.read_batch` reads it."""
    from service.reading import as_rgb_image

    pages = []
    for path in images:
        image = as_rgb_image(path.read_bytes())
        inputs, dets = pipeline.detect([image])
        crops = pipeline.crops(inputs[0], dets[0])
        pages.append(PageRead(image.size, dets[0], pipeline.recognize(crops) if crops else []))
    return pages


def _cached_reads(cache: Path | None, pipeline: Any, records: Sequence[Any]) -> list[PageRead]:
    """The pages' reads, from ``cache`` when it holds the same pages (a local file this command wrote: pickle)."""
    import pickle

    names = [r.image.name for r in records]
    if cache is not None and cache.is_file():
        saved = pickle.loads(cache.read_bytes())
        if saved.get("images") == names and saved.get("model_dir") == str(pipeline.bundle.root):
            return saved["pages"]
        raise SystemExit(f"{cache} holds other pages or another bundle's reads; remove it or name another file")
    pages = read_pages(pipeline, [r.image for r in records])
    if cache is not None:
        cache.write_bytes(pickle.dumps({"images": names, "model_dir": str(pipeline.bundle.root), "pages": pages}))
    return pages


def vocabulary(texts: Sequence[str], size: int, min_count: int = 5) -> tuple[str, ...]:
    """The ``size`` most frequent upper-case words of the labelled lines (seen at least ``min_count`` times)."""
    counts = Counter(w for t in texts for w in t.upper().split())
    return tuple(w for w, n in counts.most_common(size) if n >= min_count)


def labelled_spaces(pipeline: Any, page: PageRead, gt_shapes: Sequence[Any], vocab: Sequence[str]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(features, 0/1 labels) of the spaces of one page's read lines whose two sides each fall in a labelled
    line: 1 when they fall in different ones."""
    from service.vision.line_split import features, spaces
    from training.evaluation.matching import to_polygon

    gts = [to_polygon(s) for s in gt_shapes]
    xs, ys = [], []
    for line, work_quad, crop_quad in pipeline.read_lines(page.dets, page.decoded):
        seen: dict[str, Any] = {}

        def every_space(text: str, chars: Sequence[Any], aspect: float, seen: dict[str, Any] = seen) -> list[Any]:
            seen.update(spaces=spaces(text, chars, pipeline.rec_height), aspect=aspect)
            return seen["spaces"]

        pieces = pipeline.split_line(line, work_quad, crop_quad, every_space)
        found = seen.get("spaces") or []
        if not found or len(pieces) != len(found) + 1:  # no space, or not cut (no evidence, read rotated)
            continue
        owners = [_owner(to_polygon(p.polygon), gts) for p in pieces]
        keep = [k for k in range(len(found)) if owners[k] is not None and owners[k + 1] is not None]
        if not keep:
            continue
        feats = features(line.text, line.char_evidence, found, seen["aspect"], vocab)
        xs.append(feats[keep])
        ys.append(np.array([float(owners[k] != owners[k + 1]) for k in keep]))
    if not xs:
        return np.zeros((0, 0)), np.zeros(0)
    return np.concatenate(xs), np.concatenate(ys)


def _owner(piece: Any, gts: Sequence[Any]) -> int | None:
    """The labelled line holding most (over half) of a piece's area, if one does."""
    if piece.area <= 0:
        return None
    best, best_share = None, 0.5
    for k, g in enumerate(gts):
        share = piece.intersection(g).area / piece.area if piece.intersects(g) else 0.0
        if share > best_share:
            best, best_share = k, share
    return best


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 25) -> tuple[np.ndarray, float]:
    """Weights and bias minimising the mean log-loss + ``l2``/n * |w|^2 / 2 (Newton steps; the bias is not
    penalised)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        delta = np.linalg.solve(hess, grad)
        w -= delta
        if np.abs(delta).max() < 1e-6:
            break
    return w[:-1], float(w[-1])


@dataclass
class Fitted:
    """A logistic model fitted on the first pages, its threshold picked on the last ones, refitted on all."""

    rows: list[dict[str, Any]]  # metrics on the last pages: the baseline (threshold None) and each threshold
    threshold: float | None  # None: no threshold beat the baseline
    weights: np.ndarray
    bias: float
    examples: int
    positives: int


def fit_and_pick(examples: Sequence[tuple[np.ndarray, np.ndarray]], n_pick: int, l2: float,
                 thresholds: Sequence[float], judge: Any) -> Fitted:
    """``examples``: (features, labels) per page; ``judge(weights, bias, threshold)`` scores the last ``n_pick``
    pages with such a model (threshold None: without it)."""
    def stack(part: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        chosen = [e for e in part if len(e[1])]
        return np.concatenate([e[0] for e in chosen]), np.concatenate([e[1] for e in chosen])

    weights, bias = fit_logistic(*stack(examples[:len(examples) - n_pick]), l2)
    rows = [{"threshold": None, **judge(weights, bias, None)}]
    rows += [{"threshold": t, **judge(weights, bias, t)} for t in sorted(set(thresholds))]
    best = max(rows, key=lambda r: (r.get("e2e_f1") or 0.0, r["threshold"] is None))["threshold"]
    x_all, y_all = stack(examples)
    weights, bias = fit_logistic(x_all, y_all, l2)
    return Fitted(rows, best, weights, bias, len(y_all), int(y_all.sum()))


def line_scores(pipeline: Any, records: Sequence[Any], pages: Sequence[PageRead], domain: str,
                splitter: Any, model_dir: str | Path | None = None) -> dict[str, Any]:
    """The evaluation's metrics for the pages assembled with ``splitter`` (None: no cuts)."""
    from training.evaluation.run import score_predictions

    own = pipeline.line_splitter
    try:
        pipeline.line_splitter = splitter
        preds = [pipeline.assemble(p.dets, p.decoded) for p in pages]
    finally:
        pipeline.line_splitter = own
    report = score_predictions(domain, records, preds, [p.size for p in pages], model_dir)
    return {"lines": sum(len(p) for p in preds), **report.metrics}


def _labelled(rows: Sequence[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """The rows with the baseline's threshold (None) named, as the table shows it and the model file records it."""
    return [{**r, "threshold": baseline if r["threshold"] is None else r["threshold"]} for r in rows]


def _table(rows: Sequence[dict[str, Any]], baseline: str = "none") -> str:
    cols = [("e2e_recall", "line recall"), ("e2e_precision", "line precision"), ("e2e_f1", "line F1"),
            ("field_company", "company"), ("field_address", "address"), ("field_total", "total")]
    out = ["| threshold | lines | " + " | ".join(name for _, name in cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for r in _labelled(rows, baseline):
        cells = [f"{100 * r[k]:.1f} %" if r.get(k) is not None else "-" for k, _ in cols]
        out.append(f"| {r['threshold']} | {r['lines']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet train-line-split", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--model-dir", required=True, type=Path, help="the bundle whose pipeline reads the pages")
    ap.add_argument("--data", required=True, type=Path, help="folder with <domain>/labels.jsonl and its images")
    ap.add_argument("--domain", default="receipts", help="labelled domain (line boxes and texts)")
    ap.add_argument("--out", required=True, type=Path, help="line_split.json to write (name it in model.json)")
    ap.add_argument("--join-out", type=Path,
                    help="also train the line joiner (row neighbours that are one labelled line) on the split lines "
                         "and write it here (name it line_join_model); unset: no joiner")
    ap.add_argument("--vocab-size", type=int, default=150, help="words the model knows by name")
    ap.add_argument("--l2", type=float, default=1.0, help="L2 penalty on the weights")
    ap.add_argument("--pick-fraction", type=float, default=0.2,
                    help="last fraction of the pages that picks the threshold (the model is fitted on the rest)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS),
                    help="cut probabilities to try")
    ap.add_argument("--margins", type=float, nargs="+", default=list(DEFAULT_MARGINS),
                    help="line_char_margin values to try first (boxes brought in to the characters; none competes)")
    ap.add_argument("--limit", type=int, help="first N pages (quick checks); unset: all")
    ap.add_argument("--threads", type=int, help="onnxruntime intra-op threads; unset: onnxruntime's default")
    ap.add_argument("--reads-cache", type=Path,
                    help="pickle of the pages' reads: loaded when it exists (same bundle, data and --limit), else "
                         "written, so other --l2/--vocab-size fits skip the reading; unset: read every time")
    args = ap.parse_args(list(argv) if argv is not None else None)

    from service.pipeline import OcrPipeline
    from service.vision.line_split import LineSplitter
    from training.evaluation.run import domain_dir, load_labels

    records = load_labels(domain_dir(args.data, args.domain))[: args.limit]
    missing = [r.image for r in records if not r.image.is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} of {len(records)} images are missing under {args.data} (first: "
                         f"{missing[0]}); fetch them first (../shared/data/train/README.md)")
    n_pick = max(1, round(len(records) * args.pick_fraction))
    if len(records) - n_pick < 1:
        raise SystemExit("too few pages to both fit and pick a threshold")
    pipeline = OcrPipeline.from_dir(args.model_dir, intra_threads=args.threads)
    pipeline.line_splitter = pipeline.line_joiner = None
    started = time.perf_counter()
    pages = _cached_reads(args.reads_cache, pipeline, records)
    read_s = time.perf_counter() - started
    pick_records, pick_pages = records[-n_pick:], pages[-n_pick:]
    margin_rows = []
    for margin in [None, *sorted(set(args.margins))]:
        pipeline.char_margin = margin
        margin_rows.append({"margin": margin, **line_scores(pipeline, pick_records, pick_pages, args.domain, None,
                                                            args.model_dir)})
    margin = max(margin_rows, key=lambda r: (r.get("e2e_f1") or 0.0, r["margin"] is None))["margin"]
    pipeline.char_margin = margin  # the splitter learns on, and is judged with, the boxes the bundle will return
    vocab = vocabulary([ln.text for r in records for ln in r.lines], args.vocab_size)
    examples = [labelled_spaces(pipeline, p, [ln.shape for ln in r.lines if ln.shape is not None], vocab)
                for p, r in zip(pages, records)]

    def judge(weights: np.ndarray, bias: float, threshold: float | None) -> dict[str, Any]:
        splitter = None if threshold is None else LineSplitter(weights, bias, vocab, threshold)
        return line_scores(pipeline, pick_records, pick_pages, args.domain, splitter, args.model_dir)

    fitted = fit_and_pick(examples, n_pick, args.l2, args.thresholds, judge)
    print(f"{len(records)} pages read by {args.model_dir} in {read_s:.0f} s; {fitted.examples} spaces with both "
          f"sides in a labelled line, {fitted.positives} of them between two labelled lines\n")
    print(f"returned boxes brought in to the characters, on the last {n_pick} pages (no cuts):\n")
    print(_table([{**r, "threshold": f"margin {r['margin']}"} for r in margin_rows]))
    print(f"\nwith line_char_margin {margin}: threshold picked on the last {n_pick} pages, model fitted on the first "
          f"{len(records) - n_pick}:\n")
    print(_table(fitted.rows, "no cuts"))
    if fitted.threshold is None:
        print("\nno threshold beats reading the lines as detected: nothing written")
        return 1
    meta = {"model_dir": str(args.model_dir), "data": str(domain_dir(args.data, args.domain)), "pages": len(records),
            "spaces": fitted.examples, "cuts": fitted.positives, "l2": args.l2, "pick_pages": n_pick,
            "line_char_margin": margin, "margin_rows": margin_rows,
            "pick_rows": _labelled(fitted.rows, "no cuts")}
    splitter = LineSplitter(fitted.weights, fitted.bias, vocab, fitted.threshold, meta)
    args.out.write_text(json.dumps(splitter.to_json(), indent=1) + "\n", encoding="utf-8")
    print(f"\nthreshold {fitted.threshold}; refitted on all {len(records)} pages -> {args.out}; in model.json: "
          f"\"line_split_model\": \"{args.out.name}\", \"line_char_margin\": {margin}")
    if args.join_out is not None:
        pipeline.line_splitter = splitter
        return train_joiner(pipeline, records, pages, vocab, n_pick, args)
    return 0


def labelled_pairs(pipeline: Any, page: PageRead, gt_shapes: Sequence[Any], vocab: Sequence[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(features, 0/1 labels) of the row neighbours among a page's lines (as the bundle assembles them) that each
    fall in a labelled line: 1 when both fall in the same one."""
    from service.vision.line_join import features, row_pairs
    from training.evaluation.matching import to_polygon

    lines = pipeline.assemble(page.dets, page.decoded)
    gts = [to_polygon(s) for s in gt_shapes]
    owners = [_owner(to_polygon(line.polygon), gts) for line in lines]
    pairs = [p for p in row_pairs(lines) if owners[p.k] is not None and owners[p.k + 1] is not None]
    if not pairs:
        return np.zeros((0, 0)), np.zeros(0)
    return features(lines, pairs, vocab), np.array([float(owners[p.k] == owners[p.k + 1]) for p in pairs])


def train_joiner(pipeline: Any, records: Sequence[Any], pages: Sequence[PageRead], vocab: Sequence[str],
                 n_pick: int, args: argparse.Namespace) -> int:
    """The joiner, learned like the splitter (fit on the first pages, threshold on the last, refit on all) on the
    lines the bundle returns with the splitter just written."""
    from service.vision.line_join import LineJoiner

    examples = [labelled_pairs(pipeline, p, [ln.shape for ln in r.lines if ln.shape is not None], vocab)
                for p, r in zip(pages, records)]

    def judge(weights: np.ndarray, bias: float, threshold: float | None) -> dict[str, Any]:
        own = pipeline.line_joiner
        try:
            pipeline.line_joiner = None if threshold is None else LineJoiner(weights, bias, tuple(vocab), threshold)
            return line_scores(pipeline, records[-n_pick:], pages[-n_pick:], args.domain, pipeline.line_splitter,
                               args.model_dir)
        finally:
            pipeline.line_joiner = own

    fitted = fit_and_pick(examples, n_pick, args.l2, args.thresholds, judge)
    print(f"\njoiner: {fitted.examples} row neighbours each in a labelled line, {fitted.positives} of them in the "
          f"same one; threshold picked on the last {n_pick} pages (splitter applied):\n")
    print(_table(fitted.rows, "no joins"))
    if fitted.threshold is None:
        print("\nno threshold beats the split lines as they are: no joiner written")
        return 0
    meta = {"model_dir": str(args.model_dir), "pages": len(records), "pairs": fitted.examples,
            "joins": fitted.positives, "l2": args.l2, "pick_pages": n_pick,
            "pick_rows": _labelled(fitted.rows, "no joins")}
    joiner = LineJoiner(fitted.weights, fitted.bias, tuple(vocab), fitted.threshold, meta)
    args.join_out.write_text(json.dumps(joiner.to_json(), indent=1) + "\n", encoding="utf-8")
    print(f"\nthreshold {fitted.threshold}; refitted on all pages -> {args.join_out}; in model.json: "
          f"\"line_join_model\": \"{args.join_out.name}\"")
    return 0

"""``ocrnet train-fields``: train the receipt company/address tagger on labelled pages, report held-out metrics.

    ocrnet train-fields --data .data/train/receipts --out models/invoice/fields.json

Pages are split by receipt (seeded); the tagger trains on the training part (clean transcripts plus noisy,
OCR-like copies) and is judged on the held-out part, clean and noisy, next to the rule-based profile, with the
evaluation's field comparisons (exact: case-insensitive, spaces collapsed; loose: alphanumerics only).
The written file is the model that was judged. numpy does the training (a one-hidden-layer MLP, Adam).
"""

from __future__ import annotations

import argparse
import collections
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.profiles.base import LineBox
from service.profiles.invoice import InvoiceProfile
from service.profiles.invoice_tagger import CLASSES, FieldTagger, features, word_key
from training.evaluation.metrics import alnum_key, normalise_text

from .data import Page, load_pages, noisy_copy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    holdout: float = 0.15
    seed: int = 0
    noisy_copies: int = 3
    keep_lower: float = 0.2
    vocab_size: int = 200
    min_df: int = 4
    min_suffix: int = 5
    hidden: int = 32
    epochs: int = 15
    batch: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-3


def split_pages(pages: Sequence[Page], holdout: float, seed: int) -> tuple[list[Page], list[Page]]:
    """(train, held-out) by receipt, seeded."""
    order = sorted(pages, key=lambda p: p.name)
    random.Random(seed).shuffle(order)
    n_out = round(holdout * len(order))
    return order[n_out:], order[:n_out]


def build_vocab(pages: Sequence[Page], size: int, min_df: int) -> list[str]:
    """Half the most common words (document frequency), half the words most often inside a labelled field."""
    df: collections.Counter[str] = collections.Counter()
    in_field: collections.Counter[str] = collections.Counter()
    for p in pages:
        seen = set()
        for b, labels in zip(p.boxes, p.labels):
            for w, lab in zip(b.text.split(), labels):
                k = word_key(w)
                if k:
                    seen.add(k)
                    if lab:
                        in_field[k] += 1
        df.update(seen)
    vocab: list[str] = []
    for source in (in_field, df):
        for w, n in source.most_common():
            if len(vocab) >= (size // 2 if source is in_field else size):
                break
            if n >= min_df and df[w] >= min_df and w not in vocab:
                vocab.append(w)
    return vocab


def company_suffixes(pages: Sequence[Page], min_count: int) -> dict[str, int]:
    """Last one and two words of the labelled company names seen at least `min_count` times, with their counts."""
    counts: collections.Counter[str] = collections.Counter()
    for p in pages:
        words = (p.fields.get("company") or "").upper().split()
        counts.update(" ".join(words[-n:]) for n in (1, 2) if len(words) > n)
    return {s: n for s, n in counts.most_common() if n >= min_count}


def page_matrix(pages: Sequence[Page], vocab: dict[str, int], keep_lower: float = 1.0,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows and labels of every word; `keep_lower` < 1 keeps only that share of the 'other' words in the
    lower half of a page (plentiful and easy), so training time goes to the header where the fields are."""
    xs, ys = [], []
    for p in pages:
        _, X = features(p.boxes, vocab)
        y = np.array([lab for labels in p.labels for lab in labels], np.int64)
        if keep_lower < 1.0 and rng is not None:
            keep = (y != 0) | (X[:, 0] < 0.5) | (rng.random(len(y)) < keep_lower)  # column 0: relative line centre
            X, y = X[keep], y[keep]
        xs.append(X)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def fit_mlp(X: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> tuple[np.ndarray, ...]:
    """Softmax MLP (one ReLU layer) by minibatch Adam on standardised inputs; returns mean, std, w1, b1, w2, b2."""
    rng = np.random.default_rng(cfg.seed)
    mean, std = X.mean(axis=0), np.maximum(X.std(axis=0), 1e-3)
    Z = (X - mean) / std
    d, k = Z.shape[1], len(CLASSES)
    params = [rng.normal(0, np.sqrt(2 / d), (d, cfg.hidden)).astype(np.float32), np.zeros(cfg.hidden, np.float32),
              rng.normal(0, np.sqrt(1 / cfg.hidden), (cfg.hidden, k)).astype(np.float32), np.zeros(k, np.float32)]
    t0 = time.perf_counter()
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step = 0
    for epoch in range(cfg.epochs):
        perm = rng.permutation(len(Z))
        total = 0.0
        for s in range(0, len(Z), cfg.batch):
            idx = perm[s:s + cfg.batch]
            xb, yb = Z[idx], y[idx]
            w1, b1, w2, b2 = params
            pre = xb @ w1 + b1
            h = np.maximum(pre, 0)
            logits = h @ w2 + b2
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            total += float(-np.log(p[np.arange(len(yb)), yb] + 1e-9).sum())
            g = p
            g[np.arange(len(yb)), yb] -= 1
            g /= len(yb)
            gw2, gb2 = h.T @ g, g.sum(axis=0)
            gh = (g @ w2.T) * (pre > 0)
            gw1, gb1 = xb.T @ gh, gh.sum(axis=0)
            grads = [gw1 + cfg.weight_decay * w1, gb1, gw2 + cfg.weight_decay * w2, gb2]
            step += 1
            for i, (prm, gr) in enumerate(zip(params, grads)):
                m[i] = 0.9 * m[i] + 0.1 * gr
                v[i] = 0.999 * v[i] + 0.001 * gr * gr
                prm -= cfg.lr * (m[i] / (1 - 0.9 ** step)) / (np.sqrt(v[i] / (1 - 0.999 ** step)) + 1e-8)
        log.info("epoch %d: loss %.4f (%.0f s)", epoch + 1, total / len(Z), time.perf_counter() - t0)
    return (mean, std, *params)


@dataclass(frozen=True)
class _Line:
    """A LineBox as the TextLineLike the profiles read."""

    text: str
    confidence: float
    polygon: list[tuple[float, float]]


def _lines(boxes: Sequence[LineBox]) -> list[_Line]:
    return [_Line(b.text, 1.0, [(b.x0, b.y0), (b.x1, b.y0), (b.x1, b.y1), (b.x0, b.y1)]) for b in boxes]


def field_scores(pages: Sequence[Page], profile: InvoiceProfile) -> dict[str, float]:
    """Company/address hit rates of `profile` on the pages' lines: exact and loose against the labelled field, as
    `ocrnet evaluate` scores; `_words`: exactly the page's words aligned to the field (on a noisy copy, whose text
    no longer equals the label, this is the number that says whether the right words were picked)."""
    hits: dict[str, list[bool]] = {f"{n}{s}": [] for n in CLASSES[1:] for s in ("", "_loose", "_words")}
    for p in pages:
        got = profile.extract(_lines(p.boxes), (0, 0))
        words = [(w, lab) for b, labels in zip(p.boxes, p.labels) for w, lab in zip(b.text.split(), labels)]
        for k, name in enumerate(CLASSES[1:], start=1):
            label, value = p.fields.get(name) or "", getattr(got, name)
            hits[name].append(normalise_text(value) == normalise_text(label))
            hits[f"{name}_loose"].append(bool(alnum_key(label)) and alnum_key(value) == alnum_key(label))
            hits[f"{name}_words"].append(normalise_text(value) == " ".join(w for w, lab in words if lab == k))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in hits.items()}


def train(pages: Sequence[Page], cfg: TrainConfig) -> FieldTagger:
    """Fit a tagger on `pages` and `cfg.noisy_copies` noisy copies of each."""
    t0 = time.perf_counter()
    rng = random.Random(cfg.seed)
    vocab = build_vocab(pages, cfg.vocab_size, cfg.min_df)
    index = {w: i for i, w in enumerate(vocab)}
    augmented = list(pages) + [noisy_copy(p, rng) for p in pages for _ in range(cfg.noisy_copies)]
    X, y = page_matrix(augmented, index, cfg.keep_lower, np.random.default_rng(cfg.seed))
    log.info("features in %.0f s; training on %d words from %d pages (%d clean), %d features; class counts %s",
             time.perf_counter() - t0, len(y), len(augmented), len(pages), X.shape[1], np.bincount(y, minlength=len(CLASSES)).tolist())
    mean, std, w1, b1, w2, b2 = fit_mlp(X, y, cfg)
    meta = {"trained_pages": len(pages), "noisy_copies": cfg.noisy_copies, "hidden": cfg.hidden,
            "epochs": cfg.epochs, "seed": cfg.seed}
    return FieldTagger(vocab, mean, std, w1, b1, w2, b2, meta, company_suffixes(pages, cfg.min_suffix))


def report(held_out: Sequence[Page], tagger: FieldTagger, seed: int) -> str:
    """Markdown table: rules vs tagger on the held-out pages, clean and with OCR-like noise."""
    rng = random.Random(seed + 1)
    noisy = [noisy_copy(p, rng) for p in held_out]
    rules, learned = InvoiceProfile(), InvoiceProfile(tagger)
    rows = [("| held-out TRAIN pages | picker | company | company loose | company words | address | address loose "
             "| address words |"), "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, pages in (("clean transcripts", held_out), ("noisy copies", noisy)):
        for label, profile in (("rules", rules), ("learned", learned)):
            s = field_scores(pages, profile)
            rows.append(f"| {name} ({len(pages)}) | {label} | " + " | ".join(
                f"{s[f'{n}{x}']:.1%}" for n in CLASSES[1:] for x in ("", "_loose", "_words")) + " |")
    return "\n".join(rows)


OPTION_HELP = {
    "holdout": "share of the receipts held out of training to report metrics on",
    "seed": "seed of the split, the noisy copies and the initial weights",
    "noisy_copies": "OCR-like noisy copies of each training receipt (merged/split lines, character noise)",
    "keep_lower": "share of the 'other' words of the lower half of a page kept in training (they are many and easy)",
    "vocab_size": "most frequent TRAIN words that get a feature of their own",
    "min_df": "receipts a word must occur in to enter the vocabulary",
    "min_suffix": "receipts a legal company ending must occur in to be used for correcting misreads",
    "hidden": "hidden units of the tagger",
    "epochs": "passes over the training words",
    "batch": "words per optimizer step",
    "lr": "Adam learning rate",
    "weight_decay": "L2 weight decay",
}


def main(argv: Sequence[str] | None = None) -> int:
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet train-fields", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--data", required=True, help="folder with labels.jsonl (line quads + transcripts + fields)")
    ap.add_argument("--out", required=True, help="tagger JSON to write (e.g. models/invoice/fields.json)")
    defaults = TrainConfig()
    for field, text in OPTION_HELP.items():
        ap.add_argument(f"--{field.replace('_', '-')}", type=type(getattr(defaults, field)),
                        default=getattr(defaults, field), help=text)
    args = ap.parse_args(list(argv) if argv is not None else None)
    cfg = TrainConfig(**{k: getattr(args, k) for k in TrainConfig.__dataclass_fields__})
    t0 = time.perf_counter()
    pages, skipped = load_pages(args.data)
    if not pages:
        log.error("no labelled pages with alignable company and address under %s", args.data)
        return 2
    train_pages, held_out = split_pages(pages, cfg.holdout, cfg.seed)
    log.info("%d pages (%d left out: a field matched no word span); %d train, %d held out", len(pages), skipped,
             len(train_pages), len(held_out))
    tagger = train(train_pages, cfg)
    tagger.meta["data"] = str(args.data)
    tagger.meta["held_out_pages"] = len(held_out)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tagger.save(args.out)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KiB) in {time.perf_counter() - t0:.0f} s")
    if held_out:
        print(report(held_out, tagger, cfg.seed))
    return 0

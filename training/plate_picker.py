"""``ocrnet train-plate-picker``: fit the plate profile's learned candidate scorer on saved plate reads.

    ocrnet evaluate --model-dir models/plate --data .data/train --domains plates --json train_plates.json
    ocrnet train-plate-picker --eval-json train_plates.json --out models/plate/picker.json

The OCR lines `evaluate --json` saved per photo are weighed by the plate profile (`plate_readings`: every line
and neighbouring pair, as read and as the layout rules change it). Each line is represented by the reading the
rules prefer for it (`line_best`, as the service scores it); it is the plate when that reading's key equals the
label's (both normalised; the US O/0 glyph spelled 0 as `match_plate` does). A linear score over
`service.profiles.plate_picker.FEATURES` is fitted with a softmax over the lines of each photo (one plate per
photo) and an L2 penalty, by full-batch Adam in numpy. Photos none of whose lines reads as the plate teach nothing
and are left out. k-fold cross-validation (by photo) reports how often the learned and the hand-set ranking pick
the plate through the profile itself; the written file is fitted on every photo.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.profiles.plate import PlateProfile, plate_readings
from service.profiles.plate_layouts import plate_key
from service.profiles.plate_picker import FEATURES, PlatePicker, features, line_best

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Photo:
    """One labelled photo's saved OCR lines and the lines (or pairs) the picker weighs on them."""

    name: str
    label: str  # plate key
    lines: tuple  # TextLineLike
    size: tuple[int, int]
    X: np.ndarray  # features, one row per line: its `line_best` reading
    positive: np.ndarray  # bool per row: that reading's key is the label's
    reachable: bool  # some reading of the photo (the rules' preferred one or not) has the label's key

    @property
    def learnable(self) -> bool:
        return bool(self.positive.any())


def photo_of(name: str, label: str, lines: Sequence, size: tuple[int, int]) -> Photo:
    readings = plate_readings(lines, size)
    best = [readings[i] for i in line_best(readings)]
    key = plate_key(label)
    return Photo(name, key, tuple(lines), size, features(best, size), np.array([r.key == key for r in best], bool),
                 any(r.key == key for r in readings))


def load_photos(paths: Sequence[str | Path]) -> list[Photo]:
    """Every plates photo of `evaluate --json` reports (per_image with pred_lines and label)."""
    from service.vision.ctc import CharEvidence
    from training.evaluation.run import SavedLine

    photos = []
    for path in paths:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        for reports in saved.values():
            for rep in reports:
                if rep.get("domain") != "plates":
                    continue
                for it in rep["per_image"]:
                    lines = [SavedLine(x["text"], x["confidence"], [tuple(p) for p in x["polygon"]],
                                       tuple(x.get("char_confidences", ())),
                                       tuple(CharEvidence(tuple((a, p) for a, p in alts), start, end)
                                             for alts, start, end in x.get("chars", ())))
                             for x in it["pred_lines"]]
                    photos.append(photo_of(it["image"], it["label"], lines, tuple(it["image_size"])))
    return photos


@dataclass(frozen=True)
class FitConfig:
    l2: float = 0.01
    steps: int = 2000
    lr: float = 0.05
    drop: tuple[str, ...] = ()  # features whose weight stays 0


def fit(photos: Sequence[Photo], cfg: FitConfig) -> PlatePicker:
    """Softmax over each photo's lines, every positive line counting as the plate; L2 on the weights of the
    standardised features. Photos with no positive line are skipped."""
    used = [p for p in photos if p.learnable]
    if not used:
        raise ValueError("no photo has a line that reads as its label: nothing to learn from")
    for name in cfg.drop:
        if name not in FEATURES:
            raise ValueError(f"unknown feature {name!r}; features: {', '.join(FEATURES)}")
    X = np.concatenate([p.X for p in used]).astype(np.float64)
    pos = np.concatenate([p.positive for p in used])
    starts = np.cumsum([0] + [len(p.X) for p in used[:-1]])
    group = np.repeat(np.arange(len(used)), [len(p.X) for p in used])
    mean, std = X.mean(axis=0), np.maximum(X.std(axis=0), 1e-3)
    Z = (X - mean) / std
    keep = np.array([name not in cfg.drop for name in FEATURES], np.float64)
    w = np.zeros(len(FEATURES))
    m, v = np.zeros_like(w), np.zeros_like(w)
    loss = float("nan")
    for step in range(1, cfg.steps + 1):
        z = Z @ w
        top = np.maximum.reduceat(z, starts)[group]
        e = np.exp(z - top)
        all_sum, pos_sum = np.add.reduceat(e, starts), np.add.reduceat(e * pos, starts)
        loss = float(np.mean(np.log(all_sum) - np.log(pos_sum))) + 0.5 * cfg.l2 * float(w @ w)
        grad = Z.T @ (e / all_sum[group] - pos * e / pos_sum[group]) / len(used) + cfg.l2 * w
        grad *= keep
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= cfg.lr * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
    log.info("fitted on %d photos (%d lines): loss %.4f", len(used), len(X), loss)
    return PlatePicker(mean, std, w, {"photos": len(used), "lines": len(X), "l2": cfg.l2,
                                      "steps": cfg.steps, "dropped": list(cfg.drop), "loss": round(loss, 5)})


def picks(photos: Sequence[Photo], profile: PlateProfile) -> list[bool]:
    """Whether the profile, as the service runs it, picks each photo's labelled plate."""
    return [profile.extract(list(p.lines), p.size).plate == p.label for p in photos]


def plate_nll(photos: Sequence[Photo], picker: PlatePicker) -> list[float]:
    """-log P(the plate) under the picker's softmax, per photo with a line that reads as the plate."""
    out = []
    for p in photos:
        if p.learnable:
            z = picker.scores(p.X).astype(np.float64)
            z -= z.max()
            out.append(float(np.log(np.exp(z).sum()) - np.log(np.exp(z[p.positive]).sum())))
    return out


def cross_validate(photos: Sequence[Photo], cfg: FitConfig, folds: int, seed: int) -> dict[str, float]:
    """k-fold by photo: how many held-out photos the learned and the hand-set ranking get right, over the photos
    whose plate is among the readings (`reachable`) and over all; the learned picker's mean held-out -log P(plate)
    (finer than counts when both rankings err on few photos)."""
    order = np.random.default_rng(seed).permutation(len(photos))
    hand = picks(photos, PlateProfile())
    learned = [False] * len(photos)
    nll: list[float] = []
    for k in range(folds):
        held = set(order[k::folds].tolist())
        picker = fit([p for i, p in enumerate(photos) if i not in held], cfg)
        got = picks([photos[i] for i in sorted(held)], PlateProfile(picker))
        nll += plate_nll([photos[i] for i in sorted(held)], picker)
        for i, ok in zip(sorted(held), got):
            learned[i] = ok
    reach = [p.reachable for p in photos]
    return {"photos": len(photos), "reachable": sum(reach),
            "hand": sum(hand), "learned": sum(learned),
            "hand_reachable": sum(h for h, r in zip(hand, reach) if r),
            "learned_reachable": sum(c for c, r in zip(learned, reach) if r),
            "learned_only": sum(c and not h for c, h in zip(learned, hand)),
            "hand_only": sum(h and not c for c, h in zip(learned, hand)), "nll": round(float(np.mean(nll)), 4)}


def cv_report(cv: dict[str, float], folds: int) -> str:
    n, r = int(cv["photos"]), int(cv["reachable"])

    def cell(k: str, of: int) -> str:
        return f"{int(cv[k])} ({cv[k] / max(of, 1):.1%})"

    return "\n".join([
        f"| {folds}-fold CV by photo | hand-set | learned |", "|---|---:|---:|",
        (f"| plate picked, photos whose plate is a reading ({r}) | {cell('hand_reachable', r)} "
         f"| {cell('learned_reachable', r)} |"),
        f"| plate exact, all photos ({n}) | {cell('hand', n)} | {cell('learned', n)} |",
        f"| right by this ranking only | {int(cv['hand_only'])} | {int(cv['learned_only'])} |",
        f"| mean held-out -log P(plate) | | {cv['nll']:.3f} |"])


OPTION_HELP = {
    "l2": "L2 penalty on the weights of the standardised features",
    "steps": "full-batch Adam steps",
    "lr": "Adam learning rate",
}


def main(argv: Sequence[str] | None = None) -> int:
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet train-plate-picker", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--eval-json", action="append", required=True,
                    help="`ocrnet evaluate --domains plates --json` report(s) of labelled TRAIN photos (repeatable)")
    ap.add_argument("--out", help="picker JSON to write (e.g. models/plate/picker.json); unset: report only")
    defaults = FitConfig()
    for field, text in OPTION_HELP.items():
        ap.add_argument(f"--{field}", type=type(getattr(defaults, field)), default=getattr(defaults, field),
                        help=text)
    ap.add_argument("--drop", default="confidence",
                    help=f"comma-separated features kept at weight 0 (of {', '.join(FEATURES)}); '' keeps all. "
                         "confidence by default: the plate recognizer was finetuned on the TRAIN plate crops, so "
                         "its confidence marks the plate more clearly on TRAIN photos than it will on new ones")
    ap.add_argument("--folds", type=int, default=5, help="cross-validation folds (by photo); 0 or 1: none")
    ap.add_argument("--seed", type=int, default=0, help="seed of the cross-validation split")
    args = ap.parse_args(list(argv) if argv is not None else None)
    cfg = FitConfig(args.l2, args.steps, args.lr, tuple(d for d in args.drop.split(",") if d))
    t0 = time.perf_counter()
    photos = load_photos(args.eval_json)
    if not photos:
        log.error("no plates photos in %s", ", ".join(args.eval_json))
        return 2
    print(f"{len(photos)} photos, {sum(p.reachable for p in photos)} with the plate among their readings "
          f"({sum(p.learnable for p in photos)} as a line's preferred reading), {sum(len(p.X) for p in photos)} lines")
    cv = None
    if args.folds > 1:
        cv = cross_validate(photos, cfg, args.folds, args.seed)
        print(cv_report(cv, args.folds))
    picker = fit(photos, cfg)
    print("weights (standardised features): " + ", ".join(
        f"{name} {w:+.2f}" for name, w in sorted(zip(FEATURES, picker.weights.tolist()), key=lambda nw: -abs(nw[1]))))
    if args.out:
        picker.meta.update({"eval_json": [str(p) for p in args.eval_json], "cv": cv, "folds": args.folds,
                            "seed": args.seed})
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        picker.save(args.out)
        print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes)")
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0

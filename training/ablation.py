"""``ocrnet ablation``: the transfer-learning modes side by side, each judged end to end through the service.

Every mode is an ordinary finetune run of one base config with a few overrides (same data, same step budget,
same seed), exported to ONNX and evaluated with the service's own pipeline and profile on a labelled folder,
so the table says what a user would get from each mode, not what a validation loss says. ``--fractions``
turns the same machinery into a learning curve: the metric against how much of the labelled (real) training
data a mode sees (a subset chosen by hashing image names, nested across fractions).

Modes (``MODES``); a trained mode other than ``config`` drops the base config's own extra losses (the plate
recipe's synthetic mixing) and adds only the one it names:

| mode | what changes against the base config |
|---|---|
| shipped | nothing is trained: the bundle as it is (its current recognizer) |
| pretrained | nothing is trained: the pretrained recognizer (``--pretrained-dir``) in the same bundle |
| config | the base config's own transfer settings (e.g. a learning curve of the shipped recipe) |
| frozen | backbone frozen, features cached, neck + head train on the target data |
| full_lowlr | everything trains, backbone at 0.1x the learning rate |
| l2sp | frozen + L2-SP pulling the trained neck and head toward the pretrained weights |
| mixing | frozen + alpha * L(synthetic source) + (1 - alpha) * L(real target) |
| distill | frozen + KL to the pretrained teacher |
| synthetic | frozen, trained on the synthetic source only (no real data: the baseline of ``da``) |
| da | frozen, trained on the synthetic source only, + CORAL between source and the (unlabelled) real target |
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.finetune.cli_args import apply_overrides
from training.finetune.config import DataSource, FinetuneConfig, load_config

log = logging.getLogger(__name__)

Override = Callable[[dict, list[dict]], dict]


def _without_extra_losses(raw: dict) -> dict:
    """The base recipe's own extra losses (the plate recipe mixes in synthetic plates) would ride along in every
    mode, so a mode has only the one it names."""
    raw["transfer"].update(mixing=None, distill=None, domain_adaptation=None, l2sp_lambda=0.0)
    return raw


def _frozen(raw: dict, _synthetic: list[dict]) -> dict:
    """Whatever part of the backbone the base config trains, none of it here; its features are computed once, so
    per-epoch crop augmentation (a base recipe's ``rec_augment``) cannot apply."""
    raw = _without_extra_losses(raw)
    raw["transfer"].update(freeze_backbone=True, cache_features=True, backbone_lr_mult=1.0,
                           train_backbone_blocks=None)
    raw["data"]["rec_augment"] = 0.0
    return raw


def _full(raw: dict, _synthetic: list[dict]) -> dict:
    """Every backbone block trains, even where the base config trains only its last few."""
    raw = _without_extra_losses(raw)
    raw["transfer"].update(freeze_backbone=False, cache_features=False, backbone_lr_mult=0.1,
                           train_backbone_blocks=None)
    return raw


def _l2sp(raw: dict, synthetic: list[dict]) -> dict:
    """L2-SP on what trains (neck + head over the frozen, cached backbone): with the backbone training as well,
    a 250-step run costs ~30 min instead of ~1 on 2 cores (``full_lowlr`` measures that cost)."""
    raw = _frozen(raw, synthetic)
    raw["transfer"]["l2sp_lambda"] = 1e-3
    return raw


def _mixing(raw: dict, synthetic: list[dict]) -> dict:
    raw = _frozen(raw, synthetic)
    raw["transfer"]["mixing"] = {"alpha": 0.3, "source": synthetic}
    return raw


def _distill(raw: dict, synthetic: list[dict]) -> dict:
    raw = _frozen(raw, synthetic)
    raw["transfer"]["distill"] = {"beta": 0.5, "temperature": 2.0}
    return raw


def _synthetic_only(raw: dict, synthetic: list[dict]) -> dict:
    raw = _frozen(raw, synthetic)
    raw["data"]["train"] = synthetic
    return raw


def _domain_adaptation(raw: dict, synthetic: list[dict]) -> dict:
    raw = _frozen(raw, synthetic)
    real = raw["data"]["train"]
    raw["data"]["train"] = synthetic
    raw["transfer"]["domain_adaptation"] = {"distance": "coral", "lam": 1.0, "target": real}
    return raw


def _as_configured(raw: dict, synthetic: list[dict]) -> dict:
    return raw


MODES: dict[str, Override | None] = {
    "shipped": None,
    "pretrained": None,
    "config": _as_configured,
    "frozen": _frozen,
    "full_lowlr": _full,
    "l2sp": _l2sp,
    "mixing": _mixing,
    "distill": _distill,
    "synthetic": _synthetic_only,
    "da": _domain_adaptation,
}


@dataclass
class ModeResult:
    mode: str
    fraction: float
    train_samples: int = 0
    steps: int = 0
    train_seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def steps_per_second(self) -> float | None:
        return self.steps / self.train_seconds if self.train_seconds else None


def mode_config(base: FinetuneConfig, mode: str, synthetic: Sequence[DataSource], fraction: float,
                out_dir: Path) -> FinetuneConfig:
    """The base config with ``mode``'s overrides, its labelled real sources cut to ``fraction``."""
    raw = json.loads(base.model_dump_json())
    for src in raw["data"]["train"]:
        if src["kind"] != "synthetic" and fraction < 1.0:
            from training.data.loaders import load_records

            src["limit"] = max(1, int(round(len(load_records(src["path"])) * fraction)))
            src["limit_by"] = "hash"  # not the first N of a file sorted by region or vendor
    override = MODES[mode]
    if override is not None:
        raw = override(raw, [json.loads(s.model_dump_json()) for s in synthetic])
    raw["output_dir"] = str(out_dir)
    raw["export"] = True
    return FinetuneConfig.model_validate(raw)


def bundle_with_rec(template: Path, rec_dir: Path, dest: Path) -> Path:
    """A model dir like ``template`` whose recognizer is the exported one in ``rec_dir``."""
    # imported here, not at the top: `ocrnet ablation --help` stays light
    from service.model_bundle import FILE_KEYS

    manifest = json.loads((template / "model.json").read_text(encoding="utf-8"))
    for key in FILE_KEYS:  # the template's detector, lexicon, line models ... wherever the copy is written
        if manifest.get(key):
            manifest[key] = str((template / manifest[key]).resolve())
    manifest.pop("rec_cpu", None)  # the template's CPU recognizer would stand in for the swapped one
    manifest["rec"] = str((rec_dir / "rec.onnx").resolve())
    manifest["charset"] = str((rec_dir / "charset.json").resolve())
    manifest["name"] = f"{manifest.get('name', 'model')}-{dest.name}"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return dest


def _run(args: list[str], log_path: Path) -> None:
    """One ``ocrnet`` command in its own process (training and evaluation each free all their memory when done:
    a 28,000-crop feature cache plus a 3000 px detector arena do not fit twice in a small box)."""
    with log_path.open("a", encoding="utf-8") as out:
        subprocess.run([sys.executable, "-m", "training", *args], check=True, stdout=out, stderr=subprocess.STDOUT)


def reusable_run(run_dir: Path, cfg: FinetuneConfig) -> bool:
    """``run_dir`` trained to the end and exported with this very config (a run killed part way has no
    train_summary.json; one trained with other settings, e.g. another step budget, does not count)."""
    stored = run_dir / "mode_config.json"
    if not ((run_dir / "train_summary.json").is_file() and (run_dir / "export" / "rec.onnx").is_file()
            and stored.is_file()):
        return False
    return FinetuneConfig.model_validate_json(stored.read_text(encoding="utf-8")).model_dump() == cfg.model_dump()


def run_mode(base: FinetuneConfig, mode: str, synthetic: Sequence[DataSource], fraction: float, root: Path,
             bundle: Path, data: Path, domain: str, eval_limit: int | None = None,
             pretrained_dir: Path = Path("models/base"), reuse: bool = False) -> ModeResult:
    """Train, export and evaluate one mode at one fraction; with ``reuse``, a run of the same config that already
    finished in ``root`` is only evaluated again."""
    label = f"{mode}@{fraction:g}"
    run_dir = root / label
    run_dir.mkdir(parents=True, exist_ok=True)
    result = ModeResult(mode, fraction)
    if mode == "shipped":
        eval_dir = bundle
    elif mode == "pretrained":
        eval_dir = bundle_with_rec(bundle, pretrained_dir, run_dir / "bundle")
    else:
        cfg = mode_config(base, mode, synthetic, fraction, run_dir)
        if not (reuse and reusable_run(run_dir, cfg)):
            shutil.rmtree(run_dir)
            run_dir.mkdir()
            (run_dir / "mode_config.json").write_text(cfg.model_dump_json(indent=1), encoding="utf-8")
            _run(["finetune", "--config", str(run_dir / "mode_config.json")], run_dir / "log.txt")
        summary = json.loads((run_dir / "train_summary.json").read_text(encoding="utf-8"))
        result.train_samples, result.steps = summary["train_samples"], summary["steps"]
        result.train_seconds = summary["fit_seconds"]
        result.metrics.update(setup_seconds=summary["setup_seconds"], best_step=summary["best_step"],
                              val=summary["last_val"])
        eval_dir = bundle_with_rec(bundle, run_dir / "export", run_dir / "bundle")
    report_path = run_dir / "dev_eval.json"
    _run(["evaluate", "--model-dir", str(eval_dir), "--data", str(data), "--domains", domain,
          "--json", str(report_path), *(["--limit", str(eval_limit)] if eval_limit else [])], run_dir / "log.txt")
    reports = json.loads(report_path.read_text(encoding="utf-8"))
    result.metrics["dev"] = next(iter(reports.values()))[0]["metrics"]
    log.info("ablation %s: %s", label, result.metrics["dev"])
    return result


DEV_COLUMNS = {
    "receipts": ["e2e_recall", "e2e_f1", "e2e_recall_nospace", "rec_accuracy", "field_company", "field_date",
                 "field_total"],
    "plates": ["plate_exact", "plate_exact_o0", "plate_exact_us", "plate_exact_eu", "plate_exact_br"],
    "ids": ["mrz_exact", "mrz_valid"],
}


def training_data(r: ModeResult) -> str:
    """What a row learned from, in words (the fraction only counts labelled real data)."""
    if MODES.get(r.mode) is None:
        return "none"
    if r.mode == "synthetic":
        return "synthetic only"
    if r.mode == "da":
        return "synthetic + real, unlabelled"
    return f"{r.fraction:.0%} of real"


def render(results: Sequence[ModeResult], domain: str) -> str:
    cols = DEV_COLUMNS.get(domain) or sorted({k for r in results for k in r.metrics.get("dev", {})})
    # "kept step": the checkpoint validation picked and the row evaluates; 0 is the starting weights (a mode that
    # never beat them on validation reads like the pretrained row)
    head = ["mode", "trained on", "train samples", "steps", "kept step", "train s", "steps/s", *cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        dev = r.metrics.get("dev", {})
        sps = r.steps_per_second
        kept = r.metrics.get("best_step")
        cells = [r.mode, training_data(r), str(r.train_samples or "-"), str(r.steps or "-"),
                 "-" if kept is None else str(kept),
                 f"{r.train_seconds:.0f}" if r.train_seconds else "-", f"{sps:.2f}" if sps else "-"]
        cells += [f"{dev[c]:.1%}" if isinstance(dev.get(c), float) else "-" for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curve(results: Sequence[ModeResult], metric: str, path: Path, title: str) -> Path:
    """Learning curve PNG: ``metric`` on the evaluation set against the fraction of real training data."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # the bench extra carries matplotlib
        raise SystemExit("plotting needs matplotlib: pip install -e '.[bench]'") from e
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    untrained = [r for r in results if MODES.get(r.mode) is None]
    for k, r in enumerate(dict((r.mode, r) for r in untrained).values()):  # reference lines, once per mode
        y = r.metrics["dev"].get(metric)
        if y is not None:
            what = "as served" if r.mode == "shipped" else "no training"
            ax.axhline(100 * y, ls="--", lw=1, color=f"C{7 + k}", label=f"{r.mode} ({what}): {100 * y:.1f}")
    for mode in dict.fromkeys(r.mode for r in results if MODES.get(r.mode) is not None):
        start = untrained[0] if untrained else None  # 0 % real data = the untrained model
        pts = sorted([(r.fraction, r.metrics["dev"].get(metric)) for r in results if r.mode == mode]
                     + ([(0.0, start.metrics["dev"].get(metric))] if start else []))
        xs = [100 * x for x, y in pts if y is not None]
        ys = [100 * y for _, y in pts if y is not None]
        ax.plot(xs, ys, marker="o", label=mode)
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xlabel("real TRAIN data used (%)")
    ax.set_ylabel(f"DEV {metric} (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet ablation", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--config", type=Path, required=True, help="base rec finetune config (its train data = real)")
    ap.add_argument("--modes", default="pretrained,frozen,full_lowlr,l2sp,mixing,distill,da",
                    help=f"comma-separated, from {', '.join(MODES)}")
    ap.add_argument("--fractions", default="1", help="comma-separated fractions of the real training data")
    ap.add_argument("--synthetic-domain", required=True, help="synthetic source domain (plates, receipts, ids)")
    ap.add_argument("--synthetic-n", type=int, default=3000, help="synthetic source samples (mixing, da)")
    ap.add_argument("--bundle", type=Path, required=True, help="service model dir whose recognizer is swapped")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder with <domain>/labels.jsonl")
    ap.add_argument("--domain", required=True, help="evaluation domain: plates, receipts or ids")
    ap.add_argument("--pretrained-dir", type=Path, default=Path("models/base"),
                    help="model dir with the pretrained rec.onnx + charset.json (the 'pretrained' row)")
    ap.add_argument("--max-steps", type=int, help="override the config's step budget (same for every mode)")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=YAML", dest="overrides",
                    help="override one field of the base config for every mode, as `ocrnet finetune --set` "
                         "(repeatable), e.g. eval_every_steps=500")
    ap.add_argument("--eval-limit", type=int, help="first N evaluation images only (quick checks)")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"), help="run folders, results.json, table.md")
    ap.add_argument("--reuse-runs", action="store_true",
                    help="keep a mode's run that already trained to the end in --out (only evaluate it again, e.g. "
                         "in another bundle, or after a later mode was killed); unfinished runs are retrained")
    ap.add_argument("--plot-metric", help="with several --fractions: write curve.png of this DEV metric "
                                          "(e.g. e2e_recall, plate_exact)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    if not (args.data / args.domain / "labels.jsonl").is_file():
        ap.error(f"no {args.data / args.domain / 'labels.jsonl'}: the evaluation set is needed")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown modes {unknown}; have {list(MODES)}")
    base = apply_overrides(load_config(args.config), args.overrides)
    if args.max_steps:
        base = base.model_copy(update={"max_steps": args.max_steps})
    synthetic = [DataSource(kind="synthetic", domain=args.synthetic_domain, n=args.synthetic_n, seed=101)]
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[ModeResult] = []
    for fraction in (float(f) for f in args.fractions.split(",")):
        for mode in modes:
            untrained = MODES[mode] is None  # the same model whatever the fraction: evaluated once
            if (fraction == 0 and not untrained) or (untrained and any(r.mode == mode for r in results)):
                continue
            results.append(run_mode(base, mode, synthetic, fraction, args.out, args.bundle, args.data, args.domain,
                                    args.eval_limit, args.pretrained_dir, args.reuse_runs))
            (args.out / "results.json").write_text(
                json.dumps([{**r.__dict__, "steps_per_second": r.steps_per_second} for r in results], indent=1,
                           default=str), encoding="utf-8")
    table = render(results, args.domain)
    (args.out / "table.md").write_text(table + "\n", encoding="utf-8")
    if args.plot_metric:
        plot_curve(results, args.plot_metric, args.out / "curve.png",
                   f"{args.domain}: DEV {args.plot_metric} vs real training data")
    print(table)
    return 0

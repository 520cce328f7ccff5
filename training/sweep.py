"""``ocrnet sweep``: a small grid search over a finetune config, ranked by the validation metric.

Each point of the grid is an ordinary finetune run (its own output dir, checkpoints and history), so
the winner can be exported with ``ocrnet export`` like any other run. Grid axes are dotted config
paths: ``--grid optim.lr=1e-4,3e-5 --grid transfer.l2sp_lambda=0,1e-4 --grid transfer.freeze_backbone=true,false``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from training.finetune.config import FinetuneConfig, load_config

log = logging.getLogger(__name__)


def parse_axis(spec: str) -> tuple[str, list[Any]]:
    """``a.b=v1,v2`` -> ("a.b", [v1, v2]); values are parsed as YAML scalars (numbers, booleans, null)."""
    key, sep, values = spec.partition("=")
    if not sep or not key or not values:
        raise ValueError(f"grid axis must look like path.to.field=v1,v2 (got {spec!r})")
    return key.strip(), [yaml.safe_load(v) for v in values.split(",")]


def with_override(raw: dict, dotted: str, value: Any) -> dict:
    """A deep copy of ``raw`` with ``dotted`` set to ``value`` (missing sections are created)."""
    out = json.loads(json.dumps(raw))
    node = out
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"{dotted}: {part} is not a section")
    node[leaf] = value
    return out


def expand_grid(base: FinetuneConfig, axes: Sequence[tuple[str, list[Any]]], root: Path) -> list[tuple[str, FinetuneConfig]]:
    """Every combination of the axes, validated, each with its own output dir under ``root``."""
    raw = json.loads(base.model_dump_json())
    points = []
    for values in itertools.product(*(vals for _, vals in axes)):
        cfg_raw = raw
        for (key, _), value in zip(axes, values):
            cfg_raw = with_override(cfg_raw, key, value)
        label = ",".join(f"{key.split('.')[-1]}={value}" for (key, _), value in zip(axes, values)) or "base"
        cfg_raw["output_dir"] = str(root / label.replace("/", "_"))
        points.append((label, FinetuneConfig.model_validate(cfg_raw)))
    return points


def run_point(cfg: FinetuneConfig) -> dict[str, Any]:
    from training.finetune.runner import build_trainer  # torch is imported only when a run starts

    state = build_trainer(cfg).fit()
    best = next((h for h in state.history if h.get("step") == state.best_step), state.history[-1] if state.history else {})
    return {"best_step": state.best_step, "best_score": state.best_score, "metrics": best}


def main(argv: Sequence[str] | None = None) -> int:
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet sweep", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--config", type=Path, required=True, help="base finetune config (YAML/JSON)")
    ap.add_argument("--grid", action="append", default=[], metavar="PATH=V1,V2", help="one grid axis (repeatable)")
    ap.add_argument("--max-steps", type=int, help="steps per point (short runs rank settings cheaply); unset: the config's")
    ap.add_argument("--out", type=Path, default=Path("runs/sweep"), help="root folder of the runs")
    args = ap.parse_args(list(argv) if argv is not None else None)
    base = load_config(args.config)
    base = base.model_copy(update={"export": False, **({"max_steps": args.max_steps} if args.max_steps else {})})
    points = expand_grid(base, [parse_axis(a) for a in args.grid], args.out)
    results = []
    for label, cfg in points:
        log.info("sweep point %s -> %s", label, cfg.output_dir)
        results.append({"point": label, "output_dir": str(cfg.output_dir), **run_point(cfg)})
    results.sort(key=lambda r: r["best_score"] or [float("-inf")], reverse=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print("| rank | point | best step | best val | run |\n|---|---|---|---|---|")
    for rank, r in enumerate(results, 1):
        shown = {k: round(v, 4) for k, v in r["metrics"].items() if isinstance(v, float)}
        print(f"| {rank} | {r['point']} | {r['best_step']} | {shown} | {r['output_dir']} |")
    return 0

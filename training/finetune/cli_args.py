"""``ocrnet finetune`` options and the config they produce, without importing torch.

Kept apart from the runner so ``--help``, bad options and missing data are answered in well under a second,
before torch and the data stack load (a config pointing at data this checkout does not have used to fail only
after the pretrained model was built).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import yaml
from pydantic import BaseModel

from training.finetune.config import DataSource, FinetuneConfig, load_config

VAL_SYNTHETIC_SEED = 900  # held-out synthetic validation: seeds no shipped config trains on


def build_parser() -> argparse.ArgumentParser:
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(
        prog="ocrnet finetune", formatter_class=HelpFormatter,
        description="Finetune OCRNet det or rec from a YAML/JSON config (schema and defaults: "
        "training/finetune/config.py; data formats: docs/labels.md). Run under torchrun for DDP.\n\n"
        "  ocrnet finetune --config training/configs/plates_rec.yaml --val-synthetic 100 --max-steps 20\n"
        "  ocrnet finetune --config training/configs/plates_rec.yaml \\\n"
        "      --set 'data.val=[{kind: labels_jsonl, path: my_plates}]'")
    ap.add_argument("--config", required=True, type=Path, help="YAML or JSON FinetuneConfig")
    ap.add_argument("--resume", type=Path, help="a last.pt written by an earlier run of this config")
    ap.add_argument("--output-dir", type=Path, help="override output_dir (unset: the config's)")
    ap.add_argument("--max-steps", type=int, help="override max_steps (unset: the config's)")
    ap.add_argument("--no-export", action="store_true", help="skip the final ONNX export")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=YAML", dest="overrides",
                    help="override one config field, value parsed as YAML (repeatable), e.g. "
                    "data.train.0.n=200 or 'data.val=[{kind: labels_jsonl, path: DIR}]'")
    ap.add_argument("--val-synthetic", type=int, default=None, metavar="N",
                    help="validate on N held-out synthetic samples per synthetic training domain instead of the "
                    "config's val sources (runs without any real data; unset: the config's val)")
    return ap


def _set(raw: dict, dotted: str, value: object) -> None:
    """Set ``a.b.0.c`` in nested dicts/lists (list items by index)."""
    node: object = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})  # type: ignore[union-attr]
    if isinstance(node, list):
        node[int(leaf)] = value
    elif isinstance(node, dict):
        node[leaf] = value
    else:
        raise TypeError(f"--set {dotted}: {'.'.join(parents)} is not a section")


def apply_overrides(cfg: FinetuneConfig, overrides: list[str]) -> FinetuneConfig:
    raw = json.loads(cfg.model_dump_json())
    for spec in overrides:
        key, sep, value = spec.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"ocrnet finetune: --set wants PATH=YAML, got {spec!r}")
        try:
            _set(raw, key.strip(), yaml.safe_load(value))
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise SystemExit(f"ocrnet finetune: --set {spec!r}: {e}") from None
    return FinetuneConfig.model_validate(raw)


def synthetic_val(cfg: FinetuneConfig, n: int) -> list[DataSource]:
    domains = dict.fromkeys(s.domain for s in cfg.data.train if s.kind == "synthetic" and s.domain)
    if not domains:
        raise SystemExit("ocrnet finetune: --val-synthetic needs synthetic training sources (none in this config)")
    return [DataSource(kind="synthetic", domain=d, n=n, seed=VAL_SYNTHETIC_SEED + i) for i, d in enumerate(domains)]


def data_sources(node: object, where: str = "") -> Iterator[tuple[str, DataSource]]:
    """(dotted place, source) for every DataSource anywhere in the config (train, val, mixing, and any added later)."""
    if isinstance(node, DataSource):
        yield where, node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from data_sources(getattr(node, name), f"{where}.{name}" if where else name)
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from data_sources(item, f"{where}[{i}]")


def missing_sources(cfg: FinetuneConfig) -> list[tuple[str, DataSource]]:
    """(where, source) for every file-based source whose path does not exist in this checkout."""
    return [(where, src) for where, src in data_sources(cfg)
            if src.kind != "synthetic" and src.path is not None and not Path(src.path).exists()]


def prepare_config(args: argparse.Namespace) -> FinetuneConfig:
    """The config file + command-line overrides, checked for data this checkout lacks (SystemExit with the fix)."""
    cfg = apply_overrides(load_config(args.config), args.overrides)
    updates: dict[str, object] = {k: v for k, v in {"output_dir": args.output_dir, "max_steps": args.max_steps}.items()
                                  if v}
    if args.no_export:
        updates["export"] = False
    if args.val_synthetic:
        updates["data"] = cfg.data.model_copy(update={"val": synthetic_val(cfg, args.val_synthetic)})
    cfg = cfg.model_copy(update=updates)
    missing = missing_sources(cfg)
    if missing:
        listed = "\n".join(f"  {where}: {src.kind} {src.path}" for where, src in missing)
        raise SystemExit(
            f"ocrnet finetune: {args.config} reads data this checkout does not have:\n{listed}\n"
            "Point it at yours, e.g. --set 'data.val=[{kind: labels_jsonl, path: DIR}]' (format: docs/labels.md),\n"
            "or validate on held-out synthetic data instead: --val-synthetic 100")
    return cfg

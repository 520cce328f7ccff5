"""``ocrnet soup``: average the weights of finetune runs that started from the same model (a "model soup").

Why: two finetunes of one pretrained recognizer on different views of the same real data (label crops; the crops
the bundle's detector cuts) each read a few more DEV lines and each lose a different field to a one-character read.
Their uniform weight average (Wortsman et al., 2022, "Model soups") keeps the gain without either loss, at no
inference cost. It only makes sense for runs that share the starting weights, the architecture and the class table,
which this checks. The output is a run folder that ``ocrnet export --run`` takes like any other.

    ocrnet soup --runs runs/receipts_rec_real_2000 runs/receipts_rec_real_lines --out runs/receipts_rec_soup
    ocrnet export --run runs/receipts_rec_soup --checkpoint runs/receipts_rec_soup/best.pt --out models/receipts_rec
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["average_checkpoints", "main", "soup_config"]


def average_checkpoints(checkpoints: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The first checkpoint with its ``model`` weights replaced by the mean over all of them (floating tensors
    averaged in float32 and cast back; integer buffers such as BatchNorm's step count are the first run's)."""
    if len(checkpoints) < 2:
        raise ValueError("a soup needs at least two checkpoints")
    first = checkpoints[0]
    for other in checkpoints[1:]:
        if other.get("task") != first.get("task"):
            raise ValueError(f"checkpoints of different tasks: {first.get('task')} vs {other.get('task')}")
        if other.get("classes") != first.get("classes"):
            raise ValueError("checkpoints with different class tables (charsets) cannot be averaged")
        if other["model"].keys() != first["model"].keys():
            raise ValueError("checkpoints of different architectures (parameter names differ)")
        for name, tensor in first["model"].items():
            if other["model"][name].shape != tensor.shape:
                raise ValueError(f"{name}: shape {tuple(other['model'][name].shape)} vs {tuple(tensor.shape)}")
    averaged = {}
    for name, tensor in first["model"].items():
        if tensor.is_floating_point():
            total = sum(c["model"][name].float() for c in checkpoints)
            averaged[name] = (total / len(checkpoints)).to(tensor.dtype)
        else:
            averaged[name] = tensor.clone()
    return {**first, "model": averaged}


def soup_config(configs: Sequence[dict[str, Any]], output_dir: Path, name: str | None) -> dict[str, Any]:
    """The first run's config (what export reads: task, transfer, optim), with every run's training sources, so the
    model card lists all the data the soup learned from."""
    config = json.loads(json.dumps(configs[0]))
    train: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for c in configs:
        for src in c["data"]["train"]:
            key = (src.get("kind"), src.get("domain"), src.get("path"))  # runs of other versions add defaults
            if key not in seen:
                seen.add(key)
                train.append(src)
    config["data"]["train"] = train
    config["output_dir"] = str(output_dir)
    if name:
        config["name"] = name
    return config


def main(argv: Sequence[str] | None = None) -> int:
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet soup", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--runs", type=Path, nargs="+", required=True,
                    help="finetune output dirs; each contributes its best.pt (else last.pt)")
    ap.add_argument("--out", type=Path, required=True, help="run folder to write (best.pt, config.json, soup.json)")
    ap.add_argument("--name", help="model name for the export (unset: the first run's)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    import torch  # after parsing: `--help` stays light

    paths = [run / "best.pt" if (run / "best.pt").exists() else run / "last.pt" for run in args.runs]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        ap.error(f"no checkpoint: {', '.join(missing)}")
    checkpoints = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
    soup = average_checkpoints(checkpoints)
    configs = [json.loads((run / "config.json").read_text(encoding="utf-8")) for run in args.runs]
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(soup, args.out / "best.pt")
    config = soup_config(configs, args.out, args.name)
    (args.out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (args.out / "soup.json").write_text(json.dumps({"checkpoints": [str(p) for p in paths]}, indent=2),
                                        encoding="utf-8")
    log.info("averaged %d checkpoints into %s", len(paths), args.out / "best.pt")
    print(f"wrote {args.out / 'best.pt'}; next: ocrnet export --run {args.out} --checkpoint {args.out / 'best.pt'} "
          "--out models/<name>")
    return 0

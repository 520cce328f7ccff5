"""``ocrnet export``: turn a finetune run into a model dir the service can load.

A finetune run already writes ``<run>/export/{rec,det}.onnx`` checked against PyTorch. This command
places it in ``models/<name>/`` (optionally with fp16-stored weights to fit the models/ budget), points
the missing half at another model dir (e.g. the base detector) and writes model.json + MODEL_CARD.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _place_onnx(src: Path, dst: Path, weights: str, share_with: Path | None = None) -> float:
    """Copy (or fp16-/int8-store, or store only what differs from ``share_with``, int8 or not) one ONNX file;
    returns max |dst - src| on a probe input (0 for a copy or a float shared store)."""
    from training.export import (
        onnx_max_abs_diff,
        share_weights_with,
        store_weights_fp16,
        store_weights_int8,
    )

    if share_with is not None:
        return share_weights_with(src, share_with, dst, int8_rest=weights == "int8")
    if weights == "fp32":
        shutil.copyfile(src, dst)
        return 0.0
    (store_weights_fp16 if weights == "fp16" else store_weights_int8)(src, dst)
    probe = (np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 320)) if dst.stem == "rec"
             else np.random.default_rng(0).standard_normal((1, 3, 320, 480))).astype(np.float32)
    return onnx_max_abs_diff(dst, None, [probe], reference_onnx=src)


def export_checkpoint(checkpoint: Path, dest: Path) -> list[Path]:
    """Re-export a finetune checkpoint (e.g. a run stopped before its end) into ``dest`` like the run would."""
    import torch

    from training.export import export_det, export_rec
    from training.models.det import det_from_onnx
    from training.models.rec import cut_charset, rec_from_onnx
    from training.pretrained import locate_pretrained

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    dest.mkdir(parents=True, exist_ok=True)
    files = locate_pretrained()
    if ckpt["task"] == "rec":
        model, characters = rec_from_onnx(files.rec)
        if ckpt["classes"][1:] != characters:
            model = cut_charset(model, characters, ckpt["classes"][1:])
        model.load_state_dict(ckpt["model"])
        (dest / "charset.json").write_text(json.dumps({"blank_index": 0, "characters": ckpt["classes"][1:]},
                                                      ensure_ascii=False), encoding="utf-8")
        return [export_rec(model.eval(), dest / "rec.onnx"), dest / "charset.json"]
    model = det_from_onnx(files.det)
    model.load_state_dict(ckpt["model"])
    return [export_det(model.eval(), dest / "det.onnx")]


def _data_summary(config: dict) -> str:
    rows = ["| split | kind | domain / path | n | seed |", "|---|---|---|---|---|"]
    for split in ("train", "val"):
        for src in config["data"].get(split, []):
            rows.append(f"| {split} | {src['kind']} | {src.get('domain') or src.get('path')} | "
                        f"{src.get('limit') or src.get('n')} | {src.get('seed', '')} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet export", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="finetune output_dir (holds export/ and config.json)")
    ap.add_argument("--out", type=Path, required=True, help="model dir to write, e.g. models/domains")
    ap.add_argument("--checkpoint", type=Path, help="export this checkpoint of the run first (unset: use the "
                    "run's own export/, written when the run finished)")
    ap.add_argument("--name", help="model name (unset: the run's config name)")
    ap.add_argument("--version", default="1", help="model version written to model.json")
    ap.add_argument("--det", default="../base/det.onnx", help="detector path relative to --out when the run is rec")
    ap.add_argument("--rec", default="../base/rec.onnx", help="recognizer path relative to --out when the run is det")
    ap.add_argument("--charset", default="../base/charset.json", help="charset when the run is det")
    stored = ap.add_mutually_exclusive_group()
    stored.add_argument("--fp16-weights", action="store_const", dest="weights", const="fp16", default="fp32",
                        help="store weights as fp16 (half size, fp32 compute)")
    stored.add_argument("--int8-weights", action="store_const", dest="weights", const="int8",
                        help="store Conv/MatMul weights as per-channel int8 (quarter size, fp32 compute)")
    ap.add_argument("--share-weights-with", metavar="ONNX",
                    help="path relative to --out of the model the run started from (e.g. ../base/det.onnx): store "
                         "only the tensors that differ from it, read from it at load time (a frozen-backbone "
                         "detector: 0.6 instead of 10.3 MB)")
    ap.add_argument("--metrics-md", type=Path, help="markdown with the evaluation to put in the card (unset: none)")
    ap.add_argument("--fact", action="append", default=[], metavar="KEY=VALUE", help="extra card facts")
    ap.add_argument("--command", default="", help="the commands that produced the run, for the card")
    args = ap.parse_args(list(argv) if argv is not None else None)
    from training.model_dir import ModelCard, write_manifest

    config = json.loads((args.run / "config.json").read_text(encoding="utf-8"))
    task, name = config["task"], args.name or config["name"]
    if args.share_weights_with and args.weights == "fp16":
        raise SystemExit("--share-weights-with stores the rest as fp32 or (--int8-weights) int8, not fp16")
    if args.checkpoint is not None:
        export_checkpoint(args.checkpoint, args.run / "export")
    args.out.mkdir(parents=True, exist_ok=True)
    src = args.run / "export" / f"{task}.onnx"
    share_with = (args.out / args.share_weights_with).resolve() if args.share_weights_with else None
    diff = _place_onnx(src, args.out / f"{task}.onnx", args.weights, share_with)
    if task == "rec":
        shutil.copyfile(args.run / "export" / "charset.json", args.out / "charset.json")
        paths = {"det": args.det, "rec": "rec.onnx", "charset": "charset.json"}
    else:
        paths = {"det": "det.onnx", "rec": args.rec, "charset": args.charset}
    write_manifest(args.out, name=name, version=args.version, source=f"ocrnet finetune ({task}) from PP-OCRv6 small",
                   **paths)
    facts = dict(kv.split("=", 1) for kv in args.fact)
    facts["task"] = task
    if share_with is not None:
        facts["shared weights"] = (f"only the tensors that differ from {args.share_weights_with} are stored here; "
                                   "the rest are read from it at load time (service.shared_weights)")
    if args.weights != "fp32":
        facts["weights"] = (f"stored as {args.weights}, computed in fp32 (max |Δ| vs fp32 export on a probe: "
                            f"{diff:.1e})")
    transfer = {k: v for k, v in config["transfer"].items() if v not in (None, False, 0, 0.0, "")}
    card = ModelCard(
        title=f"OCRNet {name} ({task})",
        summary=f"Finetuned OCRNet-{task.capitalize()} starting from PP-OCRv6 small. Shares the other half "
                f"of the pipeline with {paths['det'] if task == 'rec' else paths['rec']}.",
        source="Starts from the PP-OCRv6 small weights of models/base (rapidocr==3.10.0, Apache-2.0).",
        license="Apache-2.0 (derived from PP-OCRv6 small).",
        command=args.command or f"python -m training finetune --config <config>  # see {args.run}/config.json",
        data=_data_summary(config) + "\n\nTransfer settings: `" + json.dumps(transfer) + "`, lr "
             f"{config['optim']['lr']}, batch {config['batch_size']}, max steps {config.get('max_steps')}.",
        metrics_md=args.metrics_md.read_text(encoding="utf-8") if args.metrics_md else "",
        facts=facts,
    )
    files = {p.name: p for p in sorted(args.out.iterdir()) if p.suffix in {".onnx", ".json"} and p.name != "model.json"}
    (args.out / "MODEL_CARD.md").write_text(card.render(files), encoding="utf-8")
    print(f"wrote {args.out} ({sum(p.stat().st_size for p in files.values()) / 1e6:.1f} MB)", file=os.sys.stderr)
    return 0

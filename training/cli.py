"""``ocrnet`` command line: one entry point, one subcommand per job (fast-plate-ocr style).

Subcommands that belong to a sub-package take the rest of the command line and parse it themselves,
so each keeps its own ``--help``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

# subcommand -> ("module:function", help). The function takes the remaining argv and returns an exit code.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "import-pretrained": ("training.import_pretrained:main",
                          "load PP-OCRv6 small det/rec ONNX weights into OCRNet, check parity, export models/base"),
    "export": ("training.export_cli:main", "export a finetuned checkpoint to a model dir (ONNX + charset + card)"),
    "synth": ("training.data.synth.cli:main_synth", "write synthetic plates/receipts/ids data as labels.jsonl"),
    "crops": ("training.data.service_crops:main",
              "cut recognizer training crops from labelled pages the way the service cuts them"),
    "finetune": ("training.finetune:main_finetune", "finetune det or rec from a YAML/JSON config (torchrun-ready)"),
    "train-fields": ("training.fields.train:main",
                     "train the receipt company/address word tagger on labelled pages (numpy MLP -> JSON)"),
    "evaluate": ("training.evaluation.run:main_evaluate",
                 "evaluate model dirs end to end through the service pipeline, per domain"),
    "ablation": ("training.ablation:main",
                 "transfer-learning modes (or a learning curve) side by side, judged through the service pipeline"),
    "sweep": ("training.sweep:main", "small hyperparameter sweep over a finetune config"),
    "quantize": ("training.quantize:main", "int8 copy of a detector for CPU serving, calibrated on synthetic pages"),
}


def _resolve(target: str) -> Callable[[Sequence[str]], int | None]:
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="ocrnet", description="OCRNet training, evaluation and export")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code = _resolve(SUBCOMMANDS[args.command][0])(rest)
    return int(code or 0)


if __name__ == "__main__":
    raise SystemExit(main())

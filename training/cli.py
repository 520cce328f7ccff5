"""``ocrnet`` command line: one entry point, one subcommand per job (fast-plate-ocr style).

Subcommands that belong to a sub-package take the rest of the command line and parse it themselves,
so each keeps its own ``--help``. Nothing heavy is imported until a subcommand runs, and a subcommand
whose optional dependencies are not installed says which extra to install instead of a traceback.
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
    "plate-det-labels": ("training.data.plate_det_labels:main",
                         "detector labels of each plate's text line, from photos labelled with plate boxes"),
    "finetune": ("training.finetune:main_finetune", "finetune det or rec from a YAML/JSON config (torchrun-ready)"),
    "train-fields": ("training.fields.train:main",
                     "train the receipt company/address word tagger on labelled pages (numpy MLP -> JSON)"),
    "train-plate-picker": ("training.plate_picker:main",
                           "train the plate profile's candidate scorer on saved TRAIN plate reads (numpy -> JSON)"),
    "evaluate": ("training.evaluation.run:main_evaluate",
                 "evaluate model dirs end to end through the service pipeline, per domain"),
    "ablation": ("training.ablation:main",
                 "transfer-learning modes (or a learning curve) side by side, judged through the service pipeline"),
    "sweep": ("training.sweep:main", "small hyperparameter sweep over a finetune config"),
    "soup": ("training.soup:main", "average the weights of finetune runs from the same start (a model soup)"),
    "quantize": ("training.quantize:main", "int8 copy of a detector for CPU serving, calibrated on synthetic pages"),
    "quantize-rec": ("training.quantize_rec:main",
                     "int8 copy of a recognizer for CPU serving (pointwise convs), calibrated on real crops"),
    "lexicon": ("training.lexicon:main", "word list a bundle's recognizer may correct unknown words towards"),
    "train-line-split": ("training.line_split:main",
                         "train the line splitter that cuts read lines between columns, on labelled pages (JSON)"),
    "plate-spacing": ("training.plate_spacing:main",
                      "measure how a plate recognizer's character spacing shows printed separators (for the profile)"),
    "store-fp16": ("training.graph_rewrites:main_fp16",
                   "store a model's largest weights as float16 in place (models/ size budget), sharers re-pointed"),
    "int8-cast-mul": ("training.graph_rewrites:main_int8_cast_mul",
                      "rewrite an older int8-stored export's DequantizeLinear weights as Cast + Mul (in place)"),
    "fuse-gelu": ("training.graph_rewrites:main",
                  "rewrite an older export's spelled-out GELUs as one Gelu op each (in place, probe-checked)"),
}

# Top-level module of an optional dependency -> the pyproject extra that installs it.
EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "train", "onnx": "train", "onnxscript": "train", "onnx_ir": "train", "tqdm": "train",
    "rapidfuzz": "train", "yaml": "train",
    "onnxruntime": "serve", "fastapi": "serve", "pydantic": "serve", "pydantic_settings": "serve",
    "rapidocr": "bench", "matplotlib": "bench",
}
EXIT_MISSING_EXTRA = 3


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every subcommand's help: defaults shown on each option, descriptions (examples) kept as written.

    An option without a value by default (None, []) says in its help what happens when it is not given.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default == []:
            return action.help
        return super()._get_help_string(action)


def version() -> str:
    from service import __version__

    return __version__


def _resolve(target: str) -> Callable[[Sequence[str]], int | None]:
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def missing_extra_message(command: str, error: ModuleNotFoundError) -> str | None:
    """'ocrnet evaluate needs ... pip install -e ".[train]"' when `error` is an optional dependency, else None."""
    top = (error.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return (f"ocrnet {command}: the Python module '{top}' is missing; it comes with the '{extra}' extra:\n"
            f"    pip install -e '.[{extra}]'      (or `make install-all`, which installs every extra)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocrnet", description="OCRNet training, evaluation and export. `ocrnet COMMAND --help` for a command's "
        "options. Training commands need the 'train' extra (`pip install -e '.[train]'`).",
        formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code = _resolve(SUBCOMMANDS[args.command][0])(rest)
    except ModuleNotFoundError as e:
        message = missing_extra_message(args.command, e)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return EXIT_MISSING_EXTRA
    return int(code or 0)


if __name__ == "__main__":
    raise SystemExit(main())

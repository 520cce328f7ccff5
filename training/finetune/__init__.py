"""Finetuning of OCRNet det/rec from the PP-OCRv6 weights, with transfer-learning modes
(frozen backbone, lower backbone LR, L2-SP, source/target mixing, distillation, charset cut).

Entry point: :func:`main_finetune` (``ocrnet finetune --config cfg.yaml [--resume last.pt]``).
"""
from training.finetune.config import FinetuneConfig, load_config


def main_finetune(argv=None) -> int:
    from training.finetune.cli_args import build_parser, prepare_config

    # Options, --help and missing data are answered here, before torch loads.
    prepare_config(build_parser().parse_args(list(argv) if argv is not None else None))
    from training.finetune.runner import (
        main_finetune as _main,  # torch and the data stack load here
    )

    return _main(argv)


__all__ = ["FinetuneConfig", "load_config", "main_finetune"]

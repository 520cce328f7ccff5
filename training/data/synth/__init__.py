"""Synthetic training data for the three domains (plates, receipts, ids); entry point ``main_synth``."""

from __future__ import annotations

from typing import Sequence


def main_synth(argv: Sequence[str] | None = None) -> int:
    """`ocrnet synth ...` (imported lazily so `python -m training.data.synth.cli` runs cleanly)."""
    from training.data.synth.cli import main_synth as _main

    return _main(argv)


__all__ = ["main_synth"]

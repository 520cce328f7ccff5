"""Synthetic training data for the three domains (plates, receipts, ids); entry point ``main_synth``."""

from __future__ import annotations

from collections.abc import Sequence

DOMAINS = ("plates", "receipts", "ids")
KINDS = ("lines", "pages")


def main_synth(argv: Sequence[str] | None = None) -> int:
    """`ocrnet synth ...` (imported lazily so `python -m training.data.synth.cli` runs cleanly)."""
    from training.data.synth.cli import main_synth as _main

    return _main(argv)


def __getattr__(name: str):
    """``SyntheticSamples`` / ``generate`` without importing every generator at package import."""
    if name in ("SyntheticSamples", "generate", "GENERATORS"):
        from training.data.synth import registry

        return getattr(registry, name)
    raise AttributeError(name)


__all__ = ["SyntheticSamples", "generate", "main_synth"]

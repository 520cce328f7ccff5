"""Deterministic train/val split by hashing the image name.

A name always lands in the same split, whatever else is in the set, on any machine, so adding data
never moves a validation image into training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
SALT = "ocrnet-split-v1"


def _unit(name: str | Path, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}|{Path(name).name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hashed_subset(items: Iterable[T], n: int, key: Callable[[T], str | Path] | None = None,
                  salt: str = SALT) -> list[T]:
    """``n`` items chosen by hashing their image names, order kept: not the first ``n`` of a list sorted by region
    or date, the same on any machine, and nested (the subset of n is inside the subset of any larger n), which is
    what a learning curve needs."""
    key = key or (lambda it: it.path)  # type: ignore[attr-defined]
    items = list(items)
    chosen = set(sorted(range(len(items)), key=lambda i: _unit(key(items[i]), f"{salt}|subset"))[:n])
    return [it for i, it in enumerate(items) if i in chosen]


def split_of(name: str | Path, val_fraction: float = 0.1, salt: str = SALT) -> str:
    """'val' or 'train' for an image name (only the file name counts, not its folder)."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    return "val" if _unit(name, salt) < val_fraction else "train"


def split_records(items: Iterable[T], val_fraction: float = 0.1, key: Callable[[T], str | Path] | None = None,
                  salt: str = SALT) -> tuple[list[T], list[T]]:
    """(train, val) lists, order kept; ``key`` gives an item's image name (default: its ``.path``)."""
    key = key or (lambda it: it.path)  # type: ignore[attr-defined]
    train: list[T] = []
    val: list[T] = []
    for it in items:
        (val if split_of(key(it), val_fraction, salt) == "val" else train).append(it)
    return train, val

"""Learned plate picker: which candidate reading of a car photo is the licence plate.

Why learned: the plate profile's hand-set ranking (`plate._W_*`, the digit required of a plate-shaped box) was
tuned on a few DEV photos; it loses a vanity plate without digits to a sticker and a plate to a taller sign. This
picker is a linear score over a few features of a line (the hand ranking's parts plus raw geometry and text
shape), fitted on the real TRAIN plate photos with a softmax over the lines of each photo
(`ocrnet train-plate-picker`): one photo, one plate. A constant per photo cancels in that softmax, so the score has
no bias and only orders the lines of one photo.

It picks the line (or joined pair), not the reading: between a read and the reads the layout rules make of it,
the rules and their penalties decide as before (`line_best`); a line is scored by the reading they prefer. Those
changes are rare (7 of the 278 TRAIN photos have one), far too few to learn when to trust them.

numpy only (the service never imports torch); the weights are a small JSON file named by the plate bundle's
model.json (`fields_model`). `features` is shared with the training code so both see the same inputs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import load_json_model
from .plate_layouts import US_FORMATS

__all__ = ["FEATURES", "FORMAT", "PlatePicker", "Reading", "features"]

FORMAT = "ocrnet-plate-picker/1"

# One column per name, in this order (the JSON file carries the names and must match them).
FEATURES: tuple[str, ...] = (
    "region",  # the hand ranking's plate-shaped region (0 when not plate-shaped, digit required)
    "pattern",  # match_plate's format score
    "confidence",  # OCR confidence of the line(s)
    "centrality",  # 1 at the photo's centre, 0 in a corner
    "log_height",  # log(box height / photo height)
    "height_vs_tallest",  # box height / the tallest reading's box height in the photo
    "log_aspect",  # log(width / height) of the box
    "chars",  # key length / 8
    "serial_length",  # 5 to 8 key characters (most plates)
    "has_digit",
    "has_letter",
    "digit_share",  # digits / key length
    "fixed_format",  # fits a fixed national format (or the German pattern), not only the generic one
    "us_layout",  # fits a common US serial layout
    "plate_shaped",  # plate aspect and 3-8 characters, digits or not (a vanity plate is plate-shaped)
    "joined",  # two neighbouring lines joined
    "other_marks",  # the read holds marks other than letters, digits, spaces and hyphens
    "centre_y",  # box centre height / photo height (0 top)
    "off_centre_x",  # |box centre x / photo width - 0.5|
)
_PLATE_ASPECT = (1.5, 10.0)
_PLATE_CHARS = (3, 8)


@dataclass(frozen=True)
class Reading:
    """One candidate reading of a photo as the plate profile weighed it: the text, where its box is, and the
    parts of the hand-set ranking (`hand_score` is their weighted sum, the rule penalty taken off)."""

    read: str  # OCR text of the line (or of two lines joined)
    text: str  # the text matched: the read, or the read as a layout rule changed it
    key: str  # normalised plate key (match_plate's: the US O/0 glyph spelled 0)
    layout: str  # the matched format's layout, 'generic' for the 2-8 alphanumerics pattern
    rule: str  # as_read or the layout rule that changed the read
    line: int  # which line or joined pair of the photo it was read from (readings of one line share it)
    joined: bool
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in photo pixels
    confidence: float
    region: float
    pattern: float
    centrality: float
    hand_score: float


def _row(r: Reading, width: float, height: float, tallest: float) -> list[float]:
    x0, y0, x1, y1 = r.box
    h, w = max(y1 - y0, 1e-6), max(x1 - x0, 1e-6)
    key = r.key
    n = max(len(key), 1)
    digits = sum(c.isdigit() for c in key)
    aspect = w / h
    return [
        r.region, r.pattern, r.confidence, r.centrality,
        max(math.log(h / height), -6.0), min(h / tallest, 1.0), math.log(aspect), min(len(key), 12) / 8,
        float(5 <= len(key) <= 8), float(digits > 0), float(any(c.isalpha() for c in key)), digits / n,
        float(r.layout != "generic"), float(any(fmt.accepts(key) for fmt in US_FORMATS)),
        float(_PLATE_ASPECT[0] <= aspect <= _PLATE_ASPECT[1] and _PLATE_CHARS[0] <= len(key) <= _PLATE_CHARS[1]),
        float(r.joined),
        float(any(not (c.isalnum() or c in " -") for c in r.read)),
        (y0 + y1) / 2 / height, abs((x0 + x1) / 2 / width - 0.5),
    ]


def features(readings: Sequence[Reading], image_size: tuple[int, int]) -> np.ndarray:
    """One float32 row per reading, columns FEATURES. Some columns are relative to the photo (its size, its
    tallest reading), so the readings of one photo are passed together."""
    width, height = (max(float(v), 1.0) for v in image_size)
    if not readings:
        return np.zeros((0, len(FEATURES)), np.float32)
    tallest = max(max(r.box[3] - r.box[1], 1e-6) for r in readings)
    return np.array([_row(r, width, height, tallest) for r in readings], np.float32)


def line_best(readings: Sequence[Reading]) -> list[int]:
    """For each line (in order of first appearance), the index of the reading the hand-set ranking prefers among
    that line's readings (the first on a tie): the read or the change the layout rules make of it."""
    best: dict[int, int] = {}
    for i, r in enumerate(readings):
        if r.line not in best or r.hand_score > readings[best[r.line]].hand_score:
            best[r.line] = i
    return list(best.values())


class PlatePicker:
    """A trained linear scorer: standardise the FEATURES columns, dot with `weights`."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, weights: np.ndarray,
                 meta: dict[str, Any] | None = None) -> None:
        self.mean = np.asarray(mean, np.float32)
        self.std = np.maximum(np.asarray(std, np.float32), 1e-3)
        self.weights = np.asarray(weights, np.float32)
        self.meta = dict(meta or {})
        shape = (len(FEATURES),)
        if self.mean.shape != shape or self.std.shape != shape or self.weights.shape != shape:
            raise ValueError(f"plate picker weights do not fit the {len(FEATURES)} features {FEATURES}")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and np.isfinite(self.weights).all()):
            raise ValueError("plate picker weights are not all finite")

    def scores(self, X: np.ndarray) -> np.ndarray:
        """The score of each row of a `features` matrix (higher: more likely the plate)."""
        return ((X - self.mean) / self.std) @ self.weights

    def rank(self, readings: Sequence[Reading], image_size: tuple[int, int]) -> np.ndarray:
        """A ranking score per reading: its line's learned score (from the line's `line_best` reading) less the
        hand-set score it trails that reading by, so that within a line the rules order the readings as before."""
        if not readings:
            return np.zeros(0, np.float32)
        best = line_best(readings)
        learned = self.scores(features([readings[i] for i in best], image_size))
        top = {readings[i].line: (float(s), readings[i].hand_score) for i, s in zip(best, learned)}
        return np.array([top[r.line][0] - (top[r.line][1] - r.hand_score) for r in readings], np.float32)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "features": list(FEATURES), "mean": self.mean.round(6).tolist(),
                "std": self.std.round(6).tolist(), "weights": self.weights.round(6).tolist(), "meta": self.meta}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> PlatePicker:
        if not isinstance(spec, dict) or spec.get("format") != FORMAT:
            got = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
            raise ValueError(f"not an {FORMAT} file (format {got!r})")
        if list(spec.get("features", ())) != list(FEATURES):
            raise ValueError(f"its features {spec.get('features')} are not this service's {list(FEATURES)}")
        return cls(np.array(spec["mean"], np.float32), np.array(spec["std"], np.float32),
                   np.array(spec["weights"], np.float32), spec.get("meta"))

    @classmethod
    def load(cls, path: str | Path) -> PlatePicker:
        """Read a picker file; ValueError (naming the file) when it is not one."""
        return load_json_model(path, cls.from_json, "plate picker")

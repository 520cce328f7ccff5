"""Detector labels for plate photos: the plate's text line cared for, the rest of the photo "don't care"."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from shapely.geometry import Polygon, box
from shapely.ops import unary_union

from training.data.loaders import ImageRecord, Line, normalise_box
from training.data.plate_det_labels import (
    DONT_CARE,
    PlateDetStats,
    PlateText,
    build_labels,
    outside_rects,
    spans_label,
)


def _record(name: str, plate_box: list[float], region: str) -> ImageRecord:
    return ImageRecord(Path("/data/plates") / name, [Line("AB123", normalise_box(plate_box))],
                       {"plate": "AB123", "region": region})


def test_outside_rects_cover_exactly_the_photo_beyond_the_grown_plate_box():
    rects = outside_rects((100, 50, 200, 90), 640, 480, grow=0.5)
    outside = unary_union([Polygon(r) for r in rects])
    near = box(50, 30, 250, 110)  # the plate box grown by half its width and height on each side
    assert abs(outside.area + near.area - 640 * 480) < 1e-6 and outside.intersection(near).area < 1e-6


def test_a_read_spans_the_plate_when_it_has_as_many_characters_and_few_misreads():
    assert spans_label("AB-123", "AB123") and spans_label("A8-l23", "AB123")  # two misreads: still the whole text
    assert not spans_label("AB-12", "AB123")  # a box cut short
    assert not spans_label("LAB123", "AB123")  # a box grown over a mark
    assert not spans_label("XY-789", "AB123")


def test_labels_keep_found_lines_place_the_missing_ones_and_ignore_the_rest(tmp_path):
    found = np.array([[110, 60], [190, 60], [190, 80], [110, 80]], np.float64)  # 10-90 % wide, 25-75 % high
    sticker = np.array([[300, 300], [340, 300], [340, 320], [300, 320]], np.float64)  # far from the plate
    frame = np.array([[120, 84], [180, 84], [180, 89], [120, 89]], np.float64)  # dealer text on the frame
    texts = [PlateText(_record("a.jpg", [100, 50, 200, 90], "us"), found, [frame, sticker], (640, 480)),
             PlateText(_record("b.jpg", [0, 0, 200, 40], "us"), None, [], (400, 300))]
    stats = PlateDetStats()
    rows = build_labels(texts, tmp_path / "out", stats, grow=0.5)
    assert stats.placed == 1 and stats.skipped == 0 and len(rows) == 2
    first, second = rows
    assert first["lines"][0] == {"text": "AB123", "box": found.tolist()}
    assert first["fields"]["text_line"] == "found" and second["fields"]["text_line"] == "placed"
    ignored = [ln["box"] for ln in first["lines"][1:]]
    assert all(ln["text"] == DONT_CARE and ln["ignore"] for ln in first["lines"][1:])
    assert frame.tolist() in ignored and sticker.tolist() not in ignored  # the sticker is beyond: one of the rects
    # the missing plate's text is placed where the found one sits in its box (same region)
    assert np.allclose(second["lines"][0]["box"], [[20, 10], [180, 10], [180, 30], [20, 30]])
    assert os.path.normpath(tmp_path / "out" / first["image"]) == "/data/plates/a.jpg"  # relative to the labels

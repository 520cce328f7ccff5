"""Synthetic plates: formats, label convention, determinism, scene geometry."""

from __future__ import annotations

import re

import numpy as np

from training.data.synth.common import sample_seed
from training.data.synth.plates import (
    compact,
    plate_line,
    plate_scene,
    random_plate_text,
)

# Printed formats per country (what the generator must cover).
FORMATS = {
    "US": r"[A-Z0-9]{1,4}[ -]?[A-Z0-9]{2,4}",
    "D": r"[A-Z]{1,2}[ -][A-Z]{1,2} [1-9][0-9]{0,3}",
    "F": r"[A-Z]{2}-[0-9]{3}-[A-Z]{2}",
    "I": r"[A-Z]{2} [0-9]{3} [A-Z]{2}",
    "E": r"[0-9]{4} [BCDFGHJKLMNPRSTVWXYZ]{3}",
    "NL": r"[A-Z0-9]{1,3}-[A-Z0-9]{2,3}-[A-Z0-9]{1,2}",
    "PL": r"[A-Z]{2} [A-Z0-9]{5}",
    "GB": r"[A-Z]{2}[0-9]{2} [A-Z]{3}",
    "SK": r"[A-Z]{2}[ -][0-9]{3}[A-Z]{2}",
    "CZ": r"[0-9][A-Z][0-9] [0-9]{4}",
    "BR": r"[A-Z]{3}[0-9][A-Z][0-9]{2}|[A-Z]{3}-[0-9]{4}",
}


def test_formats_cover_every_country_and_match_their_pattern():
    rng = np.random.default_rng(0)
    seen: dict[str, int] = {}
    for _ in range(1500):
        p = random_plate_text(rng)
        assert re.fullmatch(FORMATS[p.country], p.printed), (p.country, p.printed)
        assert p.label == compact(p.printed) and re.fullmatch(r"[A-Z0-9]+", p.label)
        seen[p.country] = seen.get(p.country, 0) + 1
    assert set(seen) == set(FORMATS)
    assert {p for p in ("us", "eu", "br")} == {random_plate_text(np.random.default_rng(s)).region for s in range(60)}


def test_label_convention_matches_the_eval_data():
    """shared/data/plates labels drop separators: "0SG-719" is labelled 0SG719."""
    assert compact("M-XY 123") == "MXY123"
    assert compact("AB-123-CD") == "AB123CD"


def test_line_is_deterministic_and_varied():
    a, b = plate_line(sample_seed(3, 7)), plate_line(sample_seed(3, 7))
    assert a.text == b.text and a.image.tobytes() == b.image.tobytes()
    samples = [plate_line(sample_seed(3, i)) for i in range(12)]
    assert len({s.text for s in samples}) == 12
    assert len({s.image.size for s in samples}) > 6
    for s in samples:
        assert s.image.mode == "RGB" and 12 <= s.image.height <= 64 and s.image.width >= 8


def test_scene_quad_lies_on_the_plate_text():
    assert any(len(plate_scene(sample_seed(11, i)).lines) > 1 for i in range(4))
    for i in range(4):
        d = plate_scene(sample_seed(11, i))
        w, h = d.image.size
        assert d.lines[0].text == d.fields["plate"] and not d.lines[0].ignore
        assert all(ln.ignore for ln in d.lines[1:])  # small print: don't care
        quad = np.asarray(d.lines[0].polygon)
        assert quad.shape == (4, 2)
        assert quad[:, 0].min() > -5 and quad[:, 0].max() < w + 5 and quad[:, 1].min() > -5 and quad[:, 1].max() < h + 5
        # clockwise from top-left: top edge above bottom edge, left edge left of right edge
        assert quad[0, 1] < quad[3, 1] and quad[1, 1] < quad[2, 1] and quad[0, 0] < quad[1, 0]
        # the text region has contrast (the plate is really there)
        x0, y0 = np.floor(quad.min(axis=0)).astype(int)
        x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
        patch = np.asarray(d.image.convert("L").crop((x0, y0, x1, y1)), dtype=np.float32)
        assert patch.std() > 12

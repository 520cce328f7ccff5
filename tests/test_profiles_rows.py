"""group_rows: the bisect search gives the rows the plain first-match search over every row gives."""
from __future__ import annotations

import random

import pytest

from service.profiles.base import LineBox, group_rows


def reference_rows(boxes: list[LineBox]) -> list[list[LineBox]]:
    """The original quadratic rule: each box joins the first row whose first box is within half a line height."""
    rows: list[list[LineBox]] = []
    for b in sorted(boxes, key=lambda b: b.cy):
        for row in rows:
            ref = row[0]
            if abs(b.cy - ref.cy) <= 0.5 * min(b.height, ref.height):
                row.append(b)
                break
        else:
            rows.append([b])
    return [sorted(r, key=lambda b: b.x0) for r in rows]


@pytest.mark.parametrize("seed", range(40))
def test_rows_match_the_first_match_rule(seed):
    rng = random.Random(seed)
    boxes = []
    for i in range(rng.randint(0, 150)):
        # ruled rows with jitter (receipts, PDF pages) or anywhere, tiny to tall heights
        y0 = rng.choice(range(0, 800, 17)) + rng.uniform(-4, 4) if seed % 2 else rng.uniform(0, 800)
        height = rng.choice([rng.uniform(0.5, 60), 10.0, 12.0, 30.0])
        x0 = rng.uniform(0, 500)
        boxes.append(LineBox(f"t{i}", 1.0, x0, y0, x0 + rng.uniform(1, 300), y0 + height, i))
    assert group_rows(boxes) == reference_rows(boxes)

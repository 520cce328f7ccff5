"""Evaluation metrics and matching on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.matching import greedy_match, iou_matrix, polygon_iou, to_polygon
from training.evaluation.metrics import (
    PRCounts,
    RecCounts,
    alnum_key,
    cer,
    det_counts,
    edit_distance,
    fold_o0,
    normalise_text,
)
from training.evaluation.report import DomainReport, render_comparison, render_report

SQ = [[0, 0], [2, 0], [2, 2], [0, 2]]


def test_polygon_iou_hand_computed() -> None:
    assert polygon_iou(SQ, SQ) == pytest.approx(1.0)
    assert polygon_iou(SQ, [1, 0, 3, 2]) == pytest.approx(2 / 6)       # half overlap: 2 / (4 + 4 - 2)
    assert polygon_iou(SQ, [[1, 1], [3, 1], [3, 3], [1, 3]]) == pytest.approx(1 / 7)
    assert polygon_iou(SQ, [5, 5, 6, 6]) == 0.0
    assert polygon_iou([0, 0, 2, 2], [2, 2, 0, 0]) == pytest.approx(1.0)  # corner order of a box is free


def test_bow_tie_quad_is_repaired() -> None:
    bow = [[0, 0], [2, 2], [2, 0], [0, 2]]  # points out of order
    poly = to_polygon(bow)
    assert poly.is_valid and poly.area > 0
    assert 0 < polygon_iou(bow, SQ) <= 1


def test_greedy_match_is_one_to_one_highest_first() -> None:
    iou = np.array([[0.6, 0.7], [0.9, 0.1]])
    assert greedy_match(iou, 0.5) == [(1, 0, 0.9), (0, 1, 0.7)]
    iou = np.array([[0.9, 0.6], [0.8, 0.0]])
    assert greedy_match(iou, 0.5) == [(0, 0, 0.9)]  # pred 1 cannot reuse gt 0
    assert greedy_match(np.zeros((0, 3)), 0.5) == []


def test_iou_matrix_shape_and_values() -> None:
    m = iou_matrix([SQ, [10, 10, 12, 12]], [[1, 0, 3, 2], [10, 10, 12, 12], [0, 0, 2, 2]])
    assert m.shape == (2, 3)
    np.testing.assert_allclose(m, [[1 / 3, 0, 1], [0, 1, 0]])


def test_det_counts_precision_recall_hmean() -> None:
    preds = [[0, 0, 10, 10], [100, 100, 110, 110], [0, 50, 10, 60]]
    gts = [[0, 0, 10, 9], [200, 200, 210, 210]]
    c, pairs = det_counts(preds, gts)
    assert (c.tp, c.n_pred, c.n_gt) == (1, 3, 2) and pairs[0][:2] == (0, 0)
    assert c.precision == pytest.approx(1 / 3) and c.recall == pytest.approx(0.5)
    assert c.hmean == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    empty, _ = det_counts([], [])
    assert empty.precision is None and empty.recall is None and empty.hmean is None


def test_counts_sum_over_images_before_dividing() -> None:
    total = PRCounts()
    total += PRCounts(1, 1, 10)
    total += PRCounts(9, 10, 10)
    assert total.precision == pytest.approx(10 / 11) and total.recall == pytest.approx(0.5)


def test_cer_and_word_accuracy() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert cer("abd", "abc") == pytest.approx(1 / 3)
    assert cer("", "") == 0.0 and cer("x", "") == 1.0
    r = RecCounts()
    r.add("HELLO", "HELLO")
    r.add("W0RLD", "WORLD")
    r.add("", "ABC")
    assert r.accuracy == pytest.approx(1 / 3)
    assert r.cer == pytest.approx((0 + 1 + 3) / (5 + 5 + 3))


def test_text_normalisation() -> None:
    assert normalise_text("  Total   rm 8.20 ") == "TOTAL RM 8.20"
    assert alnum_key("ab-12 c.d") == "AB12CD"
    assert fold_o0("RKO99AN") == fold_o0("RK099AN")


def test_report_rendering() -> None:
    a = DomainReport("plates", "models/base", 3, {"plate_exact": 2 / 3, "plate_det_recall": None,
                                                  "seconds_per_image": 1.234}, {"exact": 2})
    b = DomainReport("plates", "models/ft", 3, {"plate_exact": 1.0, "seconds_per_image": 0.5})
    md = render_report(a)
    assert "| plate_exact | 66.7% |" in md and "| plate_det_recall | n/a |" in md and "| 1.23 |" in md
    cmp = render_comparison({"models/base": [a], "models/ft": [b]})
    assert "| plate_exact | 66.7% | 100.0% |" in cmp and "| plate_det_recall | n/a | n/a |" in cmp
    assert '"exact": 2' in a.to_json()

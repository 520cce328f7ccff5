"""CTC / DB / distillation losses and DB target generation, on hand-made inputs with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.finetune.det_targets import make_db_targets
from training.finetune.losses import (
    balanced_bce,
    ctc_loss,
    db_loss,
    det_distill_kl,
    dice_loss,
    encode_texts,
    masked_l1,
    rec_distill_kl,
)
from training.finetune.trainer import warmup_cosine

RECT = [(10.0, 10.0), (100.0, 10.0), (100.0, 40.0), (10.0, 40.0)]


def test_db_targets_shrink_and_border():
    t = make_db_targets([RECT], [False], 64, 128)
    # D = A(1 - 0.4^2)/L = 2700 * 0.84 / 240 = 9.45 px: the shrunk box is ~[19.5, 90.5] x [19.5, 30.5]
    assert t["shrink_map"][25, 55] == 1 and t["shrink_map"][25, 15] == 0 and t["shrink_map"][12, 55] == 0
    assert t["shrink_map"][25, 21] == 1 and t["shrink_map"][25, 89] == 1
    assert t["thresh_map"][25, 10] == pytest.approx(0.7)  # on the edge: the highest threshold
    assert t["thresh_map"][25, 55] == pytest.approx(0.3)  # deep inside / far away: the floor
    assert t["thresh_map"][0, 127] == pytest.approx(0.3)
    assert t["thresh_mask"][25, 3] == 1 and t["thresh_mask"][25, 55] == 1 and t["thresh_mask"][60, 120] == 0
    assert t["shrink_mask"].min() == 1


def test_db_targets_mask_ignored_and_tiny_lines():
    tiny = [(0.0, 50.0), (30.0, 50.0), (30.0, 53.0), (0.0, 53.0)]
    t = make_db_targets([RECT, tiny], [True, False], 64, 128)
    assert t["shrink_map"].sum() == 0
    assert t["shrink_mask"][25, 55] == 0 and t["shrink_mask"][51, 10] == 0 and t["shrink_mask"][0, 0] == 1


def test_db_targets_teach_narrow_tokens_above_min_text_size():
    one = [(40.0, 10.0), (46.0, 10.0), (46.0, 40.0), (40.0, 40.0)]  # a lone "1": 6 x 30 px
    default = make_db_targets([one], [False], 64, 128)
    assert default["shrink_map"].sum() == 0 and default["shrink_mask"][25, 43] == 0  # left out of the loss
    taught = make_db_targets([one], [False], 64, 128, min_text_size=3.0)
    assert taught["shrink_map"][25, 43] == 1 and taught["shrink_mask"].min() == 1


def test_ohem_keeps_three_negatives_per_positive():
    gt = torch.zeros(1, 1, 4, 4)
    gt[0, 0, 0, 0] = 1
    prob = torch.full((1, 1, 4, 4), 0.1)
    prob[0, 0, 0, 0] = 0.8
    prob[0, 0, 3, 0:3] = torch.tensor([0.9, 0.7, 0.5])  # the three hardest negatives
    loss = balanced_bce(prob, gt, torch.ones_like(gt))
    want = (-np.log(0.8) - np.log(0.1) - np.log(0.3) - np.log(0.5)) / 4
    assert float(loss) == pytest.approx(want, rel=1e-5)
    logits = torch.logit(prob)
    assert float(balanced_bce(prob, gt, torch.ones_like(gt), logits=logits)) == pytest.approx(want, rel=1e-4)


def test_dice_and_l1_reach_zero_on_a_perfect_prediction():
    gt = torch.zeros(2, 1, 8, 8)
    gt[:, :, 2:6, 2:6] = 1
    mask = torch.ones_like(gt)
    assert float(dice_loss(gt, gt, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(dice_loss(1 - gt, gt, mask)) == pytest.approx(1.0, abs=1e-6)
    assert float(masked_l1(gt * 0.5, gt, gt)) == pytest.approx(0.5)
    assert float(masked_l1(gt, gt, torch.zeros_like(gt))) == 0.0


def test_db_loss_weights_and_gradient_to_all_maps():
    t = make_db_targets([[(4.0, 8.0), (60.0, 8.0), (60.0, 24.0), (4.0, 24.0)]], [False], 32, 64)
    targets = {k: torch.from_numpy(v)[None] for k, v in t.items()}
    logits = torch.zeros(1, 1, 32, 64, requires_grad=True)
    thresh = torch.full((1, 1, 32, 64), 0.5, requires_grad=True)
    prob = torch.sigmoid(logits)
    out = {"prob": prob, "logits": logits, "thresh": thresh, "binary": torch.sigmoid(50 * (prob - thresh))}
    parts = db_loss(out, targets, w_bce=5, w_dice=1, w_l1=10)
    torch.testing.assert_close(parts["loss"], 5 * parts["bce"] + parts["dice"] + 10 * parts["l1"])
    parts["loss"].backward()
    assert logits.grad.abs().sum() > 0 and thresh.grad.abs().sum() > 0


def test_ctc_loss_matches_torch_and_survives_impossible_targets():
    torch.manual_seed(0)
    logits = torch.randn(2, 10, 5)
    targets, lengths = encode_texts(["ab", "c"], {"a": 1, "b": 2, "c": 3, "d": 4})
    assert targets.tolist() == [1, 2, 3] and lengths.tolist() == [2, 1]
    want = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), targets, torch.tensor([10, 10]), lengths)
    torch.testing.assert_close(ctc_loss(logits, targets, lengths), want)
    long_targets, long_lengths = encode_texts(["abababababab"], {"a": 1, "b": 2})  # 12 labels > 10 steps
    assert torch.isfinite(ctc_loss(logits[:1], long_targets, long_lengths))
    with pytest.raises(KeyError, match="not in the charset"):
        encode_texts(["x"], {"a": 1})


def test_distillation_terms():
    torch.manual_seed(0)
    t = torch.randn(2, 6, 7)
    assert float(rec_distill_kl(t, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(rec_distill_kl(t + torch.randn_like(t), t)) > 0
    keep = torch.tensor([0, 3, 5])  # a cut student: its classes are teacher classes 0, 3, 5
    assert float(rec_distill_kl(t[..., keep], t, 2.0, keep)) == pytest.approx(0.0, abs=1e-6)
    p = torch.rand(1, 1, 8, 8)
    assert float(det_distill_kl(p, p)) == pytest.approx(0.0, abs=1e-6)
    assert float(det_distill_kl(p.flip(-1), p)) > 0


def test_warmup_then_cosine():
    f = warmup_cosine(4, 20, 0.1)
    assert f(0) == pytest.approx(0.2) and f(3) == pytest.approx(0.8)
    assert f(4) == pytest.approx(1.0) and f(20) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    assert f(12) == pytest.approx(0.55)

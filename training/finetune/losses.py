"""Training losses: CTC for rec, DB (BCE+OHEM / dice / masked L1) for det, distillation KL terms and the
domain-adaptation distances (CORAL, MMD) between source and target feature batches.

Shapes follow the models: rec logits are N,T,C (class 0 = CTC blank); det train outputs are
probabilities in [0, 1] (``prob``, ``thresh``, ``binary``), each N,1,H,W.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-6


# ----------------------------------------------------------------------------------------------- rec
def encode_texts(texts: Sequence[str], char_to_index: Mapping[str, int]) -> tuple[Tensor, Tensor]:
    """Concatenated class targets and their lengths for ``F.ctc_loss``; unknown characters raise."""
    flat: list[int] = []
    lengths: list[int] = []
    for text in texts:
        try:
            flat.extend(char_to_index[ch] for ch in text)
        except KeyError as err:
            raise KeyError(f"character {err.args[0]!r} of {text!r} is not in the charset") from None
        lengths.append(len(text))
    return torch.tensor(flat, dtype=torch.long), torch.tensor(lengths, dtype=torch.long)


def ctc_loss(logits: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
    """Mean CTC loss over the batch (per-sample loss divided by its target length), blank = 0.

    ``zero_infinity`` drops impossible alignments (text longer than the time steps) instead of
    poisoning the batch with ``inf``.
    """
    n, t, _ = logits.shape
    log_probs = logits.float().log_softmax(-1).permute(1, 0, 2)  # T,N,C as ctc_loss wants
    input_lengths = torch.full((n,), t, dtype=torch.long)
    return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0,
                      reduction="mean", zero_infinity=True)


def rec_distill_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0,
                   teacher_classes: Tensor | None = None) -> Tensor:
    """KL(p_teacher || p_student) per CTC time step, averaged over N*T, scaled by T^2 (Hinton).

    ``teacher_classes[j]`` is the teacher class of student class j (a cut charset); the teacher's
    distribution is then renormalised over those classes, i.e. softmax of the selected logits.
    """
    if teacher_classes is not None:
        teacher_logits = teacher_logits.index_select(-1, teacher_classes.to(teacher_logits.device))
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher {tuple(teacher_logits.shape)} vs student {tuple(student_logits.shape)}")
    log_p_t = (teacher_logits.float() / temperature).log_softmax(-1)
    log_p_s = (student_logits.float() / temperature).log_softmax(-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)  # N,T
    return kl.mean() * temperature**2


# ----------------------------------------------------------------------------------------------- det
def balanced_bce(prob: Tensor, gt: Tensor, mask: Tensor, negative_ratio: float = 3.0,
                 logits: Tensor | None = None) -> Tensor:
    """BCE with online hard negative mining: all positives + the hardest ``3x`` as many negatives.

    Pass the pre-sigmoid ``logits`` when available: BCE-with-logits is stable where prob saturates.
    """
    positive = gt * mask
    negative = (1 - gt) * mask
    n_pos = int(positive.sum().item())
    n_neg = min(int(negative.sum().item()), int(n_pos * negative_ratio)) if n_pos > 0 else \
        min(int(negative.sum().item()), 100)  # an image without text still teaches "no text here"
    if logits is not None:
        loss = F.binary_cross_entropy_with_logits(logits.float(), gt, reduction="none")
    else:
        loss = F.binary_cross_entropy(prob.float().clamp(_EPS, 1 - _EPS), gt, reduction="none")
    pos_loss = (loss * positive).sum()
    neg_loss = (loss * negative).flatten()
    if n_neg > 0:
        neg_loss = neg_loss.topk(n_neg).values.sum()
    else:
        neg_loss = neg_loss.sum() * 0
    return (pos_loss + neg_loss) / (n_pos + n_neg + _EPS)


def dice_loss(pred: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
    """1 - soft IoU-like dice overlap on the masked region."""
    inter = (pred * gt * mask).sum()
    union = (pred * mask).sum() + (gt * mask).sum() + _EPS
    return 1 - 2 * inter / union


def masked_l1(pred: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error inside ``mask`` (the threshold-map border band)."""
    denom = mask.sum()
    if denom.item() == 0:
        return pred.sum() * 0
    return ((pred - gt).abs() * mask).sum() / denom


def db_loss(out: Mapping[str, Tensor], targets: Mapping[str, Tensor], w_bce: float = 5.0,
            w_dice: float = 1.0, w_l1: float = 10.0) -> dict[str, Tensor]:
    """DB loss ``w_bce*BCE_ohem(prob) + w_dice*dice(binary) + w_l1*L1(thresh)`` (PP-OCR weights).

    ``targets`` are the tensors of :func:`training.finetune.det_targets.make_db_targets`, batched:
    shrink_map, shrink_mask, thresh_map, thresh_mask (N,H,W or N,1,H,W).
    """
    def _n1hw(t: Tensor) -> Tensor:
        return t if t.dim() == 4 else t.unsqueeze(1)

    gt, gt_mask = _n1hw(targets["shrink_map"]), _n1hw(targets["shrink_mask"])
    th, th_mask = _n1hw(targets["thresh_map"]), _n1hw(targets["thresh_mask"])
    parts = {
        "bce": balanced_bce(out["prob"], gt, gt_mask, logits=out.get("logits")),
        "dice": dice_loss(out["binary"], gt, gt_mask),
        "l1": masked_l1(out["thresh"], th, th_mask),
    }
    parts["loss"] = w_bce * parts["bce"] + w_dice * parts["dice"] + w_l1 * parts["l1"]
    return parts


def det_distill_kl(student_prob: Tensor, teacher_prob: Tensor) -> Tensor:
    """Per-pixel Bernoulli KL(p_teacher || p_student) of the probability maps, averaged."""
    p_t = teacher_prob.float().clamp(_EPS, 1 - _EPS)
    p_s = student_prob.float().clamp(_EPS, 1 - _EPS)
    kl = p_t * (p_t.log() - p_s.log()) + (1 - p_t) * ((1 - p_t).log() - (1 - p_s).log())
    return kl.mean()


# ----------------------------------------------------------------------------------- domain adaptation
def coral_distance(source: Tensor, target: Tensor) -> Tensor:
    """CORAL (Sun & Saenko, 2016): ||Cov(source) - Cov(target)||_F^2 / (4 d^2) of N,d feature batches.

    Aligns second-order statistics only, so it needs no labels on the target side and stays well defined
    for the small batches a CPU affords (a batch of 1 has a zero covariance and contributes nothing)."""
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"expected N,d batches with the same d, got {tuple(source.shape)} and {tuple(target.shape)}")
    d = source.shape[1]

    def cov(x: Tensor) -> Tensor:
        x = x.float()
        if x.shape[0] < 2:
            return torch.zeros(d, d, device=x.device)
        centred = x - x.mean(0, keepdim=True)
        return centred.T @ centred / (x.shape[0] - 1)

    return (cov(source) - cov(target)).pow(2).sum() / (4 * d * d)


def mmd_distance(source: Tensor, target: Tensor, bandwidths: Sequence[float] = (0.5, 1.0, 2.0, 4.0)) -> Tensor:
    """Squared MMD with a sum of RBF kernels; bandwidths are multiples of the batch's median pairwise distance
    (the median heuristic), so the term needs no tuning per layer or feature scale."""
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"expected N,d batches with the same d, got {tuple(source.shape)} and {tuple(target.shape)}")
    x = torch.cat([source, target]).float()
    d2 = torch.cdist(x, x).pow(2)
    scale = d2.detach()[d2.detach() > 0].median() if (d2 > 0).any() else torch.ones((), device=x.device)
    kernel = sum(torch.exp(-d2 / (scale * b)) for b in bandwidths)
    n = source.shape[0]
    k_ss, k_tt, k_st = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return k_ss.mean() + k_tt.mean() - 2 * k_st.mean()


DOMAIN_DISTANCES = {"coral": coral_distance, "mmd": mmd_distance}

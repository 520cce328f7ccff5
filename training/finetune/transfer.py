"""Transfer-learning mechanics: freezing, per-part learning rates, L2-SP, frozen BN statistics,
the distillation teacher and the class map of a cut charset.

Models expose ``.backbone``, ``.neck`` and ``.head`` (INTERFACES.md); everything that is not
backbone counts as "head side" for learning rates.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def frozen_parts(freeze_backbone: bool, freeze_neck: bool) -> list[str]:
    return (["backbone"] if freeze_backbone else []) + (["neck"] if freeze_neck else [])


def freeze(model: nn.Module, parts: Iterable[str]) -> None:
    """No gradient for the named sub-modules; they are also kept in eval mode by :func:`set_train_mode`."""
    for part in parts:
        for p in getattr(model, part).parameters():
            p.requires_grad_(False)


def freeze_backbone_except_last(model: nn.Module, n_blocks: int) -> None:
    """No gradient for the backbone but its last ``n_blocks`` blocks (``backbone.blocks``): the early, generic
    layers stay as pretrained (an export shares them with the base model: only the trained tail is stored) and
    the backward pass stops at the tail."""
    blocks = getattr(model.backbone, "blocks", None)
    if blocks is None:
        raise ValueError(f"{type(model.backbone).__name__} has no .blocks to train the last of")
    if not 0 < n_blocks <= len(blocks):
        raise ValueError(f"train_backbone_blocks must be 1..{len(blocks)}, got {n_blocks}")
    trained = {id(p) for block in list(blocks)[len(blocks) - n_blocks:] for p in block.parameters()}
    for p in model.backbone.parameters():
        if id(p) not in trained:
            p.requires_grad_(False)


def set_train_mode(model: nn.Module, frozen: Iterable[str] = (), freeze_bn_stats: bool = True) -> nn.Module:
    """``model.train()`` except frozen parts and (optionally) every BatchNorm, which stay in eval.

    With small domain batches the running statistics would drift away from what the pretrained
    weights expect; eval-mode BN normalises with the source statistics and never updates them.
    """
    model.train()
    for part in frozen:
        getattr(model, part).eval()
    if freeze_bn_stats:
        for m in model.modules():
            if isinstance(m, _BN):
                m.eval()
    return model


def param_groups(model: nn.Module, lr: float, backbone_lr_mult: float = 1.0,
                 weight_decay: float = 0.0, relative_to_weights: bool = False,
                 fresh: Sequence[str] = ()) -> list[dict]:
    """AdamW groups: backbone at ``lr * backbone_lr_mult``, the rest at ``lr``; no decay on 1-D params
    (biases, norms). Parameters without grad and empty groups are left out.

    ``relative_to_weights``: each pretrained tensor gets its own group whose LR is scaled by its RMS over the
    median RMS of the trainable pretrained tensors. Adam moves every weight by about ``lr`` per step whatever its
    size, so a BN-folded conv whose weights are ~0.002 (the DB head's first conv) is rewritten within a few
    steps at an LR that barely moves the ~0.1 weights around it; this keeps every tensor's relative step alike.
    Tensors under a ``fresh`` prefix (randomly initialised heads) keep the plain LR.
    """
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("no trainable parameters (everything frozen?)")

    part_lr = {"backbone": lr * backbone_lr_mult, "head": lr}

    def part_of(p: nn.Parameter) -> str:
        return "backbone" if id(p) in backbone_ids else "head"

    if relative_to_weights:
        def is_fresh(name: str) -> bool:
            return any(name == f or name.startswith(f + ".") for f in fresh)

        rms = {n: float(p.detach().float().pow(2).mean().sqrt()) for n, p in named}
        pretrained = sorted(v for n, v in rms.items() if not is_fresh(n) and v > 0)
        ref = pretrained[len(pretrained) // 2] if pretrained else 1.0
        return [{"name": n, "params": [p],
                 "lr": part_lr[part_of(p)] * (1.0 if is_fresh(n) or rms[n] == 0 else rms[n] / ref),
                 "weight_decay": weight_decay if p.ndim > 1 else 0.0} for n, p in named]
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for _, p in named:
        buckets.setdefault((part_of(p), p.ndim > 1), []).append(p)
    return [{"name": f"{part}{'' if decay else '_no_decay'}", "params": params, "lr": part_lr[part],
             "weight_decay": weight_decay if decay else 0.0}
            for (part, decay), params in sorted(buckets.items())]


class L2SP(nn.Module):
    """L2-SP penalty ``lambda * sum ||theta - theta_src||^2`` over the pretrained, trainable parameters.

    The source weights are a frozen copy taken at construction (buffers, so they move with
    ``.to()`` and are saved in checkpoints only if you ask). Fresh layers (e.g. the det threshold
    head) are named in ``exclude`` and are not pulled anywhere.
    """

    def __init__(self, model: nn.Module, lam: float, exclude: Sequence[str] = ()) -> None:
        super().__init__()
        self.lam = lam
        self.names: list[str] = []
        for name, p in model.named_parameters():
            if not p.requires_grad or any(name == e or name.startswith(e + ".") for e in exclude):
                continue
            self.names.append(name)
            self.register_buffer(self._key(name), p.detach().clone(), persistent=False)

    @staticmethod
    def _key(name: str) -> str:
        return "src__" + name.replace(".", "__")

    def forward(self, model: nn.Module) -> Tensor:
        params = dict(model.named_parameters())
        total = torch.zeros((), device=next(iter(params.values())).device)
        for name in self.names:
            total = total + (params[name] - getattr(self, self._key(name))).pow(2).sum()
        return self.lam * total


def make_teacher(model: nn.Module) -> nn.Module:
    """A frozen, eval-mode copy of the pretrained model (distillation teacher)."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def teacher_class_map(teacher_classes: Sequence[str], student_classes: Sequence[str]) -> Tensor:
    """Index of each student class in the teacher's class table (blank 0 -> 0)."""
    where = {c: i for i, c in enumerate(teacher_classes)}
    missing = [c for c in student_classes[1:] if c not in where]
    if missing:
        raise ValueError(f"student classes unknown to the teacher: {missing[:10]}")
    return torch.tensor([0] + [where[c] for c in student_classes[1:]], dtype=torch.long)

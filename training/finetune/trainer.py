"""The finetuning loop: AdamW + warmup/cosine, transfer-learning terms, per-epoch validation,
best/last checkpoints, early stopping, exact resume and DDP (rank 0 evaluates and writes).

Loss of one step (every term optional, see :mod:`training.finetune.config`)::

    L = alpha * L_task(source rows) + (1 - alpha) * L_task(target rows)   # mixing (else L_task(target))
      + beta * KL(p_teacher || p_student)                                  # distillation
      + lambda * sum ||theta - theta_src||^2                               # L2-SP
      + lambda_da * d(pool(neck(X_labelled)), pool(neck(X_target)))        # domain adaptation (CORAL/MMD)

With cached backbone features (frozen backbone, rec) the batches hold features instead of images and the
forward runs from the neck on (``forward_module``); validation always runs the whole model on images.
"""
from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from training.finetune.config import FinetuneConfig
from training.finetune.losses import DOMAIN_DISTANCES
from training.finetune.distributed import (
    DistInfo,
    broadcast_object,
    make_sampler,
    wrap_model,
)
from training.finetune.transfer import (
    L2SP,
    freeze,
    freeze_backbone_except_last,
    frozen_parts,
    param_groups,
    set_train_mode,
)

log = logging.getLogger(__name__)


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float):
    """LR multiplier: linear warmup from ~0 to 1, then cosine down to ``min_ratio`` at ``total_steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        span = max(total_steps - warmup_steps, 1)
        progress = min((step - warmup_steps) / span, 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint so a resume continues the same batch sequence."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    src_epoch: int = 0
    src_batch: int = 0
    tgt_epoch: int = 0
    tgt_batch: int = 0
    best_score: list[float] | None = None
    best_step: int = -1
    bad_evals: int = 0
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Finetunes ``model`` on ``train`` samples for ``task`` (a RecTask or DetTask).

    ``exclude_from_l2sp`` names fresh sub-modules (no source weights to stay close to);
    ``extra_checkpoint`` is stored in every checkpoint (e.g. the rec class table); ``target`` holds the
    unlabelled target-domain samples of domain adaptation; ``forward_module`` / ``teacher_forward`` replace
    ``model`` / ``teacher`` in training forwards (e.g. a :class:`~training.finetune.feature_cache.HeadSide`
    that starts from cached backbone features).
    """

    def __init__(self, cfg: FinetuneConfig, model: nn.Module, task, train: Sequence, val: Sequence = (),
                 source: Sequence = (), teacher: nn.Module | None = None, info: DistInfo | None = None,
                 exclude_from_l2sp: Sequence[str] = (), extra_checkpoint: dict | None = None,
                 target: Sequence = (), forward_module: nn.Module | None = None,
                 teacher_forward: nn.Module | None = None) -> None:
        info = info or DistInfo()
        self.cfg, self.task, self.info = cfg, task, info
        self.device = info.device
        self.val = val  # may be lazy (det pages are read on access)
        self.extra = dict(extra_checkpoint or {})
        tr = cfg.transfer
        self.frozen = frozen_parts(tr.freeze_backbone, tr.freeze_neck)
        model.to(self.device)
        freeze(model, self.frozen)
        if tr.train_backbone_blocks is not None:
            freeze_backbone_except_last(model, tr.train_backbone_blocks)
        self.model = model
        self.l2sp = L2SP(model, tr.l2sp_lambda, exclude_from_l2sp).to(self.device) if tr.l2sp_lambda > 0 else None
        self.teacher = teacher.to(self.device).eval() if teacher is not None and tr.distill else None
        if self.teacher is not None and teacher_forward is not None:
            self.teacher = teacher_forward.to(self.device).eval()
        self.alpha = tr.mixing.alpha if tr.mixing else None
        self.train_ds = task.dataset(train, cfg.seed, training=True)
        self.source_ds = task.dataset(source, cfg.seed + 1) if tr.mixing and source else None
        if tr.mixing and self.source_ds is None:
            raise ValueError("mixing is configured but the source data is empty")
        da = tr.domain_adaptation
        self.target_ds = task.dataset(target, cfg.seed + 2) if da and len(target) else None
        if da and self.target_ds is None:
            raise ValueError("domain_adaptation is configured but the target data is empty")
        self.distance = DOMAIN_DISTANCES[da.distance] if da else None
        self.train_sampler = make_sampler(self.train_ds, info, cfg.seed)
        self.source_sampler = make_sampler(self.source_ds, info, cfg.seed + 1) if self.source_ds else None
        self.target_sampler = make_sampler(self.target_ds, info, cfg.seed + 2) if self.target_ds else None
        self.ddp_model = wrap_model(forward_module if forward_module is not None else model, info)
        self._neck_out: torch.Tensor | None = None
        if da:
            model.neck.register_forward_hook(self._keep_neck_output)
        groups = param_groups(model, cfg.optim.lr, tr.backbone_lr_mult, cfg.optim.weight_decay,
                              tr.lr_relative_to_weights, fresh=exclude_from_l2sp)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas)
        self.batches_per_epoch = math.ceil(len(self.train_sampler) / cfg.batch_size)
        self.total_steps = cfg.max_steps or cfg.epochs * self.batches_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(cfg.optim.warmup_steps, self.total_steps, cfg.optim.min_lr_ratio))
        self.state = TrainState()
        self.step_log: list[dict[str, float]] = []  # this process's per-step loss terms (not checkpointed)
        self.out = Path(cfg.output_dir)
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ data
    def _loader(self, dataset: Dataset, sampler, epoch: int, skip_batches: int) -> DataLoader:
        """This rank's batches of ``epoch``, starting after ``skip_batches`` (resume mid-epoch)."""
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        indices = list(sampler)
        batch_order = getattr(self.task, "batch_order", None)  # e.g. one width per batch (cached features)
        if batch_order is not None:
            indices = batch_order(dataset, indices, self.cfg.batch_size, epoch)
        indices = indices[skip_batches * self.cfg.batch_size:]
        return DataLoader(dataset, batch_size=self.cfg.batch_size, sampler=indices, collate_fn=self.task.collate,
                          num_workers=self.cfg.data.num_workers)

    def _endless(self, dataset: Dataset, sampler, prefix: str) -> Iterator[dict]:
        """Endless batches of the mixing source (``prefix`` "src") or the adaptation target ("tgt"); the
        position is tracked in the state (``<prefix>_epoch``, ``<prefix>_batch``) for resume."""
        st = self.state
        while True:
            epoch, skip = getattr(st, f"{prefix}_epoch"), getattr(st, f"{prefix}_batch")
            for batch in self._loader(dataset, sampler, epoch, skip):
                setattr(st, f"{prefix}_batch", getattr(st, f"{prefix}_batch") + 1)
                yield batch
            setattr(st, f"{prefix}_epoch", epoch + 1)
            setattr(st, f"{prefix}_batch", 0)

    def _keep_neck_output(self, _module: nn.Module, _inputs, output: torch.Tensor) -> None:
        self._neck_out = output

    @staticmethod
    def _pooled(features: torch.Tensor) -> torch.Tensor:
        """N,T,C sequence (rec neck) or N,C,H,W map (det neck) -> N,C."""
        return features.mean(1) if features.ndim == 3 else features.mean((2, 3))

    # ------------------------------------------------------------------ one step
    def compute_loss(self, batch: dict, source_batch: dict | None = None,
                     target_batch: dict | None = None) -> dict[str, torch.Tensor]:
        """All loss terms of one step (the total under ``"loss"``); grads flow, nothing is stepped."""
        x_t = self.task.inputs(batch).to(self.device)
        if source_batch is not None:
            x_s = self.task.inputs(source_batch).to(self.device)
            x = self.task.concat_inputs(x_s, x_t)  # one forward (DDP needs one per backward)
        else:
            x = x_t
        n_labelled = x.shape[0]
        if target_batch is not None:  # unlabelled target rows ride in the same forward
            x = self.task.concat_inputs(x, self.task.inputs(target_batch).to(self.device))
        out = self.ddp_model(x)
        parts: dict[str, torch.Tensor] = {}
        if target_batch is not None:
            pooled = self._pooled(self._neck_out)
            parts["da"] = self.distance(pooled[:n_labelled], pooled[n_labelled:])
            out, _ = self.task.split(out, n_labelled)
        if source_batch is not None:
            out_s, out_t = self.task.split(out, x_s.shape[0])
            parts["src"] = self.task.loss(out_s, source_batch)
            parts["tgt"] = self.task.loss(out_t, batch)
            loss = self.alpha * parts["src"] + (1 - self.alpha) * parts["tgt"]
        else:
            loss = parts["tgt"] = self.task.loss(out, batch)
        if self.teacher is not None:
            with torch.no_grad():
                teacher_out = self.teacher(x[:n_labelled])
            parts["kd"] = self.task.distill(out, teacher_out)
            loss = loss + self.cfg.transfer.distill.beta * parts["kd"]
        if self.l2sp is not None:
            parts["l2sp"] = self.l2sp(self.model)
            loss = loss + parts["l2sp"]
        if "da" in parts:
            loss = loss + self.cfg.transfer.domain_adaptation.lam * parts["da"]
        parts["loss"] = loss
        return parts

    def train_step(self, batch: dict, source_batch: dict | None = None,
                   target_batch: dict | None = None) -> dict[str, float]:
        set_train_mode(self.model, self.frozen, self.cfg.transfer.freeze_bn_stats)
        parts = self.compute_loss(batch, source_batch, target_batch)
        self.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                           self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return {k: float(v.detach()) for k, v in parts.items()}

    # ------------------------------------------------------------------ validation
    def evaluate(self) -> dict[str, float] | None:
        """Rank 0 validates the unwrapped model; every rank gets the result."""
        metrics = None
        if self.info.is_main and self.val:
            metrics = self.task.evaluate(self.model, self.val, self.device, batch_size=self.cfg.batch_size)
        return broadcast_object(metrics, self.info)

    def _after_eval(self, metrics: dict[str, float] | None) -> bool:
        """Record, keep the best checkpoint; True when early stopping says stop."""
        if metrics is None:
            return False
        st = self.state
        st.history.append({"step": st.step, "epoch": st.epoch, **metrics})
        score = list(self.task.score(metrics))
        if st.best_score is None or score > st.best_score:
            st.best_score, st.best_step, st.bad_evals = score, st.step, 0
            self.save(self.out / "best.pt", full=False)
        else:
            st.bad_evals += 1
        if self.info.is_main:
            log.info("step %d val %s (best %s at step %d)", st.step,
                     {k: round(v, 4) for k, v in metrics.items()}, st.best_score, st.best_step)
        patience = self.cfg.early_stopping_patience
        return patience is not None and st.bad_evals >= patience

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: Path, full: bool = True) -> None:
        """Rank 0 writes: weights + state (+ optimizer, scheduler and RNG states when ``full``)."""
        if not self.info.is_main:
            return
        ckpt = {"task": self.task.name, "model": self.model.state_dict(), "state": asdict(self.state),
                "config": self.cfg.model_dump(mode="json"), **self.extra}
        if full:
            ckpt.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                        rng={"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()})
        tmp = path.with_suffix(".tmp")
        torch.save(ckpt, tmp)
        tmp.replace(path)

    def load(self, path: Path) -> None:
        """Restore a full checkpoint written by :meth:`save` (same config, same class table)."""
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = TrainState(**ckpt["state"])
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.state.step, self.state.epoch,
                 self.state.batch_in_epoch)

    # ------------------------------------------------------------------ loop
    def fit(self, until_step: int | None = None) -> TrainState:
        """Train to the end of the schedule (or early stop); ``until_step`` pauses earlier without
        changing the schedule (the state is saved to ``last.pt`` and a later ``fit`` continues)."""
        cfg, st = self.cfg, self.state
        end = min(self.total_steps, until_step or self.total_steps)
        source_iter = self._endless(self.source_ds, self.source_sampler, "src") if self.source_ds is not None \
            else None
        target_iter = self._endless(self.target_ds, self.target_sampler, "tgt") if self.target_ds is not None \
            else None
        bar = tqdm(total=self.total_steps, initial=st.step, disable=not (cfg.progress and self.info.is_main),
                   desc=f"finetune {self.task.name}", dynamic_ncols=True)
        stop = early = st.step >= end
        evaluated_at = -1
        if st.step == 0 and not st.history and cfg.eval_at_start:
            self._after_eval(self.evaluate())
        while not stop and st.epoch < cfg.epochs:
            for batch in self._loader(self.train_ds, self.train_sampler, st.epoch, st.batch_in_epoch):
                parts = self.train_step(batch, next(source_iter) if source_iter else None,
                                        next(target_iter) if target_iter else None)
                st.step += 1
                st.batch_in_epoch += 1
                self.step_log.append({"step": st.step, **parts})
                bar.update(1)
                bar.set_postfix({k: f"{v:.4g}" for k, v in parts.items()}, refresh=False)
                if cfg.checkpoint_every_steps and st.step % cfg.checkpoint_every_steps == 0:
                    self.save(self.out / "last.pt")
                if cfg.eval_every_steps and st.step % cfg.eval_every_steps == 0:
                    early = self._after_eval(self.evaluate())
                    evaluated_at = st.step
                if st.step >= end or early:
                    stop = True
                    break
            else:
                st.epoch += 1
                st.batch_in_epoch = 0
                if not cfg.eval_every_steps:
                    early = self._after_eval(self.evaluate())
                    evaluated_at = st.step
                stop = early or st.step >= end
        bar.close()
        finished = early or st.step >= self.total_steps or st.epoch >= cfg.epochs
        if finished and evaluated_at != st.step and st.step > 0:
            self._after_eval(self.evaluate())  # the final weights are a candidate for best too
        self.save(self.out / "last.pt")
        return st

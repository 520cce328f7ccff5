"""Finetune configuration: one pydantic model, loadable from a YAML or JSON file.

Every transfer-learning mode is a field here so a run is fully described by its config file
(and the file is copied next to the checkpoints, so a result can always be traced to its settings).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(_Strict):
    """One source of samples.

    ``synthetic`` renders ``n`` samples of ``domain`` with ``seed``; the other kinds read user data
    from ``path``: a folder with ``labels.jsonl`` (our eval format), an ICDAR-2015 folder
    (images + ``gt_*.txt``), or a TSV of ``crop_path<TAB>text`` (rec only).
    """

    kind: Literal["synthetic", "labels_jsonl", "icdar", "tsv"]
    domain: str | None = None
    n: int = Field(default=1000, ge=1)
    seed: int = 0
    path: Path | None = None
    limit: int | None = Field(default=None, ge=1, description="use at most this many samples")
    limit_by: Literal["first", "hash"] = Field(default="first", description="with limit: the first samples of the "
                                               "file, or a subset chosen by hashing image names (the same "
                                               "everywhere, nested across sizes: learning curves)")

    @model_validator(mode="after")
    def _check(self) -> DataSource:
        if self.kind == "synthetic" and not self.domain:
            raise ValueError("a synthetic source needs a domain (plates, receipts, ids, generic, ...)")
        if self.kind != "synthetic" and self.path is None:
            raise ValueError(f"a {self.kind} source needs a path")
        return self


class DataConfig(_Strict):
    train: list[DataSource] = Field(min_length=1)
    val: list[DataSource] = Field(default_factory=list, description="explicit validation sources")
    val_fraction: float = Field(default=0.1, ge=0.0, lt=1.0,
                                description="held out of train when no explicit val sources are given")
    split_seed: int = 0
    rec_max_width: int = Field(default=320, ge=32, description="crops wider than this (at height 48) are squeezed")
    rec_augment: float = Field(default=0.0, ge=0.0, le=1.5, description="rec: vary the training crops (box jitter, "
                               "tilt, scale) with camera degradations at this level; 0: off")
    det_size: int = Field(default=640, ge=64, description="det training images are letterboxed to size x size")
    det_bundle: Path | None = Field(default=None, description="det: take the input scaling and DB post-process from "
                                                              "this bundle's model.json (train at the scale the "
                                                              "service reads at, validate on the polygons it returns)")
    det_shrink_ratio: float = Field(default=0.4, gt=0.0, lt=1.0,
                                    description="DB kernel shrink ratio r of the targets (offset A(1-r^2)/L); "
                                                "match the kernel the pretrained detector already draws")
    det_min_text_size: float = Field(default=8.0, gt=0.0,
                                     description="DB targets: a line whose short side is below this many pixels at "
                                                 "training scale is left out of the loss instead of taught as text; "
                                                 "lower it when lone '1', ':' or '*' tokens matter")
    num_workers: int = Field(default=0, ge=0)


class OptimConfig(_Strict):
    lr: float = Field(default=3e-5, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(default=50, ge=0)
    min_lr_ratio: float = Field(default=0.05, ge=0, le=1, description="cosine floor as a fraction of lr")
    grad_clip: float | None = Field(default=5.0, gt=0)


class MixingConfig(_Strict):
    """Source/target mixing: loss = alpha * L(source batch) + (1 - alpha) * L(target batch)."""

    alpha: float = Field(ge=0.0, le=1.0)
    source: list[DataSource] = Field(min_length=1, description="generic data that keeps pretrained skills alive")


class DistillConfig(_Strict):
    """Knowledge distillation from the frozen pretrained teacher: + beta * KL(p_teacher || p_student)."""

    beta: float = Field(default=1.0, ge=0.0)
    temperature: float = Field(default=2.0, gt=0.0, description="softens the per-timestep CTC distributions (rec)")


class DomainAdaptationConfig(_Strict):
    """Unsupervised domain adaptation: + lam * d(X_source, X_target) on pooled neck features, where the source
    rows are the labelled training batch and the target rows come from ``target`` (its labels are never read)."""

    distance: Literal["coral", "mmd"] = "coral"
    lam: float = Field(default=1.0, ge=0.0)
    target: list[DataSource] = Field(min_length=1, description="target-domain images/crops, labels ignored")


class TransferConfig(_Strict):
    freeze_backbone: bool = Field(default=False, description="backbone frozen (no grad, eval mode)")
    freeze_neck: bool = Field(default=False, description="with freeze_backbone: train the head only")
    backbone_lr_mult: float = Field(default=1.0, ge=0.0, description="backbone LR = lr * this (full finetune)")
    train_backbone_blocks: int | None = Field(default=None, ge=1, description="without freeze_backbone: train "
                                              "only the backbone's last N blocks (the rest stays pretrained)")
    lr_relative_to_weights: bool = Field(default=False, description="each pretrained tensor's LR scaled by its "
                                                                    "RMS / the median RMS (BN-folded heads)")
    l2sp_lambda: float = Field(default=0.0, ge=0.0, description="lambda * sum ||theta - theta_src||^2")
    mixing: MixingConfig | None = None
    distill: DistillConfig | None = None
    domain_adaptation: DomainAdaptationConfig | None = None
    cache_features: bool = Field(default=False, description="rec with freeze_backbone: compute the frozen "
                                                            "backbone's features once and train on the cache")
    feature_cache_dir: Path | None = Field(default=None, description="with cache_features: keep the features on "
                                                                     "disk (content-hashed) for later runs")
    charset_cut: bool = Field(default=False, description="rec: shrink the head to the characters of the data")
    charset_extra: str = Field(default="", description="characters kept by charset_cut besides those seen in data")
    freeze_bn_stats: bool = Field(default=True, description="BatchNorm layers stay in eval mode during training")


class FinetuneConfig(_Strict):
    task: Literal["det", "rec"]
    name: str = Field(default="finetuned", description="model name, used for the output files")
    pretrained: Path | None = Field(default=None, description="ONNX to start from; default: PP-OCRv6 small")
    init_from: Path | None = Field(default=None, description="a finetuning checkpoint (best.pt/last.pt) whose weights, "
                                   "and for rec its class table, this run starts from instead of `pretrained`'s: "
                                   "train the head on cached features first, then unfreeze backbone blocks "
                                   "(gradual unfreezing); a distillation teacher stays the pretrained model")
    output_dir: Path = Path("runs/finetune")
    data: DataConfig
    optim: OptimConfig = OptimConfig()
    transfer: TransferConfig = TransferConfig()
    epochs: int = Field(default=10, ge=1)
    max_steps: int | None = Field(default=None, ge=1, description="stop after this many optimizer steps")
    batch_size: int = Field(default=16, ge=1)
    eval_every_steps: int | None = Field(default=None, ge=1, description="default: once per epoch")
    eval_at_start: bool = Field(default=True, description="validate the pretrained weights first, so the best "
                                                          "checkpoint is never worse than the starting point")
    early_stopping_patience: int | None = Field(default=5, ge=1, description="evaluations without improvement")
    checkpoint_every_steps: int | None = Field(default=200, ge=1)
    seed: int = 0
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads")
    export: bool = Field(default=True, description="export the best weights to ONNX at the end")
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> FinetuneConfig:
        if self.transfer.charset_cut and self.task != "rec":
            raise ValueError("charset_cut applies to rec only")
        if self.transfer.freeze_neck and not self.transfer.freeze_backbone:
            raise ValueError("freeze_neck needs freeze_backbone")
        if self.transfer.cache_features and not (self.task == "rec" and self.transfer.freeze_backbone):
            raise ValueError("cache_features needs task rec and freeze_backbone (a training backbone has no "
                             "fixed features to cache)")
        if self.transfer.train_backbone_blocks is not None and self.transfer.freeze_backbone:
            raise ValueError("train_backbone_blocks trains part of the backbone, freeze_backbone freezes all of it")
        if self.data.rec_augment > 0 and (self.task != "rec" or self.transfer.cache_features):
            raise ValueError("rec_augment needs task rec without cache_features (cached features are fixed)")
        if self.transfer.domain_adaptation and self.transfer.freeze_neck:
            raise ValueError("domain_adaptation aligns neck features, which a frozen neck cannot move")
        return self


def load_config(path: str | Path) -> FinetuneConfig:
    """Read a config from ``.yaml``/``.yml`` or ``.json``; relative data paths stay relative to the CWD."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in {".yaml", ".yml"}:
        import yaml  # train extra; imported here so JSON configs work without it

        raw = yaml.safe_load(text)
    else:
        raw = json.loads(text)
    return FinetuneConfig.model_validate(raw)

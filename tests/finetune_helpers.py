"""Shared fixtures for the finetune tests: real pretrained models, small synthetic samples."""
from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import numpy as np

from training.data.samples import DetSample, RecSample
from training.finetune.config import DataConfig, DataSource, FinetuneConfig


@lru_cache(maxsize=1)
def _rec():
    from training.models.rec import rec_from_onnx
    from training.pretrained import locate_pretrained

    return rec_from_onnx(locate_pretrained().rec)


@lru_cache(maxsize=1)
def _det():
    from training.models.det import det_from_onnx
    from training.pretrained import locate_pretrained

    return det_from_onnx(locate_pretrained().det)


def rec_model():
    """(fresh copy of the pretrained recognizer, class table with blank first)."""
    model, chars = _rec()
    return copy.deepcopy(model), [""] + list(chars)


def det_model():
    return copy.deepcopy(_det())


def rec_samples(n: int, seed: int = 0) -> list[RecSample]:
    from training.data.synth.plates import plate_line

    return [plate_line(np.random.default_rng([seed, i])) for i in range(n)]


def det_samples(n: int, seed: int = 0) -> list[DetSample]:
    from training.data.synth.plates import plate_scene

    return [plate_scene(np.random.default_rng([seed, i])) for i in range(n)]


def config(task: str, out: Path, **kw) -> FinetuneConfig:
    """A small config: batch 4, a few steps, no progress bar, no export; kw override top-level fields."""
    transfer = kw.pop("transfer", {})
    data = kw.pop("data", {})
    base = {"task": task, "output_dir": out, "batch_size": 4, "epochs": 1, "progress": False, "export": False,
            "checkpoint_every_steps": None, "early_stopping_patience": None,
            "optim": {"lr": 1e-3, "warmup_steps": 0, "grad_clip": None},
            "data": DataConfig(train=[DataSource(kind="synthetic", domain="plates", n=8)],
                               rec_max_width=160, det_size=128, **data),
            "transfer": transfer}
    base.update(kw)
    return FinetuneConfig.model_validate(base)

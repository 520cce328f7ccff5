"""End to end through ``ocrnet finetune``: config file -> train -> best/last checkpoints -> ONNX export
that the service can load (classes match charset.json); resume from last.pt; a det run validates."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from training.finetune import main_finetune
from training.finetune.config import FinetuneConfig
from training.finetune.runner import build_trainer

pytestmark = pytest.mark.slow


def test_rec_cli_run_exports_and_resumes(tmp_path):
    out = tmp_path / "run"
    cfg = {
        "task": "rec", "output_dir": str(out), "batch_size": 4, "epochs": 3, "max_steps": 2, "progress": False,
        "checkpoint_every_steps": 1,
        "data": {"train": [{"kind": "synthetic", "domain": "plates", "n": 10, "seed": 1}], "val_fraction": 0.3,
                 "rec_max_width": 160},
        "optim": {"lr": 1e-4, "warmup_steps": 0},
        "transfer": {"charset_cut": True, "charset_extra": "0123456789", "backbone_lr_mult": 0.1,
                     "l2sp_lambda": 1e-4, "distill": {"beta": 0.5},
                     "mixing": {"alpha": 0.25, "source": [{"kind": "synthetic", "domain": "ids", "n": 4}]}},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main_finetune(["--config", str(path)]) == 0
    best = torch.load(out / "best.pt", weights_only=False)
    last = torch.load(out / "last.pt", weights_only=False)
    assert last["state"]["step"] == 2 and last["state"]["history"] and "word_acc" in last["state"]["history"][0]
    charset = json.loads((out / "export" / "charset.json").read_text())
    assert charset["characters"] == best["classes"][1:] and "<" in charset["characters"]  # ids source chars kept
    sess = ort.InferenceSession(str(out / "export" / "rec.onnx"), providers=["CPUExecutionProvider"])
    probs = sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, 48, 160), np.float32)})[0]
    assert probs.shape == (1, 20, len(charset["characters"]) + 1)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-4)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2 and 0 < summary["train_samples"] <= 10 and summary["fit_seconds"] > 0
    assert main_finetune(["--config", str(path), "--resume", str(out / "last.pt"), "--max-steps", "3",
                          "--no-export"]) == 0
    assert torch.load(out / "last.pt", weights_only=False)["state"]["step"] == 3
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 1  # the steps this run made


def test_det_run_validates_with_hmean(tmp_path):
    cfg = FinetuneConfig.model_validate({
        "task": "det", "output_dir": str(tmp_path), "batch_size": 2, "max_steps": 1, "progress": False,
        "export": False, "data": {"train": [{"kind": "synthetic", "domain": "plates", "n": 6, "seed": 5}],
                                  "val_fraction": 0.4, "det_size": 128},
        "transfer": {"l2sp_lambda": 1e-4, "distill": {"beta": 1.0}}})
    trainer = build_trainer(cfg)
    assert len(trainer.val) > 0 and trainer.l2sp is not None
    assert not any(n.startswith("thresh_head") for n in trainer.l2sp.names)  # fresh layers are not anchored
    state = trainer.fit()
    assert state.step == 1 and {"precision", "recall", "hmean"} <= set(state.history[-1])
    assert 0.0 <= state.history[-1]["hmean"] <= 1.0 and (tmp_path / "best.pt").exists()


def test_rec_augment_varies_only_the_labelled_training_crops(tmp_path):
    cfg = FinetuneConfig.model_validate({
        "task": "rec", "output_dir": str(tmp_path), "batch_size": 2, "max_steps": 1, "progress": False,
        "export": False, "data": {"train": [{"kind": "synthetic", "domain": "plates", "n": 6, "seed": 5}],
                                  "val_fraction": 0.3, "rec_max_width": 160, "rec_augment": 0.6},
        "transfer": {"train_backbone_blocks": 2,
                     "mixing": {"alpha": 0.5, "source": [{"kind": "synthetic", "domain": "plates", "n": 4}]}}})
    trainer = build_trainer(cfg)
    assert trainer.train_ds.augment == 0.6 and trainer.source_ds.augment == 0.0
    first = trainer.train_ds[0][0]
    trainer.train_ds.set_epoch(1)
    assert not np.array_equal(trainer.train_ds[0][0], first)
    assert trainer.fit().step == 1


def test_init_from_starts_from_a_runs_weights_and_class_table(tmp_path):
    """Gradual unfreezing: a head trained on the frozen backbone, then a run that also trains backbone blocks starts
    from exactly those weights and classes (not from the pretrained head)."""
    from finetune_helpers import config

    first = build_trainer(config("rec", tmp_path / "a", max_steps=1,
                                 transfer={"charset_cut": True, "charset_extra": "#", "freeze_backbone": True}))
    first.fit()
    first.save(tmp_path / "head.pt")
    second = build_trainer(config("rec", tmp_path / "b", max_steps=1, init_from=tmp_path / "head.pt",
                                  transfer={"charset_cut": True, "train_backbone_blocks": 1}))
    saved = torch.load(tmp_path / "head.pt", weights_only=False)
    assert second.task.classes == saved["classes"] and "#" in saved["classes"]  # not re-derived from the data
    for name, tensor in second.model.state_dict().items():
        torch.testing.assert_close(tensor, saved["model"][name], msg=name)
    assert second.fit().step == 1
    with pytest.raises(ValueError, match="'rec' checkpoint"):
        build_trainer(config("det", tmp_path / "c", max_steps=1, init_from=tmp_path / "head.pt"))

"""Each transfer-learning mode does what it says, proven on a few real steps of the PP-OCRv6 models."""
from __future__ import annotations

import pytest
import torch
from finetune_helpers import config, det_model, det_samples, rec_model, rec_samples

from training.finetune.tasks import DetTask, RecTask
from training.finetune.trainer import Trainer
from training.finetune.transfer import L2SP, make_teacher, param_groups, teacher_class_map


def _rec_trainer(tmp_path, samples=None, source=(), teacher=None, **kw):
    model, classes = rec_model()
    cfg = config("rec", tmp_path, **kw)
    task = RecTask(classes, max_width=160)
    return Trainer(cfg, model, task, samples or rec_samples(8), source=source, teacher=teacher)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict, module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_frozen_backbone_trains_only_the_head(tmp_path):
    tr = _rec_trainer(tmp_path, transfer={"freeze_backbone": True}, max_steps=2)
    backbone, head = _snapshot(tr.model.backbone), _snapshot(tr.model.head)
    tr.fit()
    assert tr.state.step == 2
    assert not _changed(backbone, tr.model.backbone)
    assert _changed(head, tr.model.head)
    trained = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in trained for p in tr.model.backbone.parameters())


def test_training_the_backbones_last_blocks_leaves_the_rest_as_pretrained(tmp_path):
    tr = _rec_trainer(tmp_path, transfer={"train_backbone_blocks": 2, "backbone_lr_mult": 0.5}, max_steps=2)
    blocks = tr.model.backbone.blocks
    early, tail = _snapshot(blocks[0]), _snapshot(blocks[len(blocks) - 1])
    stem = _snapshot(tr.model.backbone.stem)
    tr.fit()
    assert not _changed(early, blocks[0]) and not _changed(stem, tr.model.backbone.stem)
    assert _changed(tail, blocks[len(blocks) - 1])
    trained = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in blocks[len(blocks) - 3].parameters()}.isdisjoint(trained)
    assert {id(p) for p in blocks[len(blocks) - 2].parameters()} <= trained


def test_backbone_lr_multiplier_sets_group_lrs(tmp_path):
    tr = _rec_trainer(tmp_path, transfer={"backbone_lr_mult": 0.1}, max_steps=1)
    lrs = {g["name"]: g["lr"] for g in tr.optimizer.param_groups}
    assert lrs["backbone"] == pytest.approx(1e-4) and lrs["backbone_no_decay"] == pytest.approx(1e-4)
    assert lrs["head"] == pytest.approx(1e-3) and lrs["head_no_decay"] == pytest.approx(1e-3)
    backbone, head = _snapshot(tr.model.backbone), _snapshot(tr.model.head)
    tr.fit()
    assert _changed(backbone, tr.model.backbone) and _changed(head, tr.model.head)


def test_lr_relative_to_weights_scales_each_tensor_by_its_rms():
    """The DB head's BN-folded first conv (weights ~0.002) must get a far smaller LR than the neck around it;
    the fresh threshold head keeps the plain LR."""
    model = det_model()
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    groups = {g["name"]: g for g in param_groups(model, 1e-3, relative_to_weights=True, fresh=["thresh_head"])}
    rms = {n: float(p.detach().pow(2).mean().sqrt()) for n, p in model.named_parameters() if p.requires_grad}
    assert set(groups) == set(rms)  # one group per trainable tensor, none for the frozen backbone
    assert groups["head.conv.weight"]["lr"] < 0.1 * groups["neck.ins_conv.0.conv.weight"]["lr"]
    assert groups["head.conv.weight"]["lr"] / groups["head.up1.weight"]["lr"] == pytest.approx(
        rms["head.conv.weight"] / rms["head.up1.weight"])
    assert all(g["lr"] == 1e-3 for n, g in groups.items() if n.startswith("thresh_head."))
    assert groups["head.conv.bias"]["weight_decay"] == 0.0


def test_l2sp_zero_at_start_positive_after_a_step_and_pulls_to_source(tmp_path):
    tr = _rec_trainer(tmp_path, transfer={"l2sp_lambda": 0.5}, max_steps=1)
    assert float(tr.l2sp(tr.model).detach()) == 0.0
    tr.fit()
    assert tr.step_log[0]["l2sp"] == 0.0  # the first step starts at the source weights
    penalty = tr.l2sp(tr.model)
    assert float(penalty.detach()) > 0
    tr.model.zero_grad()
    penalty.backward()
    w = tr.model.head.fc.weight
    src = getattr(tr.l2sp, L2SP._key("head.fc.weight"))
    torch.testing.assert_close(w.grad, 2 * 0.5 * (w.detach() - src))
    with torch.no_grad():  # a plain gradient step on the penalty moves back toward the source
        before = (w - src).norm()
        after = (w - 0.1 * w.grad - src).norm()
    assert after < before


def test_mixing_is_alpha_weighted_sum_of_source_and_target(tmp_path):
    target, source = rec_samples(4, seed=1), rec_samples(4, seed=2)
    tr = _rec_trainer(tmp_path, samples=target, source=source, max_steps=1,
                      transfer={"mixing": {"alpha": 0.3, "source": [{"kind": "synthetic", "domain": "receipts"}]}})
    tr.model.eval()
    collate = tr.task.collate
    items_t = [tr.train_ds[i] for i in range(4)]
    items_s = [tr.source_ds[i] for i in range(4)]
    bt, bs = collate(items_t), collate(items_s)
    assert bt["image"].shape == bs["image"].shape  # same width: the concat adds no padding
    with torch.no_grad():
        parts = tr.compute_loss(bt, bs)
        alone_t = tr.task.loss(tr.model(bt["image"]), bt)
        alone_s = tr.task.loss(tr.model(bs["image"]), bs)
    torch.testing.assert_close(parts["loss"], 0.3 * parts["src"] + 0.7 * parts["tgt"])
    torch.testing.assert_close(parts["tgt"], alone_t, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(parts["src"], alone_s, atol=1e-4, rtol=1e-4)
    tr.fit()
    assert set(tr.step_log[0]) >= {"src", "tgt", "loss"}


@pytest.mark.slow
def test_rec_distillation_zero_when_student_is_teacher_even_with_a_cut_charset(tmp_path):
    from training.models.rec import cut_charset

    model, classes = rec_model()
    teacher = make_teacher(model)
    samples = rec_samples(4)
    new_chars = sorted({c for s in samples for c in s.text})
    student = cut_charset(model, classes, new_chars)
    task = RecTask([""] + new_chars, 160, teacher_class_map(classes, [""] + new_chars))
    x = task.collate([(__import__("numpy").asarray(s.image)[:, :, ::-1], s.text) for s in samples])["image"]
    student.eval()
    with torch.no_grad():
        assert float(task.distill(student(x), teacher(x))) == pytest.approx(0.0, abs=1e-6)
        student.head.fc.weight.add_(0.05 * torch.randn_like(student.head.fc.weight))
        assert float(task.distill(student(x), teacher(x))) > 1e-4
    # inside the trainer: the KD term of the first step (student == teacher) is zero
    cfg = config("rec", tmp_path, max_steps=2, transfer={"distill": {"beta": 1.0, "temperature": 2.0}})
    model, classes = rec_model()
    tr = Trainer(cfg, model, RecTask(classes, 160), rec_samples(8), teacher=make_teacher(model))
    tr.fit()
    assert tr.step_log[0]["kd"] == pytest.approx(0.0, abs=1e-6)
    assert tr.step_log[1]["kd"] > 0


def test_det_distillation_zero_when_student_is_teacher():
    model = det_model()
    teacher = make_teacher(model)
    x = torch.randn(2, 3, 128, 128)
    model.train()
    task = DetTask(128)
    with torch.no_grad():
        assert float(task.distill(model(x), teacher(x))) == pytest.approx(0.0, abs=1e-6)


def _bn_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}


@pytest.mark.parametrize("frozen", [True, False])
def test_bn_statistics_frozen_by_default(tmp_path, frozen):
    model = det_model()
    cfg = config("det", tmp_path, max_steps=1, transfer={"freeze_bn_stats": frozen})
    tr = Trainer(cfg, model, DetTask(128), det_samples(4))
    before = _bn_buffers(tr.model)
    assert before, "the detector has BatchNorm layers"
    tr.fit()
    after = _bn_buffers(tr.model)
    unchanged = all(torch.equal(before[k], after[k]) for k in before)
    assert unchanged is frozen


@pytest.mark.slow
def test_resume_reproduces_the_next_step(tmp_path):
    kw = {"max_steps": 3, "epochs": 2, "checkpoint_every_steps": 100,
          "transfer": {"mixing": {"alpha": 0.5, "source": [{"kind": "synthetic", "domain": "receipts"}]}}}
    samples, source = rec_samples(8, seed=3), rec_samples(8, seed=4)
    a = _rec_trainer(tmp_path / "a", samples=samples, source=source, **kw)
    a.fit(until_step=2)
    ckpt = tmp_path / "a" / "step2.pt"
    (tmp_path / "a" / "last.pt").rename(ckpt)
    a.fit()
    b = _rec_trainer(tmp_path / "b", samples=samples, source=source, **kw)
    b.load(ckpt)
    assert b.state.step == 2
    b.fit()
    assert b.step_log[0]["step"] == 3
    assert b.step_log[0]["loss"] == pytest.approx(a.step_log[2]["loss"], rel=1e-5)
    assert b.step_log[0]["src"] == pytest.approx(a.step_log[2]["src"], rel=1e-5)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)

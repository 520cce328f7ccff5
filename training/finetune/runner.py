"""Build a finetuning run from its config: pretrained model, data, charset cut, teacher, trainer;
then train and export. ``main_finetune`` is the ``ocrnet finetune`` entry point (torchrun-ready).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from training.data.loaders import CropRecord, ImageRecord, load_records
from training.data.splits import hashed_subset, split_records
from training.data.synth.registry import DOMAINS, SyntheticSamples
from training.finetune.cli_args import build_parser, prepare_config
from training.finetune.config import DataSource, FinetuneConfig
from training.finetune.distributed import DistInfo, barrier, cleanup, init_distributed
from training.finetune.tasks import DetTask, RecTask, bundle_det_settings
from training.finetune.trainer import Trainer, seed_everything
from training.finetune.transfer import make_teacher, teacher_class_map

log = logging.getLogger(__name__)


class _LazyDet(Sequence):
    """Det samples read from disk on access, so a large page set does not sit in memory."""

    def __init__(self, records: Sequence[ImageRecord]) -> None:
        self.records = [r for r in records if r.has_boxes]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i].det_sample()


def _materialise(task: str, records: Sequence) -> Sequence:
    if task == "det":
        return _LazyDet([r for r in records if isinstance(r, ImageRecord)])
    out = []
    for r in records:
        out.extend([r.rec_sample()] if isinstance(r, CropRecord) else r.rec_samples())
    return out


def load_source(src: DataSource, task: str, val_fraction: float = 0.0, split_seed: int = 0
                ) -> tuple[Sequence, Sequence]:
    """(train, val) samples of one source; ``val_fraction`` of it is held out (by image name, so all
    crops of a page stay on one side; synthetic samples by their index)."""
    if src.kind == "synthetic":
        if src.domain not in DOMAINS:
            raise ValueError(f"unknown synthetic domain {src.domain!r}; have {DOMAINS}")
        items = SyntheticSamples(src.domain, "lines" if task == "rec" else "pages", src.limit or src.n, src.seed)
        keys = [f"{src.domain}-{src.seed}-{i}" for i in range(len(items))]
        train_idx, val_idx = split_records(range(len(items)), val_fraction, key=lambda i: keys[i],
                                           salt=f"ocrnet-split-{split_seed}")
        if task == "rec":  # line crops are small: render once, keep them
            return [items[i] for i in train_idx], [items[i] for i in val_idx]
        return _Subset(items, train_idx), _Subset(items, val_idx)
    records = load_records(src.path)
    if src.limit:
        records = hashed_subset(records, src.limit) if src.limit_by == "hash" else records[: src.limit]
    train, val = split_records(records, val_fraction, salt=f"ocrnet-split-{split_seed}") if val_fraction else \
        (list(records), [])
    return _materialise(task, train), _materialise(task, val)


class _Subset(Sequence):
    def __init__(self, items: Sequence, indices: Sequence[int]) -> None:
        self.items, self.indices = items, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.items[self.indices[i]]


class _Concat(Sequence):
    def __init__(self, parts: Sequence[Sequence]) -> None:
        self.parts = [p for p in parts if len(p)]
        self.offsets = [0]
        for p in self.parts:
            self.offsets.append(self.offsets[-1] + len(p))

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = next(j for j in range(len(self.parts)) if i < self.offsets[j + 1])
        return self.parts[k][i - self.offsets[k]]


def load_data(cfg: FinetuneConfig) -> tuple[Sequence, Sequence, Sequence]:
    """(train, val, mixing source) samples for the config's task (the adaptation target: :func:`load_target`)."""
    d = cfg.data
    frac = 0.0 if d.val else d.val_fraction
    pairs = [load_source(s, cfg.task, frac, d.split_seed) for s in d.train]
    train = _Concat([t for t, _ in pairs])
    val = _Concat([load_source(s, cfg.task)[0] for s in d.val]) if d.val else _Concat([v for _, v in pairs])
    mixing = cfg.transfer.mixing
    source = _Concat([load_source(s, cfg.task)[0] for s in mixing.source]) if mixing else _Concat([])
    if cfg.task == "rec":  # plain lists for rec: filtering and charset scans iterate them
        train, val, source = list(train), list(val), list(source)
    return train, val, source


def load_target(cfg: FinetuneConfig) -> list:
    """Unlabelled target-domain samples of domain adaptation (their transcripts are never read)."""
    da = cfg.transfer.domain_adaptation
    if not da:
        return []
    return list(_Concat([load_source(s, cfg.task)[0] for s in da.target]))


def domain_characters(samples: Sequence, base: Sequence[str], extra: str = "") -> list[str]:
    """Characters of ``samples`` (+ ``extra``) in the pretrained charset's order, unknown ones last."""
    seen = set(extra)
    for s in samples:
        seen.update(s.text)
    order = {c: i for i, c in enumerate(base)}
    return sorted(seen, key=lambda c: (order.get(c, len(order)), c))


def _init_checkpoint(cfg: FinetuneConfig) -> dict | None:
    """The checkpoint ``init_from`` names, checked to be of this run's task."""
    if cfg.init_from is None:
        return None
    ckpt = torch.load(cfg.init_from, map_location="cpu", weights_only=False)
    if ckpt.get("task") != cfg.task:
        raise ValueError(f"init_from {cfg.init_from} is a {ckpt.get('task')!r} checkpoint, this run is {cfg.task!r}")
    log.info("starting from the weights of %s", cfg.init_from)
    return ckpt


def build_trainer(cfg: FinetuneConfig, info: DistInfo | None = None, resume: Path | None = None) -> Trainer:
    info = info or DistInfo()
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pretrained = cfg.pretrained
    if pretrained is None:
        from training.pretrained import locate_pretrained

        files = locate_pretrained()
        pretrained = files.rec if cfg.task == "rec" else files.det
    train, val, source = load_data(cfg)
    target = load_target(cfg)
    tr = cfg.transfer
    init = _init_checkpoint(cfg)
    if cfg.task == "det":
        from training.models.det import det_from_onnx

        model = det_from_onnx(pretrained)
        teacher = make_teacher(model) if tr.distill else None
        if init is not None:
            model.load_state_dict(init["model"])
        task = DetTask(cfg.data.det_size, *bundle_det_settings(cfg.data.det_bundle),
                       shrink_ratio=cfg.data.det_shrink_ratio,
                       min_text_size=cfg.data.det_min_text_size)
        trainer = Trainer(cfg, model, task, task.usable(train), task.usable(val), task.usable(source), teacher,
                          info, exclude_from_l2sp=["thresh_head"], target=target)
    else:
        from training.models.rec import cut_charset, rec_from_onnx

        model, chars = rec_from_onnx(pretrained)
        classes = [""] + list(chars)
        teacher = make_teacher(model) if tr.distill else None
        teacher_classes = None
        if tr.charset_cut:
            saved = torch.load(resume, map_location="cpu", weights_only=False).get("classes") if resume else None
            saved = saved or (init or {}).get("classes")
            new = list(saved[1:]) if saved else domain_characters([*train, *source], chars, tr.charset_extra)
            model = cut_charset(model, chars, new)
            if teacher is not None:
                teacher_classes = teacher_class_map(classes, [""] + new)
            classes = [""] + new
            log.info("charset cut to %d characters: %s", len(new), "".join(new))
        if init is not None:
            model.load_state_dict(init["model"])
        temperature = tr.distill.temperature if tr.distill else 2.0
        forward_module = teacher_forward = None
        if tr.cache_features:
            from training.finetune.feature_cache import CachedRecTask, HeadSide

            task = CachedRecTask(classes, model.backbone, cfg.data.rec_max_width, teacher_classes, temperature,
                                 progress=cfg.progress and info.is_main, cache_dir=tr.feature_cache_dir)
            forward_module = HeadSide(model)
            teacher_forward = HeadSide(teacher) if teacher is not None else None
        else:
            task = RecTask(classes, cfg.data.rec_max_width, teacher_classes, temperature, augment=cfg.data.rec_augment)
        # val keeps every sample: a character the head cannot emit is an honest error there
        kept = [task.usable(train), list(val), task.usable(source)]
        for name, before, after in zip(("train", "val", "source"), (train, val, source), kept):
            if len(after) < len(before):
                log.warning("%s: %d of %d samples dropped (characters outside the charset)", name,
                            len(before) - len(after), len(before))
        trainer = Trainer(cfg, model, task, *kept, teacher=teacher, info=info,
                          extra_checkpoint={"classes": classes}, target=target, forward_module=forward_module,
                          teacher_forward=teacher_forward)
    log.info("%s: %d train, %d val, %d mixing-source samples", cfg.task, len(trainer.train_ds), len(trainer.val),
             len(trainer.source_ds) if trainer.source_ds else 0)
    if resume:
        trainer.load(Path(resume))
    return trainer


def export_best(trainer: Trainer) -> list[Path]:
    """Best (else last) weights -> ONNX (+ charset.json for rec) in ``<output_dir>/export``, with the
    ONNX checked against the PyTorch model; uses :mod:`training.export`."""
    from training import export

    out = Path(trainer.cfg.output_dir)
    ckpt_path = out / "best.pt" if (out / "best.pt").exists() else out / "last.pt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    model = trainer.model.cpu().eval()
    model.load_state_dict(ckpt["model"])
    dest = out / "export"
    dest.mkdir(parents=True, exist_ok=True)
    if trainer.task.name == "rec":
        onnx_path = export.export_rec(model, dest / "rec.onnx")
        (dest / "charset.json").write_text(json.dumps({"blank_index": 0, "characters": ckpt["classes"][1:]},
                                                      ensure_ascii=False), encoding="utf-8")
        sample = torch.randn(2, 3, 48, 320)
        reference = torch.nn.Sequential(model, torch.nn.Softmax(-1))
        written = [onnx_path, dest / "charset.json"]
    else:
        onnx_path = export.export_det(model, dest / "det.onnx")
        sample = torch.randn(1, 3, 320, 480)
        reference = model
        written = [onnx_path]
    diff = export.onnx_max_abs_diff(onnx_path, reference, [sample.numpy()])
    log.info("exported %s from %s (max |onnx - torch| = %.2e)", onnx_path, ckpt_path.name, diff)
    return written


def write_summary(trainer: Trainer, setup_seconds: float, fit_seconds: float, steps: int) -> Path:
    """``train_summary.json``: what a run cost (setup incl. data and feature caching, then the steps) and where its
    validation ended, for ablations and learning curves that compare runs."""
    st = trainer.state
    summary = {"train_samples": len(trainer.train_ds), "steps": steps, "setup_seconds": round(setup_seconds, 1),
               "fit_seconds": round(fit_seconds, 1), "steps_per_second": round(steps / fit_seconds, 3) if fit_seconds
               else None, "best_step": st.best_step, "best_score": st.best_score,
               "last_val": st.history[-1] if st.history else None}
    path = Path(trainer.cfg.output_dir) / "train_summary.json"
    path.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return path


def main_finetune(argv: Sequence[str] | None = None) -> int:
    """``ocrnet finetune --config cfg.yaml [--resume ckpt]``; run under ``torchrun`` for DDP."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    cfg = prepare_config(args)  # file + --set/--val-synthetic overrides; stops here when data is missing
    info = init_distributed()
    try:
        started = time.perf_counter()
        trainer = build_trainer(cfg, info, args.resume)
        if info.is_main:
            (Path(cfg.output_dir) / "config.json").write_text(cfg.model_dump_json(indent=2), encoding="utf-8")
        fit_started, first_step = time.perf_counter(), trainer.state.step
        state = trainer.fit()
        barrier(info)
        if info.is_main:
            log.info("done at step %d; best %s at step %d", state.step, state.best_score, state.best_step)
            write_summary(trainer, fit_started - started, time.perf_counter() - fit_started, state.step - first_step)
            if cfg.export:
                export_best(trainer)
    finally:
        cleanup(info)
    return 0

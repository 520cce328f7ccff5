"""What differs between det and rec finetuning: batching, loss, distillation term and validation.

The trainer only talks to a task through this small surface, so every transfer mode (freezing,
L2-SP, mixing, distillation, resume, DDP) is written once for both.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from service.vision.ctc import ctc_greedy_decode
from service.vision.db_postprocess import DBConfig, db_line_boxes
from service.vision.det_preprocess import DetPreprocessConfig, prepare_det_input
from service.vision.images import to_bgr_array
from service.vision.rec_preprocess import make_rec_batches
from training.data.samples import DetSample, RecSample
from training.evaluation.matching import to_polygon
from training.evaluation.metrics import PRCounts, RecCounts, det_counts
from training.finetune.datasets import DetDataset, RecDataset, collate_det, collate_rec
from training.finetune.losses import (
    ctc_loss,
    db_loss,
    det_distill_kl,
    encode_texts,
    rec_distill_kl,
)


class RecTask:
    """CTC recognizer over ``classes`` (index 0 = blank)."""

    name = "rec"

    def __init__(self, classes: Sequence[str], max_width: int = 320,
                 teacher_classes: Tensor | None = None, temperature: float = 2.0, augment: float = 0.0) -> None:
        """``augment``: level of the variation of the training crops (``data.rec_augment``; 0 none)."""
        self.classes = list(classes)
        self.augment = augment
        self.char_to_index = {c: i for i, c in enumerate(self.classes) if i > 0}
        self.max_width = max_width
        self.teacher_classes = teacher_classes
        self.temperature = temperature

    def usable(self, samples: Sequence[RecSample]) -> list[RecSample]:
        """Samples whose every character the head can emit (others would teach a wrong label)."""
        return [s for s in samples if s.text and all(c in self.char_to_index for c in s.text)]

    def dataset(self, samples: Sequence[RecSample], seed: int, training: bool = False) -> RecDataset:
        """``training``: the labelled target crops, the only ones varied (mixing sources are synthetic, varied
        when they were generated)."""
        return RecDataset(samples, self.augment if training else 0.0, seed)

    @property
    def collate(self):
        return partial(collate_rec, max_width=self.max_width)

    def inputs(self, batch: dict) -> Tensor:
        return batch["image"]

    def loss(self, out: Tensor, batch: dict) -> Tensor:
        targets, lengths = encode_texts(batch["texts"], self.char_to_index)
        return ctc_loss(out, targets, lengths)

    def distill(self, student: Tensor, teacher: Tensor) -> Tensor:
        return rec_distill_kl(student, teacher, self.temperature, self.teacher_classes)

    @staticmethod
    def concat_inputs(a: Tensor, b: Tensor) -> Tensor:
        """One forward for source+target rows: pad the narrower batch with zeros (service padding)."""
        w = max(a.shape[-1], b.shape[-1])
        return torch.cat([F.pad(a, (0, w - a.shape[-1])), F.pad(b, (0, w - b.shape[-1]))])

    @staticmethod
    def split(out: Tensor, n: int) -> tuple[Tensor, Tensor]:
        return out[:n], out[n:]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, samples: Sequence[RecSample], device: torch.device,
                 batch_size: int = 32) -> dict[str, float]:
        """Word accuracy and CER through the service's own batching (width buckets) and decoder."""
        if not samples:
            return {"word_acc": 0.0, "cer": 1.0, "n": 0}
        model.eval()
        crops = [to_bgr_array(s.image) for s in samples]
        predicted: list[str] = [""] * len(samples)
        for rb in make_rec_batches(crops, max_batch=batch_size):
            probs = torch.softmax(model(torch.from_numpy(rb.tensor).to(device)).float(), -1).cpu().numpy()
            for i, dec in zip(rb.indices, ctc_greedy_decode(probs, self.classes)):
                predicted[i] = dec.text
        counts = RecCounts()
        for pred, s in zip(predicted, samples):
            counts.add(pred, s.text)
        return {"word_acc": counts.accuracy or 0.0, "cer": counts.cer if counts.cer is not None else 1.0,
                "n": counts.n}

    @staticmethod
    def score(metrics: dict[str, float]) -> tuple[float, ...]:
        """Higher is better: word accuracy, ties broken by lower CER."""
        return (metrics["word_acc"], -metrics["cer"])


def care_counts(pred: Sequence[np.ndarray], lines: Sequence) -> PRCounts:
    """Detection counts against the non-ignored lines at IoU 0.5; predictions lying mostly inside an
    ignored ("###") region count neither way, as in ICDAR-2015."""
    ignored = [to_polygon(ln.polygon) for ln in lines if ln.ignore]
    kept = []
    for q in pred:
        p = to_polygon(q)
        if not any(p.area > 0 and p.intersection(g).area / p.area > 0.5 for g in ignored):
            kept.append(q)
    counts, _ = det_counts(kept, [ln.polygon for ln in lines if not ln.ignore], 0.5)
    return counts


def bundle_det_settings(bundle_dir: str | Path | None) -> tuple[DetPreprocessConfig | None, DBConfig | None]:
    """The detector input scaling and DB post-process a bundle's model.json asks for; (None, None) = the
    service defaults."""
    if bundle_dir is None:
        return None, None
    from service.model_bundle import ModelBundle

    m = ModelBundle(bundle_dir).manifest
    return m.det_preprocess(), DBConfig(thresh=m.det_thresh, box_thresh=m.det_box_thresh,
                                        unclip_ratio=m.det_unclip_ratio, output_unclip_ratio=m.det_output_unclip_ratio)


class DetTask:
    """DB detector; training crops of ``size`` x ``size``, validation on whole pages like the service."""

    name = "det"

    def __init__(self, size: int = 640, preprocess: DetPreprocessConfig | None = None,
                 post: DBConfig | None = None, shrink_ratio: float = 0.4, min_text_size: float = 8.0) -> None:
        self.size = size
        self.shrink_ratio = shrink_ratio
        self.min_text_size = min_text_size
        self.preprocess = preprocess or DetPreprocessConfig()  # the service defaults (= base model.json)
        self.post = post or DBConfig()

    def usable(self, samples: Sequence[DetSample]) -> Sequence[DetSample]:
        """All of them, left lazy (pages are big): a page without text still teaches "no text here"."""
        return samples

    def dataset(self, samples: Sequence[DetSample], seed: int, training: bool = False) -> DetDataset:
        """Every det set is cropped at random (``training`` changes nothing)."""
        return DetDataset(samples, self.size, seed, self.preprocess, shrink_ratio=self.shrink_ratio,
                          min_text_size=self.min_text_size)

    @property
    def collate(self):
        return collate_det

    def inputs(self, batch: dict) -> Tensor:
        return batch["image"]

    def loss(self, out: dict[str, Tensor], batch: dict) -> Tensor:
        return db_loss(out, batch)["loss"]

    def distill(self, student: dict[str, Tensor], teacher: Tensor) -> Tensor:
        return det_distill_kl(student["prob"], teacher)

    @staticmethod
    def concat_inputs(a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([a, b])

    @staticmethod
    def split(out: dict[str, Tensor], n: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return {k: v[:n] for k, v in out.items()}, {k: v[n:] for k, v in out.items()}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, samples: Sequence[DetSample], device: torch.device,
                 batch_size: int = 1) -> dict[str, float]:
        """Precision/recall/H-mean at IoU 0.5 after the service's preprocessing and DB post-process."""
        model.eval()
        total = PRCounts()
        for s in samples:
            inp = prepare_det_input(to_bgr_array(s.image), self.preprocess)
            prob = model(torch.from_numpy(inp.tensor[None]).to(device)).float().cpu().numpy()[0, 0]
            rh, rw = inp.valid_hw
            _, quads, _ = db_line_boxes(prob[:rh, :rw], inp.work.shape[:2], self.post)  # the returned polygons
            quads = [np.stack([q[:, 0] * inp.ratio_hw[1], (q[:, 1] - inp.pad_top) * inp.ratio_hw[0]], 1)
                     for q in quads]
            total += care_counts(quads, s.lines)
        return {"precision": total.precision or 0.0, "recall": total.recall or 0.0, "hmean": total.hmean or 0.0,
                "n": len(samples)}

    @staticmethod
    def score(metrics: dict[str, float]) -> tuple[float, ...]:
        return (metrics["hmean"],)

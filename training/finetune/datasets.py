"""Torch datasets and collate functions for finetuning.

Preprocessing is the service's own (``service.vision``): the same BGR conversion, cv2-style resize
and normalisation, so a finetuned model sees in training exactly what it will see when served.
Random choices (det crops) come from a generator seeded by (seed, epoch, index): a run and its
resume see the same batches.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from shapely.geometry import Polygon, box
from torch.utils.data import Dataset

from service.vision.det_preprocess import (
    DetPreprocessConfig,
    bound_image,
    det_resize_shape,
    normalize,
)
from service.vision.images import resize_linear, to_bgr_array
from service.vision.rec_preprocess import (
    REC_HEIGHT,
    normalize_crop,
    resized_width,
    width_bucket,
)
from training.data.samples import DetSample, RecSample
from training.finetune.det_targets import make_db_targets
from training.finetune.rec_augment import augment_crop


class DetDataset(Dataset):
    """Pages at serving scale, randomly cropped (text-centred most of the time) to ``size`` x ``size``.

    Items: dict(image 3xSxS float32, shrink_map, shrink_mask, thresh_map, thresh_mask SxS).
    """

    def __init__(self, samples: Sequence[DetSample], size: int = 640, seed: int = 0,
                 preprocess: DetPreprocessConfig | None = None, text_centred: float = 0.8,
                 min_visible: float = 0.5, shrink_ratio: float = 0.4,
                 min_text_size: float = 8.0) -> None:
        if size % 32:
            raise ValueError("det crop size must be a multiple of 32")
        self.samples = list(samples)
        self.size = size
        self.seed = seed
        self.cfg = preprocess or DetPreprocessConfig()
        self.text_centred = text_centred
        self.min_visible = min_visible
        self.shrink_ratio = shrink_ratio
        self.min_text_size = min_text_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def _scaled(self, sample: DetSample) -> tuple[np.ndarray, list[np.ndarray], list[bool]]:
        """Image and polygons resized the way the service resizes before detection."""
        bgr = to_bgr_array(sample.image)
        h0, w0 = bgr.shape[:2]
        work, _, _ = bound_image(bgr, self.cfg.min_side_len, self.cfg.max_side_len)
        rh, rw = det_resize_shape(work.shape[0], work.shape[1], self.cfg.limit_side_len, self.cfg.limit_type)
        image = resize_linear(work, rw, rh)
        scale = np.array([rw / w0, rh / h0])
        polys = [np.asarray(line.polygon, np.float64) * scale for line in sample.lines]
        return image, polys, [line.ignore for line in sample.lines]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, polys, ignore = self._scaled(self.samples[index])
        h, w = image.shape[:2]
        s = self.size
        x0 = y0 = 0
        if w > s or h > s:
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            keep = [p for p, ig in zip(polys, ignore) if not ig]
            if keep and rng.random() < self.text_centred:
                cx, cy = keep[int(rng.integers(len(keep)))].mean(0)
                cx, cy = cx + rng.uniform(-s / 4, s / 4), cy + rng.uniform(-s / 4, s / 4)
            x0 = int(np.clip(cx - s / 2, 0, max(w - s, 0)))
            y0 = int(np.clip(cy - s / 2, 0, max(h - s, 0)))
        crop = image[y0:y0 + s, x0:x0 + s]
        chw = np.zeros((3, s, s), np.float32)  # zero padding after normalisation, like the service buckets
        chw[:, :crop.shape[0], :crop.shape[1]] = normalize(crop, self.cfg.mean, self.cfg.std)
        shifted, flags = [], []
        view = box(0, 0, crop.shape[1], crop.shape[0])
        for poly, ig in zip(polys, ignore):
            p = poly - (x0, y0)
            clipped = _clip_to(p, view)
            if clipped is None:
                continue
            quad, visible = clipped
            shifted.append(quad)
            flags.append(ig or visible < self.min_visible)  # a mostly cut-off line is "don't care"
        targets = make_db_targets(shifted, flags, s, s, shrink_ratio=self.shrink_ratio,
                                  min_text_size=self.min_text_size)
        item = {"image": torch.from_numpy(chw)}
        item.update({k: torch.from_numpy(v) for k, v in targets.items()})
        return item


def _clip_to(quad: np.ndarray, view) -> tuple[np.ndarray, float] | None:
    """The part of ``quad`` inside the crop as a 4-point quad, and the fraction of it that is visible."""
    poly = Polygon(quad)
    if not poly.is_valid:
        poly = poly.buffer(0)
    if poly.area <= 0:
        return None
    if view.contains(poly):
        return quad, 1.0
    inter = poly.intersection(view)
    if inter.is_empty or inter.area <= 0:
        return None
    rect = np.asarray(inter.minimum_rotated_rectangle.exterior.coords, np.float64)[:4]
    return rect, inter.area / poly.area


def collate_det(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class RecDataset(Dataset):
    """Text-line crops as BGR arrays plus their transcript; :func:`collate_rec` does the resizing.

    ``augment`` > 0: each crop is varied (``rec_augment.augment_crop`` at that degradation level) by a generator
    seeded by (seed, epoch, index), so every epoch shows new variants and a resumed run the same ones."""

    def __init__(self, samples: Sequence[RecSample], augment: float = 0.0, seed: int = 0) -> None:
        self.samples = list(samples)
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
        sample = self.samples[index]
        if self.augment <= 0:
            return to_bgr_array(sample.image), sample.text
        rng = np.random.default_rng([self.seed, self.epoch, index])
        rgb = augment_crop(np.asarray(sample.image.convert("RGB")), rng, self.augment)
        return np.ascontiguousarray(rgb[:, :, ::-1]), sample.text


def rec_batch_width(crops: Sequence[np.ndarray], max_width: int, height: int = REC_HEIGHT) -> int:
    """The service's width bucket of the widest crop (crops wider than ``max_width`` get squeezed)."""
    return max(width_bucket(resized_width(c.shape[0], c.shape[1], height, max_width)) for c in crops)


def collate_rec(items: Sequence[tuple[np.ndarray, str]], max_width: int = 320,
                height: int = REC_HEIGHT) -> dict[str, object]:
    """Batch of crops at the service's height/normalisation, right-padded to one width bucket."""
    crops = [bgr for bgr, _ in items]
    width = rec_batch_width(crops, max_width, height)
    tensor = np.stack([normalize_crop(bgr, width, height) for bgr in crops])
    return {"image": torch.from_numpy(tensor), "texts": [text for _, text in items]}

"""Frozen-backbone recognizer finetuning on cached backbone features.

With the backbone frozen (and its BatchNorm in eval mode) its output for a given crop never changes, so it is
computed once per sample and every step trains only the neck and head on the cache. On a 2-core CPU the
backbone is most of a step's forward and all of its input preprocessing, so this is the difference between
hours and minutes for a real-data set of ~25,000 line crops.

Exactness: each crop is preprocessed exactly as the service does (its own width bucket, the service's
normalisation and zero right-padding) and the features are stored at that width. The service runs one width
bucket per call, and the backbone's squeeze-excite pooling and the neck's attention both see the whole width,
so training batches are made of one width too (:meth:`CachedRecTask.batch_order`); only the few leftovers of
each width are padded in feature space with the backbone's output for an all-padding input.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from service.vision.images import to_bgr_array
from service.vision.rec_preprocess import REC_HEIGHT, normalize_crop, resized_width, width_bucket
from training.data.samples import RecSample
from training.finetune.tasks import RecTask

log = logging.getLogger(__name__)


class HeadSide(nn.Module):
    """``model`` from the backbone's output on: ``head(neck(features))`` (shares the model's parameters)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: Tensor) -> Tensor:
        return self.model.head(self.model.neck(features))


def cache_key(backbone: nn.Module, crops: Sequence[np.ndarray], max_width: int, height: int) -> str:
    """Content hash of (backbone weights, crop pixels, preprocessing): a cache file is reused only for the
    very same inputs, whatever config or data source produced them."""
    digest = hashlib.sha1(f"{max_width}x{height}".encode())
    for name, tensor in backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    for crop in crops:
        digest.update(str(crop.shape).encode())
        digest.update(np.ascontiguousarray(crop).tobytes())
    return digest.hexdigest()[:20]


CACHE_CHUNK = 4096  # samples per cache file: configs that share a leading data source share its files


def backbone_features(backbone: nn.Module, samples: Sequence[RecSample], max_width: int,
                      batch_size: int = 64, height: int = REC_HEIGHT, progress: bool = True,
                      cache_dir: Path | None = None) -> list[Tensor]:
    """Per sample, the frozen backbone's output (C, 1, T) in float16, at the sample's own width bucket.

    With ``cache_dir`` the result is also kept on disk, in chunks of ``CACHE_CHUNK`` consecutive samples under a
    content hash each, so an ablation, a sweep or a config that adds data after the same first source pays for
    the backbone once."""
    crops = [to_bgr_array(s.image) for s in samples]
    if cache_dir is None:
        return _compute_features(backbone, crops, max_width, batch_size, height, progress)
    out: list[Tensor] = []
    for start in range(0, len(crops), CACHE_CHUNK):
        chunk = crops[start:start + CACHE_CHUNK]
        path = Path(cache_dir) / f"rec-features-{cache_key(backbone, chunk, max_width, height)}.pt"
        if path.is_file():
            log.info("backbone features of crops %d-%d from %s", start, start + len(chunk), path)
            out.extend(torch.load(path, weights_only=True))
            continue
        feats = _compute_features(backbone, chunk, max_width, batch_size, height, progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(feats, tmp)
        tmp.replace(path)
        out.extend(feats)
    return out


@torch.no_grad()
def _compute_features(backbone: nn.Module, crops: Sequence[np.ndarray], max_width: int, batch_size: int,
                      height: int, progress: bool) -> list[Tensor]:
    from tqdm import tqdm

    backbone.eval()
    widths = [width_bucket(resized_width(c.shape[0], c.shape[1], height, max_width)) for c in crops]
    out: list[Tensor | None] = [None] * len(crops)
    order = sorted(range(len(crops)), key=lambda i: widths[i])
    bar = tqdm(total=len(crops), desc="backbone features", disable=not progress, dynamic_ncols=True)
    start = 0
    while start < len(order):
        width = widths[order[start]]
        stop = start
        while stop < len(order) and stop - start < batch_size and widths[order[stop]] == width:
            stop += 1
        idx = order[start:stop]
        batch = torch.from_numpy(np.stack([normalize_crop(crops[i], width, height) for i in idx]))
        feats = backbone(batch).to(torch.float16)
        for row, i in enumerate(idx):
            out[i] = feats[row].clone()
        bar.update(len(idx))
        start = stop
    bar.close()
    return out  # type: ignore[return-value]


@torch.no_grad()
def padding_column(backbone: nn.Module, height: int = REC_HEIGHT, width: int = 320) -> Tensor:
    """The backbone's output (C, 1) for a column that sees only the service's zero padding."""
    backbone.eval()
    feats = backbone(torch.zeros(1, 3, height, width))
    return feats[0, :, :, feats.shape[-1] // 2].to(torch.float16)


class FeatureDataset(torch.utils.data.Dataset):
    """(cached features, transcript) pairs."""

    def __init__(self, features: Sequence[Tensor], texts: Sequence[str]) -> None:
        if len(features) != len(texts):
            raise ValueError("one feature tensor per text")
        self.features, self.texts = list(features), list(texts)

    def set_epoch(self, epoch: int) -> None:  # same interface as the image datasets
        pass

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[Tensor, str]:
        return self.features[index], self.texts[index]


def pad_features(feats: Sequence[Tensor], pad: Tensor, width: int | None = None) -> Tensor:
    """Stack (C,1,T_i) tensors right-padded with the padding column to the widest T (or ``width``)."""
    t_max = max([f.shape[-1] for f in feats] + [width or 0])
    rows = [torch.cat([f, pad[:, :, None].expand(-1, f.shape[1], t_max - f.shape[-1])], -1) for f in feats]
    return torch.stack(rows).float()


def collate_features(items: Sequence[tuple[Tensor, str]], pad: Tensor) -> dict[str, object]:
    return {"image": pad_features([f for f, _ in items], pad), "texts": [t for _, t in items]}


class CachedRecTask(RecTask):
    """A :class:`RecTask` whose training batches are cached backbone features (validation stays on images,
    through the whole model and the service's batching, so its numbers are comparable to every other run)."""

    def __init__(self, classes: Sequence[str], backbone: nn.Module, max_width: int = 320,
                 teacher_classes: Tensor | None = None, temperature: float = 2.0, progress: bool = True,
                 cache_dir: Path | None = None) -> None:
        super().__init__(classes, max_width, teacher_classes, temperature)
        self.backbone = backbone
        self.progress = progress
        self.cache_dir = cache_dir
        self.pad = padding_column(backbone)

    def dataset(self, samples: Sequence[RecSample], seed: int, training: bool = False) -> FeatureDataset:
        """Features are computed once, so nothing is varied (the config refuses rec_augment with a cache)."""
        feats = backbone_features(self.backbone, samples, self.max_width, progress=self.progress,
                                  cache_dir=self.cache_dir)
        return FeatureDataset(feats, [s.text for s in samples])

    @property
    def collate(self):
        return partial(collate_features, pad=self.pad)

    @staticmethod
    def batch_order(dataset: FeatureDataset, indices: Sequence[int], batch_size: int, epoch: int) -> list[int]:
        """``indices`` (a shuffled epoch) regrouped so each run of ``batch_size`` shares one feature width; the
        batches are then shuffled again (seeded by the epoch) so widths do not come in blocks."""
        by_width: dict[int, list[int]] = {}
        for i in indices:
            by_width.setdefault(int(dataset.features[i].shape[-1]), []).append(i)
        full, rest = [], []
        for group in by_width.values():
            cut = len(group) - len(group) % batch_size
            full += [group[k:k + batch_size] for k in range(0, cut, batch_size)]
            rest += group[cut:]
        rng = np.random.default_rng([epoch, len(indices)])
        order = rng.permutation(len(full))
        out = [i for k in order for i in full[k]]
        return out + rest  # the mixed leftovers come last, padded

    def concat_inputs(self, a: Tensor, b: Tensor) -> Tensor:
        """Source and target feature rows in one forward: the narrower side padded with the padding column."""
        width = max(a.shape[-1], b.shape[-1])
        return torch.cat([pad_features(list(a), self.pad.float(), width), pad_features(list(b), self.pad.float(),
                                                                                          width)])

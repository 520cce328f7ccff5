"""Finetune configs, data sources and datasets: train-time preprocessing is the service's own."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from finetune_helpers import rec_samples
from PIL import Image, ImageDraw
from pydantic import ValidationError

from service.vision.images import to_bgr_array
from service.vision.rec_preprocess import make_rec_batches, normalize_crop
from training.finetune.config import FinetuneConfig, load_config
from training.finetune.datasets import DetDataset, RecDataset, collate_det, collate_rec
from training.finetune.rec_augment import augment_crop
from training.finetune.runner import domain_characters, load_data, load_source

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "training" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_validate(path):
    cfg = load_config(path)
    assert cfg.task in {"det", "rec"} and cfg.data.train


def test_json_config_and_invalid_combinations(tmp_path):
    raw = {"task": "rec", "data": {"train": [{"kind": "synthetic", "domain": "plates", "n": 5}]},
           "transfer": {"freeze_backbone": True, "l2sp_lambda": 0.01}}
    (tmp_path / "c.json").write_text(json.dumps(raw))
    cfg = load_config(tmp_path / "c.json")
    assert cfg.transfer.freeze_backbone and cfg.transfer.freeze_bn_stats and cfg.optim.lr == 3e-5
    for bad in ({"task": "det", "transfer": {"charset_cut": True}},
                {"transfer": {"freeze_neck": True}},
                {"transfer": {"mixing": {"alpha": 1.5, "source": [{"kind": "synthetic", "domain": "ids"}]}}},
                {"data": {"train": [{"kind": "labels_jsonl"}]}},
                {"epochs": 0}, {"unknown_field": 1},
                {"data": {**raw["data"], "rec_augment": 0.5},  # cached (frozen) features cannot vary
                 "transfer": {"freeze_backbone": True, "cache_features": True}},
                {"transfer": {"freeze_backbone": True, "train_backbone_blocks": 2}}):
        with pytest.raises(ValidationError):
            FinetuneConfig.model_validate({**raw, **bad})


def _crop(w: int, h: int = 32) -> np.ndarray:
    rng = np.random.default_rng(w)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_collate_rec_is_the_service_preprocessing():
    crops = [_crop(60), _crop(150)]
    batch = collate_rec([(c, "x") for c in crops], max_width=320)
    service = make_rec_batches(crops, max_batch=8)  # the service puts them in buckets 160 and 240
    assert batch["image"].shape == (2, 3, 48, 240)
    for i, c in enumerate(crops):
        np.testing.assert_array_equal(batch["image"][i].numpy(), normalize_crop(c, 240))
    rows = {i: b.tensor[b.indices.index(i)] for b in service for i in b.indices}
    w = rows[0].shape[-1]
    np.testing.assert_array_equal(batch["image"][0, :, :, :w].numpy(), rows[0])
    squeezed = collate_rec([(_crop(900), "y")], max_width=320)["image"]
    assert squeezed.shape[-1] == 320


def _page(tmp_path: Path) -> Path:
    img = Image.new("RGB", (400, 300), "white")
    d = ImageDraw.Draw(img)
    d.text((50, 50), "TOTAL 12.50", fill="black")
    d.text((50, 150), "THANK YOU", fill="black")
    img.save(tmp_path / "page.png")
    rec = {"image": "page.png", "lines": [
        {"text": "TOTAL 12.50", "box": [[45, 45], [130, 45], [130, 65], [45, 65]]},
        {"text": "THANK YOU", "box": [45, 145, 120, 165]}]}
    (tmp_path / "labels.jsonl").write_text(json.dumps(rec) + "\n")
    return tmp_path


def test_labels_jsonl_source_gives_rec_crops_and_det_pages(tmp_path):
    from training.finetune.config import DataSource

    src = DataSource(kind="labels_jsonl", path=_page(tmp_path))
    rec_train, rec_val = load_source(src, "rec")
    assert [s.text for s in rec_train] == ["TOTAL 12.50", "THANK YOU"] and not rec_val
    assert rec_train[0].image.size[1] < 40
    det_train, _ = load_source(src, "det")
    assert len(det_train) == 1 and len(det_train[0].lines) == 2
    ds = DetDataset(det_train, size=128, seed=0)
    item = ds[0]
    assert item["image"].shape == (3, 128, 128) and item["shrink_map"].shape == (128, 128)
    assert float(item["shrink_map"].sum()) > 0  # the text-centred crop holds a line
    again = ds[0]
    assert all(torch.equal(item[k], again[k]) for k in item)  # same (seed, epoch, index) -> same crop
    batch = collate_det([item, again])
    assert batch["image"].shape == (2, 3, 128, 128) and batch["thresh_mask"].shape == (2, 128, 128)
    fatter = DetDataset(det_train, size=128, seed=0, shrink_ratio=0.6)[0]  # same crop, kernels shrunk less
    assert torch.equal(fatter["image"], item["image"])
    assert float(fatter["shrink_map"].sum()) > float(item["shrink_map"].sum())
    from training.finetune.tasks import DetTask

    assert DetTask(128, min_text_size=3.0).dataset(det_train, seed=0).min_text_size == 3.0


def test_synthetic_split_and_charset(tmp_path):
    cfg = FinetuneConfig.model_validate({
        "task": "rec", "data": {"train": [{"kind": "synthetic", "domain": "plates", "n": 40, "seed": 3}],
                                "val_fraction": 0.25},
        "transfer": {"mixing": {"alpha": 0.5, "source": [{"kind": "synthetic", "domain": "ids", "n": 3}]}}})
    train, val, source = load_data(cfg)
    assert len(train) + len(val) == 40 and 0 < len(val) < 40 and len(source) == 3
    assert {s.text for s in train}.isdisjoint({s.text for s in val}) or len(val) < 40
    chars = domain_characters(train, ["A", "B", "0"], extra="-")
    assert chars[:3] == [c for c in ["A", "B", "0"] if c in chars][:3] or chars
    assert "-" in chars and len(chars) == len(set(chars))
    assert isinstance(RecDataset(train)[0][0], np.ndarray)


def test_det_bundle_settings_are_the_bundles_own():
    """`data.det_bundle`: training crops at the scale the bundle reads at, validation on the polygons it returns."""
    from training.finetune.tasks import bundle_det_settings

    root = Path(__file__).resolve().parents[1] / "models"
    manifest = json.loads((root / "invoice" / "model.json").read_text())
    preprocess, post = bundle_det_settings(root / "invoice")
    assert preprocess.max_side_len == manifest["det_max_side"]
    assert post.output_unclip_ratio == manifest["det_output_unclip_ratio"]
    assert bundle_det_settings(None) == (None, None)


def test_augmented_crops_vary_per_epoch_keep_their_text_and_replay_the_same():
    samples = rec_samples(2)
    plain = RecDataset(samples)
    varied = RecDataset(samples, augment=0.6, seed=3)
    assert np.array_equal(plain[0][0], to_bgr_array(samples[0].image)) and plain[0][1] == samples[0].text
    first = varied[0]
    assert first[1] == samples[0].text and first[0].dtype == np.uint8 and first[0].shape[2] == 3
    assert np.array_equal(varied[0][0], first[0])  # same (seed, epoch, index): same variant (resume)
    varied.set_epoch(1)
    assert not np.array_equal(varied[0][0], first[0])  # a new epoch: a new variant
    # the box moves by a fraction of the crop height, never by whole characters
    rgb = np.asarray(samples[1].image.convert("RGB"))
    for k in range(20):
        out = augment_crop(rgb, np.random.default_rng(k), level=0.0)
        h, w = rgb.shape[:2]
        assert 0.9 * h <= out.shape[0] <= 1.3 * h + 1 and w - 0.06 * h - 1 <= out.shape[1] <= w + 0.3 * h + 1

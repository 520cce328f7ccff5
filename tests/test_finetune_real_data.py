"""Real-data finetuning pieces: cached backbone features, domain adaptation, service-style crops, the ablation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from finetune_helpers import config, rec_model, rec_samples
from PIL import Image, ImageDraw

from training.finetune.feature_cache import (
    CachedRecTask,
    HeadSide,
    backbone_features,
    pad_features,
    padding_column,
)
from training.finetune.losses import coral_distance, mmd_distance
from training.finetune.tasks import RecTask
from training.finetune.trainer import Trainer


# ------------------------------------------------------------------------------- cached features
def test_cached_features_give_the_same_logits_as_the_whole_model():
    model, _ = rec_model()
    model.eval()
    samples = rec_samples(3)
    feats = backbone_features(model.backbone, samples, max_width=160, progress=False)
    images = RecTask([""], max_width=160).collate([(np.asarray(s.image)[:, :, ::-1], s.text) for s in samples])
    with torch.no_grad():
        for f, s in zip(feats, samples):
            from service.vision.images import to_bgr_array
            from service.vision.rec_preprocess import normalize_crop, resized_width, width_bucket

            bgr = to_bgr_array(s.image)
            width = width_bucket(resized_width(bgr.shape[0], bgr.shape[1], 48, 160))
            direct = model(torch.from_numpy(normalize_crop(bgr, width))[None])
            cached = HeadSide(model)(f[None].float())
            torch.testing.assert_close(cached, direct, atol=2e-2, rtol=1e-2)  # fp16 storage
    assert images["image"].shape[0] == 3


def test_padding_column_is_the_backbone_output_of_an_all_padding_input():
    model, _ = rec_model()
    model.eval()
    pad = padding_column(model.backbone)
    with torch.no_grad():  # squeeze-excite pools the whole width: the column is taken at the same width
        same = model.backbone(torch.zeros(1, 3, 48, 320))
    torch.testing.assert_close(same[0, :, :, 20].to(torch.float16), pad, atol=1e-3, rtol=1e-3)
    short, long_ = torch.ones(pad.shape[0], 1, 3, dtype=torch.float16), torch.ones(pad.shape[0], 1, 5,
                                                                                 dtype=torch.float16)
    stacked = pad_features([short, long_], pad)
    assert stacked.shape == (2, pad.shape[0], 1, 5)
    torch.testing.assert_close(stacked[0, :, 0, 3], pad[:, 0].float())


def test_feature_cache_reuses_the_disk_copy_only_for_the_same_inputs(tmp_path):
    model, _ = rec_model()
    samples = rec_samples(2)
    first = backbone_features(model.backbone, samples, 160, progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("rec-features-*.pt"))) == 1
    again = backbone_features(model.backbone, samples, 160, progress=False, cache_dir=tmp_path)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    backbone_features(model.backbone, rec_samples(2, seed=5), 160, progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("rec-features-*.pt"))) == 2


def test_cached_training_moves_only_neck_and_head_and_lowers_the_loss(tmp_path):
    model, classes = rec_model()
    cfg = config("rec", tmp_path, max_steps=6, epochs=10,
                 transfer={"freeze_backbone": True, "cache_features": True})
    task = CachedRecTask(classes, model.backbone, max_width=160, progress=False)
    samples = rec_samples(4)
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    tr = Trainer(cfg, model, task, samples, forward_module=HeadSide(model))
    tr.fit()
    assert all(torch.equal(backbone[k], v) for k, v in model.backbone.state_dict().items())
    losses = [s["loss"] for s in tr.step_log]
    assert losses[-1] < losses[0]


def test_cache_features_needs_a_frozen_rec_backbone(tmp_path):
    with pytest.raises(ValueError, match="cache_features"):
        config("rec", tmp_path, transfer={"cache_features": True})


# ------------------------------------------------------------------------------- domain adaptation
def test_coral_is_zero_for_the_same_statistics_and_grows_with_a_shift():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, 8, generator=gen)
    assert float(coral_distance(a, a)) == pytest.approx(0.0, abs=1e-9)
    assert float(coral_distance(a, a + 3.0)) == pytest.approx(0.0, abs=1e-6)  # means do not count
    assert float(coral_distance(a, a * 3.0)) > 0.01
    assert float(coral_distance(a[:1], a[:1])) == 0.0


def test_mmd_separates_shifted_distributions():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(64, 8, generator=gen), torch.randn(64, 8, generator=gen)
    same, shifted = float(mmd_distance(a, b)), float(mmd_distance(a, b + 2.0))
    assert shifted > 10 * max(same, 1e-4)


@pytest.mark.parametrize("distance", ["coral", "mmd"])
def test_domain_adaptation_term_uses_target_rows_without_their_labels(tmp_path, distance):
    model, classes = rec_model()
    da = {"distance": distance, "lam": 2.0, "target": [{"kind": "synthetic", "domain": "receipts", "n": 4}]}
    cfg = config("rec", tmp_path, max_steps=2, transfer={"domain_adaptation": da})
    target = [type(s)(s.image, "not read") for s in rec_samples(4, seed=9)]
    tr = Trainer(cfg, model, RecTask(classes, max_width=160), rec_samples(4), target=target)
    model.eval()
    bt = tr.task.collate([tr.train_ds[i] for i in range(4)])
    bu = tr.task.collate([tr.target_ds[i] for i in range(4)])
    with torch.no_grad():
        parts = tr.compute_loss(bt, None, bu)
        alone = tr.task.loss(model(bt["image"]), bt)
    torch.testing.assert_close(parts["tgt"], alone, atol=1e-4, rtol=1e-4)  # the task loss sees labelled rows only
    assert float(parts["da"]) > 0
    torch.testing.assert_close(parts["loss"], parts["tgt"] + 2.0 * parts["da"])
    tr.fit()
    assert all("da" in s for s in tr.step_log)


# ------------------------------------------------------------------------------- crops
def _page(tmp_path):
    img = Image.new("RGB", (400, 200), "white")
    draw = ImageDraw.Draw(img)
    draw.text((40, 40), "TOTAL 12.50", fill="black")
    img.save(tmp_path / "page.png")
    record = {"image": "page.png", "lines": [{"text": "TOTAL 12.50", "box": [38, 38, 120, 52]},
                                              {"text": "###", "box": [10, 100, 50, 120]}], "fields": {}}
    (tmp_path / "labels.jsonl").write_text(json.dumps(record) + "\n")
    return tmp_path


def test_label_crops_grow_the_label_box_and_become_a_tsv_source(tmp_path):
    from training.data.loaders import load_records, read_labels_jsonl
    from training.data.service_crops import ServiceCropper, grown_label_quad

    data = _page(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    quad = grown_label_quad([(38, 38), (120, 38), (120, 52), (38, 52)])
    h = np.linalg.norm(quad[0] - quad[3])
    assert 14 * 1.2 < h < 14 * 1.6  # ~1.3x the label's height, like the service's crops
    stats = ServiceCropper().extract(read_labels_jsonl(data / "labels.jsonl"), tmp_path / "out", mode="label")
    assert (stats.images, stats.label_lines, stats.from_label) == (1, 2, 2)  # '###' text is still a line here
    rows = load_records(tmp_path / "out" / "labels.tsv")
    assert [r.text for r in rows][0] == "TOTAL 12.50"
    assert rows[0].rec_sample().image.size[1] > 14


def test_plate_similarity_is_alphanumeric_and_normalised():
    from training.data.service_crops import similarity

    assert similarity("ab-123", "AB123") == 1.0
    assert similarity("AB124", "AB123") == pytest.approx(0.8)
    assert similarity("", "AB123") == 0.0


@pytest.mark.parametrize("label,read,want", [
    ("TT703HW", "TT-703HW", "TT-703HW"),
    ("TT703HW", "tt·7O3 hw", "TT-703 HW"),   # an emblem read as '·' is a hyphen, a space stays a space
    ("DK7J8G", "DK7=JBG", "DK7-J8G"),        # the label's characters, the read's grouping
    ("RK875AE", "-RK-875AE-", "RK-875AE"),   # nothing before the first or after the last character
    ("AB123", "AB-1234", "AB123"),           # another character count: no grouping to take
])
def test_plate_label_takes_the_separators_the_recognizer_read(label, read, want):
    from training.data.service_crops import label_with_read_separators

    assert label_with_read_separators(label, read) == want


def test_plate_crops_are_read_by_the_reader_and_labelled_with_its_separators(tmp_path):
    """`--reader-model-dir`: the bundle that cuts the crops (its detector) need not be the one that reads them."""
    from types import SimpleNamespace

    from training.data.loaders import read_labels_jsonl
    from training.data.service_crops import ServiceCropper

    (tmp_path / "data").mkdir()
    Image.new("RGB", (200, 100), "white").save(tmp_path / "data" / "car.jpg")
    (tmp_path / "data" / "labels.jsonl").write_text(json.dumps(
        {"image": "car.jpg", "lines": [{"text": "TT703HW", "box": [40, 30, 160, 70]}], "fields": {"plate": "TT703HW"}}))
    quad = np.array([[50, 40], [150, 40], [150, 60], [50, 60]], np.float32)
    cutter = SimpleNamespace(detect=lambda images, det_limit=None: ([None], [SimpleNamespace(quads=[quad])]),
                             crops=lambda inp, det: [np.zeros((20, 100, 3), np.uint8)],
                             recognize=lambda crops: pytest.fail("the reader reads, not the cutter"))
    reader = SimpleNamespace(recognize=lambda crops: [SimpleNamespace(text="TT-7O3HW")])
    records = read_labels_jsonl(tmp_path / "data" / "labels.jsonl")
    stats = ServiceCropper(cutter, 0.5, True, reader).extract(records, tmp_path / "out", mode="plate")
    assert stats.matched == 1
    assert (tmp_path / "out" / "labels.tsv").read_text().split("\t")[1].strip() == "TT-703HW"


def test_a_plate_missed_at_the_bundle_resolution_is_cut_from_the_second_look(tmp_path):
    """A distant plate the first pass does not find is detected again at the profile's second-look limits, as the
    service reads it; without those limits the photo is skipped."""
    from types import SimpleNamespace

    from training.data.loaders import read_labels_jsonl
    from training.data.service_crops import ServiceCropper

    (tmp_path / "data").mkdir()
    Image.new("RGB", (200, 100), "white").save(tmp_path / "data" / "car.jpg")
    (tmp_path / "data" / "labels.jsonl").write_text(json.dumps(
        {"image": "car.jpg", "lines": [{"text": "DK2Z5S", "box": [40, 30, 160, 70]}], "fields": {"plate": "DK2Z5S"}}))
    plate = np.array([[50, 40], [150, 40], [150, 60], [50, 60]], np.float32)
    elsewhere = np.array([[0, 0], [30, 0], [30, 10], [0, 10]], np.float32)
    asked: list = []

    def detect(images, det_limit=None):
        asked.append(det_limit)
        return [None], [SimpleNamespace(quads=[plate if det_limit == (1280, "max") else elsewhere])]

    cutter = SimpleNamespace(detect=detect, crops=lambda inp, det: [np.zeros((20, 100, 3), np.uint8)],
                             recognize=lambda crops: [SimpleNamespace(text="DK2-Z5S")])
    records = read_labels_jsonl(tmp_path / "data" / "labels.jsonl")
    stats = ServiceCropper(cutter, 0.5, True, second_look=(1280, "max")).extract(records, tmp_path / "a", "plate")
    assert asked == [None, (1280, "max")]
    assert (stats.matched, stats.second_looks, stats.skipped_images) == (1, 1, 0)
    assert (tmp_path / "a" / "labels.tsv").read_text().split("\t")[1].strip() == "DK2-Z5S"
    stats = ServiceCropper(cutter, 0.5, True).extract(records, tmp_path / "b", "plate")
    assert (stats.matched, stats.skipped_images) == (0, 1)


def test_plate_spacing_table_counts_gaps_per_bin_and_smooths():
    from training.plate_spacing import spacing_table

    table = spacing_table([([1.0, 1.7, 1.0], {2}), ([1.0, 1.0, 1.3], set())], edges=(1.2, 1.6))
    assert table.separator == (0, 0, 1) and table.other == (4, 1, 0)
    assert table.log_lr[2] > 0 > table.log_lr[0]
    assert all(np.isfinite(table.log_lr))
    assert "| [1.6, inf) | 1 | 0 |" in table.markdown()


# ------------------------------------------------------------------------------- ablation
def test_ablation_modes_change_only_what_they_say(tmp_path):
    from training.ablation import MODES, mode_config
    from training.finetune.config import DataSource

    tsv = tmp_path / "crops.tsv"
    Image.new("RGB", (40, 10)).save(tmp_path / "a.png")
    tsv.write_text("".join(f"a.png\tA{i}\n" for i in range(10)))
    from training.finetune.config import DataConfig

    base = config("rec", tmp_path, max_steps=5)
    base = base.model_copy(update={"data": DataConfig(train=[DataSource(kind="tsv", path=tsv)], rec_max_width=160)})
    synth = [DataSource(kind="synthetic", domain="receipts", n=10)]
    made = {m: mode_config(base, m, synth, 1.0, tmp_path / m) for m in MODES if MODES[m] is not None}
    assert made["frozen"].transfer.freeze_backbone and made["frozen"].transfer.cache_features
    assert not made["full_lowlr"].transfer.freeze_backbone and made["full_lowlr"].transfer.backbone_lr_mult == 0.1
    assert made["l2sp"].transfer.l2sp_lambda > 0 and made["l2sp"].transfer.freeze_backbone
    assert made["mixing"].transfer.mixing.source[0].domain == "receipts"
    assert made["distill"].transfer.distill is not None
    assert made["synthetic"].data.train[0].kind == "synthetic" and made["synthetic"].transfer.domain_adaptation is None
    da = made["da"]
    assert da.data.train[0].kind == "synthetic" and da.transfer.domain_adaptation.target[0].kind == "tsv"
    assert {c.max_steps for c in made.values()} == {5}
    assert made["config"].transfer == base.transfer  # the base recipe as it is
    tenth = mode_config(base, "frozen", synth, 0.3, tmp_path / "f")
    assert (tenth.data.train[0].limit, tenth.data.train[0].limit_by) == (3, "hash")
    assert made["frozen"].data.train[0].limit is None


def test_ablation_modes_are_valid_from_a_recipe_that_trains_part_of_the_backbone_on_augmented_crops(tmp_path):
    """The shipped plate recipe trains the last 4 backbone blocks on crops varied per epoch: the cached modes
    freeze all of it and drop the augmentation, full_lowlr trains every block."""
    from training.ablation import MODES, mode_config
    from training.finetune.config import DataSource, load_config

    base = load_config("training/configs/plates_rec_real_aug.yaml")
    assert base.transfer.train_backbone_blocks == 4 and base.data.rec_augment > 0
    synth = [DataSource(kind="synthetic", domain="plates", n=10)]
    made = {m: mode_config(base, m, synth, 1.0, tmp_path / m) for m in MODES if MODES[m] is not None}
    for mode in ("frozen", "l2sp", "mixing", "distill", "synthetic", "da"):
        assert made[mode].transfer.train_backbone_blocks is None and made[mode].data.rec_augment == 0
    assert made["full_lowlr"].transfer.train_backbone_blocks is None and not made["full_lowlr"].transfer.freeze_backbone
    assert made["full_lowlr"].data.rec_augment == base.data.rec_augment
    assert made["config"].transfer == base.transfer
    assert base.transfer.mixing is not None  # the recipe mixes in synthetic plates; only the mixing mode does
    assert {m for m, c in made.items() if c.transfer.mixing is not None} == {"mixing", "config"}


def test_ablation_bundle_keeps_every_file_of_the_template_but_the_recognizer(tmp_path):
    """The swapped-recognizer copy of a bundle written elsewhere still finds the template's detector, lexicon and
    line models (models/invoice names all of them), and no CPU recognizer of the template stands in for the new one."""
    from service.model_bundle import ModelBundle
    from training.ablation import bundle_with_rec

    template = tmp_path / "invoice"
    template.mkdir()
    shipped = json.loads(Path("models/invoice/model.json").read_text())
    for key, name in shipped.items():
        if key in ("lexicon", "line_split_model", "line_join_model"):
            (template / name).write_bytes((Path("models/invoice") / name).read_bytes())
    (template / "model.json").write_text(json.dumps({
        **shipped, "rec_cpu": "cpu_rec.onnx",
        **{k: str(Path("models/invoice", shipped[k]).resolve()) for k in ("det", "det_cpu")}}))
    (template / "cpu_rec.onnx").write_bytes(b"x")
    rec_dir = tmp_path / "export"
    rec_dir.mkdir()
    (rec_dir / "rec.onnx").write_bytes(b"onnx")
    (rec_dir / "charset.json").write_text(json.dumps({"characters": ["A"]}))
    bundle = ModelBundle(bundle_with_rec(template, rec_dir, tmp_path / "elsewhere" / "bundle"))
    assert bundle.rec_path == rec_dir / "rec.onnx" and bundle.rec_cpu_path is None
    assert bundle.lexicon_path == template / "lexicon.json"
    assert bundle.line_split_path == template / shipped["line_split_model"]
    assert bundle.det_cpu_path == Path("models/base/det_int8.onnx").resolve()


def test_ablation_reuses_only_finished_runs_of_the_same_config(tmp_path, monkeypatch):
    """--reuse-runs: a mode that trained to the end with this config is evaluated again without training; a run
    killed part way, or one trained with another step budget, trains again."""
    from training import ablation
    from training.finetune.config import DataSource

    calls: list[str] = []

    def fake_run(args, log_path):
        calls.append(args[0])
        if args[0] == "finetune":
            run_dir = Path(args[2]).parent
            (run_dir / "export").mkdir()
            (run_dir / "export" / "rec.onnx").write_bytes(b"onnx")
            (run_dir / "train_summary.json").write_text(json.dumps(
                {"train_samples": 3, "steps": 5, "fit_seconds": 2.0, "setup_seconds": 0.1, "best_step": 5,
                 "last_val": {}}))
        else:
            Path(args[args.index("--json") + 1]).write_text(json.dumps({"b": [{"metrics": {"e2e_recall": 0.5}}]}))

    monkeypatch.setattr(ablation, "_run", fake_run)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text(json.dumps({"name": "b", "det": "det.onnx", "rec": "rec.onnx"}))
    synth = [DataSource(kind="synthetic", domain="receipts", n=10)]
    root = tmp_path / "abl"

    def run(max_steps: int, reuse: bool) -> list[str]:
        calls.clear()
        res = ablation.run_mode(config("rec", tmp_path, max_steps=max_steps), "frozen", synth, 1.0, root, bundle,
                                tmp_path, "receipts", reuse=reuse)
        assert res.steps == 5 and res.metrics["dev"] == {"e2e_recall": 0.5}
        return calls[:]

    assert run(5, reuse=True) == ["finetune", "evaluate"]  # nothing to reuse yet
    assert run(5, reuse=True) == ["evaluate"]
    assert run(6, reuse=True) == ["finetune", "evaluate"]  # another step budget: trained again
    (root / "frozen@1" / "train_summary.json").unlink()  # killed part way
    assert run(6, reuse=True) == ["finetune", "evaluate"]
    assert run(6, reuse=False) == ["finetune", "evaluate"]


def test_ablation_set_overrides_the_base_config_of_every_mode(tmp_path, monkeypatch):
    from training import ablation

    seen = []
    monkeypatch.setattr(ablation, "run_mode", lambda base, mode, *a, **k: seen.append(
        (mode, base.eval_every_steps, base.max_steps)) or ablation.ModeResult(mode, 1.0))
    (tmp_path / "receipts").mkdir()
    (tmp_path / "receipts" / "labels.jsonl").write_text("")
    assert ablation.main(["--config", "training/configs/receipts_rec_real.yaml", "--synthetic-domain", "receipts",
                          "--bundle", "models/invoice", "--domain", "receipts", "--data", str(tmp_path),
                          "--modes", "frozen,l2sp", "--max-steps", "2000", "--set", "eval_every_steps=500",
                          "--out", str(tmp_path / "abl")]) == 0
    assert seen == [("frozen", 500, 2000), ("l2sp", 500, 2000)]


def test_learning_curve_subsets_are_hashed_nested_and_not_the_first_rows(tmp_path):
    """A crop list sorted by region (all BR plates first) must not give a 10 % curve point of BR plates only."""
    from training.data.loaders import read_crop_list
    from training.data.splits import hashed_subset
    from training.finetune.config import DataSource
    from training.finetune.runner import load_source

    tsv = tmp_path / "crops.tsv"
    names = [f"{region}_{i:03d}.png" for region in ("br", "eu", "us") for i in range(40)]
    for k, name in enumerate(names):
        Image.new("RGB", (40, 10), (k, k, k)).save(tmp_path / name)
    tsv.write_text("".join(f"{name}\tP{k}\n" for k, name in enumerate(names)))
    rows = read_crop_list(tsv)
    small, large = hashed_subset(rows, 12), hashed_subset(rows, 36)
    assert len(small) == 12 and set(map(id, small)) <= set(map(id, large))
    assert {r.path.name[:2] for r in small} == {"br", "eu", "us"}
    assert [r.path.name for r in hashed_subset(read_crop_list(tsv), 12)] == [r.path.name for r in small]
    first, _ = load_source(DataSource(kind="tsv", path=tsv, limit=12), "rec", 0.0, 0)
    hashed, _ = load_source(DataSource(kind="tsv", path=tsv, limit=12, limit_by="hash"), "rec", 0.0, 0)
    assert [x.text for x in first] == [f"P{k}" for k in range(12)]
    assert sorted(x.text for x in hashed) == sorted(r.text for r in small)


def test_cached_batches_share_one_width_except_the_leftovers():
    feats = [torch.zeros(4, 1, t, dtype=torch.float16) for t in [10] * 7 + [20] * 5 + [30] * 2]
    ds = __import__("training.finetune.feature_cache", fromlist=["FeatureDataset"]).FeatureDataset(
        feats, ["x"] * len(feats))
    order = CachedRecTask.batch_order(ds, list(range(len(feats)))[::-1], 3, epoch=0)
    assert sorted(order) == list(range(len(feats)))
    batches = [order[k:k + 3] for k in range(0, 9, 3)]  # 2 full batches of width 10, 1 of width 20
    for b in batches:
        assert len({feats[i].shape[-1] for i in b}) == 1
    assert order != CachedRecTask.batch_order(ds, list(range(len(feats)))[::-1], 3, epoch=1) or len(batches) < 2


def test_ablation_table_and_learning_curve(tmp_path):
    from training.ablation import ModeResult, plot_curve, render

    rows = [ModeResult("pretrained", 0.0, metrics={"dev": {"plate_exact": 0.6}}),
            ModeResult("frozen", 0.1, 25, 100, 10.0, {"dev": {"plate_exact": 0.7}}),
            ModeResult("frozen", 1.0, 249, 100, 20.0, {"dev": {"plate_exact": 0.8}, "best_step": 0})]
    table = render(rows, "plates")
    assert "| frozen | 100% of real | 249 | 100 | 0 | 20 | 5.00 | 80.0% |" in table
    assert table.splitlines()[2].startswith("| pretrained | none | - |")
    pytest.importorskip("matplotlib")
    png = plot_curve(rows, "plate_exact", tmp_path / "curve.png", "plates")
    assert Image.open(png).size[0] > 300


def test_readme_finetune_commands_parse(tmp_path, capsys):
    """The README's finetune block: every subcommand and flag it uses exists, and its config loads."""
    from training.cli import main
    from training.finetune.config import load_config

    for argv in (["crops", "--help"], ["finetune", "--help"], ["evaluate", "--help"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--mode", "label", "--set", "--model-dir", "--domains"):
        assert flag in out
    cfg = load_config("training/configs/receipts_rec_real.yaml")
    assert cfg.transfer.freeze_backbone and cfg.transfer.cache_features

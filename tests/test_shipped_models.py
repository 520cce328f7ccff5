"""The shipped models/ layout: every profile resolves to a loadable bundle, domain bundles share files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.api.config import Settings
from service.api.engine import resolve_profile_dirs
from service.model_bundle import ModelBundle
from service.profiles import PROFILES

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_every_profile_resolves_to_its_shipped_bundle():
    dirs = resolve_profile_dirs(Settings(model_dir=MODELS / "base", models_root=MODELS), list(PROFILES))
    assert {name: d.name for name, d in dirs.items()} == {
        "generic": "base", "invoice": "invoice", "id": "id", "plate": "plate"}
    bundles = {name: ModelBundle(d) for name, d in dirs.items()}
    base_det = (MODELS / "base" / "det.onnx").resolve()
    assert all(b.det_path == base_det for b in bundles.values())  # one detector file on disk
    assert bundles["invoice"].rec_path == (MODELS / "receipts_rec" / "rec.onnx").resolve()
    assert bundles["id"].rec_path == (MODELS / "domains" / "rec.onnx").resolve()
    assert bundles["plate"].rec_path == (MODELS / "plate_rec" / "rec.onnx").resolve()
    for rec in ("domains", "plate_rec"):  # finetuned parts on the one shipped backbone
        spec = json.loads((MODELS / rec / "rec.onnx.shared.json").read_text())
        assert (MODELS / rec / spec["base"]).resolve() == bundles["generic"].rec_path == (MODELS / "base" / "rec.onnx").resolve()
    # the receipts recognizer's backbone was finetuned too: a whole model, its weights int8-stored (< 4 MB)
    assert not (MODELS / "receipts_rec" / "rec.onnx.shared.json").exists()
    assert (MODELS / "receipts_rec" / "rec.onnx").stat().st_size < 4e6


def test_domain_recognizer_covers_the_domain_alphabets():
    for bundle in ("invoice", "id"):
        classes = ModelBundle(MODELS / bundle).classes
        assert classes[0] == "" and len(classes) < 200  # cut head: blank + the domains' characters
        for text in ("P<UTOERIKSSON<<ANNA<MARIA", "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
                     "TOTAL RM 1,234.56", "12/03/2018", "ABC-1234"):
            assert set(text) <= set(classes[1:]), (bundle, text)


def test_every_shipped_model_dir_has_a_card_with_its_command_and_metrics():
    for manifest in sorted(MODELS.glob("*/model.json")):
        card = manifest.parent / "MODEL_CARD.md"
        assert card.is_file(), f"{manifest.parent.name} has no MODEL_CARD.md"
        text = card.read_text(encoding="utf-8")
        assert "## Command" in text and "## Metrics" in text and "python -m training" in text, card


def test_only_the_invoice_bundle_returns_text_hugging_boxes_and_its_pipeline_uses_them():
    from service.pipeline import OcrPipeline

    ratios = {m.parent.name: ModelBundle(m.parent).manifest.det_output_unclip_ratio
              for m in sorted(MODELS.glob("*/model.json"))}
    assert ratios == {"base": None, "domains": None, "id": None, "invoice": 1.3, "plate": None, "plate_rec": None,
                      "receipts_rec": None}
    config = OcrPipeline.from_dir(MODELS / "invoice", providers=["cpu"], intra_threads=1).db_config
    assert (config.unclip_ratio, config.output_unclip_ratio) == (1.6, 1.3)  # crops keep the recognizer's margin


def test_the_plate_bundle_reads_the_readme_samples_with_their_formats():
    """The plate recognizer writes no separator on these two samples; the plate profile takes the grouping from the
    characters' spacing (service.profiles.plate_layouts.SPACING_LOG_LR), so the Slovak plate is not called French."""
    from PIL import Image

    from service.pipeline import OcrPipeline

    pipeline = OcrPipeline.from_dir(MODELS / "plate", providers=["cpu"], intra_threads=1)
    examples = MODELS.parent / "examples" / "plates"
    got = {}
    for name in ("plate-eu.jpg", "plate-br.jpg"):
        data = (examples / name).read_bytes()
        fields = PROFILES["plate"].extract_fields(pipeline.read(data), Image.open(examples / name).size)
        got[name] = (fields["plate"], fields["plate_display"], fields["country_guess"], fields["format"])
    assert got == {"plate-eu.jpg": ("TT703HW", "TT-703HW", "SK", "LL-DDDLL"),
                   "plate-br.jpg": ("JGC7040", "JGC-7040", "BR", "LLL-DDDD")}


def test_the_invoice_lexicon_is_the_train_receipts_words_seen_twice(shared_data_dir, tmp_path):
    """models/invoice/lexicon.json rebuilds from the TRAIN labels alone (no images), as its card says."""
    from training.lexicon import main

    labels = shared_data_dir / "train" / "receipts" / "labels.jsonl"
    if not labels.is_file():
        pytest.skip(f"{labels} not found")
    assert main(["--labels", str(labels), "--out", str(tmp_path / "lexicon.json")]) == 0
    shipped = json.loads((MODELS / "invoice" / "lexicon.json").read_text(encoding="utf-8"))
    assert json.loads((tmp_path / "lexicon.json").read_text(encoding="utf-8"))["words"] == shipped["words"]
    assert ModelBundle(MODELS / "invoice").lexicon_path == (MODELS / "invoice" / "lexicon.json").resolve()

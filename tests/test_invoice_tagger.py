"""Learned receipt field tagger: a tiny model trained on TRAIN-like pages picks the right words, its JSON file
round-trips, the invoice profile falls back to its rules without the file (or for a field the tagger does not
find), bundles and the evaluation bind it, and serving it imports neither torch nor scikit-learn."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from profile_lines import column, line

from service.profiles import get_profile
from service.profiles.base import LineBox, line_boxes
from service.profiles.invoice import InvoiceProfile
from service.profiles.invoice_tagger import (
    FieldTagger,
    correct_suffix,
    decode_field,
    decode_span,
    features,
)

pytest.importorskip("rapidfuzz")  # training-side alignment (the `train` extra)

from training.fields.data import align_field, labelled_page, noisy_copy
from training.fields.train import TrainConfig, field_scores, train

ROOT = Path(__file__).resolve().parents[1]
TRAIN_NAMES = ["ALPHA", "BRAVO", "CEDAR", "DELTA", "EMBER", "FALCON", "GARNET", "HARBOR", "IVORY", "JASPER",
               "KESTREL", "LUMEN", "MAPLE", "NOVA", "ONYX", "PIKE", "QUARTZ", "RAVEN"]
TEST_NAMES = ["SIERRA", "TUNDRA", "UMBER", "VIOLET", "WILLOW", "XENON", "YARROW", "ZEPHYR"]


def _page(rng: random.Random, names: list[str]) -> tuple[list[str], str, str]:
    """A receipt's lines top to bottom, its company and its address (Malaysian-style, like SROIE)."""
    company = f"{rng.choice(names)} {rng.choice(names)} " + rng.choice(["SDN BHD", "SDN. BHD.", "ENTERPRISE", "S/B"])
    reg = f"({rng.randint(100000, 999999)}-{rng.choice('ABCDKMUWX')})"
    address = [f"NO. {rng.randint(1, 99)}, JALAN {rng.choice(names)} {rng.randint(1, 9)}/{rng.randint(1, 9)},",
               f"TAMAN {rng.choice(names)},", f"{rng.randint(10000, 99999)} {rng.choice(names)}, SELANGOR"]
    lines = [rng.choice(names) + " CAFE"] if rng.random() < 0.4 else []
    lines += [f"{company} {reg}"] if rng.random() < 0.5 else [company, reg]
    lines += address[:rng.randint(2, 3)]
    lines += [f"TEL: 03-{rng.randint(1000, 9999)} {rng.randint(1000, 9999)}", "GST ID: 000123456789",
              "TAX INVOICE", f"DATE: {rng.randint(1, 28):02d}/0{rng.randint(1, 9)}/2018"]
    lines += [f"{rng.choice(names)} ITEM {rng.randint(1, 9)} {rng.randint(1, 40)}.{rng.randint(10, 99)}"
              for _ in range(rng.randint(2, 6))]
    lines += [f"TOTAL {rng.randint(10, 99)}.00", "THANK YOU"]
    n_address = sum(1 for t in lines if t in address)
    return lines, company, " ".join(address[:n_address])


def _labelled(rng: random.Random, names: list[str], n: int):
    pages = []
    for k in range(n):
        texts, company, address = _page(rng, names)
        boxes = line_boxes(column(texts))
        page = labelled_page(f"p{k}", boxes, {"company": company, "address": address})
        assert page is not None
        pages.append(page)
    return pages


@pytest.fixture(scope="module")
def tagger() -> FieldTagger:
    cfg = TrainConfig(noisy_copies=1, vocab_size=40, min_df=3, hidden=16, epochs=30, batch=64, lr=1e-2)
    return train(_labelled(random.Random(0), TRAIN_NAMES, 80), cfg)


def test_decode_span_is_the_best_positive_run() -> None:
    assert decode_span(np.array([-1.0, 2.0, -0.5, 3.0, -4.0, 1.0])) == (1, 4)
    assert decode_span(np.array([-1.0, -2.0])) is None
    assert decode_span(np.array([])) is None


def test_align_field_finds_the_words_of_a_label_typed_apart() -> None:
    words = ["99", "SPEED", "MART", "S/B", "(519537-X)", "LOT", "P.T.", "2811,", "JALAN", "ANGSA,"]
    assert align_field(words, "99 SPEED MART S/B") == (0, 4)
    assert align_field(words, "LOT P.T. 2811,JALAN ANGSA") == (5, 10)
    assert align_field(words, "SOMETHING ELSE ENTIRELY") is None


def test_trained_tagger_picks_company_and_address_of_unseen_shops(tagger: FieldTagger) -> None:
    rng = random.Random(1)
    held_out = _labelled(rng, TEST_NAMES, 30)
    learned = field_scores(held_out, InvoiceProfile(tagger))
    assert learned["company"] >= 0.9 and learned["address"] >= 0.9, learned
    noisy = field_scores([noisy_copy(p, rng, p_char=0.0) for p in held_out], InvoiceProfile(tagger))
    assert noisy["company"] >= 0.8 and noisy["address"] >= 0.7, noisy


def test_registration_number_on_the_company_line_is_left_out(tagger: FieldTagger) -> None:
    lines = column(["SIERRA TUNDRA SDN BHD (123456-K)", "NO. 5, JALAN UMBER 2/3,", "TAMAN VIOLET,",
                    "47100 WILLOW, SELANGOR", "TEL: 03-1234 5678", "TAX INVOICE", "DATE: 01/02/2018",
                    "XENON ITEM 1 12.50", "TOTAL 12.50"])
    f = InvoiceProfile(tagger).extract_fields(lines, (640, 900))
    assert f["company"] == "SIERRA TUNDRA SDN BHD"
    assert f["address"] == "NO. 5, JALAN UMBER 2/3, TAMAN VIOLET, 47100 WILLOW, SELANGOR"
    assert f["total"] == "12.50" and f["date"] == "2018-02-01"  # still the rules


def test_json_round_trip_is_small_and_predicts_the_same(tagger: FieldTagger, tmp_path: Path) -> None:
    path = tmp_path / "fields.json"
    tagger.save(path)
    again = FieldTagger.load(path)
    boxes = line_boxes(column(_page(random.Random(5), TEST_NAMES)[0]))
    _, X = features(boxes, again.vocab)
    assert np.allclose(again.probabilities(X), tagger.probabilities(X), atol=2e-2)
    assert again.tag(boxes) == tagger.tag(boxes)
    spec = json.loads(path.read_text())
    spec["w1"]["shape"] = [3, 3]
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="fields.json"):
        FieldTagger.load(path)


def test_rules_fill_a_field_the_tagger_does_not_find(tagger: FieldTagger) -> None:
    no_address = FieldTagger(list(tagger.vocab), tagger.mean, tagger.std, tagger.w1, tagger.b1, tagger.w2,
                             tagger.b2 + np.array([0.0, 0.0, -100.0], np.float32))
    texts = ["SIERRA TUNDRA ENTERPRISE (12345-A)", "NO. 5, JALAN UMBER 2/3,", "TAMAN VIOLET,", "TEL: 03-1234 5678"]
    assert no_address.tag(line_boxes(column(texts)))["address"] is None
    f = InvoiceProfile(no_address).extract_fields(column(texts), (640, 900))
    assert f["address"] == get_profile("invoice").extract_fields(column(texts), (640, 900))["address"]
    assert f["address"] == "NO. 5, JALAN UMBER 2/3, TAMAN VIOLET,"
    assert f["company"] == "SIERRA TUNDRA ENTERPRISE"  # learned: the tagger leaves the number out


def test_company_is_the_likeliest_line_even_below_one_half() -> None:
    log_odds = np.array([-1.0, -0.6, -0.9, -3.0, -2.5, -4.0])
    line_of = np.array([0, 0, 0, 1, 1, 2])
    assert decode_field(log_odds, line_of) is None  # the address: no word is likelier in than out
    assert decode_field(log_odds, line_of, always=True) == (0, 3)  # the company: the best line's run
    assert decode_field(np.array([-1.0, 2.0, -5.0]), np.array([0, 0, 1]), always=True) == (1, 2)


def test_misread_legal_suffix_is_corrected_from_training_endings() -> None:
    suffixes = {"SDN BHD": 200, "SDN. BHD.": 10, "BHD": 250, "BHD.": 12, "S/B": 40, "ENTERPRISE": 12}
    assert correct_suffix(["RAPID", "RAIL", "SUN", "BHD"], suffixes) == ["RAPID", "RAIL", "SDN", "BHD"]
    assert correct_suffix(["SKCA", "TIMBER", "SDN.", "BHDL"], suffixes) == ["SKCA", "TIMBER", "SDN.", "BHD."]
    assert correct_suffix(["SKCA", "TIMBER", "SON.", "BHD.L"], suffixes) == ["SKCA", "TIMBER", "SDN.", "BHD."]
    assert correct_suffix(["SUPER", "CARRY", "SDN", "3HD"], suffixes) == ["SUPER", "CARRY", "SDN", "BHD"]
    assert correct_suffix(["KEDAI", "ENTERPRlSE"], suffixes) == ["KEDAI", "ENTERPRISE"]
    for kept in ("WESTERN STATIONERY SDN.BHD", "ACME SDN. BHD", "SUN", "SUN FLOWER"):  # punctuation, short, unknown
        assert correct_suffix(kept.split(), suffixes) == kept.split()


def _bundle(tmp_path: Path, extra: dict) -> Path:
    (tmp_path / "model.json").write_text(json.dumps({"name": "invoice", "version": "t", **extra}))
    return tmp_path


def test_profile_falls_back_to_rules_without_the_file(tagger: FieldTagger, tmp_path: Path) -> None:
    rules = get_profile("invoice")
    assert rules.for_model_dir(tmp_path / "absent") is rules
    assert rules.for_model_dir(_bundle(tmp_path, {})) is rules
    tagger.save(tmp_path / "fields.json")
    bound = rules.for_model_dir(_bundle(tmp_path, {"fields_model": "fields.json"}))
    assert isinstance(bound, InvoiceProfile) and bound.tagger is not None and rules.tagger is None
    with pytest.raises(ValueError, match="missing.json"):
        rules.for_model_dir(_bundle(tmp_path, {"fields_model": "missing.json"}))
    assert get_profile("plate").for_model_dir(tmp_path) is get_profile("plate")
    (tmp_path / "plate").mkdir()
    picker = _bundle(tmp_path / "plate", {"fields_model": "picker.json"})
    (picker / "picker.json").write_text(json.dumps({"format": "ocrnet-plate-picker/1"}), encoding="utf-8")
    assert rules.for_model_dir(picker) is rules  # another profile's model in a bundle serving both: left alone


def test_evaluation_scores_with_the_bundles_tagger(tagger: FieldTagger, tmp_path: Path) -> None:
    from training.evaluation.run import domain_profile

    tagger.save(tmp_path / "fields.json")
    assert domain_profile("receipts", _bundle(tmp_path, {"fields_model": "fields.json"})).tagger is not None
    assert domain_profile("receipts", tmp_path / "absent") is get_profile("invoice")
    assert domain_profile("receipts") is get_profile("invoice")


def test_shipped_tagger_file_reads_a_receipt(tmp_path: Path) -> None:
    shipped = ROOT / "models" / "invoice" / "fields.json"
    assert shipped.stat().st_size < 200_000
    (tmp_path / "fields.json").write_bytes(shipped.read_bytes())
    profile = get_profile("invoice").for_model_dir(_bundle(tmp_path, {"fields_model": "fields.json"}))
    texts = ["UNIHAKKA INTERNATIONAL SDN BHD", "(867388-U)", "12, JALAN TAMPOI 7/4,KAWASAN PERINDUSTRIAN",
             "TAMPOI,81200 JOHOR BAHRU,JOHOR", "TEL: 07-2361 688", "TAX INVOICE", "DATE: 10/03/2018 18:24",
             "1 MEAT + 3 VEGE"]
    lines = column(texts) + [line("TOTAL", 50, 300, 110, 320), line("$7.10", 300, 300, 360, 320)]
    f = profile.extract_fields(lines, (640, 900))
    assert f["company"] == "UNIHAKKA INTERNATIONAL SDN BHD"
    assert f["address"] == "12, JALAN TAMPOI 7/4,KAWASAN PERINDUSTRIAN TAMPOI,81200 JOHOR BAHRU,JOHOR"


def test_serving_the_tagger_imports_neither_torch_nor_sklearn() -> None:
    code = ("import sys\n"
            "from service.api.app import create_app\n"
            "from service.profiles.base import LineBox\n"
            "from service.profiles.invoice import InvoiceProfile\n"
            "from service.profiles.invoice_tagger import FieldTagger\n"
            "p = InvoiceProfile(FieldTagger.load('models/invoice/fields.json'))\n"
            "p.tagger.tag([LineBox('ACME SDN BHD', 1.0, 0, 0, 100, 10, 0)])\n"
            "bad = [m for m in ('torch', 'sklearn', 'rapidfuzz', 'training') if m in sys.modules]\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr


def test_features_handle_empty_and_degenerate_pages(tagger: FieldTagger) -> None:
    assert tagger.tag([]) == {"company": None, "address": None}
    flat = [LineBox("A", 1.0, 0, 0, 0, 0, 0), LineBox("B C", 1.0, 0, 0, 0, 0, 1)]
    words, X = features(flat, tagger.vocab)
    assert len(words) == 3 and np.isfinite(X).all()


def test_engine_binds_the_bundles_tagger_to_its_profiles(tagger: FieldTagger, tmp_path: Path,
                                                         base_model_dir: Path) -> None:
    import asyncio

    from service.api.config import Settings
    from service.api.engine import Engine
    from service.api.metrics import Metrics

    invoice = tmp_path / "invoice"
    invoice.mkdir()
    tagger.save(invoice / "fields.json")
    _bundle(invoice, {"det": str(base_model_dir / "det.onnx"), "rec": str(base_model_dir / "rec.onnx"),
                      "charset": str(base_model_dir / "charset.json"), "fields_model": "fields.json"})
    engine = Engine(Settings(model_dir=base_model_dir, models_root=tmp_path, warmup=False), Metrics())
    asyncio.run(engine._load())
    try:
        assert engine.ready, engine.error
        assert engine.profile_impls["invoice"].tagger is not None
        assert engine.profile_impls["plate"] is get_profile("plate") and get_profile("invoice").tagger is None
        assert len(engine.by_profile["invoice"].sha256["fields_model"]) == 64
    finally:
        asyncio.run(engine.close())

    (invoice / "fields.json").write_text("{}")
    broken = Engine(Settings(model_dir=base_model_dir, models_root=tmp_path, warmup=False), Metrics())
    asyncio.run(broken._load())  # a bad tagger file: not ready, one clear error, no crash
    assert not broken.ready and "fields.json" in (broken.error or "")
    asyncio.run(broken.close())

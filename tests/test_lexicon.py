"""Lexicon corrections: an unknown word becomes a lexicon word only through the recogniser's own close
alternatives; ``ocrnet lexicon`` builds the word list from labels alone."""
from __future__ import annotations

import json

import pytest

from service.vision.ctc import CharEvidence, Decoded
from service.vision.lexicon import Lexicon

LEXICON = Lexicon.from_words(["RECEIVED", "OFF", "JALAN", "TOTAL", "SDN", "SEN"])


def _decoded(text: str, alts: dict[int, list[tuple[str, float]]] | None = None, p: float = 0.9) -> Decoded:
    """Every character read at probability ``p``; ``alts``: extra alternatives by position."""
    alts = alts or {}
    chars = tuple(CharEvidence(((c, p), *alts.get(i, [])), 2 * i, 2 * i) for i, c in enumerate(text))
    return Decoded(text, p, tuple(p for _ in text), chars)


def test_an_unknown_word_becomes_the_lexicon_word_its_close_alternative_spells():
    d = _decoded("RECSIVED CASH", {3: [("E", 0.3)]})
    out = LEXICON.correct(d)
    assert out.text == "RECEIVED CASH"
    assert out.chars[3].alternatives[0] == ("E", 0.3) and ("S", 0.9) in out.chars[3].alternatives
    assert out.char_confidences[3] == 0.3 and out.confidence == pytest.approx(sum(out.char_confidences) / 13)
    assert [c.char for c in out.chars] == list(out.text)  # evidence stays aligned with the text


def test_case_follows_the_read_character():
    assert LEXICON.correct(_decoded("CFF JALAN", {0: [("o", 0.2)]})).text == "OFF JALAN"


@pytest.mark.parametrize("text,alts", [
    ("RECSIVED", {3: [("E", 0.05)]}),                 # the alternative is far (under a tenth of 0.9)
    ("RECSIVED", {}),                                  # no alternative at all
    ("TOTAL", {0: [("I", 0.8)]}),                      # a known word is never changed
    ("OF", {1: [("N", 0.8)]}),                         # too short to judge
    ("SBN", {1: [("D", 0.4), ("E", 0.4)]}),            # SDN and SEN equally cheap: keep the read
    ("RECSIVXD", {3: [("E", 0.3)]}),                   # one change is not enough, the other has no alternative
])
def test_no_change_without_one_clear_rewrite(text, alts):
    d = _decoded(text, alts)
    assert LEXICON.correct(d) is d


def test_lines_without_evidence_are_left_alone():
    d = Decoded("RECSIVED", 0.9, (0.9,) * 8, ())
    assert LEXICON.correct(d) is d


def test_lexicon_file_round_trip_and_builder(tmp_path, capsys):
    from training.lexicon import count_words, main

    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(json.dumps({"image": f"{i}.jpg", "lines": [{"text": t}]}) for i, t in enumerate(
        ["Total 12.00", "TOTAL 3.00", "received cash", "RECEIVED"])))
    assert count_words(["a b", "A"]) == {"A": 2, "B": 1}
    assert main(["--labels", str(labels), "--out", str(tmp_path / "lexicon.json")]) == 0
    data = json.loads((tmp_path / "lexicon.json").read_text())
    assert data["words"] == ["RECEIVED", "TOTAL"] and data["min_count"] == 2  # once-seen words left out
    lexicon = Lexicon.load(tmp_path / "lexicon.json")
    assert "received" in lexicon and "CASH" not in lexicon and lexicon.close_ratio == 0.1


def test_the_invoice_pipeline_corrects_the_lines_it_assembles():
    """What the HTTP engine returns goes through OcrPipeline.assemble, where the bundle's lexicon applies."""
    from pathlib import Path

    import numpy as np

    from service.pipeline import Detections, OcrPipeline

    models = Path(__file__).resolve().parents[1] / "models"
    pipeline = OcrPipeline.from_dir(models / "invoice", providers=["cpu"], intra_threads=1)
    assert pipeline.lexicon is not None and "RECEIVED" in pipeline.lexicon
    quad = np.array([[[0, 0], [100, 0], [100, 20], [0, 20]]], np.float32)
    lines = pipeline.assemble(Detections(quad, quad, [0.9]), [_decoded("RECSIVED CASH", {3: [("E", 0.3)]})])
    assert [ln.text for ln in lines] == ["RECEIVED CASH"] and lines[0].char_evidence[3].char == "E"
    plain = OcrPipeline.from_dir(models / "base", providers=["cpu"], intra_threads=1)
    assert plain.lexicon is None

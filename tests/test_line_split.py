"""The learned line splitter: spaces found on the recogniser's evidence, features, the JSON model, the cut
geometry, the pipeline applying it, and `ocrnet train-line-split`'s labelling and fit."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.vision.ctc import CharEvidence, Decoded
from service.vision.line_split import (
    LineSplitter,
    Space,
    feature_names,
    features,
    segments,
    spaces,
)


def _chars(text: str, centres: list[float], p: float = 0.9) -> tuple[CharEvidence, ...]:
    return tuple(CharEvidence(((c, p),), int(t), int(t)) for c, t in zip(text, centres))


def _spaced(text: str, pitch: float = 3.0, extra: dict[int, float] | None = None) -> tuple[CharEvidence, ...]:
    """Characters ``pitch`` time steps apart, plus ``extra`` steps before the character at each given index."""
    centres, t = [], 2.0
    for k in range(len(text)):
        t += (extra or {}).get(k, 0.0)
        centres.append(t)
        t += pitch
    return _chars(text, centres)


def test_spaces_are_found_between_words_with_their_gap_in_line_heights():
    text = "RM  65.20"
    found = spaces(text, _spaced(text, extra={4: 12}), rec_height=48)
    assert [(s.i, s.j, s.left, s.right) for s in found] == [(1, 4, "RM", "65.20")]
    assert found[0].gap == pytest.approx((3 * 3 + 12) * 8 / 48)  # three pitches + 12 extra steps
    assert spaces("TOTAL", _spaced("TOTAL"), 48) == []
    assert spaces(" A ", _spaced(" A "), 48) == []  # leading/trailing white space is no place to cut


def test_features_know_the_words_on_either_side():
    text = "TOTAL 12.50"
    chars = _spaced(text)
    found = spaces(text, chars, 48)
    vocab = ("TOTAL", "RM")
    x = features(text, chars, found, aspect=8.0, vocab=vocab)
    names = feature_names(vocab)
    assert x.shape == (1, len(names))
    row = dict(zip(names, x[0]))
    assert row["left=TOTAL"] == 1 and row["right=TOTAL"] == 0 and row["left=RM"] == 0
    assert row["right_money"] == 1 and row["left_money"] == 0 and row["number_after_word"] == 1
    assert features("A", _spaced("A"), [], 1.0, vocab).shape == (0, len(names))


def _splitter(weight_on: str, vocab: tuple[str, ...] = ("RM",), threshold: float = 0.5) -> LineSplitter:
    names = feature_names(vocab)
    w = np.zeros(len(names))
    w[names.index(weight_on)] = 10.0
    return LineSplitter(w, -5.0, vocab, threshold)


def test_the_model_cuts_where_its_weights_say_and_round_trips_through_json(tmp_path):
    splitter = _splitter("left=RM")
    text = "RM 65.20 CASH 3.00"
    cuts = splitter.cuts(text, _spaced(text), 48, aspect=10.0)
    assert [(c.left, c.right) for c in cuts] == [("RM", "65.20")]
    path = tmp_path / "line_split.json"
    path.write_text(json.dumps(splitter.to_json()))
    again = LineSplitter.load(path)
    assert again.vocab == ("RM",) and again.threshold == 0.5
    assert [c.j for c in again.cuts(text, _spaced(text), 48, 10.0)] == [c.j for c in cuts]


def test_a_bad_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        LineSplitter.load(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a ocrnet-line-split/1 model"):
        LineSplitter.load(bad)
    good = _splitter("gap").to_json()
    good["weights"] = good["weights"][:-1]
    bad.write_text(json.dumps(good))
    with pytest.raises(ValueError, match="weights for"):
        LineSplitter.load(bad)


def test_segments_cover_their_own_characters_and_keep_the_line_ends():
    # a 48-px-high, 480-px-wide crop read at its own size: time step t sits at x = 8t + 4
    quad = np.array([[0, 0], [480, 0], [480, 48], [0, 48]], np.float64)
    text = "RM 65.20"
    centres = [1, 4, 0, 40, 43, 46, 49, 52]  # the space's own span is never used
    chars = _chars(text, centres)
    cut = Space(1, 3, 36 * 8 / 48, "RM", "65.20")
    first, second = segments(text, chars, [cut], quad, quad, input_width=480)
    assert (first.start, first.end, second.start, second.end) == (0, 2, 3, 8)
    assert first.quad[0][0] == 0 and second.quad[1][0] == 480  # outer ends stay where the line's were
    lead, trail = 8 * 1 + 4, 480 - (8 * 52 + 4)
    assert first.quad[1][0] == pytest.approx(8 * 4 + 4 + trail)  # 'M' plus the line's own right margin
    assert second.quad[0][0] == pytest.approx(8 * 40 + 4 - lead)  # '6' minus the line's own left margin
    assert first.quad[1][0] < second.quad[0][0]
    np.testing.assert_allclose(first.quad[:, 1], [0, 0, 48, 48])


def test_the_pipeline_cuts_the_lines_it_assembles_with_a_bundle_splitter(tmp_path):
    """What the HTTP engine returns goes through OcrPipeline.assemble, where the bundle's splitter applies."""
    from service.pipeline import Detections, OcrPipeline

    models = Path(__file__).resolve().parents[1] / "models"
    pipeline = OcrPipeline.from_dir(models / "base", providers=["cpu"], intra_threads=1)
    assert pipeline.line_splitter is None
    quad = np.array([[[0, 0], [480, 0], [480, 48], [0, 48]]], np.float32)
    text = "RM 65.20"
    chars = _chars(text, [1, 4, 0, 40, 43, 46, 49, 52])
    confs = (0.9, 0.8, 0.99, 0.7, 0.7, 0.7, 0.7, 0.7)
    decoded = [Decoded(text, float(np.mean(confs)), confs, chars)]
    dets = Detections(quad, quad, [0.95], quad)
    assert [ln.text for ln in pipeline.assemble(dets, decoded)] == ["RM 65.20"]
    pipeline.line_splitter = _splitter("left=RM")
    lines = pipeline.assemble(dets, decoded)
    assert [ln.text for ln in lines] == ["RM", "65.20"]
    assert lines[0].confidence == pytest.approx(0.85) and lines[1].char_confidences == (0.7,) * 5
    assert [c.char for c in lines[1].char_evidence] == list("65.20") and lines[1].det_score == pytest.approx(0.95)
    assert lines[0].polygon[1][0] < lines[1].polygon[0][0]
    tall = np.array([[[0, 0], [40, 0], [40, 480], [0, 480]]], np.float32)  # read rotated: never cut
    assert len(pipeline.assemble(Detections(tall, tall, [0.9], tall), decoded)) == 1
    assert len(pipeline.assemble(Detections(quad, quad, [0.9]), decoded)) == 1  # no crop quads recorded


def test_a_bundle_names_its_splitter_in_model_json(tmp_path):
    from service.model_bundle import ModelBundle
    from service.pipeline import OcrPipeline

    base = Path(__file__).resolve().parents[1] / "models" / "base"
    plain = ModelBundle(base)
    manifest = {"name": "split", "version": "t", "det": str(plain.det_path), "rec": str(plain.rec_path),
                "charset": str(plain.charset_path), "line_split_model": "line_split.json"}
    (tmp_path / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(FileNotFoundError, match="line_split.json"):
        ModelBundle(tmp_path)
    (tmp_path / "line_split.json").write_text(json.dumps(_splitter("left=RM").to_json()))
    pipeline = OcrPipeline.from_dir(tmp_path, providers=["cpu"], intra_threads=1)
    assert pipeline.line_splitter is not None and pipeline.line_splitter.vocab == ("RM",)
    (tmp_path / "line_split.json").write_text("[]")
    with pytest.raises(ValueError, match="not a ocrnet-line-split/1 model"):
        OcrPipeline.from_dir(tmp_path, providers=["cpu"], intra_threads=1)


def test_training_labels_and_fit():
    from shapely.geometry import box

    from training.line_split import _owner, fit_logistic, vocabulary

    assert vocabulary(["rm 1.00", "RM 2.00", "rm", "total"], size=5, min_count=2) == ("RM",)
    gts = [box(0, 0, 50, 20), box(60, 0, 120, 20)]
    assert _owner(box(2, 0, 40, 20), gts) == 0 and _owner(box(70, 0, 110, 20), gts) == 1
    assert _owner(box(30, 0, 90, 20), gts) is None  # half in each: teaches nothing
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x[:, 1] > 0.2).astype(float)
    w, b = fit_logistic(x, y, l2=1.0)
    assert np.argmax(np.abs(w)) == 1 and w[1] > 0
    p = 1 / (1 + np.exp(-(x @ w + b)))
    assert ((p > 0.5) == (y > 0)).mean() > 0.95


def test_boxes_are_brought_in_to_their_characters_never_grown():
    from service.vision.line_split import fitted_to_chars

    quad = np.array([[0, 0], [480, 0], [480, 48], [0, 48]], np.float64)
    chars = _chars("12", [10, 13])  # centres at x = 84 and 108 in a box reaching 0..480
    fitted = fitted_to_chars("12", chars, quad, quad, input_width=480, margin=0.5)
    np.testing.assert_allclose(fitted[:, 0], [84 - 24, 108 + 24, 108 + 24, 84 - 24])
    np.testing.assert_allclose(fitted[:, 1], [0, 0, 48, 48])
    wide = fitted_to_chars("12", chars, quad, quad, input_width=480, margin=10.0)  # 480 px each way: box kept
    np.testing.assert_allclose(wide[:, 0], [0, 480, 480, 0])


def test_the_pipeline_fits_returned_boxes_with_a_bundle_margin():
    from service.pipeline import Detections, OcrPipeline

    models = Path(__file__).resolve().parents[1] / "models"
    pipeline = OcrPipeline.from_dir(models / "base", providers=["cpu"], intra_threads=1)
    assert pipeline.char_margin is None
    quad = np.array([[[0, 0], [480, 0], [480, 48], [0, 48]]], np.float32)
    decoded = [Decoded("12", 0.9, (0.9, 0.9), _chars("12", [10, 13]))]
    dets = Detections(quad, quad, [0.95], quad)
    assert pipeline.assemble(dets, decoded)[0].polygon[1] == (480.0, 0.0)
    pipeline.char_margin = 0.5
    line = pipeline.assemble(dets, decoded)[0]
    assert line.text == "12" and line.polygon[0][0] == pytest.approx(60) and line.polygon[1][0] == pytest.approx(132)

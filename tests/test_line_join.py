"""The learned line joiner: row neighbours, features, joining text, evidence and boxes, the JSON model, the
pipeline applying it, and `ocrnet train-line-split --join-out`'s labelling."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from service.pipeline import TextLine
from service.vision.ctc import CharEvidence
from service.vision.line_join import (
    LineJoiner,
    feature_names,
    features,
    join_rows,
    row_pairs,
)


def _line(text: str, x0: float, y0: float, x1: float, y1: float, p: float = 0.9) -> TextLine:
    chars = tuple(CharEvidence(((c, p),), 2 * i, 2 * i) for i, c in enumerate(text))
    return TextLine(text, p, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], 0.8, (p,) * len(text), chars)


def _joiner(weight_on: str, vocab: tuple[str, ...] = ("TAX",), threshold: float = 0.5) -> LineJoiner:
    names = feature_names(vocab)
    w = np.zeros(len(names))
    w[names.index(weight_on)] = 10.0
    return LineJoiner(w, -5.0, vocab, threshold)


def test_row_pairs_are_side_by_side_neighbours_on_one_row():
    lines = [_line("TAX", 0, 0, 60, 20), _line("INVOICE", 80, 2, 200, 22), _line("TOTAL", 0, 40, 80, 60),
             _line("FAR", 400, 40, 460, 60)]
    pairs = row_pairs(lines)
    assert [p.k for p in pairs] == [0]  # the next row is not a neighbour; 'FAR' is 16 heights away
    assert pairs[0].gap == pytest.approx(1.0) and pairs[0].dy == pytest.approx(0.1)


def test_features_know_the_words_that_meet():
    lines = [_line("TAX", 0, 0, 60, 20), _line("12.50", 80, 0, 180, 20)]
    x = features(lines, row_pairs(lines), ("TAX",))
    row = dict(zip(feature_names(("TAX",)), x[0]))
    assert row["left=TAX"] == 1 and row["right=TAX"] == 0 and row["right_money"] == 1 and row["number_after_word"] == 1
    assert features(lines, [], ("TAX",)).shape == (0, len(feature_names(("TAX",))))


def test_joined_lines_keep_text_evidence_and_box_aligned():
    a, b, c = _line("TAX", 0, 0, 60, 20, 0.8), _line("INVOICE", 80, 2, 200, 22, 1.0), _line("NO", 210, 0, 240, 20)
    out = join_rows([a, b, c], [0, 1], TextLine)
    assert len(out) == 1
    line = out[0]
    assert line.text == "TAX INVOICE NO"
    assert len(line.char_confidences) == len(line.char_evidence) == len(line.text)
    assert [e.char for e in line.char_evidence] == list(line.text)
    assert line.polygon == [(0.0, 0.0), (240.0, 0.0), (240.0, 20.0), (0.0, 20.0)]
    assert line.confidence == pytest.approx((0.8 * 3 + 1.0 * 7 + 0.9 * 2) / 12) and line.det_score == 0.8
    assert join_rows([a, b], [], TextLine) == [a, b]


def test_the_model_joins_where_its_weights_say_and_round_trips_through_json(tmp_path):
    lines = [_line("TAX", 0, 0, 60, 20), _line("INVOICE", 80, 0, 200, 20), _line("RM", 300, 0, 340, 20),
             _line("5.00", 360, 0, 420, 20)]
    joiner = _joiner("left=TAX")
    assert joiner.joins(lines) == [0]
    path = tmp_path / "line_join.json"
    path.write_text(json.dumps(joiner.to_json()))
    assert LineJoiner.load(path).joins(lines) == [0]
    path.write_text(json.dumps({**joiner.to_json(), "weights": [1.0]}))
    with pytest.raises(ValueError, match="weights for"):
        LineJoiner.load(path)
    path.write_text(json.dumps({"format": "ocrnet-line-split/1"}))
    with pytest.raises(ValueError, match="not a ocrnet-line-join/1 model"):
        LineJoiner.load(path)


def test_the_pipeline_joins_the_lines_it_assembles_with_a_bundle_joiner(tmp_path):
    from service.model_bundle import ModelBundle
    from service.pipeline import Detections, OcrPipeline
    from service.vision.ctc import Decoded

    plain = ModelBundle(Path(__file__).resolve().parents[1] / "models" / "base")
    (tmp_path / "model.json").write_text(json.dumps({
        "name": "join", "version": "t", "det": str(plain.det_path), "rec": str(plain.rec_path),
        "charset": str(plain.charset_path), "line_join_model": "line_join.json"}))
    with pytest.raises(FileNotFoundError, match="line_join.json"):
        ModelBundle(tmp_path)
    (tmp_path / "line_join.json").write_text(json.dumps(_joiner("left=TAX").to_json()))
    pipeline = OcrPipeline.from_dir(tmp_path, providers=["cpu"], intra_threads=1)
    quads = np.array([[[0, 0], [60, 0], [60, 20], [0, 20]], [[80, 0], [200, 0], [200, 20], [80, 20]]], np.float32)
    decoded = [Decoded(t, 0.9, (0.9,) * len(t), tuple(CharEvidence(((c, 0.9),), i, i) for i, c in enumerate(t)))
               for t in ("TAX", "INVOICE")]
    lines = pipeline.assemble(Detections(quads, quads, [0.9, 0.9], quads), decoded)
    assert [ln.text for ln in lines] == ["TAX INVOICE"]
    pipeline.line_joiner = None
    assert len(pipeline.assemble(Detections(quads, quads, [0.9, 0.9], quads), decoded)) == 2


def test_training_pairs_are_labelled_by_the_labelled_line_holding_each_side():
    from training.line_split import PageRead, labelled_pairs

    @dataclass
    class FakePipeline:
        lines: list

        def assemble(self, dets, decoded):
            return self.lines

    lines = [_line("TAX", 0, 0, 60, 20), _line("INVOICE", 80, 0, 200, 20), _line("RM", 300, 0, 340, 20),
             _line("5.00", 360, 0, 420, 20)]
    gts = [[[0, 0], [200, 0], [200, 20], [0, 20]], [[300, 0], [340, 0], [340, 20], [300, 20]],
           [[355, 0], [425, 0], [425, 20], [355, 20]]]
    page = PageRead((500, 40), None, [])
    x, y = labelled_pairs(FakePipeline(lines), page, gts, ("TAX",))
    assert y.tolist() == [1.0, 0.0] and x.shape == (2, len(feature_names(("TAX",))))  # INVOICE-RM: 5 heights apart

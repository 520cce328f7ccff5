import json

import numpy as np
import pytest

from service.vision.charset import load_charset
from service.vision.ctc import ctc_greedy_decode

CLASSES = ["", "a", "b", "c"]


def _onehot(seq, p=0.9):
    out = np.full((len(seq), len(CLASSES)), (1 - p) / (len(CLASSES) - 1), np.float32)
    out[np.arange(len(seq)), seq] = p
    return out


def test_repeats_merge_and_blanks_split_and_drop():
    probs = np.stack([_onehot([1, 1, 0, 1, 2, 2, 0, 0, 3]), _onehot([0, 0, 0, 0, 0, 0, 0, 0, 0])])
    probs[0, 4, 2] = 0.6  # the first 'b' step: lower confidence, kept as the char's confidence
    a, empty = ctc_greedy_decode(probs, CLASSES)
    assert a.text == "aabc"
    assert a.char_confidences == pytest.approx((0.9, 0.9, 0.6, 0.9))
    assert a.confidence == pytest.approx(np.mean([0.9, 0.9, 0.6, 0.9]))
    assert empty.text == "" and empty.confidence == 0.0 and empty.char_confidences == ()


def test_class_count_mismatch_is_an_error():
    with pytest.raises(ValueError):
        ctc_greedy_decode(np.zeros((1, 3, 5), np.float32), CLASSES)


def test_load_charset_puts_blank_first(tmp_path):
    f = tmp_path / "charset.json"
    f.write_text(json.dumps({"blank_index": 0, "characters": ["x", "y", " "]}))
    assert load_charset(f) == ["", "x", "y", " "]
    f.write_text(json.dumps({"blank_index": 3, "characters": ["x"]}))
    with pytest.raises(ValueError):
        load_charset(f)


def test_evidence_keeps_top_k_alternatives_and_spans_per_emitted_character():
    probs = _onehot([1, 1, 0, 2, 0, 0, 3, 3, 3])[None]
    probs[0, 1, 1], probs[0, 1, 3] = 0.5, 0.45  # second step of 'a': 'c' almost as likely
    probs[0, 7, 2] = 0.3  # a step of 'c' where 'b' is a close second
    (d,) = ctc_greedy_decode(probs, CLASSES, top_k=2)
    assert d.text == "abc" and len(d.chars) == 3
    a, b, c = d.chars
    assert (a.start, a.end, b.start, b.end, c.start, c.end) == (0, 1, 3, 3, 6, 8)
    assert a.char == "a" and a.probability == pytest.approx(0.9)  # the run's peak
    assert a.alternatives[1][0] == "c" and a.alternatives[1][1] == pytest.approx(0.45)
    assert c.probability_of("b") == pytest.approx(0.3) and c.probability_of("a") == 0.0
    assert all(ch.char != "" for ch in d.chars)  # blank is never an alternative


def test_evidence_can_be_turned_off_and_is_empty_for_empty_text():
    probs = np.stack([_onehot([1, 0, 2]), _onehot([0, 0, 0])])
    plain = ctc_greedy_decode(probs, CLASSES, top_k=0)
    assert plain[0].text == "ab" and plain[0].chars == ()
    assert ctc_greedy_decode(probs, CLASSES)[1].chars == ()

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

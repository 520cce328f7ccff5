"""`main_synth` writes labels.jsonl that the loaders read back to the same samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.data.loaders import load_records
from training.data.synth import main_synth
from training.data.synth.registry import SyntheticSamples, generate


@pytest.mark.parametrize("domain", ["plates", "receipts", "ids"])
def test_lines_roundtrip(tmp_path, domain):
    out = tmp_path / domain
    assert main_synth(["--domain", domain, "--kind", "lines", "--n", "3", "--seed", "4", "--out", str(out)]) == 0
    records = load_records(out)
    assert len(records) == 3
    for i, rec in enumerate(records):
        samples = rec.rec_samples()
        assert len(samples) == 1
        want = generate(domain, "lines", 4, i)
        assert samples[0].text == want.text
        assert samples[0].image.tobytes() == want.image.tobytes()  # PNG is lossless: same pixels


@pytest.mark.parametrize("domain", ["plates", "receipts", "ids"])
def test_pages_roundtrip(tmp_path, domain):
    out = tmp_path / domain
    main_synth(["--domain", domain, "--kind", "pages", "--n", "2", "--seed", "1", "--out", str(out)])
    rows = [json.loads(x) for x in (out / "labels.jsonl").read_text().splitlines()]
    assert [r["fields"]["domain"] for r in rows] == [domain, domain]
    records = load_records(out / "labels.jsonl")
    for i, rec in enumerate(records):
        det = rec.det_sample()
        want = generate(domain, "pages", 1, i)
        assert [(ln.text, ln.ignore) for ln in det.lines] == [(ln.text, ln.ignore) for ln in want.lines]
        np.testing.assert_allclose([ln.polygon for ln in det.lines], [ln.polygon for ln in want.lines], atol=0.051)
        assert det.image.size == want.image.size
        crops = rec.rec_samples(det.image)
        assert len(crops) == sum(not ln.ignore for ln in det.lines) and all(c.image.height >= 4 for c in crops)


def test_start_extends_a_run(tmp_path):
    main_synth(["--domain", "plates", "--n", "2", "--seed", "0", "--out", str(tmp_path)])
    main_synth(["--domain", "plates", "--n", "2", "--seed", "0", "--start", "2", "--out", str(tmp_path)])
    records = load_records(tmp_path)
    assert [r.lines[0].text for r in records] == [generate("plates", "lines", 0, i).text for i in range(4)]
    assert len({r.path.name for r in records}) == 4
    main_synth(["--domain", "plates", "--n", "4", "--seed", "0", "--out", str(tmp_path)])  # a re-run adds nothing
    assert len(load_records(tmp_path)) == 4


def test_synthetic_samples_sequence_is_lazy_and_indexed():
    seq = SyntheticSamples("receipts", "lines", 5, seed=2, start=10)
    assert len(seq) == 5
    assert seq[0].text == generate("receipts", "lines", 2, 10).text
    assert seq[-1].image.tobytes() == generate("receipts", "lines", 2, 14).image.tobytes()
    assert [s.text for s in seq[1:3]] == [generate("receipts", "lines", 2, i).text for i in (11, 12)]
    with pytest.raises(IndexError):
        seq[5]
    with pytest.raises(ValueError):
        SyntheticSamples("menus", "lines", 3)

"""Pretrained source files: located without importing rapidocr and verified against MODEL_LICENSES.md."""
from __future__ import annotations

import sys

from service.model_bundle import sha256_file
from training.pretrained import DET_FILE, REC_FILE, expected_hashes, locate_pretrained


def test_licenses_table_is_parsed():
    text = ("| RapidOCR artifact | Upstream model | SHA-256 | source |\n|---|---|---|---|\n"
            f"| `{DET_FILE}` | `PP-OCRv6_small_det` | `{'a' * 64}` | [x](y) |\n"
            f"| `{REC_FILE}` | `PP-OCRv6_small_rec` | `{'b' * 64}` | [x](y) |\n")
    assert expected_hashes(text) == {DET_FILE: "a" * 64, REC_FILE: "b" * 64}
    assert expected_hashes("no table here") == {}


def test_located_files_match_the_wheel_licence_table():
    files = locate_pretrained()
    table = expected_hashes(files.licenses.read_text(encoding="utf-8"))
    for path in (files.det, files.rec):
        assert sha256_file(path) == table[path.name] == files.sha256[path.name]
    assert "rapidocr" not in sys.modules  # read straight from the wheel / package folder, never imported

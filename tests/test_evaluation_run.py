"""Evaluation driver on ../shared/data: an oracle reader (the labels as OCR output) must score perfectly on
what the labels fully determine, and the real pipeline run must produce every metric key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from training.evaluation.report import render_reports
from training.evaluation.run import (
    DOMAIN_PROFILES,
    domain_dir,
    evaluate_dataset,
    load_labels,
    main_evaluate,
    rescore_saved,
)

KEYS = {
    "plates": {"plate_exact", "plate_exact_o0", "plate_cer", "plate_in_lines", "plate_det_recall",
               "seconds_per_image"},
    "receipts": {"det_precision", "det_recall", "det_hmean", "rec_accuracy", "rec_cer", "e2e_precision",
                 "e2e_recall", "e2e_f1", "field_company", "field_company_loose", "field_date", "field_date_iso",
                 "field_address", "field_address_loose", "field_total", "seconds_per_image"},
    "ids": {"mrz_found", "mrz_exact", "mrz_line_exact", "mrz_cer", "mrz_raw_cer", "mrz_valid",
            "mrz_valid_but_wrong", "field_document_number", "field_birth_date", "field_expiry_date",
            "field_surname", "field_given_names", "seconds_per_image"},
}


@dataclass(frozen=True)
class _Line:
    text: str
    confidence: float
    polygon: list


def _polygon(box, k: int) -> list:
    if box is None:  # ids: no boxes in the labels; stack the lines like an MRZ
        return [(50, 900 + 60 * k), (1150, 900 + 60 * k), (1150, 945 + 60 * k), (50, 945 + 60 * k)]
    if len(box) == 4 and not isinstance(box[0], list):
        x1, y1, x2, y2 = box
        return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    return [tuple(p) for p in box]


class OracleReader:
    """Returns the label lines of an image as its OCR output (looked up by the image bytes)."""

    def __init__(self, folder: Path):
        self.by_bytes = {r.image.read_bytes(): [_Line(ln.text, 1.0, _polygon(ln.shape, k))
                                                for k, ln in enumerate(r.lines)]
                         for r in load_labels(folder)}

    def read_batch(self, images):
        return [self.by_bytes[bytes(im)] for im in images]


@pytest.mark.parametrize("domain", sorted(DOMAIN_PROFILES))
def test_oracle_scores(domain: str, shared_data_dir: Path) -> None:
    limit = 12
    report = evaluate_dataset(OracleReader(domain_dir(shared_data_dir, domain)), shared_data_dir, domain, limit)
    m = report.metrics
    assert report.n_images == limit and set(m) >= KEYS[domain]
    assert len(report.per_image) == limit
    if domain == "plates":
        assert m["plate_exact"] == m["plate_in_lines"] == m["plate_det_recall"] == 1.0 and m["plate_cer"] == 0.0
    elif domain == "receipts":
        for k in ("det_precision", "det_recall", "det_hmean", "rec_accuracy", "e2e_f1", "field_date_iso"):
            assert m[k] == pytest.approx(1.0), k
        assert m["rec_cer"] == 0.0 and m["field_total"] >= 0.9 and m["field_company_loose"] >= 0.8
    else:
        assert m["mrz_exact"] == m["field_document_number"] == m["field_birth_date"] == 1.0
        # right lines, yet not valid where swapping O/0 in the document number passes every check digit too
        # (D_17: XO6U89Q06, the O and the last 0 at the same check weight)
        assert m["mrz_valid"] == pytest.approx(11 / 12)
        assert m["mrz_cer"] == m["mrz_raw_cer"] == 0.0 and m["mrz_valid_but_wrong"] == 0.0
    md = render_reports([report])
    assert all(f"| {k} |" in md for k in KEYS[domain])


def test_saved_predictions_rescore_to_the_same_numbers(shared_data_dir: Path, tmp_path: Path) -> None:
    import json

    report = evaluate_dataset(OracleReader(domain_dir(shared_data_dir, "plates")), shared_data_dir, "plates", 5)
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps({"oracle": [report.to_dict(with_images=True)]}))
    again = rescore_saved(saved, shared_data_dir)["oracle"][0]
    assert again.metrics == report.metrics and again.n_images == 5
    out = tmp_path / "replay.md"
    assert main_evaluate(["--replay", str(saved), "--data", str(shared_data_dir), "--out", str(out)]) == 0
    assert "| plate_exact | 100.0% |" in out.read_text()


def test_unknown_domain(shared_data_dir: Path) -> None:
    with pytest.raises(ValueError):
        evaluate_dataset(OracleReader(shared_data_dir / "ids"), shared_data_dir, "menus")


@pytest.mark.slow
def test_cli_on_the_base_model(base_model_dir: Path, shared_data_dir: Path, tmp_path: Path) -> None:
    out, js = tmp_path / "report.md", tmp_path / "report.json"
    code = main_evaluate(["--model-dir", str(base_model_dir), "--data", str(shared_data_dir), "--domains",
                          "plates,ids", "--limit", "1", "--threads", "2", "--out", str(out), "--json", str(js)])
    assert code == 0
    md = out.read_text()
    for domain in ("plates", "ids"):
        assert f"### {domain} (1 images)" in md
        assert all(f"| {k} |" in md for k in KEYS[domain])
    assert '"pred_lines"' in js.read_text()

"""Evaluation results per domain and their markdown rendering (one table per domain, or models side by side)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["METRIC_DOCS", "DomainReport", "render_comparison", "render_report", "render_reports"]

# What each metric means; rendered next to the value so a table can be read without the code.
METRIC_DOCS: dict[str, str] = {
    "det_precision": "detection precision, IoU>=0.5, one-to-one greedy",
    "det_recall": "detection recall, IoU>=0.5, one-to-one greedy",
    "det_hmean": "detection H-mean (F1) of the two above",
    "rec_accuracy": "recognition: matched lines read exactly (case-insensitive)",
    "rec_cer": "recognition CER on matched lines (edits / label chars)",
    "e2e_precision": "end to end: predicted lines matched (IoU>=0.5) with the exact label text",
    "e2e_recall": "end to end: label lines found (IoU>=0.5) with the exact text",
    "e2e_f1": "end to end line F1 (case-insensitive exact text)",
    "e2e_recall_nospace": "e2e_recall with spaces ignored (labels space punctuation inconsistently)",
    "plate_exact": "picked plate == label (alphanumerics, upper-case)",
    "plate_exact_o0": "same with O and 0 treated as equal",
    "plate_cer": "CER of the picked plate vs the label",
    "plate_in_lines": "label plate equals some OCR line or adjacent pair (upper bound for the pick)",
    "plate_det_recall": "labelled plate box covered by a detected line at IoU>=0.5",
    "plate_exact_us": "plate_exact, US images",
    "plate_exact_eu": "plate_exact, EU images",
    "plate_exact_br": "plate_exact, Brazil images",
    "field_company": "company exact (case-insensitive, spaces collapsed)",
    "field_company_loose": "company equal on alphanumerics only",
    "field_date": "date exact as written on the receipt (label format, spaces collapsed)",
    "field_date_iso": "date equal after both are parsed to ISO 8601",
    "field_address": "address exact (case-insensitive, spaces collapsed)",
    "field_address_loose": "address equal on alphanumerics only",
    "field_total": "total equal as an amount (currency and separators ignored; empty labels skipped)",
    "mrz_found": "an MRZ was found and parsed",
    "mrz_exact": "both MRZ lines exactly equal to the label",
    "mrz_line_exact": "MRZ lines exactly equal to the label (per line)",
    "mrz_cer": "CER of the parsed MRZ lines vs the label",
    "mrz_raw_cer": "CER of the closest raw OCR line to each label MRZ line (recogniser only)",
    "mrz_valid": "all ICAO 9303 check digits valid",
    "mrz_valid_but_wrong": "check digits valid but lines differ from the label (undetected errors)",
    "field_document_number": "document number exact",
    "field_birth_date": "birth date exact",
    "field_expiry_date": "expiry date exact",
    "field_surname": "surname exact",
    "field_given_names": "given names exact",
    "seconds_per_image": "pipeline + profile wall time per image (this machine)",
}


@dataclass
class DomainReport:
    """The numbers of one model on one domain; `metrics` values are fractions (None: nothing to measure)."""

    domain: str
    model: str
    n_images: int
    metrics: dict[str, float | None]
    counts: dict[str, int] = field(default_factory=dict)
    per_image: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, with_images: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_images:
            d.pop("per_image")
        return d

    def to_json(self, with_images: bool = False) -> str:
        return json.dumps(self.to_dict(with_images), indent=2, ensure_ascii=False)


def _fmt(key: str, v: float | None) -> str:
    if v is None:
        return "n/a"
    if key == "seconds_per_image":
        return f"{v:.2f}"
    return f"{100 * v:.1f}%"


def render_report(report: DomainReport) -> str:
    lines = [f"### {report.domain} ({report.n_images} images), model `{report.model}`", "",
             "| metric | value | meaning |", "|---|---:|---|"]
    for key, value in report.metrics.items():
        lines.append(f"| {key} | {_fmt(key, value)} | {METRIC_DOCS.get(key, '')} |")
    if report.counts:
        lines += ["", "counts: " + ", ".join(f"{k}={v}" for k, v in report.counts.items())]
    return "\n".join(lines) + "\n"


def render_reports(reports: Sequence[DomainReport]) -> str:
    return "\n".join(render_report(r) for r in reports)


def render_comparison(reports_by_model: Mapping[str, Sequence[DomainReport]]) -> str:
    """One table per domain with a column per model, metrics in first-seen order."""
    models = list(reports_by_model)
    domains: list[str] = []
    for reps in reports_by_model.values():
        for r in reps:
            if r.domain not in domains:
                domains.append(r.domain)
    out = []
    for domain in domains:
        by_model = {m: next((r for r in reports_by_model[m] if r.domain == domain), None) for m in models}
        keys: list[str] = []
        for r in by_model.values():
            for k in (r.metrics if r else {}):
                if k not in keys:
                    keys.append(k)
        n = next((r.n_images for r in by_model.values() if r), 0)
        out += [f"### {domain} ({n} images)", "", "| metric | " + " | ".join(f"`{m}`" for m in models) + " |",
                "|---|" + "---:|" * len(models)]
        for k in keys:
            cells = [_fmt(k, by_model[m].metrics.get(k)) if by_model[m] else "-" for m in models]
            out.append(f"| {k} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)

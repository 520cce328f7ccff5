"""Evaluate a model dir end to end, per domain, through the service's own pipeline and profiles.

    ocrnet evaluate --model-dir models/base --data ../shared/data --domains plates,receipts,ids --out report.md \\
        --json base.json
    ocrnet evaluate --replay base.json --out report.md    # re-score saved predictions after a profile change

Data: `<data>/<domain>/labels.jsonl` + images (format: docs/labels.md). How each field is compared
with the labels (the labels keep the document's own formats):
- plates: upper-case alphanumerics only (labels have no separators), plus an O==0 folded score.
- receipts: text case-insensitive with spaces collapsed; `date` compared as printed (our `date_raw` vs the
  label) and, separately, after parsing both to ISO; `total` compared as an amount (label 'RM 21.00' == 21.00),
  receipts whose label field is empty are left out of that field's denominator.
- ids: the profile's parsed MRZ lines vs the label lines; label dates are YYMMDD, so our ISO dates are
  turned back into YYMMDD before comparing.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, ImageOps

from service.profiles import Profile, get_profile
from service.profiles.base import TextLineLike, line_boxes
from service.profiles.invoice import parse_amount, parse_date
from service.profiles.mrz import normalise_mrz_text
from service.profiles.plate_layouts import fits_known_layout
from service.vision.ctc import CharEvidence

from .matching import Shape
from .metrics import (
    PRCounts,
    RecCounts,
    alnum_key,
    det_counts,
    edit_distance,
    fold_o0,
    normalise_text,
    ratio,
)
from .report import DomainReport, render_comparison, render_reports

__all__ = ["DOMAIN_PROFILES", "LabelRecord", "evaluate_dataset", "load_labels", "main_evaluate", "rescore_saved",
           "score_predictions"]

log = logging.getLogger(__name__)

DOMAIN_PROFILES: dict[str, str] = {"plates": "plate", "receipts": "invoice", "ids": "id"}
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


class Reader(Protocol):
    def read_batch(self, images: Sequence[Any]) -> list[list[TextLineLike]]: ...


@dataclass(frozen=True)
class LabelLine:
    text: str
    shape: Shape | None


@dataclass(frozen=True)
class LabelRecord:
    image: Path
    lines: list[LabelLine]
    fields: dict[str, Any]


def domain_dir(data_dir: str | Path, domain: str) -> Path:
    """`data_dir/domain` when it holds labels.jsonl, else `data_dir` itself (a single domain folder)."""
    d = Path(data_dir)
    return d / domain if (d / domain / "labels.jsonl").is_file() else d


def load_labels(folder: str | Path) -> list[LabelRecord]:
    folder = Path(folder)
    out = []
    with open(folder / "labels.jsonl", encoding="utf-8") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            r = json.loads(raw)
            lines = [LabelLine(str(x.get("text", "")), x.get("box")) for x in r.get("lines", [])]
            out.append(LabelRecord(folder / r["image"], lines, dict(r.get("fields") or {})))
    return out


def _image(path: Path) -> tuple[bytes, tuple[int, int]]:
    """Bytes as the service receives them, and the upright size (the pipeline applies EXIF orientation)."""
    data = path.read_bytes()
    with Image.open(path) as im:
        size = ImageOps.exif_transpose(im).size
    return data, size


# ----------------------------------------------------------------------------------------------- plates

def _score_plates(records: list[LabelRecord], preds: list[list[TextLineLike]], sizes: list[tuple[int, int]],
                  profile: Profile) -> tuple[dict[str, float | None], dict[str, int], list[dict]]:
    exact = exact_o0 = in_lines = det_hits = n_boxes = changed = changed_fitting = 0
    rec = RecCounts()
    regions: dict[str, list[int]] = {}
    per_image = []
    for r, lines, size in zip(records, preds, sizes):
        label = alnum_key(r.fields.get("plate") or (r.lines[0].text if r.lines else ""))
        fields = profile.extract_fields(lines, size)
        got = alnum_key(fields.get("plate"))
        ok = got == label
        exact += ok
        exact_o0 += fold_o0(got) == fold_o0(label)
        rec.add(got, label)
        ordered = [alnum_key(b.text) for b in line_boxes(lines)]
        keys = set(ordered) | {a + b for a, b in itertools.pairwise(ordered)}
        in_lines += label in keys
        shapes = [ln.shape for ln in r.lines if ln.shape is not None]
        if shapes:
            n_boxes += len(shapes)
            counts, _ = det_counts([ln.polygon for ln in lines], shapes)
            det_hits += counts.tp
        region = str(r.fields.get("region", "")).lower()
        if region:
            regions.setdefault(region, []).append(int(ok))
        picked = (fields.get("candidates") or [{}])[0]
        rule = picked.get("rule", "as_read")
        changed += rule != "as_read"
        changed_fitting += rule != "as_read" and fits_known_layout(picked.get("read", ""))
        per_image.append({"image": r.image.name, "label": label, "plate": got, "ok": ok, "rule": rule,
                          "changes": picked.get("changes", [])})
    n = len(records)
    metrics: dict[str, float | None] = {
        "plate_exact": ratio(exact, n), "plate_exact_o0": ratio(exact_o0, n), "plate_cer": rec.cer,
        "plate_in_lines": ratio(in_lines, n), "plate_det_recall": ratio(det_hits, n_boxes),
    }
    for region in ("us", "eu", "br"):
        if region in regions:
            metrics[f"plate_exact_{region}"] = ratio(sum(regions[region]), len(regions[region]))
    counts = {"exact": exact, "exact_o0": exact_o0, "plate_boxes": n_boxes, "changed_reads": changed,
              "changed_reads_that_fit_a_layout": changed_fitting,
              **{f"images_{k}": len(v) for k, v in regions.items()}}
    return metrics, counts, per_image


# ----------------------------------------------------------------------------------------------- receipts

def _field_equal(kind: str, got: str | None, label: str) -> bool:
    if kind == "total":
        a, b = parse_amount(label), (Decimal(got) if got else None)
        return a is not None and a == b
    if kind == "loose":
        return bool(alnum_key(label)) and alnum_key(got) == alnum_key(label)
    return normalise_text(got) == normalise_text(label)


def _score_receipts(records: list[LabelRecord], preds: list[list[TextLineLike]], sizes: list[tuple[int, int]],
                    profile: Profile) -> tuple[dict[str, float | None], dict[str, int], list[dict]]:
    det, e2e, rec = PRCounts(), PRCounts(), RecCounts()
    field_hits: dict[str, list[int]] = {k: [] for k in ("company", "company_loose", "date", "date_iso",
                                                         "address", "address_loose", "total")}
    per_image = []
    tp_nospace = 0  # the SROIE-style labels space punctuation inconsistently ('RM 65.20' / 'RM65.20')
    for r, lines, size in zip(records, preds, sizes):
        gts = [ln for ln in r.lines if ln.shape is not None]
        counts, pairs = det_counts([ln.polygon for ln in lines], [g.shape for g in gts])
        det += counts
        tp = 0
        for i, j, _ in pairs:
            p, g = normalise_text(lines[i].text), normalise_text(gts[j].text)
            rec.add(p, g)
            tp += p == g
            tp_nospace += p.replace(" ", "") == g.replace(" ", "")
        e2e += PRCounts(tp, len(lines), len(gts))
        fields = profile.extract_fields(lines, size)
        lab = r.fields
        checks: dict[str, bool] = {}
        if lab.get("company"):
            checks["company"] = _field_equal("text", fields.get("company"), lab["company"])
            checks["company_loose"] = _field_equal("loose", fields.get("company"), lab["company"])
        if lab.get("date"):
            checks["date"] = _field_equal("text", fields.get("date_raw"), lab["date"])
            parsed = parse_date(lab["date"])
            checks["date_iso"] = parsed is not None and parsed[0] == fields.get("date")
        if lab.get("address"):
            checks["address"] = _field_equal("text", fields.get("address"), lab["address"])
            checks["address_loose"] = _field_equal("loose", fields.get("address"), lab["address"])
        if lab.get("total"):
            checks["total"] = _field_equal("total", fields.get("total"), lab["total"])
        for k, v in checks.items():
            field_hits[k].append(int(v))
        per_image.append({"image": r.image.name, "det": [counts.tp, counts.n_pred, counts.n_gt], "e2e_tp": tp,
                          "fields": fields, "labels": lab, "checks": checks})
    metrics: dict[str, float | None] = {
        "det_precision": det.precision, "det_recall": det.recall, "det_hmean": det.hmean,
        "rec_accuracy": rec.accuracy, "rec_cer": rec.cer,
        "e2e_precision": e2e.precision, "e2e_recall": e2e.recall, "e2e_f1": e2e.hmean,
        "e2e_recall_nospace": ratio(tp_nospace, e2e.n_gt),
    }
    metrics.update({f"field_{k}": ratio(sum(v), len(v)) for k, v in field_hits.items()})
    counts = {"gt_lines": det.n_gt, "pred_lines": det.n_pred, "det_tp": det.tp, "e2e_tp": e2e.tp,
              **{f"labelled_{k}": len(v) for k, v in field_hits.items() if not k.endswith(("_loose", "_iso"))}}
    return metrics, counts, per_image


# ----------------------------------------------------------------------------------------------- ids

def _yymmdd(iso: str | None) -> str:
    return f"{iso[2:4]}{iso[5:7]}{iso[8:10]}" if iso else ""


def _score_ids(records: list[LabelRecord], preds: list[list[TextLineLike]], sizes: list[tuple[int, int]],
               profile: Profile) -> tuple[dict[str, float | None], dict[str, int], list[dict]]:
    found = exact = valid = valid_wrong = 0
    parsed_rec, raw_rec = RecCounts(), RecCounts()
    field_hits: dict[str, list[int]] = {k: [] for k in ("document_number", "birth_date", "expiry_date",
                                                         "surname", "given_names")}
    per_image = []
    for r, lines, size in zip(records, preds, sizes):
        gt_lines = [ln.text for ln in r.lines]
        fields = profile.extract_fields(lines, size)
        got_lines = list(fields.get("mrz_lines") or [])
        found += bool(got_lines)
        same = got_lines == gt_lines
        exact += same
        valid += bool(fields.get("valid"))
        valid_wrong += bool(fields.get("valid")) and not same
        for k, g in enumerate(gt_lines):
            parsed_rec.add(got_lines[k] if k < len(got_lines) else "", g)
        ocr = [normalise_mrz_text(ln.text) for ln in lines] or [""]
        for g in gt_lines:
            best = min(ocr, key=lambda t, g=g: edit_distance(t, g))
            raw_rec.add(best, g)
        lab = r.fields
        got_fields = {"document_number": fields.get("document_number") or "",
                      "birth_date": _yymmdd(fields.get("birth_date")),
                      "expiry_date": _yymmdd(fields.get("expiry_date")),
                      "surname": fields.get("surname") or "", "given_names": fields.get("given_names") or ""}
        for k, hits in field_hits.items():
            if k in lab:
                hits.append(int(normalise_text(got_fields[k]) == normalise_text(str(lab[k]))))
        per_image.append({"image": r.image.name, "mrz_lines": got_lines, "labels": gt_lines, "exact": same,
                          "valid": fields.get("valid"), "check_digits": fields.get("check_digits")})
    n = len(records)
    metrics: dict[str, float | None] = {
        "mrz_found": ratio(found, n), "mrz_exact": ratio(exact, n), "mrz_line_exact": parsed_rec.accuracy,
        "mrz_cer": parsed_rec.cer, "mrz_raw_cer": raw_rec.cer, "mrz_valid": ratio(valid, n),
        "mrz_valid_but_wrong": ratio(valid_wrong, n),
    }
    metrics.update({f"field_{k}": ratio(sum(v), len(v)) for k, v in field_hits.items()})
    return metrics, {"found": found, "exact": exact, "valid": valid, "valid_but_wrong": valid_wrong}, per_image


_SCORERS: dict[str, Callable[..., tuple[dict[str, float | None], dict[str, int], list[dict]]]] = {
    "plates": _score_plates, "receipts": _score_receipts, "ids": _score_ids}
# The service profile each domain is read with (the API's ?profile=).
DOMAIN_PROFILES = {"plates": "plate", "receipts": "invoice", "ids": "id"}


def _second_looks(reader: Reader, domain: str, images: Sequence[bytes], preds: list[list[TextLineLike]],
                  sizes: Sequence[tuple[int, int]]) -> int:
    """Apply the profile's second look as the service does (same rule, same detector limits); returns how many
    images were read again. Readers without a ``det_limit`` (RapidOCR in bench/) get one read, as in their API."""
    profile = get_profile(DOMAIN_PROFILES[domain])
    if profile.second_look_det_limit is None or "det_limit" not in inspect.signature(reader.read_batch).parameters:
        return 0
    again = 0
    for i, (lines, size) in enumerate(zip(preds, sizes)):
        def read_at(limit: tuple[int, str], image: bytes = images[i]) -> list[TextLineLike]:
            return reader.read_batch([image], det_limit=limit)[0]  # type: ignore[call-arg]

        chosen, looked = profile.with_second_look(lines, size, read_at)
        if chosen is not lines:
            preds[i] = list(chosen)
        again += looked
    return again


# ----------------------------------------------------------------------------------------------- driver

def _reads_like_the_service(reader: Reader) -> bool:
    """An OcrPipeline is read through service.reading's plan, as the service reads; other readers (RapidOCR in
    bench/, test doubles) through read_batch and the second-look rule."""
    from service.pipeline import OcrPipeline

    return isinstance(reader, OcrPipeline)


def _open_pipeline(model_dir: str | Path, providers: Sequence[str] | None = None,
                   threads: int | None = None) -> Reader:
    from service.pipeline import OcrPipeline

    return OcrPipeline.from_dir(model_dir, providers=providers, intra_threads=threads)


def _model_name(pipeline_or_model_dir: Reader | str | Path) -> str:
    if isinstance(pipeline_or_model_dir, (str, Path)):
        return str(pipeline_or_model_dir)
    bundle = getattr(pipeline_or_model_dir, "bundle", None)
    return str(getattr(bundle, "root", None) or getattr(getattr(bundle, "manifest", None), "name", None)
               or type(pipeline_or_model_dir).__name__)


def evaluate_dataset(pipeline_or_model_dir: Reader | str | Path, data_dir: str | Path, domain: str,
                     limit: int | None = None, batch_size: int = 4) -> DomainReport:
    """Run the pipeline + the domain's profile over `data_dir/<domain>` and score it against the labels."""
    if domain not in _SCORERS:
        raise ValueError(f"unknown domain {domain!r}; known: {', '.join(_SCORERS)}")
    pipeline = _open_pipeline(pipeline_or_model_dir) if isinstance(pipeline_or_model_dir, (str, Path)) \
        else pipeline_or_model_dir
    records = load_labels(domain_dir(data_dir, domain))
    if limit is not None:
        records = records[:limit]
    preds: list[list[TextLineLike]] = []
    sizes: list[tuple[int, int]] = []
    second_looks = region_reads = 0
    t0 = time.perf_counter()
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        loaded = [_image(r.image) for r in chunk]
        if _reads_like_the_service(pipeline):
            # the service's own plan per image: a focused read (id: the MRZ band), the second look
            from service.reading import read_for_profile

            profile = get_profile(DOMAIN_PROFILES[domain])
            reads = [read_for_profile(pipeline, profile, data) for data, _ in loaded]  # type: ignore[arg-type]
            chunk_preds: list[list[TextLineLike]] = [list(r.lines) for r in reads]
            second_looks += sum(r.second_look is not None for r in reads)
            region_reads += sum(r.scope == "region" for r in reads)
        else:
            chunk_preds = list(pipeline.read_batch([data for data, _ in loaded]))
            second_looks += _second_looks(pipeline, domain, [data for data, _ in loaded], chunk_preds,
                                          [size for _, size in loaded])
        preds.extend(chunk_preds)
        sizes.extend(size for _, size in loaded)
    seconds = time.perf_counter() - t0
    bundle = getattr(pipeline, "bundle", None)
    report = score_predictions(domain, records, preds, sizes, getattr(bundle, "root", None))
    report.counts["second_looks"] = second_looks
    report.counts["region_reads"] = region_reads
    report.metrics["seconds_per_image"] = seconds / len(records) if records else None
    report.model = _model_name(pipeline_or_model_dir)
    return report


def domain_profile(domain: str, model_dir: str | Path | None = None) -> Profile:
    """The profile a domain is read with, with what the model dir's bundle adds (e.g. a learned field model)."""
    profile = get_profile(DOMAIN_PROFILES[domain])
    if model_dir is None:
        return profile
    if not (Path(model_dir) / "model.json").is_file():
        log.warning("%s has no model.json here: %s fields scored with the profile alone", model_dir, domain)
        return profile
    return profile.for_model_dir(model_dir)


def score_predictions(domain: str, records: Sequence[LabelRecord], preds: Sequence[Sequence[TextLineLike]],
                      sizes: Sequence[tuple[int, int]], model_dir: str | Path | None = None) -> DomainReport:
    """Score OCR lines already read (e.g. saved with --json) against the labels, without running a model.

    ``model_dir``: the bundle that read them; its profile additions (model.json `fields_model`) are applied."""
    metrics, counts, per_image = _SCORERS[domain](list(records), list(preds), list(sizes),
                                                  domain_profile(domain, model_dir))
    for item, lines, size in zip(per_image, preds, sizes):
        item["image_size"] = list(size)
        item["pred_lines"] = [{"text": ln.text, "confidence": round(float(ln.confidence), 4),
                               "polygon": [[round(float(x), 1), round(float(y), 1)] for x, y in ln.polygon],
                               "char_confidences": [round(float(c), 4)
                                                    for c in getattr(ln, "char_confidences", ())],
                               "chars": [[[[a, round(float(p), 4)] for a, p in ch.alternatives], ch.start, ch.end]
                                         for ch in getattr(ln, "char_evidence", ())]}
                              for ln in lines]
    return DomainReport(domain, "", len(records), metrics, counts, per_image)


@dataclass(frozen=True)
class SavedLine:
    """An OCR line as saved in a --json report (`pred_lines`)."""

    text: str
    confidence: float
    polygon: list[tuple[float, float]]
    char_confidences: tuple[float, ...] = ()  # absent in reports saved before they were recorded
    char_evidence: tuple[CharEvidence, ...] = ()  # likewise


def rescore_saved(path: str | Path, data_dir: str | Path, bundle: str | Path | None = None
                  ) -> dict[str, list[DomainReport]]:
    """Re-score the predictions saved by `--json` with the current profiles and metrics (no model run).

    Profile changes can be measured in seconds this way; `seconds_per_image` is carried over from the run.
    ``bundle``: the model dir whose profile additions (model.json `fields_model`) apply; default the one recorded.
    """
    saved = json.loads(Path(path).read_text(encoding="utf-8"))
    out: dict[str, list[DomainReport]] = {}
    for model, reports in saved.items():
        for rep in reports:
            domain = rep["domain"]
            by_name = {r.image.name: r for r in load_labels(domain_dir(data_dir, domain))}
            items = rep["per_image"]
            preds = [[SavedLine(x["text"], x["confidence"], [tuple(p) for p in x["polygon"]],
                                tuple(x.get("char_confidences", ())),
                                tuple(CharEvidence(tuple((a, p) for a, p in alts), start, end)
                                      for alts, start, end in x.get("chars", ())))
                      for x in it["pred_lines"]] for it in items]
            report = score_predictions(domain, [by_name[it["image"]] for it in items], preds,
                                       [tuple(it["image_size"]) for it in items], bundle or model)
            report.metrics["seconds_per_image"] = rep["metrics"].get("seconds_per_image")
            report.model = model
            out.setdefault(model, []).append(report)
    return out


def main_evaluate(argv: Sequence[str] | None = None) -> int:
    """CLI: evaluate one or more model dirs on the domains; prints markdown, optionally writes it."""
    from training.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="ocrnet evaluate", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--model-dir", action="append", default=None,
                    help="model dir (repeat or comma-separate to compare models side by side); unset: models/base")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder with <domain>/labels.jsonl")
    ap.add_argument("--domains", default="plates,receipts,ids", help="comma-separated domains to evaluate")
    ap.add_argument("--out", help="write the markdown report here")
    ap.add_argument("--json", dest="json_out", help="write the reports (with per-image details) as JSON here")
    ap.add_argument("--limit", type=int, help="first N images per domain (quick checks); unset: all")
    ap.add_argument("--batch-size", type=int, default=4, help="images per pipeline call")
    ap.add_argument("--providers", help="comma-separated onnxruntime providers; unset: best available")
    ap.add_argument("--threads", type=int, help="onnxruntime intra-op threads; unset: onnxruntime's default")
    ap.add_argument("--replay", help="re-score the predictions of an earlier --json file instead of running models")
    ap.add_argument("--bundle", help="with --replay: score with this model dir's profile additions (model.json "
                                     "fields_model) instead of those of the model dir recorded in the file")
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.replay:
        by_model = rescore_saved(args.replay, args.data, args.bundle)
        return _emit(by_model, args.out, args.json_out)

    model_dirs = [m for arg in (args.model_dir or ["models/base"]) for m in arg.split(",") if m]
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    found = [d for d in domains if (domain_dir(args.data, d) / "labels.jsonl").is_file()]
    if not found:
        print(f"ocrnet evaluate: no labelled data for {', '.join(domains)} under {args.data!r} (looked for "
              f"<domain>/labels.jsonl). Pass --data FOLDER (format: docs/labels.md); `--data examples` "
              f"evaluates on the small samples shipped in the repository.",
              file=sys.stderr)
        return 2
    providers = args.providers.split(",") if args.providers else None
    by_model: dict[str, list[DomainReport]] = {}
    for model_dir in model_dirs:
        pipeline = _open_pipeline(model_dir, providers, args.threads)
        reports = []
        for domain in domains:
            if not (domain_dir(args.data, domain) / "labels.jsonl").is_file():
                log.warning("no %s/labels.jsonl under %s; skipped", domain, args.data)
                continue
            report = evaluate_dataset(pipeline, args.data, domain, args.limit, args.batch_size)
            report.model = model_dir
            reports.append(report)
            log.info("%s %s: %s", model_dir, domain, {k: v for k, v in report.metrics.items()})
        by_model[model_dir] = reports
    return _emit(by_model, args.out, args.json_out)


def _emit(by_model: dict[str, list[DomainReport]], out: str | None, json_out: str | None) -> int:
    """Print the markdown (one model: full tables; several: side by side) and write the requested files."""
    models = list(by_model)
    markdown = render_reports(by_model[models[0]]) if len(models) == 1 else render_comparison(by_model)
    print(markdown)
    if out:
        Path(out).write_text(markdown, encoding="utf-8")
    if json_out:
        payload = {m: [r.to_dict(with_images=True) for r in reps] for m, reps in by_model.items()}
        Path(json_out).write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    return 0

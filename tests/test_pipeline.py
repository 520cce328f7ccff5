"""End-to-end checks of OcrPipeline over the ONNX models in models/base (CPU)."""
from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pytest
from shapely.geometry import Polygon, box as shapely_box

from rendering import DEJAVU_MONO, DEJAVU_SANS, DEJAVU_SERIF, OCR_B, PageLine, render_page, render_text_line
from service.vision.images import to_bgr_array

REC_LINES = [
    ("INVOICE NO. 2024-00123", DEJAVU_SANS),
    ("TOTAL 1,234.56 EUR", DEJAVU_SANS),
    ("ABC-1234", DEJAVU_SANS),
    ("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", OCR_B),
]


@pytest.mark.parametrize("height", [32, 48])
def test_rendered_lines_are_read_exactly_by_the_recognizer(base_pipeline, height):
    crops = [to_bgr_array(render_text_line(t, font=f, height=height)) for t, f in REC_LINES]
    decoded = base_pipeline.recognize(crops)
    assert [d.text for d in decoded] == [t for t, _ in REC_LINES]
    assert all(d.confidence > 0.9 and len(d.char_confidences) == len(d.text) for d in decoded)


PAGE = [
    PageLine("INVOICE NO. 2024-00123", size=40),
    PageLine("Date: 2024-03-15", size=24),
    PageLine("TOTAL 1,234.56 EUR", size=32, font=DEJAVU_SERIF),
    PageLine("ABC-1234", size=28, font=DEJAVU_MONO, x=300),
    PageLine("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", size=24, font=OCR_B),
]


def _iou(a, b) -> float:
    pa, pb = Polygon(a), shapely_box(*b)
    return pa.intersection(pb).area / pa.union(pb).area


@pytest.fixture(scope="module")
def page_and_lines(base_pipeline):
    page = render_page(PAGE, width=900)
    return page, base_pipeline.read(page.image)


def test_page_every_line_found_in_order_with_its_box(page_and_lines):
    page, lines = page_and_lines
    assert [line.text for line in lines] == page.texts
    for line, gt in zip(lines, page.boxes):
        assert _iou(line.polygon, gt) > 0.5, (line.text, line.polygon, gt)
        assert 0.9 < line.confidence <= 1.0 and line.det_score > 0.5


def test_read_batch_matches_read_and_accepts_all_input_types(base_pipeline, page_and_lines):
    page, lines = page_and_lines
    single = render_text_line("ABC-1234", height=64)
    as_bytes = io.BytesIO()
    page.image.save(as_bytes, format="PNG")
    batch = base_pipeline.read_batch([np.asarray(single), as_bytes.getvalue()])
    assert [line.text for line in batch[0]] == ["ABC-1234"]
    assert [(l.text, l.polygon) for l in batch[1]] == [(l.text, l.polygon) for l in lines]


def test_stages_compose_like_read(base_pipeline, page_and_lines):
    page, lines = page_and_lines
    inp = base_pipeline.prepare_det(page.image)
    prob = base_pipeline.run_det([inp])[0]
    assert prob.shape == inp.valid_hw and 0 <= prob.min() and prob.max() <= 1
    dets = base_pipeline.boxes(inp, prob)
    batches = base_pipeline.prepare_rec(base_pipeline.crops(inp, dets))
    assert all(b.tensor.shape[3] in base_pipeline.rec_width_buckets for b in batches)
    decoded = base_pipeline.decode(batches, [base_pipeline.run_rec(b) for b in batches])
    assert base_pipeline.assemble(dets, decoded) == lines


def test_blank_image_gives_no_lines(base_pipeline):
    assert base_pipeline.read(np.full((200, 300, 3), 255, np.uint8)) == []


# ---- dev set: receipts line recall -----------------------------------------------------------
def _poly(box) -> Polygon:
    if len(box) == 4 and not isinstance(box[0], (list, tuple)):
        return shapely_box(*box)
    return Polygon(box).buffer(0)


def _norm(text: str, ignore_spaces: bool) -> str:
    text = text.strip().upper()
    return "".join(text.split()) if ignore_spaces else text


def line_recall(predicted: list[list], labels: list[dict], ignore_spaces: bool = False) -> tuple[float, float]:
    """(line recall, detection recall): a GT line counts when a one-to-one IoU>=0.5 match reads the
    same text (case-insensitive, outer spaces stripped; optionally all spaces ignored)."""
    hits = found = total = 0
    for lines, rec in zip(predicted, labels):
        preds = [(_poly(l.polygon), _norm(l.text, ignore_spaces)) for l in lines]
        used: set[int] = set()
        for gt in rec["lines"]:
            total += 1
            gp, best, best_iou = _poly(gt["box"]), None, 0.5
            for j, (pp, _) in enumerate(preds):
                if j in used:
                    continue
                union = gp.union(pp).area
                iou = gp.intersection(pp).area / union if union else 0.0
                if iou >= best_iou:
                    best, best_iou = j, iou
            if best is not None:
                used.add(best)
                found += 1
                hits += preds[best][1] == _norm(gt["text"], ignore_spaces)
    return hits / max(total, 1), found / max(total, 1)


def test_line_recall_helper_counts_case_insensitive_matches():
    from service.pipeline import TextLine

    gt = [{"lines": [{"text": "TOTAL 5.00", "box": [0, 0, 100, 20]}, {"text": "CASH", "box": [0, 40, 50, 60]}]}]
    pred = [[TextLine("Total 5.00", 0.9, [(1, 1), (99, 1), (99, 19), (1, 19)]),
             TextLine("CASH", 0.9, [(200, 40), (250, 40), (250, 60), (200, 60)])]]
    assert line_recall(pred, gt) == (0.5, 0.5)
    pred[0][0] = TextLine("TOTAL5.00", 0.9, pred[0][0].polygon)
    assert line_recall(pred, gt) == (0.0, 0.5) and line_recall(pred, gt, ignore_spaces=True) == (0.5, 0.5)


@pytest.mark.slow
def test_receipts_line_recall(base_pipeline, shared_data_dir):
    root = shared_data_dir / "receipts"
    if not (root / "labels.jsonl").is_file():
        pytest.skip("no receipts in the dev data")
    labels = [json.loads(l) for l in (root / "labels.jsonl").read_text().splitlines() if l.strip()]
    every = int(os.environ.get("OCRNET_RECEIPTS_EVERY", "3"))  # 1 = all; default: every 3rd receipt, keeps `make test` short
    labels = labels[::every]
    t0 = time.perf_counter()
    predicted = [base_pipeline.read((root / r["image"]).read_bytes()) for r in labels]
    recall, det_recall = line_recall(predicted, labels)
    nospace = line_recall(predicted, labels, ignore_spaces=True)[0]
    print(f"\nreceipts: {len(labels)} images, line recall {recall:.4f} (ignoring spaces {nospace:.4f}), "
          f"detection recall {det_recall:.4f}, "
          f"{time.perf_counter() - t0:.1f}s")
    assert recall >= 0.60


def test_cpu_pipeline_detects_on_exact_shapes_and_buckets_elsewhere(base_pipeline, base_model_dir):
    from service.pipeline import OcrPipeline
    from service.vision.det_preprocess import DEFAULT_MAX_DET_SIDE
    from service.vision.static_shapes import ACCELERATOR_DET_BUCKETS

    assert base_pipeline.det_providers == ["CPUExecutionProvider"] and base_pipeline.det_config.buckets == ()
    assert base_pipeline.det_config.max_det_side == DEFAULT_MAX_DET_SIDE  # every axis capped, CPU included
    inp = base_pipeline.prepare_det(np.zeros((720, 1280, 3), np.uint8))
    assert inp.tensor.shape[1:] == inp.valid_hw == (736, 1312)
    static = OcrPipeline.from_dir(base_model_dir, providers=["cpu"], static_shapes=True)  # the GPU regime
    assert static.det_config.buckets == ACCELERATOR_DET_BUCKETS
    inp = static.prepare_det(np.zeros((720, 1280, 3), np.uint8))
    assert inp.valid_hw == (736, 1312) and inp.tensor.shape[1:] == (768, 2048)


def test_boxes_too_small_for_text_are_not_recognised(base_pipeline, page_and_lines):
    page, lines = page_and_lines
    assert lines
    old = base_pipeline.rec_min_side
    try:
        base_pipeline.rec_min_side = 10_000.0  # taller than any line on the page
        assert base_pipeline.read(page.image) == []
        base_pipeline.rec_min_side = 2.0  # every real line is taller
        assert base_pipeline.read(page.image) == lines
    finally:
        base_pipeline.rec_min_side = old


def test_cpu_memory_arena_default_follows_the_providers(base_model_dir, monkeypatch):
    """Unset: off on CPU-only (exact det shapes vary per image and the arena keeps its peak), on with accelerators
    (static shapes bound the peak; onnxruntime's default, which the GPU timings were measured with)."""
    from service import pipeline as pipeline_module
    from service.pipeline import OcrPipeline

    arenas: list[bool] = []
    real_shared_session = pipeline_module.shared_session

    def spy(path, **options):
        arenas.append(options["cpu_mem_arena"])
        return real_shared_session(path, **{**options, "providers": ["cpu"]})

    monkeypatch.setattr(pipeline_module, "shared_session", spy)
    OcrPipeline.from_dir(base_model_dir, providers=["cpu"], cpu_mem_arena=None)
    monkeypatch.setattr(pipeline_module, "resolve_providers",
                        lambda providers: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    OcrPipeline.from_dir(base_model_dir, providers=["cuda", "cpu"], cpu_mem_arena=None)
    OcrPipeline.from_dir(base_model_dir, providers=["cuda", "cpu"], cpu_mem_arena=False)
    assert arenas == [False, False, True, True, False, False]


def test_tight_output_boxes_change_the_polygons_not_the_reading(base_pipeline, base_model_dir, page_and_lines):
    """A bundle's det_output_unclip_ratio: same crops, so the same text and confidences; each returned polygon
    lies within the crop's and sits closer to the rendered line (what the invoice bundle ships with, 1.3)."""
    from dataclasses import replace

    from service.pipeline import OcrPipeline

    page, lines = page_and_lines
    tight = OcrPipeline.from_dir(base_model_dir, providers=["cpu"])
    tight.db_config = replace(tight.db_config, output_unclip_ratio=1.3)
    tight_lines = tight.read(page.image)
    assert [(ln.text, ln.confidence) for ln in tight_lines] == [(ln.text, ln.confidence) for ln in lines]
    for wide, narrow, gt in zip(lines, tight_lines, page.boxes):
        assert Polygon(narrow.polygon).within(Polygon(wide.polygon).buffer(1.0))
        assert Polygon(narrow.polygon).area < Polygon(wide.polygon).area and _iou(narrow.polygon, gt) > 0.5
    mean_iou = lambda found: np.mean([_iou(ln.polygon, gt) for ln, gt in zip(found, page.boxes)])  # noqa: E731
    assert mean_iou(tight_lines) > mean_iou(lines)

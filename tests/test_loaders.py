"""Loaders: labels.jsonl (all box forms), ICDAR-2015 txt, crop TSV, dataset sniffing, the real dev set."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from training.data.loaders import (
    CropRecord,
    ImageRecord,
    det_samples,
    load_records,
    normalise_box,
    read_crop_list,
    read_icdar2015,
    read_labels_jsonl,
    rec_samples,
)


def _page(path, size=(200, 100)):
    """White page with a black bar at x 20..120, y 30..50 (a stand-in text line)."""
    img = Image.new("RGB", size, (255, 255, 255))
    img.paste((0, 0, 0), (20, 30, 120, 50))
    img.save(path)
    return path


def test_normalise_box_forms():
    rect = [(20.0, 30.0), (120.0, 30.0), (120.0, 50.0), (20.0, 50.0)]
    assert normalise_box([20, 30, 120, 50]) == rect
    assert normalise_box([120, 50, 20, 30]) == rect  # corners given the other way round
    assert normalise_box([[20, 30], [120, 30], [120, 50], [20, 50]]) == rect
    assert normalise_box([20, 30, 120, 30, 120, 50, 20, 50]) == rect
    assert normalise_box([[20, 30], [70, 25], [120, 30], [120, 50], [20, 50]]) == [(20, 25), (120, 25), (120, 50), (20, 50)]
    assert normalise_box(None) is None
    for bad in ([1, 2, 3], "x", [[1, 2], [3, 4]], []):
        with pytest.raises(ValueError):
            normalise_box(bad)


def test_jsonl_to_det_and_rec(tmp_path):
    _page(tmp_path / "a.png")
    _page(tmp_path / "b.png")
    rows = [
        {"image": "a.png", "lines": [{"text": "BAR", "box": [20, 30, 120, 50]},
                                     {"text": "Q", "box": [[130, 60], [180, 60], [180, 90], [130, 90]]}],
         "fields": {"total": "1.00"}},
        {"image": "b.png", "lines": [{"text": "NO BOX", "box": None}]},
    ]
    (tmp_path / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    recs = read_labels_jsonl(tmp_path / "labels.jsonl")
    assert [r.has_boxes for r in recs] == [True, False]
    dets = list(det_samples(recs))
    assert len(dets) == 1 and dets[0].fields == {"total": "1.00"} and dets[0].image.size == (200, 100)
    assert [ln.text for ln in dets[0].lines] == ["BAR", "Q"]
    with pytest.raises(ValueError, match="without boxes"):
        recs[1].det_sample()
    crops = list(rec_samples(recs))
    assert [c.text for c in crops] == ["BAR", "Q"]
    bar = np.asarray(crops[0].image)
    assert bar.shape[:2] == (20, 100) and bar.mean() < 40  # the crop is the black bar
    assert np.asarray(crops[1].image).mean() > 200


def test_jsonl_bad_record_names_the_line(tmp_path):
    (tmp_path / "labels.jsonl").write_text('{"image": "a.png", "lines": []}\n{"lines": []}\n')
    with pytest.raises(ValueError, match=r"labels.jsonl:2"):
        read_labels_jsonl(tmp_path / "labels.jsonl")


def test_icdar2015(tmp_path):
    _page(tmp_path / "img_1.jpg")
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "gt_img_1.txt").write_text(
        "\ufeff20,30,120,30,120,50,20,50,HELLO, WORLD\n150,10,190,10,190,20,150,20,###\n\n", encoding="utf-8")
    recs = read_icdar2015(tmp_path, gt)
    assert len(recs) == 1
    lines = recs[0].lines
    assert [(ln.text, ln.ignore) for ln in lines] == [("HELLO, WORLD", False), ("###", True)]
    assert lines[0].polygon == [(20, 30), (120, 30), (120, 50), (20, 50)]
    det = recs[0].det_sample()
    assert [ln.ignore for ln in det.lines] == [False, True]
    assert [s.text for s in recs[0].rec_samples()] == ["HELLO, WORLD"]  # don't-care lines are not crops
    sniffed = load_records(tmp_path)
    assert isinstance(sniffed[0], ImageRecord) and sniffed[0].lines == lines


def test_icdar_missing_image_is_an_error(tmp_path):
    (tmp_path / "gt_img_9.txt").write_text("0,0,1,0,1,1,0,1,X\n")
    with pytest.raises(FileNotFoundError):
        read_icdar2015(tmp_path)


def test_crop_tsv(tmp_path):
    (tmp_path / "crops").mkdir()
    Image.new("RGB", (60, 20), (9, 9, 9)).save(tmp_path / "crops" / "c1.png")
    (tmp_path / "list.tsv").write_text("# path\ttext\ncrops/c1.png\tAB 12\tX\n")
    recs = read_crop_list(tmp_path / "list.tsv")
    assert recs == [CropRecord(tmp_path / "crops" / "c1.png", "AB 12\tX")]  # only the first tab splits
    s = recs[0].rec_sample()
    assert s.image.size == (60, 20) and s.image.mode == "RGB"
    assert [x.text for x in rec_samples(load_records(tmp_path / "list.tsv"))] == ["AB 12\tX"]
    (tmp_path / "bad.tsv").write_text("no tab here\n")
    with pytest.raises(ValueError):
        read_crop_list(tmp_path / "bad.tsv")


def test_reads_the_shared_dev_set(shared_data_dir):
    plates = load_records(shared_data_dir / "plates")
    assert len(plates) >= 10 and all(r.has_boxes for r in plates)
    crop = plates[0].rec_samples()[0]
    assert crop.text == plates[0].fields["plate"] and crop.image.width > crop.image.height
    receipts = load_records(shared_data_dir / "receipts" / "labels.jsonl")
    det = receipts[0].det_sample()
    assert len(det.lines) > 10 and all(len(ln.polygon) == 4 for ln in det.lines)
    ids = load_records(shared_data_dir / "ids")
    assert not any(r.has_boxes for r in ids) and ids[0].rec_samples() == []  # MRZ labels have no boxes
    assert list(det_samples(ids)) == []


def test_paddleocr_det_labels(tmp_path):
    _page(tmp_path / "p.png")
    rows = [{"transcription": "BAR", "points": [[20, 30], [120, 30], [120, 50], [20, 50]]},
            {"transcription": "###", "points": [[150, 60], [190, 60], [190, 90], [150, 90]]}]
    (tmp_path / "det_gt.txt").write_text("p.png\t" + json.dumps(rows) + "\n")
    recs = load_records(tmp_path / "det_gt.txt")
    assert isinstance(recs[0], ImageRecord)
    assert [(ln.text, ln.ignore) for ln in recs[0].lines] == [("BAR", False), ("###", True)]
    crops = recs[0].rec_samples()
    assert [c.text for c in crops] == ["BAR"] and np.asarray(crops[0].image).mean() < 40
    (tmp_path / "bad.txt").write_text('p.png\t[{"points": [[0, 0], [1, 0], [1, 1], [0, 1]]}]\n')
    with pytest.raises(ValueError, match="bad.txt:1"):
        load_records(tmp_path / "bad.txt")

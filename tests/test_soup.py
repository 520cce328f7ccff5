"""ocrnet soup: weight averaging of finetune runs that share architecture and class table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.soup import average_checkpoints, main


def _checkpoint(weight: float, classes: list[str] | None = None, steps: int = 7) -> dict:
    return {"task": "rec", "classes": classes or ["", "A", "B"], "state": {"step": 100},
            "model": {"head.weight": torch.full((2, 3), weight), "bn.num_batches_tracked": torch.tensor(steps)}}


def _run(root: Path, name: str, ckpt: dict, train_path: str) -> Path:
    run = root / name
    run.mkdir()
    torch.save(ckpt, run / "best.pt")
    config = {"task": "rec", "name": name, "output_dir": str(run),
              "data": {"train": [{"kind": "tsv", "path": train_path}], "val": []}}
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return run


def test_floating_weights_are_averaged_and_counters_kept():
    soup = average_checkpoints([_checkpoint(1.0, steps=7), _checkpoint(3.0, steps=9)])
    assert torch.equal(soup["model"]["head.weight"], torch.full((2, 3), 2.0))
    assert int(soup["model"]["bn.num_batches_tracked"]) == 7  # the first run's, not an average
    assert soup["classes"] == ["", "A", "B"] and soup["task"] == "rec"


def test_incompatible_runs_are_refused():
    with pytest.raises(ValueError, match="class tables"):
        average_checkpoints([_checkpoint(1.0), _checkpoint(2.0, classes=["", "A", "C"])])
    other_shape = _checkpoint(1.0)
    other_shape["model"]["head.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="shape"):
        average_checkpoints([_checkpoint(1.0), other_shape])
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([_checkpoint(1.0)])


def test_cli_writes_a_run_folder_export_can_take(tmp_path):
    a = _run(tmp_path, "labels", _checkpoint(0.0), ".data/crops/receipts/labels.tsv")
    b = _run(tmp_path, "lines", _checkpoint(4.0), ".data/crops/receipts_lines/labels.tsv")
    config_b = json.loads((b / "config.json").read_text(encoding="utf-8"))  # b also trained on a's crops
    config_b["data"]["train"].insert(0, {"kind": "tsv", "path": ".data/crops/receipts/labels.tsv", "limit_by": "first"})
    (b / "config.json").write_text(json.dumps(config_b), encoding="utf-8")
    out = tmp_path / "soup"
    assert main(["--runs", str(a), str(b), "--out", str(out), "--name", "receipts_rec"]) == 0
    soup = torch.load(out / "best.pt", weights_only=False)
    assert torch.equal(soup["model"]["head.weight"], torch.full((2, 3), 2.0))
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["name"] == "receipts_rec" and config["output_dir"] == str(out)
    assert [s["path"] for s in config["data"]["train"]] == [".data/crops/receipts/labels.tsv",
                                                          ".data/crops/receipts_lines/labels.tsv"]
    assert json.loads((out / "soup.json").read_text(encoding="utf-8"))["checkpoints"] == [
        str(a / "best.pt"), str(b / "best.pt")]

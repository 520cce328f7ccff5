"""``ocrnet sweep``: grid expansion is exact and validated; a real two-point sweep ranks its runs."""
from __future__ import annotations

import json

import pytest
import yaml

from training.finetune.config import FinetuneConfig
from training.sweep import expand_grid, main, parse_axis

BASE = {"task": "rec", "batch_size": 2, "max_steps": 1, "progress": False, "export": False,
        "checkpoint_every_steps": 100,
        "data": {"train": [{"kind": "synthetic", "domain": "plates", "n": 6, "seed": 3}], "val_fraction": 0.34,
                 "rec_max_width": 160},
        "transfer": {"charset_cut": True}}


def test_parse_axis_reads_yaml_scalars():
    assert parse_axis("optim.lr=1e-4,3.0e-5") == ("optim.lr", ["1e-4", 3e-5])  # YAML 1.1: '1e-4' is a string
    assert parse_axis("transfer.freeze_backbone=true,false") == ("transfer.freeze_backbone", [True, False])
    with pytest.raises(ValueError):
        parse_axis("optim.lr")


def test_expand_grid_is_the_cartesian_product(tmp_path):
    base = FinetuneConfig.model_validate(BASE)
    points = expand_grid(base, [("optim.lr", [1e-4, 3e-5]), ("transfer.l2sp_lambda", [0.0, 1e-4, 1e-3])], tmp_path)
    assert len(points) == 6
    assert {(c.optim.lr, c.transfer.l2sp_lambda) for _, c in points} == {
        (lr, lam) for lr in (1e-4, 3e-5) for lam in (0.0, 1e-4, 1e-3)}
    assert len({c.output_dir for _, c in points}) == 6 and all(c.transfer.charset_cut for _, c in points)
    with pytest.raises(ValueError):  # invalid combinations are refused before anything runs
        expand_grid(base, [("transfer.freeze_neck", [True])], tmp_path)


@pytest.mark.slow
def test_sweep_runs_and_ranks(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    assert main(["--config", str(cfg), "--grid", "transfer.freeze_backbone=true,false", "--out", str(tmp_path / "s")]) == 0
    results = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [r["point"] for r in results] != [] and len(results) == 2
    assert results[0]["best_score"] >= results[1]["best_score"]
    assert all((tmp_path / "s" / r["point"] / "best.pt").exists() for r in results)
    assert "| 1 |" in capsys.readouterr().out

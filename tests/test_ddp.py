"""DDP code path on CPU: 2 gloo processes train a few real steps and end with identical weights."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from finetune_helpers import config, rec_model, rec_samples


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    from pathlib import Path

    from training.finetune.distributed import cleanup, init_distributed
    from training.finetune.tasks import RecTask
    from training.finetune.trainer import Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = init_distributed(use_cuda=False)
    try:
        model, classes = rec_model()
        cfg = config("rec", Path(out) / "run", max_steps=2, checkpoint_every_steps=1,
                     transfer={"l2sp_lambda": 1e-3, "backbone_lr_mult": 0.5})
        tr = Trainer(cfg, model, RecTask(classes, 160), rec_samples(16), info=info)
        tr.fit()
        torch.save({"model": tr.model.state_dict(), "indices": list(tr.train_sampler),
                    "losses": [s["loss"] for s in tr.step_log]}, Path(out) / f"rank{rank}.pt")
    finally:
        cleanup(info)


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert set(r0["indices"]).isdisjoint(r1["indices"]) and len(r0["indices"]) == len(r1["indices"]) == 8
    assert r0["losses"] != r1["losses"]  # each rank saw its own shard...
    pretrained, _ = rec_model()
    before = pretrained.state_dict()
    changed = False
    for key, value in r0["model"].items():  # ...yet the all-reduced updates keep the replicas equal
        torch.testing.assert_close(value, r1["model"][key], rtol=0, atol=0, msg=key)
        changed |= not torch.equal(value, before[key])
    assert changed
    assert (tmp_path / "run" / "last.pt").exists()  # written by rank 0 only

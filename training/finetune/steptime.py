"""Time finetuning steps on this machine, to size real runs: ``python -m training.finetune.steptime``.

Runs warm-up steps, then times ``--steps`` full optimizer steps (forward, loss, backward, AdamW) of
the pretrained model: rec on synthetic plate crops padded/squeezed to ``--width``; det (``--task det``)
on synthetic receipt-page crops of ``--size`` x ``--size``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from training.finetune.losses import ctc_loss, db_loss, encode_texts
from training.finetune.transfer import freeze, set_train_mode


def _rec(args) -> tuple[torch.nn.Module, callable, str]:
    from training.data.synth.plates import plate_line
    from training.finetune.datasets import collate_rec
    from training.models.rec import cut_charset, rec_from_onnx
    from training.pretrained import locate_pretrained

    model, chars = rec_from_onnx(locate_pretrained().rec)
    samples = [plate_line(np.random.default_rng([0, i])) for i in range(args.batch)]
    classes = [""] + list(chars)
    if args.charset_cut:
        new = sorted({c for s in samples for c in s.text} | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -"))
        model, classes = cut_charset(model, chars, new), [""] + new
    index = {c: i for i, c in enumerate(classes) if i}
    batch = collate_rec([(np.asarray(s.image)[:, :, ::-1], s.text) for s in samples], max_width=args.width)
    x = torch.nn.functional.pad(batch["image"], (0, args.width - batch["image"].shape[-1]))
    targets, lengths = encode_texts(batch["texts"], index)
    return model, lambda m: ctc_loss(m(x), targets, lengths), f"width={args.width} classes={len(classes)}"


def _det(args) -> tuple[torch.nn.Module, callable, str]:
    from training.data.synth.registry import SyntheticSamples
    from training.finetune.datasets import DetDataset, collate_det
    from training.models.det import det_from_onnx
    from training.pretrained import locate_pretrained

    model = det_from_onnx(locate_pretrained().det)
    ds = DetDataset(SyntheticSamples("receipts", "pages", args.batch, seed=0), size=args.size)
    batch = collate_det([ds[i] for i in range(args.batch)])
    return model, lambda m: db_loss(m(batch["image"]), batch)["loss"], f"size={args.size}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", choices=["rec", "det"], default="rec")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=int, default=320, help="rec crop width")
    ap.add_argument("--size", type=int, default=640, help="det crop side")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--charset-cut", action="store_true", help="rec: head cut to the plate charset")
    ap.add_argument("--freeze-backbone", action="store_true", help="time the frozen-backbone mode")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, loss_fn, what = (_rec if args.task == "rec" else _det)(args)
    frozen = ["backbone"] if args.freeze_backbone else []
    freeze(model, frozen)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-5)
    set_train_mode(model, frozen)
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = loss_fn(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    print(f"{args.task} step batch={args.batch} {what} frozen={frozen} threads={torch.get_num_threads()}: "
          f"median {np.median(times):.3f}s, min {min(times):.3f}s over {len(times)} steps")


if __name__ == "__main__":
    main()

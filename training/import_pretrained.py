"""``ocrnet import-pretrained``: PP-OCRv6 small ONNX -> OCRNet PyTorch checkpoint -> our own ONNX export.

Three numbers are recorded because each can go wrong on its own: torch vs the source ONNX (the weight
mapping), our export vs torch (the exporter) and our export vs the source ONNX (what users get).
"""
from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch, onnx and onnxruntime load when the command runs, not for --help
    from training.models.det import OCRNetDet
    from training.models.rec import OCRNetRec
    from training.pretrained import PretrainedFiles

log = logging.getLogger(__name__)
COMMAND = "python -m training import-pretrained --checkpoint checkpoints/pretrained.pt --export models/base"


@dataclass
class Pretrained:
    det: OCRNetDet
    rec: OCRNetRec
    characters: list[str]
    files: PretrainedFiles


def load_pretrained(files: PretrainedFiles | None = None) -> Pretrained:
    from training.models.det import det_from_onnx
    from training.models.rec import rec_from_onnx
    from training.pretrained import locate_pretrained

    files = files or locate_pretrained()
    det = det_from_onnx(files.det).eval()
    rec, characters = rec_from_onnx(files.rec)
    return Pretrained(det=det, rec=rec.eval(), characters=characters, files=files)


def save_checkpoint(pre: Pretrained, path: Path) -> Path:
    import torch

    from training.pretrained import RAPIDOCR_VERSION

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"det": pre.det.state_dict(), "rec": pre.rec.state_dict(), "characters": pre.characters,
                "source": {"rapidocr": RAPIDOCR_VERSION, "sha256": pre.files.sha256}}, path)
    return path


def _parity_inputs(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    det = [rng.standard_normal((1, 3, 320, 480), dtype=np.float32),
           rng.standard_normal((2, 3, 224, 160), dtype=np.float32)]
    rec = [rng.uniform(-1, 1, (2, 3, 48, 320)).astype(np.float32),
           rng.uniform(-1, 1, (1, 3, 48, 200)).astype(np.float32)]
    return det, rec


def export_base(pre: Pretrained, out_dir: Path) -> dict[str, float]:
    """Export det/rec to ``out_dir`` and return the parity numbers."""
    from training.export import export_det, export_rec, onnx_max_abs_diff
    from training.model_dir import ModelCard, write_charset, write_manifest
    from training.models.rec import RecProbs
    from training.pretrained import RAPIDOCR_VERSION

    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"source": f"PP-OCRv6 small via rapidocr=={RAPIDOCR_VERSION}", "exporter": "ocrnet import-pretrained"}
    t0 = time.perf_counter()
    det_path = export_det(pre.det, out_dir / "det.onnx", metadata=meta)
    rec_path = export_rec(pre.rec, out_dir / "rec.onnx", metadata=meta)
    export_s = time.perf_counter() - t0
    write_charset(out_dir / "charset.json", pre.characters)
    det_in, rec_in = _parity_inputs()
    parity = {
        "det torch vs source ONNX": onnx_max_abs_diff(pre.files.det, pre.det, det_in),
        "rec torch vs source ONNX": onnx_max_abs_diff(pre.files.rec, RecProbs(pre.rec), rec_in),
        "det export vs torch": onnx_max_abs_diff(det_path, pre.det, det_in),
        "rec export vs torch": onnx_max_abs_diff(rec_path, RecProbs(pre.rec), rec_in),
        "det export vs source ONNX": onnx_max_abs_diff(det_path, None, det_in, reference_onnx=pre.files.det),
        "rec export vs source ONNX": onnx_max_abs_diff(rec_path, None, rec_in, reference_onnx=pre.files.rec),
    }
    for name, value in parity.items():
        log.info("parity %-28s max|Δ| = %.2e", name, value)
        if value >= 1e-4:
            raise RuntimeError(f"parity check failed: {name} max abs diff {value:.2e} >= 1e-4")
    write_manifest(out_dir, name="base", version=f"ppocrv6-small-{RAPIDOCR_VERSION}", det="det.onnx",
                   rec="rec.onnx", source=f"rapidocr=={RAPIDOCR_VERSION} PP-OCRv6 small")
    n_det = sum(p.numel() for p in pre.det.parameters() if p.requires_grad)
    n_rec = sum(p.numel() for p in pre.rec.parameters())
    card = ModelCard(
        title="OCRNet base (PP-OCRv6 small, re-exported)",
        summary=("The default model of the service: OCRNet-Det (DB) and OCRNet-Rec (CTC, 18,710 classes) with the "
                 "pretrained PP-OCRv6 small weights, mapped from the ONNX initializers into our PyTorch modules "
                 "and exported with `torch.onnx.export(dynamo=True)` (dynamic batch/height/width for det, "
                 "batch/width for rec). Multilingual generic OCR; the domain models in `models/` start from it."),
        source=(f"PaddlePaddle PP-OCRv6 small det/rec, as shipped in the `rapidocr=={RAPIDOCR_VERSION}` wheel "
                f"(`rapidocr/models/PP-OCRv6_det_small.onnx` sha256 `{pre.files.sha256['PP-OCRv6_det_small.onnx']}`, "
                f"`PP-OCRv6_rec_small.onnx` sha256 `{pre.files.sha256['PP-OCRv6_rec_small.onnx']}`, both verified "
                "against the wheel's MODEL_LICENSES.md)."),
        license="Apache-2.0 (model weights and rapidocr); see MODEL_LICENSES.md inside the wheel.",
        command=COMMAND,
        data="No training: pretrained weights only (PaddleOCR's own training data).",
        facts={"det parameters": f"{n_det:,} (+ fresh threshold head, not exported)",
               "rec parameters": f"{n_rec:,}", "rec classes": f"{len(pre.characters) + 1:,}",
               "export time (2-core CPU)": f"{export_s:.1f} s"},
        metrics_md="Parity, max abs difference over random inputs (det 1×3×320×480 and 2×3×224×160; "
                   "rec 2×3×48×320 and 1×3×48×200, softmax outputs):\n\n| check | max abs diff |\n|---|---|\n"
                   + "\n".join(f"| {k} | {v:.2e} |" for k, v in parity.items()),
    )
    files = {p.name: p for p in (det_path, rec_path, out_dir / "charset.json")}
    (out_dir / "MODEL_CARD.md").write_text(card.render(files), encoding="utf-8")
    return parity


def main(argv: Sequence[str] | None = None) -> int:
    from training.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="ocrnet import-pretrained", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/pretrained.pt"),
                        help="where to save the PyTorch checkpoint (det + rec + characters)")
    parser.add_argument("--export", type=Path, default=None, metavar="MODEL_DIR",
                        help="also export ONNX + charset + model card to this model dir (e.g. models/base); "
                        "unset: checkpoint only")
    args = parser.parse_args(argv)
    pre = load_pretrained()
    log.info("saved %s", save_checkpoint(pre, args.checkpoint))
    if args.export is not None:
        export_base(pre, args.export)
    return 0

"""Weights a finetuned model shares byte for byte with the model it was finetuned from.

A detector finetuned with a frozen backbone differs from models/base's only in its neck and head (~0.14 M of
2.5 M parameters). Shipping it whole would cost 10 MB of the 40 MB models/ budget; instead its ONNX file keeps the
changed tensors and marks the unchanged ones as external data, and a sidecar ``<model>.shared.json`` (written by
``training.export.share_weights_with``) says where each one lies in the base file: byte offset and length,
dtype and shape, plus the base file's size and SHA-256 so that a changed base is refused instead of silently
mixing weights. onnxruntime refuses external-data paths outside the model's folder, so the tensors are read here
and handed to the session with ``SessionOptions.add_external_initializers``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

__all__ = ["SIDECAR_SUFFIX", "SharedWeights", "load_shared_weights", "sha256_file", "sidecar_path"]

SIDECAR_SUFFIX = ".shared.json"

# ONNX TensorProto.DataType codes of the dtypes our exports use
ONNX_DTYPES: dict[int, np.dtype] = {1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8),
                                    6: np.dtype(np.int32), 7: np.dtype(np.int64), 10: np.dtype(np.float16)}


def sidecar_path(model_path: str | Path) -> Path:
    path = Path(model_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (model files are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class SharedWeights:
    """Names and values to pass to ``add_external_initializers``; keep the object alive as long as the session
    (onnxruntime reads the OrtValues' memory)."""

    names: list[str]
    values: list[ort.OrtValue]

    def apply(self, options: ort.SessionOptions) -> None:
        if self.names:
            options.add_external_initializers(self.names, self.values)


def load_shared_weights(model_path: str | Path) -> SharedWeights | None:
    """The tensors ``model_path`` takes from its base model, or None when it has no sidecar (a whole model)."""
    sidecar = sidecar_path(model_path)
    if not sidecar.is_file():
        return None
    spec = json.loads(sidecar.read_text())
    base = (sidecar.parent / spec["base"]).resolve()
    if not base.is_file():
        raise FileNotFoundError(f"{Path(model_path).name} shares weights with {spec['base']}, which is missing")
    if base.stat().st_size != spec["base_size"] or sha256_file(base) != spec["base_sha256"]:
        raise ValueError(f"{Path(model_path).name} was exported against another {spec['base']} (size or SHA-256 "
                         "differ); re-export it against this one")
    data = np.memmap(base, dtype=np.uint8, mode="r")
    names, values = [], []
    for t in spec["tensors"]:
        raw = np.array(data[t["offset"]:t["offset"] + t["length"]])  # a copy: aligned, and the memmap can close
        array = raw.view(ONNX_DTYPES[t["dtype"]]).reshape(t["shape"])
        names.append(t["name"])
        values.append(ort.OrtValue.ortvalue_from_numpy(array))
    del data
    return SharedWeights(names, values)

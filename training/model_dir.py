"""Write a model dir the service can load: ONNX files, charset.json, model.json and MODEL_CARD.md.

The manifest fields are the ones ``service.model_bundle`` reads; paths are relative to the dir so a
finetuned recognizer can share the base detector (``"det": "../base/det.onnx"``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from service.model_bundle import MANIFEST, ModelManifest, sha256_file


@dataclass
class ModelCard:
    """What a user needs to trust a shipped model: where it came from, how it was made, how good it is."""

    title: str
    summary: str
    source: str
    license: str
    command: str
    data: str
    metrics_md: str = ""
    extra_md: str = ""
    facts: dict[str, str] = field(default_factory=dict)

    def render(self, files: dict[str, Path]) -> str:
        lines = [f"# {self.title}", "", self.summary, "", "## Files", "", "| file | size | sha256 |", "|---|---|---|"]
        for name, path in files.items():
            digest = sha256_file(path)
            lines.append(f"| `{name}` | {path.stat().st_size / 1e6:.2f} MB | `{digest[:16]}…` |")
        lines += ["", "## Source and licence", "", self.source, "", self.license, "",
                  "## Data", "", self.data, "", "## Command that produced it", "", "```bash", self.command, "```"]
        if self.facts:
            lines += ["", "## Facts", "", "| | |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in self.facts.items()]
        if self.metrics_md:
            lines += ["", "## Metrics", "", self.metrics_md]
        if self.extra_md:
            lines += ["", self.extra_md]
        return "\n".join(lines) + "\n"


def write_charset(path: Path, characters: list[str]) -> None:
    """charset.json: class i+1 is characters[i]; class 0 is the CTC blank."""
    path.write_text(json.dumps({"blank_index": 0, "characters": characters}, ensure_ascii=False), encoding="utf-8")


def write_manifest(model_dir: Path, **fields: object) -> Path:
    """Write model.json through the service's own manifest model, so its defaults stay the single source."""
    manifest = ModelManifest.model_validate(fields)
    for key in ("det", "rec", "charset"):
        target = model_dir / getattr(manifest, key)
        if not target.exists():
            raise FileNotFoundError(f"model.json {key} -> {target} does not exist")
    path = model_dir / MANIFEST
    path.write_text(manifest.model_dump_json(indent=2, exclude_unset=True) + "\n", encoding="utf-8")
    return path

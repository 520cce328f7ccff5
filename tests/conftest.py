"""Shared fixtures: repository paths, the dev data set (skipped when absent), the base model dir."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
BASE_MODEL_DIR = REPO_ROOT / "models" / "base"

if str(Path(__file__).resolve().parent) not in sys.path:  # lets tests `import rendering`
    sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """<repo>/../shared/data (read-only dev set); skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"dev data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    """models/base with det/rec ONNX + manifest; skips when the model files are not present."""
    if not (BASE_MODEL_DIR / "model.json").is_file():
        pytest.skip(f"no model bundle at {BASE_MODEL_DIR}")
    return BASE_MODEL_DIR


@pytest.fixture(scope="session")
def base_pipeline(base_model_dir: Path):
    """One CPU OcrPipeline over models/base for the whole session (sessions take seconds to build)."""
    from service.pipeline import OcrPipeline

    return OcrPipeline.from_dir(base_model_dir, providers=["cpu"], intra_threads=2)


@pytest.fixture(scope="module")
def doc_png() -> bytes:
    """The API tests' square page (api_support.BASE_TEXTS) as PNG bytes."""
    from api_support import encode, square_doc

    return encode(square_doc())

"""Model directory manifest (models/<name>/model.json): paths, charset, hashes for /v1/models."""
from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.runtime import CPU
from service.shared_weights import sha256_file
from service.vision.charset import load_charset
from service.vision.det_preprocess import DetPreprocessConfig

MANIFEST = "model.json"
# The manifest fields that name a file (relative to the manifest's folder); every one that is set must exist.
FILE_KEYS = ("det", "det_cpu", "rec", "rec_cpu", "charset", "fields_model", "lexicon", "line_split_model",
             "line_join_model")


class ModelManifest(BaseModel):
    """Fields of model.json; file paths are relative to the manifest's folder (may point to ../base)."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: str
    det: str = "det.onnx"
    det_cpu: str | None = Field(
        None, description="detector used when only the CPU provider runs (an int8 copy of `det` made by "
                          "`ocrnet quantize`); accelerators always use `det`")
    rec: str = "rec.onnx"
    rec_cpu: str | None = Field(
        None, description="recognizer used when only the CPU provider runs (an int8 copy of `rec` made by "
                          "`ocrnet quantize --kind rec`); accelerators always use `rec`")
    charset: str = "charset.json"
    rec_height: int = 48
    det_limit_side: int = 736
    det_limit_type: Literal["min", "max"] = "min"
    det_max_side: int = 2000
    det_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    det_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    det_thresh: float = 0.3
    det_box_thresh: float = 0.5
    det_unclip_ratio: float = 1.6
    det_output_unclip_ratio: float | None = Field(
        None, description="DB growth of the polygons the service returns (None = det_unclip_ratio, what the "
                          "recognizer's crops use); lower hugs the text")
    det_max_upscale: float | None = Field(
        None, description="cap on the detector resize ratio (small photos are not blown up past it); None = rapidocr")
    det_buckets: tuple[int, ...] | None = Field(
        None, description="detector pad-to sides; None = exact shapes when only the CPU provider runs (padding "
                          "costs CPU time for nothing), ACCELERATOR_DET_BUCKETS with static shapes (GPU); "
                          "[] = always exact")
    rec_min_side: float = Field(
        0.0, description="boxes whose shorter side (detector work-image pixels) is below this are not recognised")
    text_score: float = Field(0.5, description="lines whose recognition confidence is below this are dropped")
    line_char_margin: float | None = Field(
        None, gt=0, description="bring a returned line's ends in to this many line heights beyond the centres of its "
                                "first and last characters (the recogniser's CTC time steps) where the box reaches "
                                "further; never grows a box; None = boxes as detected")
    line_split_model: str | None = Field(
        None, description="learned line splitter (`ocrnet train-line-split`) that cuts a read line between columns "
                          "the detector joined (a receipt row's label and amount); None = lines as detected")
    line_join_model: str | None = Field(
        None, description="learned line joiner (`ocrnet train-line-split --join-out`) that joins neighbouring read "
                          "lines of one row the detector split ('TAX' + 'INVOICE'); None = lines as detected")
    fields_model: str | None = Field(
        None, description="learned field extractor for this bundle's profile (e.g. the invoice word tagger written "
                          "by `ocrnet train-fields`); None = the profile's rules")
    lexicon: str | None = Field(
        None, description="word list (`ocrnet lexicon`) that unknown read words may be corrected towards, only "
                          "through the recogniser's own close alternatives (service.vision.lexicon); None = no "
                          "corrections")
    source: str | None = None

    def det_preprocess(self, buckets: tuple[int, ...] = ()) -> DetPreprocessConfig:
        """The detector input settings this manifest asks for (``buckets``: pad-to shapes, () = exact)."""
        return DetPreprocessConfig(limit_side_len=self.det_limit_side, limit_type=self.det_limit_type,
                                   max_side_len=self.det_max_side, mean=self.det_mean, std=self.det_std,
                                   max_upscale=self.det_max_upscale, buckets=buckets)


class ModelBundle:
    """A resolved, verified model directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no {MANIFEST} in {self.root}")
        self.manifest = ModelManifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
        self.det_path = (self.root / self.manifest.det).resolve()
        self.det_cpu_path = (self.root / self.manifest.det_cpu).resolve() if self.manifest.det_cpu else None
        self.rec_path = (self.root / self.manifest.rec).resolve()
        self.rec_cpu_path = (self.root / self.manifest.rec_cpu).resolve() if self.manifest.rec_cpu else None
        self.charset_path = (self.root / self.manifest.charset).resolve()
        self.fields_model_path = (self.root / self.manifest.fields_model).resolve() if self.manifest.fields_model \
            else None
        self.lexicon_path = (self.root / self.manifest.lexicon).resolve() if self.manifest.lexicon else None
        self.line_split_path = (self.root / self.manifest.line_split_model).resolve() \
            if self.manifest.line_split_model else None
        self.line_join_path = (self.root / self.manifest.line_join_model).resolve() \
            if self.manifest.line_join_model else None
        files = [(self.root / name).resolve() for key in FILE_KEYS if (name := getattr(self.manifest, key))]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{manifest_path}: missing files {missing}")

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @cached_property
    def classes(self) -> list[str]:
        """CTC class table, blank at index 0."""
        return load_charset(self.charset_path)

    def det_path_for(self, providers: Sequence[str]) -> Path:
        """The detector file for these providers: `det_cpu` when the CPU is the only one and the bundle has it."""
        return self.det_cpu_path if self.det_cpu_path is not None and list(providers) == [CPU] else self.det_path

    def rec_path_for(self, providers: Sequence[str]) -> Path:
        """The recognizer file for these providers: `rec_cpu` when the CPU is the only one and the bundle has it."""
        return self.rec_cpu_path if self.rec_cpu_path is not None and list(providers) == [CPU] else self.rec_path

    @cached_property
    def sha256(self) -> dict[str, str]:
        """SHA-256 of det/rec ONNX files (computed once, lazily: the files are ~10-20 MB)."""
        digests = {"det": sha256_file(self.det_path), "rec": sha256_file(self.rec_path)}
        if self.det_cpu_path is not None:
            digests["det_cpu"] = sha256_file(self.det_cpu_path)
        if self.rec_cpu_path is not None:
            digests["rec_cpu"] = sha256_file(self.rec_cpu_path)
        return digests


def load_bundle(root: str | Path) -> ModelBundle:
    return ModelBundle(root)

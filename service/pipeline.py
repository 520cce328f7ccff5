"""OCR pipeline over the ONNX det/rec models: image(s) -> text lines with polygons.

Every stage is a public method so the service's cross-request batcher can batch the detector
per bucket shape and the recogniser across all crops of all requests:

    inputs = [p.prepare_det(img) for img in images]     # CPU, per image
    probs  = p.run_det(inputs)                            # one ONNX call per bucket shape
    dets   = [p.boxes(i, pr) for i, pr in zip(inputs, probs)]
    crops  = [p.crops(i, d) for i, d in zip(inputs, dets)]
    batches = p.prepare_rec(all_crops)                    # width-bucketed RecBatch list
    decoded = p.decode(batches, [p.run_rec(b) for b in batches])   # in crop order
    lines  = p.assemble(inputs[k], dets[k], decoded_for_k)
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from service.model_bundle import ModelBundle
from service.runtime import CPU, resolve_providers, shared_session
from service.vision.crop import ROTATE_RATIO, crop_quad, crop_size, reading_order
from service.vision.ctc import CharEvidence, Decoded, ctc_greedy_decode
from service.vision.db_postprocess import DBConfig, db_line_boxes
from service.vision.det_preprocess import (
    DetInput,
    DetPreprocessConfig,
    group_by_bucket,
    prepare_det_input,
)
from service.vision.images import ImageLike, to_bgr_array
from service.vision.lexicon import Lexicon
from service.vision.line_join import LineJoiner, join_rows
from service.vision.line_split import LineSplitter, Space, fitted_to_chars, segments
from service.vision.rec_preprocess import DEFAULT_WIDTH_BUCKETS, RecBatch, make_rec_batches, resized_width
from service.vision.static_shapes import (
    ACCELERATOR_WIDTH_BUCKETS,
    accelerator_det_config,
    batch_ladder,
    det_batch_ladder_for,
    pad_batch,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float
    polygon: list[tuple[float, float]]  # tl, tr, br, bl in original image pixels
    det_score: float = 1.0
    char_confidences: tuple[float, ...] = ()
    char_evidence: tuple[CharEvidence, ...] = ()  # per emitted character: top-k alternatives and time-step span


@dataclass
class Detections:
    """Quads of one image in work-image pixels (for cropping) and original pixels (for output)."""

    work_quads: np.ndarray  # (N,4,2)
    quads: np.ndarray  # (N,4,2)
    scores: list[float] = field(default_factory=list)
    crop_quads: np.ndarray | None = None  # (N,4,2) the crops' quads in original pixels (None: not recorded)

    def __len__(self) -> int:
        return len(self.scores)


class OcrPipeline:
    def __init__(
        self,
        bundle: ModelBundle,
        providers: Sequence[str] | None = None,
        intra_threads: int | None = None,
        inter_threads: int | None = None,
        det_config: DetPreprocessConfig | None = None,
        db_config: DBConfig | None = None,
        text_score: float | None = None,
        rec_batch_size: int = 32,
        rec_width_buckets: Sequence[int] | None = None,
        trt_cache_dir: str | Path | None = None,
        cpu_mem_arena: bool | None = True,
        static_shapes: bool | None = None,
        det_batch_size: int = 8,
    ):
        """``static_shapes``: pad batches to `batch_ladder` sizes and use coarse rec widths (None = on accelerators
        only, see service.vision.static_shapes); ``rec_width_buckets`` None = the default for that choice;
        ``cpu_mem_arena`` None = off on CPU-only, on with accelerators (see Settings.cpu_mem_arena)."""
        m = bundle.manifest
        self.bundle = bundle
        self.classes = bundle.classes
        self.db_config = db_config or DBConfig(thresh=m.det_thresh, box_thresh=m.det_box_thresh,
                                               unclip_ratio=m.det_unclip_ratio,
                                               output_unclip_ratio=m.det_output_unclip_ratio)
        self.text_score = m.text_score if text_score is None else text_score
        self.char_margin = m.line_char_margin
        self.line_splitter = LineSplitter.load(bundle.line_split_path) if bundle.line_split_path is not None else None
        self.line_joiner = LineJoiner.load(bundle.line_join_path) if bundle.line_join_path is not None else None
        self.rec_height = m.rec_height
        resolved = resolve_providers(providers)
        if cpu_mem_arena is None:
            cpu_mem_arena = resolved != [CPU]
        kw = dict(providers=providers, intra_threads=intra_threads, inter_threads=inter_threads,
                  trt_cache_dir=trt_cache_dir, cpu_mem_arena=cpu_mem_arena)
        self.det_path = bundle.det_path_for(resolved)  # int8 det_cpu on CPU-only
        self.det_session, self.det_providers = shared_session(self.det_path, **kw)
        self.rec_path = bundle.rec_path_for(resolved)  # int8 rec_cpu on CPU-only
        self.rec_session, self.rec_providers = shared_session(self.rec_path, **kw)
        on_accelerator = self.det_providers[0] != CPU or self.rec_providers[0] != CPU
        self.static_shapes = on_accelerator if static_shapes is None else static_shapes
        if rec_width_buckets is None:
            rec_width_buckets = ACCELERATOR_WIDTH_BUCKETS if self.static_shapes else DEFAULT_WIDTH_BUCKETS
        self.rec_width_buckets = tuple(rec_width_buckets)
        self.det_batch_ladder: tuple[int, ...] = ()
        self.rec_batch_ladder: tuple[int, ...] = ()
        self.set_batch_limits(det_batch_size, rec_batch_size)
        if det_config is None:
            det_config = m.det_preprocess(tuple(m.det_buckets or ()))
            if self.static_shapes and m.det_buckets != ():  # [] in the manifest: exact shapes everywhere
                det_config = accelerator_det_config(det_config)
        self.det_config = det_config
        self.rec_min_side = m.rec_min_side
        self.lexicon = Lexicon.load(bundle.lexicon_path) if bundle.lexicon_path is not None else None
        self._det_in = self.det_session.get_inputs()[0].name
        self._rec_in = self.rec_session.get_inputs()[0].name
        n_out = self.rec_session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(self.classes):
            raise ValueError(f"rec model has {n_out} classes but {bundle.charset_path} gives {len(self.classes)}")

    def set_batch_limits(self, det_batch_size: int, rec_batch_size: int) -> None:
        """Largest batches the caller will send; with static shapes, the padded sizes follow from them."""
        self.rec_batch_size = rec_batch_size
        if self.static_shapes:
            self.det_batch_ladder = batch_ladder(det_batch_size)
            self.rec_batch_ladder = batch_ladder(rec_batch_size)

    @classmethod
    def from_dir(cls, model_dir: str | Path, providers: Sequence[str] | None = None,
                 intra_threads: int | None = None, **kwargs) -> "OcrPipeline":
        return cls(ModelBundle(model_dir), providers=providers, intra_threads=intra_threads, **kwargs)

    # ---- detection stages -------------------------------------------------------------------
    def prepare_det(self, image: ImageLike, det_limit: tuple[int, str] | None = None,
                    boxes_only: bool = False) -> DetInput:
        """``det_limit``: (limit_side_len, limit_type) for this image instead of the bundle's (a profile's second
        look at higher resolution). ``boxes_only``: no crops will be taken (a profile's locating pass), so with a
        "max" limit the work image is bounded at the detector's side too: one resize of a large page, not two."""
        config = self.det_config if det_limit is None else replace(
            self.det_config, limit_side_len=det_limit[0], limit_type=det_limit[1])
        if boxes_only and config.limit_type == "max":
            config = replace(config, max_side_len=min(config.max_side_len, config.limit_side_len))
        return prepare_det_input(to_bgr_array(image), config)

    def run_det(self, inputs: Sequence[DetInput]) -> list[np.ndarray]:
        """Probability maps (cropped to each input's valid region); one ONNX call per bucket shape."""
        out: list[np.ndarray | None] = [None] * len(inputs)
        for shape, group in group_by_bucket(inputs).items():
            ladder = det_batch_ladder_for(shape, self.det_batch_ladder)
            calls = [[i] for i in group] if ladder == (1,) else [group]  # large shapes: one image per call
            for idx in calls:
                batch = pad_batch(np.stack([inputs[i].tensor for i in idx]), ladder)
                prob = self.det_session.run(None, {self._det_in: batch})[0]
                for row, i in enumerate(idx):
                    h, w = inputs[i].valid_hw
                    out[i] = prob[row, 0, :h, :w]
        return out  # type: ignore[return-value]

    def boxes(self, inp: DetInput, prob: np.ndarray) -> Detections:
        """DB post-process, reading order, and mapping to original image coordinates (the output polygons may hug
        the text more tightly than the crops, see DBConfig.output_unclip_ratio)."""
        work_quads, output_quads, scores = db_line_boxes(prob, inp.work.shape[:2], self.db_config)
        if self.rec_min_side > 0 and len(work_quads):
            keep = [i for i, q in enumerate(work_quads) if min(crop_size(q)) >= self.rec_min_side]
            work_quads, output_quads, scores = work_quads[keep], output_quads[keep], [scores[i] for i in keep]
        order = reading_order(work_quads)
        work_quads, output_quads = work_quads[order], output_quads[order]
        scores = [scores[i] for i in order]
        return Detections(work_quads, _to_original(output_quads, inp), scores, _to_original(work_quads, inp))

    def crops(self, inp: DetInput, dets: Detections) -> list[np.ndarray]:
        return [crop_quad(inp.work, q) for q in dets.work_quads]

    def detect(self, images: Sequence[ImageLike], det_limit: tuple[int, str] | None = None,
               boxes_only: bool = False) -> tuple[list[DetInput], list[Detections]]:
        inputs = [self.prepare_det(img, det_limit, boxes_only) for img in images]
        probs = self.run_det(inputs)
        return inputs, [self.boxes(i, p) for i, p in zip(inputs, probs)]

    # ---- recognition stages -----------------------------------------------------------------
    def prepare_rec(self, crops: Sequence[np.ndarray]) -> list[RecBatch]:
        return make_rec_batches(crops, self.rec_batch_size, self.rec_width_buckets, self.rec_height)

    def run_rec(self, batch: RecBatch) -> np.ndarray:
        probs = self.rec_session.run(None, {self._rec_in: pad_batch(batch.tensor, self.rec_batch_ladder)})[0]
        return probs[: len(batch.indices)]

    def decode(self, batches: Sequence[RecBatch], probs: Sequence[np.ndarray]) -> list[Decoded]:
        """Decoded text per crop, in the original crop order."""
        n = sum(len(b.indices) for b in batches)
        out: list[Decoded | None] = [None] * n
        for b, p in zip(batches, probs):
            for i, d in zip(b.indices, ctc_greedy_decode(p, self.classes)):
                out[i] = d
        return out  # type: ignore[return-value]

    def recognize(self, crops: Sequence[np.ndarray]) -> list[Decoded]:
        """Text of BGR line crops (any size), batched by width bucket."""
        batches = self.prepare_rec(crops)
        return self.decode(batches, [self.run_rec(b) for b in batches])

    def assemble(self, dets: Detections, decoded: Sequence[Decoded]) -> list[TextLine]:
        """TextLines for one image (see `read_lines`); with a bundle line splitter, each cut between the columns
        it joined (service.vision.line_split); with a bundle line joiner, row neighbours it split joined
        (service.vision.line_join)."""
        read = self.read_lines(dets, decoded)
        if self.line_splitter is None:
            lines = [line for line, _, _ in read]
        else:
            splitter = self.line_splitter
            lines = [piece for line, work_quad, crop_quad in read
                     for piece in self.split_line(line, work_quad, crop_quad,
                                                  lambda text, chars, aspect: splitter.cuts(text, chars,
                                                                                            self.rec_height, aspect))]
        if self.line_joiner is None:
            return lines
        return join_rows(lines, self.line_joiner.joins(lines), TextLine)

    def read_lines(self, dets: Detections, decoded: Sequence[Decoded]
                   ) -> list[tuple[TextLine, np.ndarray, np.ndarray | None]]:
        """(line, work quad, crop quad in original pixels) per kept box: empty text and low recognition confidence
        dropped (as rapidocr); with a bundle lexicon, unknown words corrected on the recogniser's own evidence
        (service.vision.lexicon)."""
        out = []
        for k, (quad, score, d) in enumerate(zip(dets.quads, dets.scores, decoded)):
            if not d.text.strip() or d.confidence < self.text_score:
                continue
            if self.lexicon is not None:
                d = self.lexicon.correct(d)
            line = TextLine(d.text, d.confidence, [(float(x), float(y)) for x, y in quad], float(score),
                            d.char_confidences, d.chars)
            if self.char_margin is not None and dets.crop_quads is not None:
                line = self._fitted(line, dets.work_quads[k], dets.crop_quads[k], self.char_margin)
            out.append((line, dets.work_quads[k], None if dets.crop_quads is None else dets.crop_quads[k]))
        return out

    def _rec_input(self, work_quad: np.ndarray) -> tuple[int, float] | None:
        """(width the recogniser saw the crop at, crop aspect) of a box; None when it was read rotated (a tall crop),
        so that its time steps do not run along the box."""
        width, height = crop_size(work_quad)
        if height / max(width, 1) >= ROTATE_RATIO:
            return None
        return (resized_width(max(height, 1), max(width, 1), self.rec_height, self.rec_width_buckets[-1]),
                width / max(height, 1))

    def _fitted(self, line: TextLine, work_quad: np.ndarray, crop_quad: np.ndarray, margin: float) -> TextLine:
        rec_input = self._rec_input(work_quad)
        if len(line.char_evidence) != len(line.text) or rec_input is None:
            return line
        input_width = rec_input[0]
        quad = fitted_to_chars(line.text, line.char_evidence, crop_quad, np.asarray(line.polygon), input_width,
                               margin)
        return replace(line, polygon=[(float(x), float(y)) for x, y in quad])

    def split_line(self, line: TextLine, work_quad: np.ndarray, crop_quad: np.ndarray | None,
                   cuts: Callable[[str, Sequence[CharEvidence], float], Sequence[Space]]) -> list[TextLine]:
        """``line`` cut at the spaces ``cuts(text, chars, crop aspect)`` picks; the line itself when there are none,
        or it has no aligned evidence, no crop quad, or was read rotated (a tall crop)."""
        chars, confs = line.char_evidence, line.char_confidences
        rec_input = self._rec_input(work_quad)
        if crop_quad is None or len(chars) != len(line.text) or len(confs) != len(line.text) or rec_input is None:
            return [line]
        input_width, aspect = rec_input
        chosen = cuts(line.text, chars, aspect)
        if not chosen:
            return [line]
        pieces = []
        for seg in segments(line.text, chars, chosen, crop_quad, np.asarray(line.polygon), input_width):
            part = confs[seg.start:seg.end]
            pieces.append(TextLine(line.text[seg.start:seg.end], float(np.mean(part)),
                                   [(float(x), float(y)) for x, y in seg.quad], line.det_score, part,
                                   chars[seg.start:seg.end]))
        return pieces

    # ---- warm-up ------------------------------------------------------------------------------
    def warm_up(self, det_shapes: Sequence[tuple[int, int]]) -> tuple[float, float]:
        """Run every shape requests can produce once: each det shape (and, with static shapes, each padded batch
        size), each rec width (likewise). Returns (slowest single-image det call, mean single-crop rec call) in
        seconds; with static shapes timed on a second call of the shape: on CUDA a shape's first call costs 0.5-3 s
        (see service.vision.static_shapes), and admission control seeded with that refuses work it could serve."""
        det_s, rec_s = [], []
        for h, w in det_shapes:
            blank = DetInput(np.zeros((3, h, w), np.float32), (h, w), np.zeros((h, w, 3), np.uint8), 0, (1.0, 1.0),
                             (h, w))
            for size in det_batch_ladder_for((h, w), self.det_batch_ladder) or (1,):
                if size == 1:
                    det_s.append(self._single_call_seconds(lambda: self.run_det([blank])))
                else:
                    self.run_det([blank] * size)
        for width in self.rec_width_buckets:
            for size in self.rec_batch_ladder or (1,):
                batch = RecBatch(np.zeros((size, 3, self.rec_height, width), np.float32), list(range(size)))
                if size == 1:
                    rec_s.append(self._single_call_seconds(lambda: self.decode([batch], [self.run_rec(batch)])))
                else:
                    self.decode([batch], [self.run_rec(batch)])
        return max(det_s, default=0.0), sum(rec_s) / max(len(rec_s), 1)

    def _single_call_seconds(self, call: Callable[[], object]) -> float:
        """Seconds ``call`` takes; with static shapes on its second run, since on accelerators the first call of a
        shape is not what later calls cost."""
        started = time.perf_counter()
        call()
        if self.static_shapes:
            started = time.perf_counter()
            call()
        return time.perf_counter() - started

    # ---- end to end -------------------------------------------------------------------------
    def read_batch(self, images: Sequence[ImageLike], det_limit: tuple[int, str] | None = None
                   ) -> list[list[TextLine]]:
        inputs, dets = self.detect(images, det_limit)
        all_crops: list[np.ndarray] = []
        spans = []
        for inp, d in zip(inputs, dets):
            crops = self.crops(inp, d)
            spans.append((len(all_crops), len(all_crops) + len(crops)))
            all_crops.extend(crops)
        decoded = self.recognize(all_crops) if all_crops else []
        return [self.assemble(d, decoded[a:b]) for d, (a, b) in zip(dets, spans)]

    def read(self, image: ImageLike) -> list[TextLine]:
        return self.read_batch([image])[0]


def _to_original(quads: np.ndarray, inp: DetInput) -> np.ndarray:
    """Work-image quads -> original image pixels (undo the top padding and the resize, clip to the image)."""
    out = np.asarray(quads, np.float64).copy()
    out[:, :, 1] -= inp.pad_top
    out[:, :, 0] *= inp.ratio_hw[1]
    out[:, :, 1] *= inp.ratio_hw[0]
    oh, ow = inp.original_hw
    out[:, :, 0] = np.clip(out[:, :, 0], 0, ow)
    out[:, :, 1] = np.clip(out[:, :, 1], 0, oh)
    return out.astype(np.float32)

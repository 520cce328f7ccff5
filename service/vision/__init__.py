"""Pre/post-processing shared by training, evaluation and serving (numpy, Pillow, pyclipper, shapely, scipy)."""
from .charset import load_charset
from .crop import crop_quad, reading_order
from .ctc import Decoded, ctc_greedy_decode
from .db_postprocess import DBConfig, db_boxes
from .det_preprocess import DetInput, DetPreprocessConfig, prepare_det_input, stack_det_inputs
from .images import resize_linear, to_bgr_array
from .rec_preprocess import REC_HEIGHT, RecBatch, make_rec_batches, normalize_crop

__all__ = [
    "DBConfig", "Decoded", "DetInput", "DetPreprocessConfig", "REC_HEIGHT", "RecBatch",
    "crop_quad", "ctc_greedy_decode", "db_boxes", "load_charset", "make_rec_batches",
    "normalize_crop", "prepare_det_input", "reading_order", "resize_linear", "stack_det_inputs",
    "to_bgr_array",
]

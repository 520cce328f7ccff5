"""What the service reads of one image for a profile, for synchronous callers (evaluation, bench/).

The service's engine applies the same steps around its async batchers; this module is the single place where
evaluation and benchmarks get "what the service would answer" without an HTTP server.
"""
from __future__ import annotations

from dataclasses import dataclass

from service.pipeline import OcrPipeline, TextLine
from service.profiles.base import Profile
from service.vision.images import ImageLike, to_bgr_array

__all__ = ["ReadOptions", "read_for_profile"]


@dataclass(frozen=True)
class ReadOptions:
    """Per-request reading choices (the API's options)."""

    second_look: bool = True  # honour the profile's second look (plate photos read again at higher resolution)


def read_for_profile(pipeline: OcrPipeline, profile: Profile, image: ImageLike,
                     options: ReadOptions = ReadOptions()) -> list[TextLine]:
    """The lines the service answers with for ``image`` under ``profile`` (decoded once, read as it reads)."""
    rgb = to_bgr_array(image)[:, :, ::-1]
    size = (rgb.shape[1], rgb.shape[0])
    lines = pipeline.read(rgb)
    if options.second_look:
        chosen, _ = profile.with_second_look(lines, size, lambda limit: pipeline.read_batch([rgb], limit)[0])
        lines = list(chosen)
    return lines

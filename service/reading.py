"""What the service reads of one image for a profile: one plan for the async engine and for sync callers.

The plan (``read_for_profile_async``): a profile with a focused read (id: the MRZ band) gets a low-resolution
detector pass that locates its region, then a read of that region only, and when its fields are not what the
profile needs, a second read of the region at its own resolution; when no region is found, or neither read is
accepted nor settled (``FocusedRead.settled``), the whole page is read, as for every other profile. A profile's second look (plate
photos read again at higher resolution) follows the whole-page read. The steps themselves (detector pass, read,
fields) come from a ``ReadSteps``: the service's batchers in ``service.api.engine``, or an ``OcrPipeline`` called
directly (``read_for_profile``, for evaluation and bench/).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image

from service.pipeline import OcrPipeline, TextLine
from service.profiles.base import Profile
from service.vision.images import ImageLike, to_bgr_array

__all__ = ["PipelineSteps", "ProfileRead", "ReadOptions", "ReadSteps", "read_for_profile",
           "read_for_profile_async"]

DetLimit = tuple[int, str]


@dataclass(frozen=True)
class ReadOptions:
    """Per-request reading choices (the API's options)."""

    all_text: bool = False  # read the whole page even when the profile needs one region of it (id: the MRZ)
    min_confidence: float = 0.0  # lines below this recognition confidence are dropped before the profile
    second_look: bool = True  # honour the profile's second look (plate photos read again at higher resolution)


@dataclass
class ProfileRead:
    """The lines and fields to answer with, and how they were read."""

    lines: list[TextLine]
    fields: dict[str, Any]
    scope: Literal["region", "page"]  # region: the profile's focused read answered; page: the whole page
    second_look: bool | None = None  # None: not read again; else whether the second read was kept


class ReadSteps(Protocol):
    """The model-facing steps of a read; the engine runs them through its batchers."""

    async def locate(self, image: Image.Image, det_limit: DetLimit) -> np.ndarray:
        """Detector quads (N, 4, 2) in ``image`` pixels, no recognition."""

    async def read(self, image: Image.Image, det_limit: DetLimit | None = None) -> list[TextLine]:
        """Lines of ``image`` (the bundle's detector limits unless ``det_limit``)."""

    def complete(self, lines: list[TextLine]) -> list[TextLine]:
        """The read lines plus any the image has without reading (a PDF page's text layer)."""

    async def fields(self, profile: Profile, lines: list[TextLine], size: tuple[int, int]) -> dict[str, Any]:
        """The profile's fields of ``lines``."""

    def may_read_again(self, profile: Profile) -> bool:
        """Whether there is time for the profile's second look."""


def _shifted(lines: list[TextLine], dx: float, dy: float) -> list[TextLine]:
    """Lines read in a region, in the coordinates of the whole image."""
    return [replace(line, polygon=[(x + dx, y + dy) for x, y in line.polygon]) for line in lines]


def _kept(steps: ReadSteps, lines: list[TextLine], min_confidence: float) -> list[TextLine]:
    """Confident enough lines, plus those the image has without reading."""
    return steps.complete([line for line in lines if line.confidence >= min_confidence])


async def read_for_profile_async(steps: ReadSteps, profile: Profile, image: Image.Image,
                                 options: ReadOptions = ReadOptions()) -> ProfileRead:
    """The plan described in the module docstring; ``image`` is 8-bit RGB, EXIF orientation applied."""
    size = image.size
    focus = None if options.all_text else profile.focus
    if focus is not None:
        box = focus.region(await steps.locate(image, focus.locate_det_limit), size)
        if box is not None:
            region = image.crop(box)
            for det_limit in focus.region_det_limits():
                lines = await steps.read(region, det_limit)
                lines = _kept(steps, _shifted(lines, box[0], box[1]), options.min_confidence)
                fields = await steps.fields(profile, lines, size)
                if focus.accept(fields):
                    return ProfileRead(lines, fields, "region")
            if focus.settled(fields):
                return ProfileRead(lines, fields, "region")
    lines = _kept(steps, await steps.read(image), options.min_confidence)
    fields = await steps.fields(profile, lines, size)
    limit = profile.second_look_det_limit
    if not (options.second_look and limit is not None and profile.wants_second_look(fields)
            and steps.may_read_again(profile)):
        return ProfileRead(lines, fields, "page")
    lines2 = _kept(steps, await steps.read(image, limit), options.min_confidence)
    fields2 = await steps.fields(profile, lines2, size)
    keep = profile.prefer_second_look(fields, fields2)
    return ProfileRead(lines2, fields2, "page", True) if keep else ProfileRead(lines, fields, "page", False)


class PipelineSteps:
    """ReadSteps over an OcrPipeline called directly (no batching, no deadline)."""

    def __init__(self, pipeline: OcrPipeline) -> None:
        self.pipeline = pipeline

    def complete(self, lines: list[TextLine]) -> list[TextLine]:
        return lines

    async def locate(self, image: Image.Image, det_limit: DetLimit) -> np.ndarray:
        return self.pipeline.detect([image], det_limit, boxes_only=True)[1][0].quads

    async def read(self, image: Image.Image, det_limit: DetLimit | None = None) -> list[TextLine]:
        return self.pipeline.read_batch([image], det_limit)[0]

    async def fields(self, profile: Profile, lines: list[TextLine], size: tuple[int, int]) -> dict[str, Any]:
        return profile.extract_fields(lines, size)

    def may_read_again(self, profile: Profile) -> bool:
        return True


def as_rgb_image(image: ImageLike) -> Image.Image:
    """Decoded once, upright, 8-bit RGB (what the service's upload decoder hands the engine)."""
    if isinstance(image, Image.Image) and image.mode == "RGB":
        return image
    return Image.fromarray(np.ascontiguousarray(to_bgr_array(image)[:, :, ::-1]))


def read_for_profile(pipeline: OcrPipeline, profile: Profile, image: ImageLike,
                     options: ReadOptions = ReadOptions()) -> ProfileRead:
    """What the service answers for ``image`` under ``profile``, read synchronously (not from a running event
    loop: evaluation, bench/)."""
    return asyncio.run(read_for_profile_async(PipelineSteps(pipeline), profile, as_rgb_image(image), options))

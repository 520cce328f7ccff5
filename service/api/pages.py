"""A request's uploads as pages: PDF pages (text layer or rendered), TIFF pages, single images; and the fields
each profile reads across the pages of one document.

PDF work runs on one dedicated thread (PDFium is not thread-safe), one page per call, so concurrent requests take
turns on it and a long PDF never holds it for more than a page; plain images never wait for it. Each request keeps
at most ``PAGE_WINDOW`` pages decoded or rendered at once, so a 30-page scan costs the memory of a few pages.
Admission control counts the pages that need the models (``RequestPages.model_pages``), not files: a text-layer
page costs milliseconds and counts zero.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from service.api.errors import ApiError
from service.api.schemas import DocumentResult, ImageResult, Timings
from service.api.schemas import TextLine as TextLineOut
from service.api.uploads import DecodedImage, UploadedFile
from service.documents import (
    DocumentError,
    PagePlan,
    PdfPages,
    RenderPolicy,
    is_pdf,
    tiff_page_count,
)
from service.profiles import Profile
from service.profiles.base import TextLineLike
from service.vision.crop import reading_order

T = TypeVar("T")
PAGE_WINDOW = 4  # pages of one request decoded/rendered and not yet answered, at most


def label(index: int, filename: str | None) -> str:
    return f"files[{index}]" + (f" ({filename!r})" if filename else "")


def line_out(line: TextLineLike, return_polygons: bool) -> TextLineOut:
    """A pipeline or text-layer line as the API returns it."""
    return TextLineOut(
        text=line.text, confidence=round(float(line.confidence), 4),
        polygon=[(round(float(x), 1), round(float(y), 1)) for x, y in line.polygon] if return_polygons else None,
        source=getattr(line, "source", "ocr"),
    )


@dataclass
class Page:
    """One page to answer: page ``number`` (1-based) of ``pages`` in the request's file ``file_index``."""

    file_index: int
    upload: UploadedFile
    number: int
    pages: int
    pdf: PdfPages | None = None
    plan: PagePlan | None = None
    lines: list[TextLineLike] = field(default_factory=list)  # the lines answered (set once the page is read)

    @property
    def needs_models(self) -> bool:
        return self.plan is None or self.plan.ocr

    def merge(self, ocr_lines: Sequence[TextLineLike]) -> list[TextLineLike]:
        """The page's answer from its OCR lines: on a PDF page with a text layer, its own lines plus the OCR lines
        inside its text-free images, in reading order; elsewhere the OCR lines as they are."""
        if self.plan is None or self.plan.regions is None:
            return list(ocr_lines)
        lines = list(self.plan.lines) + [line for line in ocr_lines if self.plan.keeps(line.polygon)]
        if not lines:
            return lines
        order = reading_order(np.array([[tuple(p) for p in line.polygon] for line in lines], np.float64))
        return [lines[i] for i in order]


class PageReader:
    """Owns the PDF thread; ``open`` turns a request's uploads into pages under its deadline."""

    def __init__(self, max_pages: int, decode_pool: Executor | None = None) -> None:
        """``decode_pool``: where images are decoded and TIFF pages counted (the engine's bounded pool; None:
        asyncio's default)."""
        self.max_pages = max_pages
        self._pdf = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocrnet-pdf")
        self._decode_pool = decode_pool

    def close(self) -> None:
        self._pdf.shutdown(wait=True)

    async def on_pdf_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pdf, fn, *args)

    async def on_decode_pool(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._decode_pool, fn, *args)

    @asynccontextmanager
    async def open(self, files: Sequence[UploadedFile], policy: RenderPolicy, force_ocr: bool,
                   deadline: float | None) -> AsyncIterator[RequestPages]:
        """The request's pages; DocumentErrors (here or while reading) become their 4xx. PDFs are planned page by
        page on the PDF thread (text layer read, OCR needs decided) and closed there when the request ends."""
        docs: list[PdfPages] = []
        try:
            pages: list[Page] = []
            for i, upload in enumerate(files):
                left = self.max_pages - len(pages)
                name = label(i, upload.filename)
                if left <= 0:
                    raise DocumentError(413, "too_many_pages", f"{name}: over the {self.max_pages}-page request limit")
                if upload.data and is_pdf(upload.data, upload.content_type):
                    doc = await self.on_pdf_thread(PdfPages, upload.data, name, left)
                    docs.append(doc)
                    for k in range(doc.count):
                        plan = await self.on_pdf_thread(doc.plan, k, policy, not force_ocr, deadline)
                        pages.append(Page(i, upload, k + 1, doc.count, doc, plan))
                else:
                    count = await self.on_decode_pool(tiff_page_count, upload.data, name, left) if upload.data else 1
                    pages += [Page(i, upload, k + 1, count) for k in range(count)]
            yield RequestPages(self, pages, deadline)
        except DocumentError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        finally:
            for doc in docs:
                try:
                    self._pdf.submit(doc.close)  # queued behind any render still running for this request
                except RuntimeError:  # the engine is shutting down: its thread closes no more documents
                    pass


Decode = Callable[[UploadedFile, int, int], tuple[DecodedImage, float]]  # (upload, file index, frame) -> image, ms
ReadImage = Callable[[DecodedImage, float, Page], Awaitable[ImageResult]]  # the models' answer for one page image


class RequestPages:
    """The pages of one request, in upload order."""

    def __init__(self, reader: PageReader, pages: list[Page], deadline: float | None) -> None:
        self.reader = reader
        self.pages = pages
        self.deadline = deadline

    @property
    def model_pages(self) -> int:
        return sum(page.needs_models for page in self.pages)

    def readers(self, decode: Decode, read: ReadImage, profile: Profile, min_confidence: float,
                return_polygons: bool) -> list[Awaitable[ImageResult]]:
        """One awaitable per page, at most PAGE_WINDOW of them holding an image at once."""
        window = asyncio.Semaphore(PAGE_WINDOW)

        async def answer(page: Page) -> ImageResult:
            if not page.needs_models:
                return await asyncio.to_thread(text_page_result, page, profile, min_confidence, return_polygons)
            async with window:
                image, ms = await self._image(page, decode)
                result = await read(image, ms, page)
            result.page, result.file_index = page.number, page.file_index
            return result

        return [answer(page) for page in self.pages]

    async def _image(self, page: Page, decode: Decode) -> tuple[DecodedImage, float]:
        if page.pdf is None or page.plan is None:
            return await self.reader.on_decode_pool(decode, page.upload, page.file_index, page.number - 1)
        started = time.perf_counter()
        image = await self.reader.on_pdf_thread(page.pdf.render, page.plan, self.deadline)
        ms = page.plan.extract_ms + (time.perf_counter() - started) * 1000
        return DecodedImage(image, page.upload.filename, image.width, image.height), ms


def text_page_result(page: Page, profile: Profile, min_confidence: float, return_polygons: bool) -> ImageResult:
    """A PDF page answered from its text layer alone (no model call)."""
    plan = page.plan
    assert plan is not None
    started = time.perf_counter()
    page.lines = [line for line in plan.lines if line.confidence >= min_confidence]
    fields = profile.extract_fields(page.lines, (plan.width, plan.height))
    fields_ms = (time.perf_counter() - started) * 1000
    return ImageResult(
        filename=page.upload.filename, page=page.number, file_index=page.file_index, width=plan.width,
        height=plan.height, lines=[line_out(line, return_polygons) for line in page.lines], fields=fields,
        timings_ms=Timings(decode=round(plan.extract_ms, 2), det=0.0, rec=0.0, fields=round(fields_ms, 2),
                           total=round(plan.extract_ms + fields_ms, 2)),
    )


@dataclass(frozen=True)
class _StackedLine:
    text: str
    confidence: float
    polygon: list[tuple[float, float]]


def document_results(pages: Sequence[Page], results: Sequence[ImageResult], profile: Profile) -> list[DocumentResult]:
    """One entry per uploaded file with the profile's fields read across its pages (the pages stacked top to
    bottom, so an invoice's company comes from page 1 and its total from wherever the strongest total line is)."""
    by_file: dict[int, list[tuple[Page, ImageResult]]] = {}
    for page, result in zip(pages, results):
        by_file.setdefault(page.file_index, []).append((page, result))
    out = []
    for file_index, items in by_file.items():
        if len(items) == 1:
            fields = items[0][1].fields
        else:
            stacked: list[TextLineLike] = []
            top = 0.0
            for page, result in items:
                stacked += [_StackedLine(line.text, line.confidence, [(float(x), float(y) + top) for x, y in line.polygon])
                            for line in page.lines]
                top += result.height
            fields = profile.extract_fields(stacked, (max(r.width for _, r in items), int(top)))
        out.append(DocumentResult(file_index=file_index, filename=items[0][0].upload.filename, pages=len(items),
                                  fields=fields))
    return out

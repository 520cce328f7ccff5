"""PDF pages for OCR through pypdfium2 (PDFium, Apache-2.0/BSD): open with limits, take the text layer where a
page has one, render what needs OCR at the detector's resolution.

Why the text layer: a digital PDF already holds its exact text and where it is; reading it takes milliseconds per
page where OCR takes a second and makes mistakes. A page without text (a scan) is rendered and OCR'd whole; a page
with text plus a text-free image over a real share of it (a scanned receipt pasted into a digital page) keeps its
text and has OCR read inside that image only. The service's ``force_ocr`` option renders every page instead.

Resolution: the detector shrinks every work image to the bundle's ``det_max_side`` (2000 px, 3000 for invoices), so
a page is rendered with its long side at that size (A4: 171 or 256 dpi, not 300 dpi's 2480x3508 px), never above
``max_pixels``, and a scan never above its own image's resolution (the pixels it would have had as a JPEG). A page
so large that its text would land below ``MIN_RENDER_DPI`` is refused rather than read badly.

Threading: PDFium is not thread-safe, not even across documents: every call into this module must run on one
thread (the service's PDF executor). No form environment is initialised, so document JavaScript never runs, and
embedded files are never read.
"""
from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from service.documents.errors import DocumentError
from service.vision.crop import reading_order

__all__ = ["MIN_RENDER_DPI", "PagePlan", "PdfPages", "RenderPolicy", "TextLayerLine", "is_pdf"]

PDF_MAGIC = b"%PDF-"
POINTS_PER_INCH = 72.0
MIN_RENDER_DPI = 50.0  # 10-point text at 50 dpi is 7 px tall: below that the recognizer reads noise
SCAN_SHARE = 0.5  # an image over half the page makes it a scan: rendered no finer than that image's own pixels
REGION_SHARE = 0.1  # a text-free image over a tenth of a text page is OCR'd
MAX_IMAGE_OBJECTS = 256  # image objects examined per page (a page of a million tiny images costs no more)
DEADLINE_EVERY_CHARS = 2048
UNMAPPED_SHARE = 0.1  # a text layer with more unmapped glyphs than this is not used (the page is OCR'd)
LINE_GAP = 0.8  # a gap wider than this many glyph heights between two glyphs of a line starts a new segment

Box = tuple[float, float, float, float]  # left, bottom, right, top in PDF page space


def is_pdf(data: bytes | bytearray, content_type: str | None) -> bool:
    """Declared as application/pdf, or sent untyped / as octet-stream with a PDF header in its first kilobyte."""
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared == "application/pdf":
        return True
    return declared in ("", "application/octet-stream") and PDF_MAGIC in bytes(data[:1024])


@dataclass(frozen=True)
class RenderPolicy:
    """How large a rendered page may be: the detector's work-image long side, and the service's pixel limit."""

    long_side_px: int
    max_pixels: int
    min_dpi: float = MIN_RENDER_DPI


@dataclass(frozen=True)
class TextLayerLine:
    """A line segment of a page's own text, in the page's pixel space (shaped like service.pipeline.TextLine)."""

    text: str
    polygon: list[tuple[float, float]]
    confidence: float = 1.0
    source: str = "pdf_text"


@dataclass
class PagePlan:
    """What one page needs: its size in pixels at ``scale``, its text-layer lines, and whether (where) to OCR it."""

    index: int  # 0-based
    width: int
    height: int
    scale: float  # pixels per PDF point, for the rendered image and the text-layer polygons alike
    lines: list[TextLayerLine] = field(default_factory=list)
    ocr: bool = True
    regions: list[tuple[float, float, float, float]] | None = None  # OCR lines kept only when centred in one (px)
    extract_ms: float = 0.0

    @property
    def number(self) -> int:
        return self.index + 1

    def keeps(self, polygon: Sequence[Sequence[float]]) -> bool:
        """Whether an OCR line belongs to this page's answer: anywhere on an OCR'd page, else inside a region."""
        if self.regions is None:
            return True
        cx = sum(float(p[0]) for p in polygon) / len(polygon)
        cy = sum(float(p[1]) for p in polygon) / len(polygon)
        return any(x0 <= cx <= x1 and y0 <= cy <= y1 for x0, y0, x1, y1 in self.regions)


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError("PDF work past the request deadline")


def _open(data: bytes | bytearray, label: str) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(bytes(data))
    except pdfium.PdfiumError as exc:
        if exc.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise DocumentError(422, "pdf_encrypted", f"{label}: the PDF is password-protected; send it "
                                                      "without the password") from None
        raise DocumentError(400, "invalid_pdf", f"{label}: not a readable PDF") from None


class _PageToPixels:
    """PDF page space -> rendered-page pixels (rotation, crop box offset and scale), from PDFium's own mapping."""

    FINE = 16  # PDFium maps to integer device pixels; mapping onto a 16x canvas keeps 1/16 px precision

    def __init__(self, page: pdfium.PdfPage, width: int, height: int) -> None:
        k = self.FINE
        x, y = ctypes.c_int(), ctypes.c_int()

        def device(px: float, py: float) -> np.ndarray:
            if not pdfium_c.FPDF_PageToDevice(page, 0, 0, width * k, height * k, 0, px, py, x, y):
                raise DocumentError(400, "invalid_pdf", "page coordinates cannot be mapped")
            return np.array([x.value, y.value], np.float64) / k

        origin = device(0.0, 0.0)
        self.matrix = np.stack([device(100.0, 0.0) - origin, device(0.0, 100.0) - origin], axis=1) / 100.0
        self.origin = origin

    def box(self, box: Box) -> tuple[float, float, float, float]:
        """Axis-aligned pixel bounds (x0, y0, x1, y1) of a page-space box."""
        left, bottom, right, top = box
        corners = np.array([[left, bottom], [right, bottom], [right, top], [left, top]], np.float64)
        px = corners @ self.matrix.T + self.origin
        return float(px[:, 0].min()), float(px[:, 1].min()), float(px[:, 0].max()), float(px[:, 1].max())


@dataclass(frozen=True)
class _Char:
    text: str
    box: Box | None  # None for generated characters (spaces and line breaks PDFium inserts) and empty glyphs


def _read_chars(textpage: pdfium.PdfTextPage, deadline: float | None) -> list[_Char]:
    """Every character of the text layer with its loose (font-height) box, in PDFium's text order."""
    n = textpage.count_chars()
    if n <= 0:
        return []
    raw = textpage.raw  # the handle itself: the helper's parameter conversion costs more than the call
    text = textpage.get_text_range(0, n)
    if len(text) != n:  # characters outside the BMP: one index each, two UTF-16 units in the text
        text = "".join(_char_at(raw, i) for i in range(n))
    out: list[_Char] = []
    rect = pdfium_c.FS_RECTF()
    loose_box = pdfium_c.FPDFText_GetLooseCharBox
    for i, ch in enumerate(text):
        if i % DEADLINE_EVERY_CHARS == 0:
            _check_deadline(deadline)
        if ch in "\r\n":
            out.append(_Char("\n", None))
            continue
        if ch.isspace():
            out.append(_Char(" ", None))
            continue
        if not ch.isprintable() or ch == "\ufffd":  # no Unicode mapping: a glyph we cannot return as text
            out.append(_Char("\ufffd", None))
            continue
        box: Box | None = None
        if loose_box(raw, i, rect) and rect.right > rect.left and rect.top > rect.bottom:
            box = (rect.left, rect.bottom, rect.right, rect.top)
        out.append(_Char(ch, box))
    return out


def _usable(chars: Sequence[_Char]) -> bool:
    """A text layer worth returning: at most UNMAPPED_SHARE of its visible characters lack a Unicode mapping
    (subset fonts without ToUnicode give private-use or replacement codes: OCR reads those pages better)."""
    visible = [c for c in chars if not c.text.isspace()]
    unmapped = sum(c.text == "\ufffd" for c in visible)
    return unmapped <= UNMAPPED_SHARE * len(visible)


def _char_at(raw: object, index: int) -> str:
    """Character ``index`` as one str (a lone surrogate becomes U+FFFD: it cannot be sent as JSON)."""
    code = pdfium_c.FPDFText_GetUnicode(raw, index)
    return "\ufffd" if 0xD800 <= code < 0xE000 else chr(code)


def _continues(prev: Box, box: Box) -> bool:
    """Whether ``box`` carries on the line ``prev`` is on: next to it along x with rows overlapping (horizontal
    text), or along y with columns overlapping (text rotated by 90 degrees)."""
    h = max(prev[3] - prev[1], box[3] - box[1])
    w = max(prev[2] - prev[0], box[2] - box[0])
    rows_overlap = min(prev[3], box[3]) - max(prev[1], box[1]) > 0.3 * h
    cols_overlap = min(prev[2], box[2]) - max(prev[0], box[0]) > 0.3 * w
    if rows_overlap and -0.5 * h <= box[0] - prev[2] <= LINE_GAP * h:
        return True
    along_y = min(abs(box[1] - prev[3]), abs(prev[1] - box[3]))
    return cols_overlap and not rows_overlap and along_y <= LINE_GAP * w


def _segments(chars: Sequence[_Char]) -> list[tuple[str, Box]]:
    """Lines of text with their boxes: split at line breaks and at gaps wider than LINE_GAP glyph heights (table
    columns), as a text detector would box them."""
    out: list[tuple[str, Box]] = []
    text: list[str] = []
    boxes: list[Box] = []

    def flush() -> None:
        joined = "".join(text).strip()
        if joined and boxes:
            out.append((" ".join(joined.split()) if "\n" in joined else joined,
                        (min(b[0] for b in boxes), min(b[1] for b in boxes),
                         max(b[2] for b in boxes), max(b[3] for b in boxes))))
        text.clear()
        boxes.clear()

    for ch in chars:
        if ch.text == "\n":
            flush()
            continue
        if ch.box is not None and boxes and not _continues(boxes[-1], ch.box):
            flush()
        text.append(ch.text)
        if ch.box is not None:
            boxes.append(ch.box)
    flush()
    return out


def _boxes_inside(boxes: Sequence[Box], area: Box) -> int:
    left, bottom, right, top = area
    return sum(left <= (b[0] + b[2]) / 2 <= right and bottom <= (b[1] + b[3]) / 2 <= top for b in boxes)


@dataclass(frozen=True)
class _ImageObject:
    box: Box
    share: float  # of the page area
    pixels_per_point: float  # the image's own resolution where it is drawn


def _images(page: pdfium.PdfPage, page_area: float) -> list[_ImageObject]:
    """Image objects of a page (form XObjects included, at most MAX_IMAGE_OBJECTS), largest first."""
    out = []
    for k, obj in enumerate(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=4)):
        if k >= MAX_IMAGE_OBJECTS:
            break
        try:
            left, bottom, right, top = obj.get_bounds()
            w_px, h_px = obj.get_px_size()
        except (pdfium.PdfiumError, RuntimeError):
            continue
        area = max(right - left, 0.0) * max(top - bottom, 0.0)
        if area <= 0 or w_px <= 0 or h_px <= 0:
            continue
        out.append(_ImageObject((left, bottom, right, top), min(area / page_area, 1.0), math.sqrt(w_px * h_px / area)))
    return sorted(out, key=lambda im: im.share, reverse=True)


class PdfPages:
    """An open PDF whose pages are planned and rendered one at a time. Close it (on the PDF thread) when done."""

    def __init__(self, data: bytes | bytearray, label: str, max_pages: int) -> None:
        self.label = label
        self.doc = _open(data, label)
        try:
            self.count = len(self.doc)  # the page tree's own count: a PDF may declare 100,000 pages
            if self.count < 1:
                raise DocumentError(400, "invalid_pdf", f"{label}: the PDF has no pages")
            if self.count > max_pages:
                raise DocumentError(413, "too_many_pages", f"{label}: {self.count} pages, over the {max_pages} "
                                                           "pages left in this request's page limit")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.doc.close()

    def _page(self, index: int) -> pdfium.PdfPage:
        try:
            return self.doc[index]
        except pdfium.PdfiumError:
            raise DocumentError(400, "invalid_pdf", f"{self.label}: page {index + 1} cannot be read") from None

    def plan(self, index: int, policy: RenderPolicy, use_text_layer: bool = True,
             deadline: float | None = None) -> PagePlan:
        """Size, text-layer lines and OCR needs of page ``index`` (0-based); raises DocumentError for a page that
        cannot be read well and TimeoutError past ``deadline`` (time.monotonic())."""
        started = time.perf_counter()
        _check_deadline(deadline)
        page = self._page(index)
        textpage = None
        try:
            w_pt, h_pt = page.get_size()  # after the page's /Rotate
            if not (0 < w_pt < 1e7 and 0 < h_pt < 1e7):
                raise DocumentError(400, "invalid_pdf", f"{self.label}: page {index + 1} has no usable size")
            fit = min(policy.long_side_px / max(w_pt, h_pt), math.sqrt(policy.max_pixels / (w_pt * h_pt)))
            images = _images(page, w_pt * h_pt)
            chars: list[_Char] = []
            if use_text_layer:
                textpage = page.get_textpage()
                chars = _read_chars(textpage, deadline)
                if not _usable(chars):
                    chars = []  # fonts without a Unicode map: the page is read like a scan
            glyphs = [c.box for c in chars if c.box is not None]
            regions = [im for im in images if im.share >= REGION_SHARE and _boxes_inside(glyphs, im.box) == 0] \
                if glyphs else []
            whole = not glyphs
            scale = fit
            if whole and images and images[0].share >= SCAN_SHARE:
                scale = min(scale, images[0].pixels_per_point)
            if (whole or regions) and fit * POINTS_PER_INCH < policy.min_dpi:
                longest = policy.long_side_px / (policy.min_dpi / POINTS_PER_INCH) / POINTS_PER_INCH
                raise DocumentError(
                    413, "page_too_large",
                    f"{self.label}: page {index + 1} is {w_pt / POINTS_PER_INCH:.1f} x {h_pt / POINTS_PER_INCH:.1f} "
                    f"in; pages to OCR may be up to {longest:.0f} in on their long side (text below "
                    f"{policy.min_dpi:g} dpi is not legible) and {policy.max_pixels} pixels")
            width, height = _pixel_size(w_pt, h_pt, scale, policy.max_pixels)
            to_px = _PageToPixels(page, width, height)
            lines = [TextLayerLine(text, _quad(to_px.box(box))) for text, box in _segments(chars)]
            if lines:
                order = reading_order(np.array([line.polygon for line in lines], np.float64))
                lines = [lines[i] for i in order]
            return PagePlan(index, width, height, scale, lines, ocr=whole or bool(regions),
                            regions=None if whole else [to_px.box(im.box) for im in regions],
                            extract_ms=(time.perf_counter() - started) * 1000)
        finally:
            if textpage is not None:
                textpage.close()
            page.close()

    def render(self, plan: PagePlan, deadline: float | None = None) -> Image.Image:
        """The page as an RGB image of ``plan.width x plan.height``. Progressive rendering: PDFium asks between
        page objects whether to pause, and past ``deadline`` the render is abandoned (TimeoutError)."""
        _check_deadline(deadline)
        page = self._page(plan.index)
        bitmap = pdfium.PdfBitmap.new_native(plan.width, plan.height, pdfium_c.FPDFBitmap_BGR, rev_byteorder=True)
        try:
            bitmap.fill_rect((255, 255, 255, 255), 0, 0, plan.width, plan.height)
            late = (lambda: time.monotonic() > deadline) if deadline is not None else (lambda: False)
            pause = pdfium_c.IFSDK_PAUSE(version=1)
            pause.NeedToPauseNow = type(pause.NeedToPauseNow)(lambda _: bool(late()))
            status = pdfium_c.FPDF_RenderPageBitmap_Start(bitmap, page, 0, 0, plan.width, plan.height, 0,
                                                          pdfium_c.FPDF_ANNOT | pdfium_c.FPDF_REVERSE_BYTE_ORDER,
                                                          pause)
            while status == pdfium_c.FPDF_RENDER_TOBECONTINUED and not late():
                status = pdfium_c.FPDF_RenderPage_Continue(page, pause)
            pdfium_c.FPDF_RenderPage_Close(page)
            if status == pdfium_c.FPDF_RENDER_TOBECONTINUED:
                raise TimeoutError("PDF page render past the request deadline")
            if status != pdfium_c.FPDF_RENDER_DONE:
                raise DocumentError(400, "invalid_pdf", f"{self.label}: page {plan.number} cannot be rendered")
            return bitmap.to_pil()  # RGB: Pillow copies the buffer, so the bitmap can go
        finally:
            bitmap.close()
            page.close()


def _pixel_size(w_pt: float, h_pt: float, scale: float, max_pixels: int) -> tuple[int, int]:
    """Whole pixels at ``scale`` (a scan drawn at 230.4 pt and 200 dpi is 640 px, not 639.99...), never over
    ``max_pixels``."""
    width, height = max(1, int(w_pt * scale + 1e-3)), max(1, int(h_pt * scale + 1e-3))
    if width * height > max_pixels:
        width, height = max(1, int(w_pt * scale)), max(1, int(h_pt * scale))
    return width, height


def _quad(box: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = (round(v, 1) for v in box)
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


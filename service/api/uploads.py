"""Read multipart uploads with limits enforced while the body streams, and decode them into RGB images safely.

Why not FastAPI's ``UploadFile``: Starlette spools files over 1 MB to a temporary file on disk and only lets us
check sizes after the whole body has been received. Here every chunk is counted as it arrives, so a 2 GB upload
is refused after ``max_upload_bytes`` + one chunk, and image bytes never touch the disk.
A client that stalls or trickles its body gets 408 once ``timeout_s`` / ``idle_timeout_s`` pass (slowloris: uvicorn
itself has no body read timeout), and part headers are capped so a megabyte "filename" cannot be buffered.
Decoding checks the pixel count from the header *before* decompressing (decompression bombs), honours EXIF
orientation, takes the first frame of animations (any page of a multi-page TIFF: ``frame``) and converts any mode to
8-bit RGB. PDFs never come here: ``service.api.pages`` reads them.
"""
from __future__ import annotations

import asyncio
import io
import logging
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.api.errors import ApiError

log = logging.getLogger("ocrnet.api.uploads")

FILES_FIELD = "files"
OPTION_FIELDS = frozenset({"profile", "min_confidence", "return_polygons", "force_ocr", "all_text"})
MAX_FIELD_BYTES = 1024
MAX_PART_HEADER_BYTES = 8 * 1024  # all headers of one part (Content-Disposition with the filename, Content-Type)
MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and option fields on top of the file bytes
DECODABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM"})
# Progressive-JPEG scan bombs: libjpeg decodes every scan over the whole coefficient buffer, so a 300 KB 6000x6000
# file repeating one AC scan 4,000 times took 16-26 s (issue 20). Encoders write 10 scans for a progressive colour
# JPEG (libjpeg's default script; 2-3 frames of an MPO: ~30); Pillow has no knob for this, so we count SOS markers.
MAX_JPEG_SCANS = 100
ACCEPTED_PART_TYPES = ("image/", "application/octet-stream")

# Our own max_pixels check runs on the header first; Pillow's warning would only duplicate it.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


@dataclass
class UploadedFile:
    filename: str | None
    content_type: str | None
    data: bytearray = field(default_factory=bytearray)


@dataclass
class UploadForm:
    files: list[UploadedFile]
    fields: dict[str, str]


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int
    max_files: int
    timeout_s: float | None = None  # the whole body must arrive within this
    idle_timeout_s: float | None = None  # longest pause between two body chunks

    @property
    def max_body_bytes(self) -> int:
        return self.max_files * self.max_upload_bytes + MULTIPART_OVERHEAD


class _Collector:
    """python-multipart callbacks that build parts and enforce limits as bytes arrive."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.files: list[UploadedFile] = []
        self.fields: dict[str, str] = {}
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._target: bytearray | None = None
        self._field_name: str | None = None
        self._is_file = False
        self.complete = False  # set when the closing boundary arrives
        self._parts = 0

    # -- header callbacks
    def on_part_begin(self) -> None:
        # Part headers are parsed byte by byte in Python on the event loop: without this cap a 160 MB body of
        # tiny parts would block every other request (probes included) for over a minute.
        self._parts += 1
        if self._parts > self.limits.max_files + len(OPTION_FIELDS):
            raise ApiError(413, "too_many_parts", f"at most {self.limits.max_files} files and one of each option")
        self._headers = {}
        self._header_bytes = 0
        self._target = None
        self._field_name = None

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise ApiError(400, "bad_multipart", f"multipart part headers over {MAX_PART_HEADER_BYTES} bytes")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        self._field_name = name
        if name == FILES_FIELD:
            if len(self.files) >= self.limits.max_files:
                raise ApiError(413, "too_many_files", f"at most {self.limits.max_files} files per request")
            content_type = self._headers.get(b"content-type", b"").decode("latin-1").strip() or None
            part = UploadedFile(filename.decode("utf-8", "replace") if filename is not None else None, content_type)
            self.files.append(part)
            self._target = part.data
            self._is_file = True
        elif filename is not None:
            raise ApiError(422, "unexpected_field", f"file part {name!r}: images must be sent in the '{FILES_FIELD}' field")
        elif name in OPTION_FIELDS:
            self._target = bytearray()
            self._is_file = False
        else:
            raise ApiError(422, "unexpected_field", f"unknown form field {name!r}")

    # -- body callbacks
    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._target is None:
            return
        self._target += data[start:end]
        if self._is_file and len(self._target) > self.limits.max_upload_bytes:
            index = len(self.files) - 1
            raise ApiError(
                413,
                "file_too_large",
                f"files[{index}] is larger than the {self.limits.max_upload_bytes}-byte limit",
            )
        if not self._is_file and len(self._target) > MAX_FIELD_BYTES:
            raise ApiError(413, "field_too_large", f"form field {self._field_name!r} is too long")

    def on_part_end(self) -> None:
        if self._target is not None and not self._is_file and self._field_name:
            self.fields[self._field_name] = self._target.decode("utf-8", "replace").strip()
        self._target = None

    def on_end(self) -> None:
        self.complete = True


async def _body_chunks(request: Request, limits: UploadLimits) -> AsyncIterator[bytes]:
    """``request.stream()`` under the upload deadlines: a stalled or trickling client gets 408, not a held worker."""
    loop = asyncio.get_running_loop()
    deadline = None if limits.timeout_s is None else loop.time() + limits.timeout_s
    stream = request.stream().__aiter__()
    while True:
        waits = [t for t in (limits.idle_timeout_s, None if deadline is None else deadline - loop.time()) if t is not None]
        try:
            async with asyncio.timeout(min(waits) if waits else None):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ApiError(408, "upload_timeout", "request body not received in time", {"Connection": "close"}) from None
        except ClientDisconnect:  # the client's doing, not a server error: 499 in metrics and the access log
            raise ApiError(499, "client_closed_request", "client disconnected during the upload") from None
        yield chunk


async def read_upload_form(request: Request, limits: UploadLimits) -> UploadForm:
    """Stream-parse a multipart/form-data body; raises :class:`ApiError` (413/415/408/400) as soon as a limit breaks."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the images as multipart/form-data in the 'files' field")
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_multipart", "multipart boundary missing from Content-Type")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise ApiError(413, "request_too_large", f"request body over the {limits.max_body_bytes}-byte limit")

    collector = _Collector(limits)
    callbacks = {
        name: getattr(collector, name)
        for name in (
            "on_part_begin", "on_part_data", "on_part_end", "on_header_field",
            "on_header_value", "on_header_end", "on_headers_finished", "on_end",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in _body_chunks(request, limits):
            received += len(chunk)
            if received > limits.max_body_bytes:
                raise ApiError(413, "request_too_large", f"request body over the {limits.max_body_bytes}-byte limit")
            parser.write(chunk)
        parser.finalize()
        if not collector.complete:  # python-multipart does not check this: the last part may be cut short
            raise ApiError(400, "bad_multipart", "multipart body ended before its closing boundary")
    except FormParserError as exc:
        raise ApiError(400, "bad_multipart", f"malformed multipart body: {exc}") from None
    return UploadForm(collector.files, collector.fields)


@dataclass
class DecodedImage:
    image: Image.Image  # 8-bit RGB, EXIF orientation applied
    filename: str | None
    width: int
    height: int


def _label(index: int, filename: str | None) -> str:
    return f"files[{index}]" + (f" ({filename!r})" if filename else "")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. High-bit-depth images are min-max stretched (text stays legible)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def declared_sizes(uploads: list[UploadedFile]) -> list[tuple[int, int] | None]:
    """(width, height) of each file read from its header only (None when unreadable: decode_image reports it)."""
    sizes: list[tuple[int, int] | None] = []
    for upload in uploads:
        try:
            with Image.open(io.BytesIO(upload.data)) as img:
                sizes.append((img.width, img.height))
        except Exception:  # not an image, or over Pillow's own bomb limit: decode_image gives the precise error
            sizes.append(None)
    return sizes


def total_declared_pixels(uploads: list[UploadedFile]) -> int:
    """Sum of width*height read from each file's header only (unreadable files count 0: decode_image reports them)."""
    return sum(w * h for size in declared_sizes(uploads) if size is not None for w, h in [size])


def jpeg_scan_count(data: bytes | bytearray) -> int:
    """Start-of-scan markers in a JPEG stream, without decoding: inside entropy-coded data a 0xFF byte is always
    followed by 0x00 (stuffing) or a restart marker, so ``FF DA`` there only starts a scan. An upper bound: metadata
    segments (an EXIF thumbnail is a JPEG too) may add a few, far below the limit."""
    return data.count(b"\xff\xda")


def decode_image(upload: UploadedFile, index: int, max_pixels: int, frame: int = 0) -> DecodedImage:
    """Validate and decode one uploaded file (CPU-bound: call it off the event loop); ``frame``: the page of a
    multi-page TIFF (animations are always read at their first frame)."""
    label = _label(index, upload.filename)
    if not upload.data:
        raise ApiError(400, "empty_file", f"{label} is empty")
    declared = (upload.content_type or "").lower()
    if declared and not declared.startswith(ACCEPTED_PART_TYPES):
        raise ApiError(415, "unsupported_media_type", f"{label}: content type {declared!r} is not an image")
    try:
        img = Image.open(io.BytesIO(upload.data))  # parses the header only
    except Image.DecompressionBombError:
        raise ApiError(413, "image_too_large", f"{label}: image has more than {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ApiError(400, "invalid_image", f"{label}: not a decodable image") from None
    if img.format not in DECODABLE_FORMATS:
        raise ApiError(
            415,
            "unsupported_image_format",
            f"{label}: format {img.format} not supported (use one of {', '.join(sorted(DECODABLE_FORMATS))})",
        )
    if frame:
        try:
            img.seek(frame)  # the page's own header: its size is checked below before its pixels are decoded
        except Exception:
            raise ApiError(400, "invalid_image", f"{label}: page {frame + 1} is corrupt or truncated") from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ApiError(400, "invalid_image", f"{label}: image has no pixels")
    if img.format in ("JPEG", "MPO") and (scans := jpeg_scan_count(upload.data)) > MAX_JPEG_SCANS:
        raise ApiError(422, "image_too_complex",
                       f"{label}: JPEG with {scans} scans (more than {MAX_JPEG_SCANS}); re-encode it")
    if width * height > max_pixels:
        raise ApiError(
            413, "image_too_large", f"{label}: {width}x{height} is over the {max_pixels}-pixel limit"
        )
    try:
        img.seek(frame)  # first frame of an animated GIF, the requested page of a multi-page TIFF
        img.load()
    except Image.DecompressionBombError:
        raise ApiError(413, "image_too_large", f"{label}: image has more than {max_pixels} pixels") from None
    except Exception:  # truncated / corrupt data surfaces as many different exception types in Pillow
        raise ApiError(400, "invalid_image", f"{label}: image data is corrupt or truncated") from None
    try:
        ImageOps.exif_transpose(img, in_place=True)  # our own copy: no second image when it is already upright
    except Exception:  # a broken EXIF block must not lose the image
        log.debug("ignoring unreadable EXIF orientation for %s", label)
    try:
        rgb = _to_rgb(img)
    except Exception:
        raise ApiError(415, "unsupported_image_format", f"{label}: pixel mode {img.mode} not supported") from None
    return DecodedImage(rgb, upload.filename, rgb.width, rgb.height)

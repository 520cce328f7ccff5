"""Hostile and odd upload corpus, built in memory with Pillow and raw bytes (no binary files in the repo).

Each :class:`HostileCase` is one complete ``POST /v1/ocr`` request (raw multipart body + Content-Type) with the
answer the service must give: a specific 4xx error code, or 200 with the expected per-image width/height (which
proves EXIF orientation, first-frame selection and filename handling). ``build_corpus`` takes the server's limits
so the "over the limit" cases are exactly one over.
"""
from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

BOUNDARY = "hostile-boundary-7d3f9a"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


@dataclass(frozen=True)
class Part:
    name: str
    data: bytes
    filename: str | bytes | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class HostileCase:
    name: str
    body: bytes
    status: int
    code: str | None = None  # error code when status != 200
    sizes: tuple[tuple[int, int], ...] | None = None  # expected (width, height) per image when 200
    filenames: tuple[str | None, ...] | None = None  # expected echoed filenames when 200
    content_type: str = MULTIPART


def multipart(parts: Sequence[Part], boundary: str = BOUNDARY) -> bytes:
    """Raw multipart/form-data body; filenames may be arbitrary bytes (non-UTF-8, NUL, ../)."""
    out = bytearray()
    for part in parts:
        disposition = b'form-data; name="' + part.name.encode() + b'"'
        if part.filename is not None:
            raw = part.filename if isinstance(part.filename, bytes) else part.filename.encode("utf-8")
            disposition += b'; filename="' + raw + b'"'
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disposition + b"\r\n"
        if part.content_type is not None:
            out += b"Content-Type: " + part.content_type.encode("latin-1") + b"\r\n"
        out += b"\r\n" + part.data + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return bytes(out)


def image_part(data: bytes, filename: str | bytes = "image.png", content_type: str | None = "image/png") -> Part:
    return Part("files", data, filename, content_type)


# ------------------------------------------------------------------ image builders
def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def small_doc(width: int = 96, height: int = 48, mode: str = "RGB") -> Image.Image:
    """A tiny page with some dark strokes (content is irrelevant; these cases test decoding)."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((4, height // 3, width - 4, height // 3 + 4), fill="black")
    draw.text((4, 4), "AB12", fill="black")
    return img.convert(mode)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height RGB but carries almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_bomb(side: int = 16_000) -> bytes:
    """A complete, valid 1-bit PNG of side x side zero pixels: ~30 KB of file, side**2 * 3 bytes once decoded."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row * 500) for _ in range(side // 500)) + comp.compress(row * (side % 500))
    idat += comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_text_bomb() -> bytes:
    """A 1x1 PNG with a zTXt chunk that inflates to 64 MB (Pillow caps text chunks; must not be inflated)."""
    img = encode(Image.new("L", (1, 1), 255), "PNG")
    ztxt = b"Comment\x00\x00" + zlib.compress(b"A" * (64 * 1024 * 1024), 9)
    head, rest = img[:33], img[33:]  # signature (8) + IHDR chunk (25)
    return head + _png_chunk(b"zTXt", ztxt) + rest


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real baseline JPEG whose SOF0 frame header is patched to declare width x height."""
    data = bytearray(encode(small_doc(16, 16), "JPEG", quality=80))
    sof = data.find(b"\xff\xc0")
    assert sof > 0, "no SOF0 marker"
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def gif_with_screen(width: int, height: int) -> bytes:
    """A GIF whose logical screen descriptor declares width x height."""
    data = bytearray(encode(Image.new("P", (8, 8), 0), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)
    return bytes(data)


def bmp_with_size(width: int, height: int) -> bytes:
    data = bytearray(encode(small_doc(8, 8), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def animated_gif(size: tuple[int, int] = (40, 30), frames: int = 3) -> bytes:
    imgs = [Image.new("RGB", size, colour) for colour in ("white", "red", "blue")[:frames]]
    return encode(imgs[0], "GIF", save_all=True, append_images=imgs[1:], duration=50, loop=0)


def multipage_tiff() -> bytes:
    """Two pages of different sizes: the service must answer both, each with its own size (64x32, then 32x64)."""
    return encode(small_doc(64, 32), "TIFF", save_all=True, append_images=[small_doc(32, 64)])


def cmyk_jpeg() -> bytes:
    return encode(small_doc(50, 40, "CMYK"), "JPEG", quality=85)


def png_16bit() -> bytes:
    img = Image.new("I;16", (48, 24))
    img.putdata([(x * 1300) % 65536 for x in range(48 * 24)])
    return encode(img, "PNG")


def exif_rotated_jpeg(width: int = 60, height: int = 30, orientation: int = 6) -> bytes:
    """Stored landscape, EXIF orientation 6 (rotate 90 degrees CW on display): displayed size is height x width."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(small_doc(width, height), "JPEG", quality=85, exif=exif.tobytes())


def broken_exif_jpeg() -> bytes:
    """A JPEG whose APP1 Exif segment is garbage: the image must still decode (orientation ignored)."""
    data = encode(small_doc(40, 20), "JPEG")
    garbage = b"Exif\x00\x00" + b"\xde\xad\xbe\xef" * 8
    app1 = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    return data[:2] + app1 + data[2:]


def eps_header() -> bytes:
    """Identified by Pillow as EPS, which would run Ghostscript on load: must be refused before loading."""
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n%%EndComments\nshowpage\n"


# ------------------------------------------------------------------ the corpus
def build_corpus(max_files: int, max_upload_bytes: int, max_pixels: int,
                 max_request_pixels: int | None = None) -> list[HostileCase]:
    """Every hostile/odd request with its required answer. Assumes ``max_pixels`` well below 20000**2."""
    assert max_pixels < 16_000 ** 2, "huge-image cases need a pixel limit below 16000x16000"
    png = encode(small_doc(), "PNG")
    jpeg = encode(small_doc(), "JPEG", quality=85)

    def one(name: str, data: bytes, status: int, code: str | None = None, *, filename: str | bytes = "image.png",
            content_type: str | None = "image/png", size: tuple[int, int] | None = None,
            echoed: str | None = None) -> HostileCase:
        body = multipart([image_part(data, filename, content_type)])
        names = None
        if status == 200:
            assert size is not None and (echoed is not None or isinstance(filename, str)), name
            names = (echoed if echoed is not None else str(filename),)
        return HostileCase(name, body, status, code, (size,) if size is not None else None, names)

    cases = [
        one("zero_byte_file", b"", 400, "empty_file"),
        one("text_named_jpg", b"just some text, not an image\n" * 8, 400, "invalid_image",
            filename="photo.jpg", content_type="image/jpeg"),
        one("random_bytes", bytes(range(256)) * 16, 400, "invalid_image", content_type="application/octet-stream"),
        one("truncated_jpeg", jpeg[: len(jpeg) // 2], 400, "invalid_image", filename="cut.jpg",
            content_type="image/jpeg"),
        one("truncated_png", png[: len(png) // 2], 400, "invalid_image"),
        one("png_header_only_small", png_header_only(64, 64), 400, "invalid_image"),
        one("one_pixel_png", encode(Image.new("RGB", (1, 1), "white"), "PNG"), 200, size=(1, 1)),
        one("huge_png_header_20000", png_header_only(20_000, 20_000), 413, "image_too_large"),
        one("huge_jpeg_header_20000", jpeg_with_size(20_000, 20_000), 413, "image_too_large", filename="big.jpg",
            content_type="image/jpeg"),
        one("huge_gif_screen_20000", gif_with_screen(20_000, 20_000), 413, "image_too_large", filename="big.gif",
            content_type="image/gif"),
        one("huge_bmp_header_20000", bmp_with_size(20_000, 20_000), 413, "image_too_large", filename="big.bmp",
            content_type="image/bmp"),
        one("decompression_bomb_png_16000", png_bomb(16_000), 413, "image_too_large"),
        one("ztxt_text_bomb_png", png_text_bomb(), 400, "invalid_image"),
        one("animated_gif_first_frame", animated_gif((40, 30)), 200, filename="anim.gif", content_type="image/gif",
            size=(40, 30)),
        HostileCase("multipage_tiff_every_page", multipart([image_part(multipage_tiff(), "pages.tif", "image/tiff")]),
                    200, None, ((64, 32), (32, 64)), ("pages.tif", "pages.tif")),
        one("cmyk_jpeg", cmyk_jpeg(), 200, filename="cmyk.jpg", content_type="image/jpeg", size=(50, 40)),
        one("png_16bit", png_16bit(), 200, size=(48, 24)),
        one("exif_orientation_6_swaps_size", exif_rotated_jpeg(60, 30, 6), 200, filename="rot.jpg",
            content_type="image/jpeg", size=(30, 60)),
        one("exif_orientation_3_keeps_size", exif_rotated_jpeg(60, 30, 3), 200, filename="rot180.jpg",
            content_type="image/jpeg", size=(60, 30)),
        one("broken_exif_block", broken_exif_jpeg(), 200, filename="exif.jpg", content_type="image/jpeg",
            size=(40, 20)),
        one("eps_never_ghostscripted", eps_header(), 415, "unsupported_image_format", filename="doc.eps",
            content_type="application/octet-stream"),
        one("ico_format", encode(small_doc(32, 32), "ICO"), 415, "unsupported_image_format", filename="x.ico",
            content_type="image/x-icon"),
        one("png_declared_text_plain", png, 415, "unsupported_media_type", content_type="text/plain"),
        one("no_part_content_type", png, 200, content_type=None, size=(96, 48)),
        one("file_one_byte_over_limit", b"\x89PNG" + b"\x00" * (max_upload_bytes - 3), 413, "file_too_large"),
        # filenames: never used as paths, echoed back as text
        one("filename_path_traversal", png, 200, filename="../../../../etc/passwd", size=(96, 48)),
        one("filename_absolute_windows", png, 200, filename="C:\\Windows\\system32\\cmd.exe", size=(96, 48),
            echoed="cmd.exe"),  # python-multipart keeps only the part after the last backslash
        one("filename_non_utf8", png, 200, filename=b"\xff\xfe\xc3(scan).png", size=(96, 48),
            echoed="\ufffd\ufffd\ufffd(scan).png"),
        one("filename_nul_and_controls", png, 200, filename=b"a\x00b\x1b[31m.png", size=(96, 48),
            echoed="a\x00b\x1b[31m.png"),
        one("filename_unicode", png, 200, filename="r\u00e9\u00e7u_\u6587\u5b57_\U0001f9fe.png", size=(96, 48)),
        one("filename_2kb", png, 200, filename="n" * 2048 + ".png", size=(96, 48)),
        one("filename_20kb_header_cap", png, 400, "bad_multipart", filename="n" * 20_000 + ".png"),
    ]
    tiny = encode(Image.new("L", (2, 2), 0), "PNG")
    cases += [
        HostileCase("too_many_files", multipart([image_part(tiny, f"{i}.png") for i in range(max_files + 1)]),
                    413, "too_many_files"),
        HostileCase("max_files_mixed_one_corrupt",
                    multipart([image_part(png, "ok.png"), image_part(png[:40], "bad.png")]), 400, "invalid_image"),
        HostileCase("two_images_ok", multipart([image_part(png, "a.png"), image_part(jpeg, "b.jpg", "image/jpeg")]),
                    200, sizes=((96, 48), (96, 48)), filenames=("a.png", "b.jpg")),
        *_request_pixel_cases(max_files, max_pixels, max_request_pixels),
        HostileCase("ten_thousand_tiny_parts", multipart([Part("profile", b"x")] * 10_000 + [image_part(png)]),
                    413, "too_many_parts"),
        HostileCase("no_files", multipart([Part("profile", b"generic")]), 422, "no_files"),
        HostileCase("wrong_field_name", multipart([Part("file", png, "a.png", "image/png")]), 422, "unexpected_field"),
        HostileCase("unknown_form_field", multipart([Part("evil", b"x"), image_part(png)]), 422, "unexpected_field"),
        HostileCase("profile_path_traversal", multipart([Part("profile", b"../../etc/passwd"), image_part(png)]),
                    422, "unknown_profile"),
        HostileCase("min_confidence_not_a_number", multipart([Part("min_confidence", b"NaN-ish"), image_part(png)]),
                    422, "validation_error"),
        HostileCase("option_field_too_long", multipart([Part("profile", b"x" * 5000), image_part(png)]),
                    413, "field_too_large"),
        HostileCase("unterminated_multipart", multipart([image_part(png)])[:-40], 400, "bad_multipart"),
        HostileCase("garbage_multipart", b"\x00\x01 not multipart at all \xff" * 20, 400, "bad_multipart"),
        HostileCase("json_body", b'{"files": ["aGVsbG8="]}', 415, "unsupported_media_type",
                    content_type="application/json"),
        HostileCase("multipart_without_boundary", multipart([image_part(png)]), 400, "bad_multipart",
                    content_type="multipart/form-data"),
    ]
    return cases


def _request_pixel_cases(max_files: int, max_pixels: int, max_request_pixels: int | None) -> list[HostileCase]:
    """Bombs each under the per-image limit whose total breaks the per-request limit (few KB, gigabytes decoded)."""
    if max_request_pixels is None:
        return []
    side = int(max_pixels ** 0.5) // 8 * 8
    count = max_request_pixels // (side * side) + 1
    if count > max_files:
        return []
    bomb = png_bomb(side)
    return [HostileCase(f"{count}_bombs_of_{side}px_over_request_budget",
                        multipart([image_part(bomb, f"{i}.png") for i in range(count)]), 413, "request_too_many_pixels")]


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment of a JPEG, a scan's entropy-coded data included in its SOS."""
    out, i = [], 2  # after SOI
    while i < len(data) - 1:
        assert data[i] == 0xFF, f"not a marker at {i}"
        marker = data[i + 1]
        if marker == 0xD9:  # EOI
            out.append((marker, i, i + 2))
            break
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        end = i + 2 + length
        if marker == 0xDA:  # entropy-coded data runs to the next marker that is not stuffing or a restart
            while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
        out.append((marker, i, end))
        i = end
    return out


def progressive_scan_bomb(side: int = 2000, repeats: int = 1000) -> bytes:
    """A valid-looking progressive JPEG whose last AC scan is repeated ``repeats`` times (issue 20: a 303 KB
    6000x6000 one with 4,000 repeats took 16-26 s to decode; every size and pixel limit let it through).
    libjpeg decodes each scan over the whole coefficient buffer, so the cost grows with side² x repeats."""
    img = Image.new("RGB", (side, side), "white")
    ImageDraw.Draw(img).text((10, 10), "SCAN BOMB", fill="black")
    buf = io.BytesIO()
    img.save(buf, "JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    scans = [(s, e) for m, s, e in jpeg_segments(data) if m == 0xDA]
    start, end = scans[-1]
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + data[start:end] * repeats + data[eoi:]

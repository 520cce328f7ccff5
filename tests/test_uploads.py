"""Upload reading (streamed limits) and safe image decoding, without models."""
from __future__ import annotations

import asyncio
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from starlette.requests import Request

from api_support import encode
from service.api.errors import ApiError
from service.api.uploads import UploadedFile, UploadLimits, decode_image, read_upload_form

BOUNDARY = "testboundary1234"


def multipart(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        ctype = b"Content-Type: image/png\r\n" if filename else b""
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disp}\r\n".encode() + ctype + b"\r\n" + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def stream_request(body: bytes, chunk: int, headers: dict[str, str] | None = None):
    """A Request whose body arrives in chunks; returns (request, counter of chunks handed out)."""
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    served = {"chunks": 0}

    async def receive():
        i = served["chunks"]
        served["chunks"] += 1
        return {"type": "http.request", "body": pieces[i], "more_body": i + 1 < len(pieces)}

    hdrs = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", **(headers or {})}
    scope = {"type": "http", "method": "POST", "path": "/v1/ocr", "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in hdrs.items()]}
    return Request(scope, receive), served, len(pieces)


def read(body: bytes, limits: UploadLimits, chunk: int = 4096, headers=None):
    request, served, total = stream_request(body, chunk, headers)
    try:
        return asyncio.run(read_upload_form(request, limits)), served["chunks"], total
    except ApiError as exc:
        return exc, served["chunks"], total


def test_parses_files_and_option_fields():
    png = encode(Image.new("RGB", (8, 8), "white"))
    body = multipart([("files", "a.png", png), ("files", "b.png", png), ("profile", None, b"plate")])
    form, _, _ = read(body, UploadLimits(10_000, 4))
    assert [f.filename for f in form.files] == ["a.png", "b.png"]
    assert bytes(form.files[0].data) == png and form.files[0].content_type == "image/png"
    assert form.fields == {"profile": "plate"}


def test_oversized_file_is_refused_while_streaming():
    body = multipart([("files", "big.png", b"\0" * 1_000_000)])
    exc, served, total = read(body, UploadLimits(100_000, 4), chunk=16_384)
    assert isinstance(exc, ApiError) and (exc.status, exc.code) == (413, "file_too_large")
    assert served < total // 4  # stopped long before the end of the body


def test_declared_content_length_over_the_limit_is_refused_before_reading():
    body = multipart([("files", "a.png", b"x" * 10)])
    exc, served, _ = read(body, UploadLimits(1000, 2), headers={"content-length": str(10**9)})
    assert (exc.status, exc.code) == (413, "request_too_large") and served == 0


def test_too_many_files_and_unexpected_fields():
    png = b"x"
    exc, _, _ = read(multipart([("files", f"{i}.png", png) for i in range(3)]), UploadLimits(1000, 2))
    assert (exc.status, exc.code) == (413, "too_many_files")
    exc, _, _ = read(multipart([("file", "a.png", png)]), UploadLimits(1000, 2))
    assert (exc.status, exc.code) == (422, "unexpected_field")
    exc, _, _ = read(b"--wrongboundary\r\nContent-Disposition: form-data\r\n\r\nx", UploadLimits(1000, 2))
    assert (exc.status, exc.code) == (400, "bad_multipart")


def test_non_multipart_request_is_415():
    request, _, _ = stream_request(b"{}", 10, {"content-type": "application/json"})
    with pytest.raises(ApiError) as info:
        asyncio.run(read_upload_form(request, UploadLimits(1000, 2)))
    assert (info.value.status, info.value.code) == (415, "unsupported_media_type")


def upload(data: bytes, content_type: str | None = "image/png") -> UploadedFile:
    return UploadedFile("x", content_type, bytearray(data))


def decode_error(data: bytes, max_pixels: int = 10**7, content_type: str | None = "image/png") -> ApiError:
    with pytest.raises(ApiError) as info:
        decode_image(upload(data, content_type), 0, max_pixels)
    return info.value


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose pixel data is a few bytes (a bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bad_inputs_get_specific_4xx_codes():
    png = encode(Image.new("RGB", (64, 64), "white"))
    assert (decode_error(b"").status, decode_error(b"").code) == (400, "empty_file")
    assert decode_error(b"%PDF-1.7 definitely not an image").code == "invalid_image"
    truncated = decode_error(png[: len(png) // 2])
    assert (truncated.status, truncated.code) == (400, "invalid_image")
    ico = encode(Image.new("RGB", (32, 32), "white"), "ICO")
    assert (decode_error(ico).status, decode_error(ico).code) == (415, "unsupported_image_format")
    assert decode_error(png, content_type="application/pdf").status == 415


def test_pixel_limit_is_checked_on_the_header_before_decoding():
    # 20000x20000 claimed, pixel data absent: a 413 (not a 400 "truncated") proves no decode was attempted.
    err = decode_error(png_header_only(20_000, 20_000), max_pixels=40_000_000)
    assert (err.status, err.code) == (413, "image_too_large")
    # Beyond Pillow's own bomb threshold too.
    err = decode_error(png_header_only(60_000, 60_000), max_pixels=40_000_000)
    assert (err.status, err.code) == (413, "image_too_large")


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (200, 100), "white")
    img.paste((255, 0, 0), (0, 0, 20, 20))  # red mark top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    decoded = decode_image(upload(encode(img, "JPEG", exif=exif.tobytes(), quality=95)), 0, 10**7)
    assert (decoded.width, decoded.height) == (100, 200)
    arr = np.asarray(decoded.image)
    assert arr[5, 95, 0] > 200 and arr[5, 95, 1] < 60  # the mark is now top-right


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "LA", "RGBA", "I;16"])
def test_modes_are_converted_to_rgb(mode):
    base = Image.new("RGB", (40, 20), "white")
    base.paste((0, 0, 0), (10, 5, 30, 15))
    if mode == "I;16":
        arr = np.where(np.asarray(base.convert("L")) > 0, 60000, 1000).astype(np.uint16)
        img = Image.fromarray(arr)
        assert img.mode == "I;16"
    else:
        img = base.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode == "I;16" else "PNG"
    decoded = decode_image(upload(encode(img, fmt), None), 0, 10**7)
    arr = np.asarray(decoded.image)
    assert decoded.image.mode == "RGB" and arr.shape == (20, 40, 3)
    assert arr[10, 20].max() < 80 and arr[2, 2].min() > 180  # dark box on light page survives conversion


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    arr = np.asarray(decode_image(upload(encode(img)), 0, 10**7).image)
    assert arr.min() == 255


def test_animated_gif_and_multipage_tiff_use_the_first_frame():
    red, blue = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))
    for fmt in ("GIF", "TIFF"):
        buf = io.BytesIO()
        red.save(buf, fmt, save_all=True, append_images=[blue])
        arr = np.asarray(decode_image(upload(buf.getvalue(), None), 0, 10**7).image)
        assert arr[8, 8, 0] > 200 and arr[8, 8, 2] < 60, fmt


def test_a_tiff_page_is_decoded_with_its_own_size_and_pixel_check():
    red, blue = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (40, 30), (0, 0, 255))
    data = encode(red, "TIFF", save_all=True, append_images=[blue])
    second = decode_image(upload(data, None), 0, 10**7, frame=1)
    assert (second.width, second.height) == (40, 30) and np.asarray(second.image)[5, 5, 2] > 200
    # page 1 (16x16) fits 1000 pixels, page 2 (40x30) does not: each page is checked on its own header
    assert decode_image(upload(data, None), 0, 1000).width == 16
    with pytest.raises(ApiError) as info:
        decode_image(upload(data, None), 0, 1000, frame=1)
    assert (info.value.status, info.value.code) == (413, "image_too_large")

"""PDFs for the tests and bench/: digital pages with a text layer, scans of JPEG images, and hand-written hostile
files (a declared page count, a broken xref, huge pages, JavaScript and an embedded file, passwords).

Digital pages are drawn with pypdfium2 (PDFium's built-in Helvetica, no font files); scans embed the JPEG bytes
unchanged (DCTDecode), so a page holds exactly the pixels the same JPEG sent on its own would. Build them before a
test client starts: PDFium is not thread-safe, and the service calls it from its own PDF thread.
"""
from __future__ import annotations

import ctypes
import hashlib
import io
import struct
import zlib
from collections.abc import Sequence

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

A4 = (595.0, 842.0)  # points

# (x, y from the page top, font size, text), all in points
TextItem = tuple[float, float, float, str]


def _draw_text(pdf, page, font, items: Sequence[TextItem], page_height: float) -> None:
    """Real text objects (Helvetica, standard encoding) at (x, y from the top) on ``page``."""
    for x, y, font_size, text in items:
        obj = pdfium_c.FPDFPageObj_CreateTextObj(pdf, font, font_size)
        wide = ctypes.create_string_buffer((text + "\x00").encode("utf-16-le"))
        pdfium_c.FPDFText_SetText(obj, ctypes.cast(wide, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
        pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, x, page_height - y - font_size)
        pdfium_c.FPDFPage_InsertObject(page, obj)


def _saved(pdf) -> bytes:
    buf = io.BytesIO()
    pdf.save(buf)
    pdf.close()
    return buf.getvalue()


def digital_pdf(pages: Sequence[Sequence[TextItem]], size: tuple[float, float] = A4) -> bytes:
    """A PDF whose pages carry real text objects (a text layer), one per item."""
    pdf = pdfium.PdfDocument.new()
    font = pdfium_c.FPDFText_LoadStandardFont(pdf, b"Helvetica")
    for items in pages:
        page = pdf.new_page(*size)
        _draw_text(pdf, page, font, items, size[1])
        page.gen_content()
        page.close()
    return _saved(pdf)


def invoice_pages(n_pages: int, items_per_page: int = 30) -> list[list[TextItem]]:
    """A multi-page invoice: company, address and date on page 1, item rows with amounts in a right-hand column,
    'Total carried forward' at the foot of each page but the last, and the total due on the last page."""
    pages: list[list[TextItem]] = []
    running = 0.0
    for p in range(n_pages):
        items: list[TextItem] = []
        top = 50.0
        if p == 0:
            items += [(50, 40, 14, "NORTHWIND TRADING LTD"), (50, 62, 10, "12 HARBOUR STREET, BRISTOL BS1 4ST"),
                      (50, 80, 10, "Tel 0117 496 0000"), (50, 104, 12, "TAX INVOICE"),
                      (50, 124, 10, "Invoice No INV-2024-0117"), (380, 124, 10, "Date 12/03/2024")]
            top = 150.0
        items.append((50, top, 9, f"Page {p + 1} of {n_pages}"))
        for k in range(items_per_page):
            amount = 3.25 * (p * items_per_page + k + 1)
            running += amount
            y = top + 22 + 20 * k
            items += [(50, y, 10, f"Widget {p * items_per_page + k + 1:03d} stainless, pack of 12"),
                      (470, y, 10, f"{amount:,.2f}")]
        y = top + 32 + 20 * items_per_page
        if p < n_pages - 1:
            items += [(300, y, 10, "Total carried forward"), (470, y, 10, f"{running:,.2f}")]
        else:
            items += [(300, y, 11, "TOTAL DUE EUR"), (470, y, 11, f"{running:,.2f}")]
        pages.append(items)
    return pages


def page_texts(items: Sequence[TextItem]) -> list[str]:
    return [text for _, _, _, text in items]


def scanned_pdf(jpegs: Sequence[bytes], dpi: float = 200.0, text_pages: Sequence[Sequence[TextItem]] = ()) -> bytes:
    """One page per JPEG, the image drawn over the whole page at ``dpi`` (its bytes embedded as they are);
    ``text_pages`` items, if given, are drawn as real text on the page of the same index (a mixed page)."""
    pdf = pdfium.PdfDocument.new()
    font = pdfium_c.FPDFText_LoadStandardFont(pdf, b"Helvetica")
    for i, data in enumerate(jpegs):
        with Image.open(io.BytesIO(data)) as im:
            w_px, h_px = im.size
        w_pt, h_pt = w_px * 72.0 / dpi, h_px * 72.0 / dpi
        page = pdf.new_page(w_pt, h_pt)
        image = pdfium.PdfImage.new(pdf)
        image.load_jpeg(io.BytesIO(data), inline=True)
        image.set_matrix(pdfium.PdfMatrix().scale(w_pt, h_pt))
        page.insert_obj(image)
        _draw_text(pdf, page, font, text_pages[i] if i < len(text_pages) else (), h_pt)
        page.gen_content()
        page.close()
    return _saved(pdf)


def mixed_pdf(text: Sequence[TextItem], jpeg: bytes, box: tuple[float, float, float, float]) -> bytes:
    """One A4 page: real text, plus a JPEG drawn at ``box`` (x, y from the top, width, height; points)."""
    pdf = pdfium.PdfDocument.new()
    font = pdfium_c.FPDFText_LoadStandardFont(pdf, b"Helvetica")
    page = pdf.new_page(*A4)
    image = pdfium.PdfImage.new(pdf)
    image.load_jpeg(io.BytesIO(jpeg), inline=True)
    x, y, w, h = box
    image.set_matrix(pdfium.PdfMatrix().scale(w, h).translate(x, A4[1] - y - h))
    page.insert_obj(image)
    _draw_text(pdf, page, font, text, A4[1])
    page.gen_content()
    page.close()
    return _saved(pdf)


# ---------------------------------------------------------------- hand-written files

def raw_pdf(objects: Sequence[bytes | str], trailer: str = "", root: int = 1) -> bytes:
    """A classic PDF from numbered objects (1-based), with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + (body.encode("latin-1") if isinstance(body, str) else body)
        out += b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root {root} 0 R {trailer}>>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def stream(data: bytes, extra: str = "") -> bytes:
    return f"<< /Length {len(data)} {extra}>>\nstream\n".encode() + data + b"\nendstream"


HELLO = b"BT /F1 24 Tf 72 700 Td (Hello World) Tj ET"
FONT = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def hello_pdf(count: int = 1, media_box: str = "0 0 612 792", catalog_extra: str = "",
              extra_objects: Sequence[bytes | str] = (), content: bytes = HELLO, filter: str = "") -> bytes:
    """One real page saying 'Hello World'; ``count`` is what the page tree declares."""
    objects: list[bytes | str] = [
        f"<< /Type /Catalog /Pages 2 0 R {catalog_extra}>>",
        f"<< /Type /Pages /Kids [3 0 R] /Count {count} >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [{media_box}] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        stream(zlib.compress(content), f"/Filter {filter}") if filter else stream(content),
        FONT,
        *extra_objects,
    ]
    return raw_pdf(objects)


def unmapped_font_pdf(codes: str = "E001E002E003E004E005E006E007") -> bytes:
    """A page whose text uses a CID font without a ToUnicode map, codes in the private-use area: what subset fonts
    of some PDF writers give. Its text layer has glyphs but no readable text."""
    return raw_pdf([
        "<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        stream(f"BT /F1 24 Tf 72 700 Td <{codes}> Tj ET".encode()),
        "<< /Type /Font /Subtype /Type0 /BaseFont /Subset /Encoding /Identity-H /DescendantFonts [6 0 R] >>",
        "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /Subset /CIDSystemInfo << /Registry (Adobe) /Ordering "
        "(Identity) /Supplement 0 >> /FontDescriptor 7 0 R >>",
        "<< /Type /FontDescriptor /FontName /Subset /Flags 4 /FontBBox [0 0 1000 1000] /ItalicAngle 0 /Ascent 800 "
        "/Descent -200 /CapHeight 700 /StemV 80 >>",
    ])


def broken_xref_pdf() -> bytes:
    """Every xref offset and startxref wrong: readers must rebuild the table by scanning the objects."""
    data = hello_pdf()
    head, _, _ = data.partition(b"xref\n")
    bad = "".join(f"{99999 + 7 * i:010d} 00000 n \n" for i in range(5))
    return head + f"xref\n0 6\n0000000000 65535 f \n{bad}trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n12345\n%%EOF\n".encode()


def javascript_and_attachment_pdf() -> bytes:
    """A page with text, an OpenAction script and an embedded file whose content must never reach the answer."""
    return hello_pdf(
        catalog_extra="/OpenAction 6 0 R /Names << /EmbeddedFiles << /Names [(secret.txt) 7 0 R] >> "
                      "/JavaScript << /Names [(boot) 6 0 R] >> >>",
        extra_objects=["<< /S /JavaScript /JS (app.alert('EMBEDDED SCRIPT RAN');) >>",
                       "<< /Type /Filespec /F (secret.txt) /EF << /F 8 0 R >> >>",
                       stream(b"EMBEDDED SECRET TEXT", "/Type /EmbeddedFile")],
    )


def heavy_page_pdf(paths: int = 200_000) -> bytes:
    """A page of many thousands of tiny strokes (a small compressed file): slow to render, for deadline tests."""
    content = b"0.1 w\n" + b"".join(f"{i % 100 * 6} {i % 100 * 8} m {i % 100 * 6 + 1} {i % 100 * 8 + 1} l S\n".encode()
                                    for i in range(paths))
    return hello_pdf(content=content, filter="/FlateDecode")


_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def encrypted_pdf(user_password: str, owner_password: str = "owner") -> bytes:
    """'Hello World' under the standard security handler (revision 2, RC4 40-bit; PDF 1.7 section 7.6.3):
    a non-empty user password locks it, an empty one only restricts permissions (it opens without one)."""
    user = (user_password.encode("latin-1") + _PAD)[:32]
    owner = (owner_password.encode("latin-1") + _PAD)[:32]
    o_value = _rc4(hashlib.md5(owner).digest()[:5], user)
    permissions = struct.pack("<i", -44)
    file_id = b"ocrnet-test-id-1"
    key = hashlib.md5(user + o_value + permissions + file_id).digest()[:5]
    u_value = _rc4(key, _PAD)
    object_key = hashlib.md5(key + (4).to_bytes(3, "little") + (0).to_bytes(2, "little")).digest()[:10]
    objects: list[bytes | str] = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        stream(_rc4(object_key, HELLO)),
        FONT,
        f"<< /Filter /Standard /V 1 /R 2 /O <{o_value.hex()}> /U <{u_value.hex()}> /P -44 >>",
    ]
    return raw_pdf(objects, trailer=f"/Encrypt 6 0 R /ID [<{file_id.hex()}> <{file_id.hex()}>] ")

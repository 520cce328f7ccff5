"""Page count of a multi-page TIFF, read from its directory chain only (no pixel data is decoded)."""
from __future__ import annotations

import io

from PIL import Image

from service.documents.errors import DocumentError


def tiff_page_count(data: bytes | bytearray, label: str, max_pages: int) -> int:
    """Pages (image file directories) of a TIFF; 1 for any other image (animations are not documents: their
    first frame is what the service reads). Raises DocumentError past ``max_pages`` and stops walking the chain
    there, so a file that chains a million directories costs ``max_pages`` header reads."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "TIFF":
                return 1
            pages = 1
            while True:
                try:
                    img.seek(pages)  # reads the next directory's tags only; EOFError after the last one
                except EOFError:
                    return pages
                except Exception:  # a broken directory ends the document: the pages before it stay readable
                    return pages
                pages += 1
                if pages > max_pages:
                    raise DocumentError(413, "too_many_pages", f"{label}: more than {max_pages} pages left "
                                                               "in this request's page limit")
    except DocumentError:
        raise
    except Exception:  # not an image or a broken chain: decode_image reports it precisely for page 1
        return 1

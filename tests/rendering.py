"""Rendered test images (Pillow + Debian fonts) shared by the test suite.

Real fonts, black-on-white, with known text and known line boxes, so tests can assert exact
recognition and box placement without shipping image fixtures.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts")
DEJAVU_SANS = FONT_DIR / "truetype/dejavu/DejaVuSans.ttf"
DEJAVU_MONO = FONT_DIR / "truetype/dejavu/DejaVuSansMono.ttf"
DEJAVU_SERIF = FONT_DIR / "truetype/dejavu/DejaVuSerif.ttf"
OCR_B = FONT_DIR / "opentype/ocr-b/OCRB.otf"


@lru_cache(maxsize=64)
def load_font(font: str | Path = DEJAVU_SANS, size: int = 32) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font), size)


def render_text_line(
    text: str,
    font: str | Path = DEJAVU_SANS,
    height: int = 48,
    padding: float = 0.25,
    fg: int | tuple[int, int, int] = (0, 0, 0),
    bg: int | tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """One text line, glyphs about ``height * (1 - 2*padding)`` px tall, tight horizontal margins."""
    size = max(6, int(height * (1 - 2 * padding)))
    f = load_font(font, size)
    x0, y0, x1, y1 = f.getbbox(text)
    pad_y = max(2, (height - (y1 - y0)) // 2)
    pad_x = max(4, size // 3)
    img = Image.new("RGB", (x1 - x0 + 2 * pad_x, y1 - y0 + 2 * pad_y), bg)
    ImageDraw.Draw(img).text((pad_x - x0, pad_y - y0), text, font=f, fill=fg)
    return img


@dataclass(frozen=True)
class PageLine:
    text: str
    size: int = 28  # font size in px
    font: str | Path = DEJAVU_SANS
    x: int = 40  # left edge


@dataclass(frozen=True)
class RenderedPage:
    image: Image.Image
    texts: list[str]
    boxes: list[tuple[int, int, int, int]]  # x0, y0, x1, y1 of each line's ink


def render_page(lines: Sequence[PageLine | str], width: int = 1000, margin: int = 40, gap: float = 0.9) -> RenderedPage:
    """White page (at least ``width`` wide) with the lines stacked top to bottom, plus each line's ink box."""
    items = [PageLine(line) if isinstance(line, str) else line for line in lines]
    boxes, y = [], margin
    for it in items:
        f = load_font(it.font, it.size)
        x0, y0, x1, y1 = f.getbbox(it.text)
        boxes.append((it.x, y, it.x + x1 - x0, y + y1 - y0))
        y += (y1 - y0) + int(it.size * gap) + 8
    width = max(width, max(b[2] for b in boxes) + margin)  # never clip a line
    img = Image.new("RGB", (width, y + margin), "white")
    draw = ImageDraw.Draw(img)
    for it, (bx, by, _, _) in zip(items, boxes):
        f = load_font(it.font, it.size)
        x0, y0, _, _ = f.getbbox(it.text)
        draw.text((bx - x0, by - y0), it.text, font=f, fill="black")
    return RenderedPage(img, [it.text for it in items], boxes)

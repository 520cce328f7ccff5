"""Shared pieces of the synthetic generators: font registry, geometry and photographic degradations.

Numpy and Pillow only (no opencv, no scipy) so the generators run anywhere the service runs.
Every random choice goes through a ``numpy.random.Generator`` passed in by the caller, so a seed
fixes the output bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from service.vision.crop import homography

Point = tuple[float, float]
Color = tuple[int, int, int]

FONT_PACKAGES = "fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-noto-mono fonts-ocr-b"

# Paths relative to the font root (Debian layout). A family is a set of interchangeable faces.
FONT_FAMILIES: dict[str, tuple[str, ...]] = {
    "sans": (
        "truetype/dejavu/DejaVuSans.ttf",
        "truetype/liberation2/LiberationSans-Regular.ttf",
        "truetype/freefont/FreeSans.ttf",
    ),
    "sans_bold": (
        "truetype/dejavu/DejaVuSans-Bold.ttf",
        "truetype/liberation2/LiberationSans-Bold.ttf",
        "truetype/freefont/FreeSansBold.ttf",
    ),
    "condensed": (
        "truetype/dejavu/DejaVuSansCondensed.ttf",
        "truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
    ),
    "mono": (
        "truetype/dejavu/DejaVuSansMono.ttf",
        "truetype/liberation2/LiberationMono-Regular.ttf",
        "truetype/freefont/FreeMono.ttf",
        "truetype/noto/NotoMono-Regular.ttf",
        "truetype/noto/NotoSansMono-Regular.ttf",
    ),
    "mono_bold": (
        "truetype/dejavu/DejaVuSansMono-Bold.ttf",
        "truetype/liberation2/LiberationMono-Bold.ttf",
        "truetype/freefont/FreeMonoBold.ttf",
        "truetype/noto/NotoSansMono-Bold.ttf",
    ),
    "serif": (
        "truetype/dejavu/DejaVuSerif.ttf",
        "truetype/liberation2/LiberationSerif-Regular.ttf",
        "truetype/freefont/FreeSerif.ttf",
    ),
    "ocrb": ("opentype/ocr-b/OCRB.otf",),
}


class FontNotFoundError(RuntimeError):
    """Raised when no face of a font family is installed."""


def font_root() -> Path:
    """Font directory; ``OCRNET_FONT_DIR`` overrides the Debian default."""
    return Path(os.environ.get("OCRNET_FONT_DIR", "/usr/share/fonts"))


@cache
def _family_files(root: str, family: str) -> tuple[str, ...]:
    if family not in FONT_FAMILIES:
        raise KeyError(f"unknown font family {family!r}; known: {sorted(FONT_FAMILIES)}")
    found = tuple(str(Path(root) / rel) for rel in FONT_FAMILIES[family] if (Path(root) / rel).is_file())
    if not found:
        raise FontNotFoundError(
            f"no font of family {family!r} under {root} (looked for {', '.join(FONT_FAMILIES[family])}); "
            f"install them with `make fonts` or `apt-get install {FONT_PACKAGES}`"
        )
    return found


def font_files(family: str) -> tuple[str, ...]:
    """Installed font files of ``family`` (sorted as registered, so choices are reproducible)."""
    return _family_files(str(font_root()), family)


def check_fonts() -> None:
    """Fail early, with the install command, if any family is missing."""
    for family in FONT_FAMILIES:
        font_files(family)


@lru_cache(maxsize=512)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size=int(size))


def pick_font(rng: np.random.Generator, family: str, size: int) -> ImageFont.FreeTypeFont:
    files = font_files(family)
    return load_font(files[int(rng.integers(len(files)))], size)


def choice(rng: np.random.Generator, items: Sequence):
    """Uniform pick from a sequence (numpy's choice would turn strings/tuples into arrays)."""
    return items[int(rng.integers(len(items)))]


def weighted(rng: np.random.Generator, options: dict):
    keys = list(options)
    p = np.asarray([options[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


# ----------------------------------------------------------------------------- geometry


def rect_quad(x0: float, y0: float, x1: float, y1: float) -> list[Point]:
    """Axis-aligned box as a clockwise quad from the top-left."""
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def apply_homography(h: np.ndarray, pts: Sequence[Point]) -> list[Point]:
    p = np.c_[np.asarray(pts, dtype=np.float64), np.ones(len(pts))] @ h.T
    return [(float(x), float(y)) for x, y in p[:, :2] / p[:, 2:3]]


def warp(img: Image.Image, h: np.ndarray, size: tuple[int, int], fill: Color = (0, 0, 0)) -> Image.Image:
    """Warp ``img`` by the forward homography ``h`` into an image of ``size``."""
    inv = np.linalg.inv(h)
    inv = inv / inv[2, 2]
    return img.transform(size, Image.Transform.PERSPECTIVE, tuple(inv.flatten()[:8]),
                         resample=Image.Resampling.BILINEAR, fillcolor=fill)


def random_perspective(rng: np.random.Generator, w: int, h: int, strength: float) -> np.ndarray:
    """A homography that moves each corner of a w x h image by up to ``strength`` of its size."""
    src = rect_quad(0, 0, w, h)
    dst = [(x + rng.uniform(-strength, strength) * w, y + rng.uniform(-strength, strength) * h) for x, y in src]
    return homography(src, dst)


def rotation(angle_deg: float, cx: float, cy: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0, 0, 1]], dtype=np.float64)


def fit_canvas(h: np.ndarray, w: int, hgt: int, margin: float = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """Translate a homography so the warped w x hgt image lands inside a canvas it fits exactly (+margin)."""
    corners = np.asarray(apply_homography(h, rect_quad(0, 0, w, hgt)))
    lo = corners.min(axis=0) - margin
    hi = corners.max(axis=0) + margin
    t = np.array([[1, 0, -lo[0]], [0, 1, -lo[1]], [0, 0, 1]], dtype=np.float64)
    return t @ h, (int(np.ceil(hi[0] - lo[0])), int(np.ceil(hi[1] - lo[1])))


# ----------------------------------------------------------------------------- text


def text_size(font: ImageFont.FreeTypeFont, text: str) -> tuple[int, int, int, int]:
    """Ink bbox (l, t, r, b) of ``text`` drawn at the origin."""
    return tuple(int(v) for v in font.getbbox(text))  # type: ignore[return-value]


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font: ImageFont.FreeTypeFont,
              fill, spacing_px: float = 0.0) -> tuple[float, float, float, float]:
    """Draw ``text`` with its ink box's top-left at ``xy``; optional extra letter spacing.

    Returns the ink box (x0, y0, x1, y1) in the target's coordinates.
    """
    x, y = xy
    if spacing_px == 0:
        l, t, r, b = text_size(font, text)
        draw.text((x - l, y - t), text, font=font, fill=fill)
        return (x, y, x + r - l, y + b - t)
    asc_t = min(text_size(font, c)[1] for c in text if not c.isspace()) if text.strip() else 0
    bottom = max((text_size(font, c)[3] for c in text if not c.isspace()), default=0)
    left = text_size(font, text[0])[0] if text and not text[0].isspace() else 0
    cx = x - left
    for c in text:
        draw.text((cx, y - asc_t), c, font=font, fill=fill)
        cx += font.getlength(c) + spacing_px
    return (x, y, cx - spacing_px, y + bottom - asc_t)


def render_line(text: str, font: ImageFont.FreeTypeFont, fg: Color, bg: Color,
                pad: tuple[int, int, int, int] = (4, 4, 4, 4)) -> Image.Image:
    """A tight RGB crop of one text line with padding (left, top, right, bottom)."""
    l, t, r, b = text_size(font, text)
    w, h = r - l + pad[0] + pad[2], b - t + pad[1] + pad[3]
    img = Image.new("RGB", (max(w, 1), max(h, 1)), bg)
    ImageDraw.Draw(img).text((pad[0] - l, pad[1] - t), text, font=font, fill=fg)
    return img


# ----------------------------------------------------------------------------- degradations


def gaussian_blur(img: Image.Image, radius: float) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius)) if radius > 0.05 else img


def motion_blur(img: Image.Image, length: float, angle_deg: float) -> Image.Image:
    """Average of shifted copies along a direction (a camera shake streak)."""
    n = max(round(length), 1)
    if n < 2:
        return img
    arr = np.asarray(img, dtype=np.float32)
    pad = n
    p = np.pad(arr, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    a = np.deg2rad(angle_deg)
    acc = np.zeros_like(arr)
    hgt, w = arr.shape[:2]
    for t in np.linspace(-(n - 1) / 2, (n - 1) / 2, n):
        dx, dy = round(t * np.cos(a)), round(t * np.sin(a))
        acc += p[pad + dy: pad + dy + hgt, pad + dx: pad + dx + w]
    return Image.fromarray(np.clip(acc / n, 0, 255).astype(np.uint8))


def add_noise(img: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + sigma * rng.standard_normal(arr.shape[:2], dtype=np.float32)[..., None]
    arr += (0.3 * sigma) * rng.standard_normal(arr.shape, dtype=np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def brightness_contrast(img: Image.Image, brightness: float, contrast: float, gamma: float = 1.0) -> Image.Image:
    """out = ((x/255)^gamma - 0.5) * contrast + 0.5 + brightness, in [0, 1] units."""
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (np.power(arr, gamma) - 0.5) * contrast + 0.5 + brightness
    return Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8))


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")


def _smooth_field(rng: np.random.Generator, w: int, h: int, cells: int = 4) -> np.ndarray:
    """Low-frequency random field in [0, 1] (a tiny grid upsampled bicubically)."""
    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0


def shadow(img: Image.Image, rng: np.random.Generator, depth: float) -> Image.Image:
    """Darken one side of a random soft line (a hand, a car roof, a phone over the page)."""
    w, h = img.size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    d = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
    soft = max(w, h) * rng.uniform(0.02, 0.2)
    mask = 1.0 / (1.0 + np.exp(-d / soft))
    factor = 1.0 - depth * mask
    arr = np.asarray(img, dtype=np.float32) * factor[..., None]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def glare(img: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    """Add a bright elliptical specular spot (reflective plates, laminated IDs)."""
    w, h = img.size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    sx, sy = w * rng.uniform(0.08, 0.4), h * rng.uniform(0.15, 0.6)
    spot = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + (255 - arr) * (strength * spot)[..., None]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def uneven_light(img: Image.Image, rng: np.random.Generator, amount: float) -> Image.Image:
    w, h = img.size
    field = 1.0 - amount * _smooth_field(rng, w, h, cells=3)
    arr = np.asarray(img, dtype=np.float32) * field[..., None]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def degrade(img: Image.Image, rng: np.random.Generator, level: float = 1.0, *, text_px: float | None = None,
            allow_glare: bool = False, low_light: float = 0.0) -> Image.Image:
    """A random chain of camera/scanner degradations; ``level`` in [0, 1.5] scales how hard.

    ``text_px`` is the typical text height in the image (default: the image height, i.e. a line crop);
    blur is sized relative to it so a page is not blurred more than a crop of one of its lines.
    ``low_light`` is the probability of a dark, noisy capture (night plates, dim rooms).
    """
    blur_scale = max((text_px if text_px is not None else img.height * 0.6) / 30.0, 0.4)
    if rng.random() < 0.3 * level:
        img = shadow(img, rng, rng.uniform(0.15, 0.5))
    if rng.random() < 0.3 * level:
        img = uneven_light(img, rng, rng.uniform(0.1, 0.35))
    if allow_glare and rng.random() < 0.25 * level:
        img = glare(img, rng, rng.uniform(0.3, 0.8))
    if rng.random() < low_light:
        img = brightness_contrast(img, rng.uniform(-0.3, -0.1), rng.uniform(0.4, 0.8), rng.uniform(1.2, 2.0))
        img = add_noise(img, rng, rng.uniform(6, 16))
    elif rng.random() < 0.7:
        img = brightness_contrast(img, rng.uniform(-0.12, 0.12) * level, rng.uniform(1 - 0.35 * level, 1 + 0.2 * level),
                                  rng.uniform(0.8, 1.25))
    r = rng.random()
    if r < 0.35 * level:
        img = gaussian_blur(img, rng.uniform(0.3, 0.8 + 0.6 * level) * blur_scale)
    elif r < 0.5 * level:
        img = motion_blur(img, rng.uniform(2, 2.5 + 2.5 * level) * blur_scale, rng.uniform(0, 180))
    if rng.random() < 0.6 * level:
        img = add_noise(img, rng, rng.uniform(2, 4 + 8 * level))
    if rng.random() < 0.7:
        img = jpeg(img, int(rng.integers(max(20, int(85 - 55 * level)), 96)))
    return img


def paper_texture(rng: np.random.Generator, w: int, h: int, base: Color, amount: float) -> Image.Image:
    """Flat colour with low-frequency blotches and fine grain (paper, plastic, painted metal)."""
    field = _smooth_field(rng, w, h, cells=int(rng.integers(3, 8)))
    grain = rng.standard_normal((h, w), dtype=np.float32)
    off = field * np.float32(60 * amount) + grain * np.float32(6 * amount) + np.float32(128 - 30 * amount)
    lum = Image.fromarray(np.clip(off, 0, 255).astype(np.uint8))
    # One luminance offset shared by the channels, applied per channel with a lookup table (fast in C).
    return Image.merge("RGB", [lum.point([min(255, max(0, v + b - 128)) for v in range(256)]) for b in base])


def quad_bbox(quad: Sequence[Point]) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in quad], [p[1] for p in quad]
    return min(xs), min(ys), max(xs), max(ys)


def sample_seed(seed: int, index: int) -> np.random.Generator:
    """Independent generator for sample ``index`` of a run: sample i never depends on n or on sample i-1."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))

"""Synthetic licence plates: US state, European and Brazilian formats, as line crops and car scenes.

Label convention (same as ``shared/data/plates/labels.jsonl``): the plate text is upper-case
alphanumerics with no separators, so "M-XY 123" is labelled ``MXY123``. The printed form, with its
spaces and hyphens, is kept in ``fields["printed"]``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from training.data.samples import DetSample, LineLabel, RecSample
from training.data.synth.common import (
    Color,
    apply_homography,
    choice,
    degrade,
    draw_text,
    fit_canvas,
    homography,
    paper_texture,
    pick_font,
    quad_bbox,
    random_perspective,
    rect_quad,
    rotation,
    warp,
    weighted,
)

LETTERS = string.ascii_uppercase
DIGITS = string.digits
ES_CONSONANTS = "BCDFGHJKLMNPRSTVWXYZ"

US_STATES = (
    ("California", "dmv.ca.gov"), ("TEXAS", "THE LONE STAR STATE"), ("NEW YORK", "EMPIRE STATE"),
    ("Florida", "Sunshine State"), ("ILLINOIS", "LAND OF LINCOLN"), ("Pennsylvania", "visitPA.com"),
    ("OHIO", "BIRTHPLACE OF AVIATION"), ("Georgia", "Peach State"), ("MICHIGAN", "PURE MICHIGAN"),
    ("Arizona", "Grand Canyon State"), ("WASHINGTON", "EVERGREEN STATE"), ("Oregon", "PACIFIC WONDERLAND"),
    ("NEVADA", "THE SILVER STATE"), ("Colorado", ""), ("Virginia", "VIRGINIA IS FOR LOVERS"),
    ("NEW JERSEY", "GARDEN STATE"), ("Massachusetts", "The Spirit of America"), ("UTAH", "LIFE ELEVATED"),
)
DE_CITIES = ("B", "M", "HH", "K", "F", "S", "D", "DO", "E", "HB", "L", "DD", "N", "BN", "KA", "MZ", "WI", "GI")
SK_DISTRICTS = ("RK", "BA", "BB", "LM", "KE", "ZA", "NR", "PO", "TT", "TN", "MT", "LV", "PP", "SC")
PL_REGIONS = ("WA", "WX", "KR", "PO", "GD", "WR", "LU", "EL", "SK", "DW", "ZS", "BI")
BR_CITIES = ("SAO PAULO", "RIO DE JANEIRO", "CURITIBA", "BELO HORIZONTE", "PORTO ALEGRE", "SALVADOR", "RECIFE")


@dataclass(frozen=True)
class PlateText:
    """One plate number: how it is printed and where it comes from."""

    printed: str
    region: str  # us | eu | br
    country: str  # ISO-ish code: US, D, F, I, E, NL, PL, GB, SK, CZ, BR
    state: str = ""
    slogan: str = ""

    @property
    def label(self) -> str:
        return compact(self.printed)


def compact(text: str) -> str:
    """The label form: upper-case letters and digits only (what the eval labels keep)."""
    return re.sub(r"[^0-9A-Z]", "", text.upper())


def _fill(rng: np.random.Generator, pattern: str, letters: str = LETTERS) -> str:
    """Expand a pattern: L = letter, D = digit, anything else is kept."""
    return "".join(
        choice(rng, letters) if c == "L" else choice(rng, DIGITS) if c == "D" else c for c in pattern
    )


def us_plate(rng: np.random.Generator) -> PlateText:
    state, slogan = choice(rng, US_STATES)
    kind = weighted(rng, {"LLL DDDD": 3, "DLLLDDD": 3, "DDD-LLL": 1, "LLL-DDD": 1, "LLL DDD": 2, "DLL DDD": 1,
                          "DDD LLL": 1, "LLDLDL": 2, "DDLDDLD": 1, "LDDDDDD": 1, "vanity": 1})
    if kind == "vanity":
        n = int(rng.integers(3, 8))
        text = "".join(choice(rng, LETTERS if rng.random() < 0.8 else DIGITS) for _ in range(n))
    else:
        text = _fill(rng, kind)
    return PlateText(text, "us", "US", state, slogan if rng.random() < 0.8 else "")


def eu_plate(rng: np.random.Generator) -> PlateText:
    country = weighted(rng, {"D": 3, "F": 2, "I": 2, "E": 2, "NL": 2, "PL": 2, "GB": 2, "SK": 3, "CZ": 1})
    if country == "D":
        city = choice(rng, DE_CITIES)
        letters = _fill(rng, "L" * int(rng.integers(1, 3)))
        digits = str(int(rng.integers(1, 10 ** int(rng.integers(1, 5)))))
        sep = "-" if rng.random() < 0.4 else " "
        text = f"{city}{sep}{letters} {digits}"
    elif country == "F":
        text = _fill(rng, "LL-DDD-LL")
    elif country == "I":
        text = _fill(rng, "LL DDD LL")
    elif country == "E":
        text = _fill(rng, "DDDD LLL", ES_CONSONANTS)
    elif country == "NL":
        text = _fill(rng, choice(rng, ("DD-LLL-D", "LL-DDD-L", "D-LLL-DD", "LLL-DD-L", "DD-LL-LL")))
    elif country == "PL":
        text = choice(rng, PL_REGIONS) + " " + _fill(rng, choice(rng, ("DDDDD", "DLLDD", "DDDDL", "DDDLL")))
    elif country == "GB":
        text = _fill(rng, "LLDD LLL")
    elif country == "SK":
        text = choice(rng, SK_DISTRICTS) + ("-" if rng.random() < 0.3 else " ") + _fill(rng, "DDDLL")
    else:  # CZ
        text = _fill(rng, "DLD DDDD")
    return PlateText(text, "eu", country)


def br_plate(rng: np.random.Generator) -> PlateText:
    if rng.random() < 0.5:
        return PlateText(_fill(rng, "LLLDLDD"), "br", "BR", "BRASIL")
    return PlateText(_fill(rng, "LLL-DDDD"), "br", "BR", choice(rng, BR_CITIES))


def random_plate_text(rng: np.random.Generator) -> PlateText:
    region = weighted(rng, {"us": 0.45, "eu": 0.4, "br": 0.15})
    return {"us": us_plate, "eu": eu_plate, "br": br_plate}[region](rng)


# ----------------------------------------------------------------------------- rendering


def _dark(rng: np.random.Generator) -> Color:
    return choice(rng, ((20, 20, 25), (15, 30, 90), (30, 30, 30), (120, 20, 25), (10, 50, 30)))


def _fit_font(rng: np.random.Generator, family: str, text: str, max_w: float, max_h: float):
    """Largest size whose ink fits max_w x max_h (plate text fills its space)."""
    size = int(max_h * 1.35)
    font = pick_font(rng, family, size)
    for _ in range(12):
        l, t, r, b = font.getbbox(text)
        if r - l <= max_w and b - t <= max_h:
            break
        size = int(size * min(max_w / max(r - l, 1), max_h / max(b - t, 1), 0.97))
        font = font.font_variant(size=max(size, 6))
    return font


Quad = list[tuple[float, float]]


def render_plate(rng: np.random.Generator, plate: PlateText) -> tuple[Image.Image, Quad, list[tuple[str, Quad]]]:
    """Draw a frontal plate; returns it, the quad of its main text (ink box, slightly padded) and the
    (text, quad) of the small print around it (state, slogan, country code, dealer frame)."""
    # Design sizes keep the real aspect ratios (US 12x6 in, EU 520x110 mm, Mercosul 400x130 mm) at a
    # resolution just above what crops need, so rendering and warping stay fast.
    if plate.region == "us":
        w, h = 300, 150
    elif plate.region == "eu":
        w, h = 400 + int(rng.integers(-30, 15)), 86
    else:
        w, h = 300, 98
    u = h / 100.0  # unit for strokes and margins
    bg: Color = (245, 245, 240)
    fg: Color = _dark(rng)
    if plate.region == "us":
        bg = choice(rng, ((244, 244, 238), (250, 250, 245), (238, 232, 205), (240, 205, 60), (225, 235, 245)))
        if rng.random() < 0.1:
            bg, fg = (25, 30, 45), (240, 240, 235)
    elif plate.country == "NL" or (plate.country == "GB" and rng.random() < 0.5):
        bg, fg = (250, 205, 20), (15, 15, 15)
    elif plate.region == "br" and plate.state != "BRASIL":
        bg, fg = (200, 200, 195), (25, 25, 25)
    else:
        fg = (15, 15, 20)
    img = paper_texture(rng, w, h, bg, amount=float(rng.uniform(0.2, 0.8)))
    d = ImageDraw.Draw(img)
    extras: list[tuple[str, Quad]] = []

    def small(text: str, xy: tuple[float, float], font, fill) -> None:
        extras.append((text, rect_quad(*draw_text(d, xy, text, font, fill))))

    if plate.region == "us" and rng.random() < 0.5:  # graphic backdrop: a soft colour band (mountains/sky)
        band = tuple(int(c) for c in rng.integers(80, 230, 3))
        y0 = int(h * rng.uniform(0.55, 0.8))
        d.polygon([(0, h), (0, y0), (w * 0.3, y0 - h * 0.15), (w * 0.6, y0 + 10), (w, y0 - h * 0.1), (w, h)],
                  fill=tuple(int(0.5 * a + 0.5 * b) for a, b in zip(band, bg)))
    border = max(int(rng.uniform(1.5, 5) * u), 1)
    d.rounded_rectangle((1, 1, w - 2, h - 2), radius=int(h * 0.08), outline=fg if rng.random() < 0.7 else (60, 60, 60),
                        width=border)
    left, right, top, bottom = border + 6 * u, w - border - 6 * u, border + 5 * u, h - border - 5 * u
    if plate.region == "eu" and rng.random() < 0.85:  # blue EU band (optional: older and UK plates lack it)
        bw = int(h * 0.36)
        d.rectangle((border, border, border + bw, h - border), fill=(20, 50, 160))
        cx, cy, rad = border + bw / 2, h * 0.33, bw * 0.3
        for k in range(12):
            a = 2 * np.pi * k / 12
            x, y = cx + rad * np.cos(a), cy + rad * np.sin(a)
            d.ellipse((x - 2 * u, y - 2 * u, x + 2 * u, y + 2 * u), fill=(250, 210, 0))
        cf = pick_font(rng, "sans_bold", int(h * 0.28))
        cl, _, cr, _ = cf.getbbox(plate.country)
        small(plate.country, (cx - (cr - cl) / 2, h * 0.62), cf, (255, 255, 255))
        left = border + bw + 8 * u
    elif plate.region == "br" and plate.state == "BRASIL":
        bh = int(h * 0.22)
        d.rectangle((border, border, w - border, border + bh), fill=(20, 50, 160))
        sf = pick_font(rng, "sans_bold", int(bh * 0.8))
        small("BRASIL", (w / 2 - sf.getlength("BRASIL") / 2, border + bh * 0.15), sf, (255, 255, 255))
        top = border + bh + 5 * u
    small_family = choice(rng, ("serif", "sans", "sans_bold", "condensed"))
    if plate.state and plate.region != "eu" and plate.state != "BRASIL":  # state / city name above
        sh = h * (0.16 if plate.region == "us" else 0.13)
        sf = pick_font(rng, small_family, int(sh * 1.2))
        sw = sf.getlength(plate.state)
        small(plate.state, ((w - sw) / 2, top), sf, _dark(rng) if bg[0] > 128 else (240, 240, 240))
        top += int(sh * 1.25)
    if plate.slogan:
        sh = h * 0.09
        sf = pick_font(rng, small_family, int(sh * 1.25))
        sw = sf.getlength(plate.slogan)
        small(plate.slogan, ((w - sw) / 2, bottom - sh), sf, fg)
        bottom -= int(sh * 1.4)
    if plate.region == "us" and rng.random() < 0.6:  # registration stickers in the top corners
        for sx in (left, right - 26 * u):
            if rng.random() < 0.6:
                col = tuple(int(c) for c in rng.integers(0, 255, 3))
                d.rectangle((sx, border + 3 * u, sx + 24 * u, border + 17 * u), fill=col)
    family = weighted(rng, {"sans_bold": 3, "condensed": 2, "mono_bold": 2, "sans": 1})
    avail_w, avail_h = right - left, bottom - top
    text = plate.printed
    font = _fit_font(rng, family, text, avail_w * rng.uniform(0.82, 0.97), avail_h * rng.uniform(0.8, 0.95))
    l, t, r, b = font.getbbox(text)
    x0 = left + (avail_w - (r - l)) / 2
    y0 = top + (avail_h - (b - t)) / 2
    box = draw_text(d, (x0, y0), text, font, fg)
    if rng.random() < 0.4:  # screw heads
        for sx in (w * 0.25, w * 0.75):
            for sy in ((border + 8 * u,) if plate.region == "eu" else (h * 0.12, h * 0.88)):
                d.ellipse((sx - 4 * u, sy - 4 * u, sx + 4 * u, sy + 4 * u), fill=(150, 150, 150), outline=(90, 90, 90))
    pad_x, pad_y = (box[3] - box[1]) * 0.12, (box[3] - box[1]) * 0.1
    quad = rect_quad(box[0] - pad_x, box[1] - pad_y, box[2] + pad_x, box[3] + pad_y)
    if rng.random() < 0.3:
        img, quad, extras = _dealer_frame(rng, img, quad, extras)
    return img, quad, extras


DEALERS = ("AUTO MOBIL", "CITY MOTORS", "BEST CARS", "AUTOHAUS", "PREMIUM AUTO", "MOTOR CENTER", "CAR WORLD")


def _dealer_frame(rng: np.random.Generator, plate: Image.Image, quad: Quad, extras: list[tuple[str, Quad]]
                  ) -> tuple[Image.Image, Quad, list[tuple[str, Quad]]]:
    """Surround the plate with a dealer frame carrying small text (unlabelled, as in real photos)."""
    w, h = plate.size
    side, top, bottom = int(h * 0.06) + 2, int(h * 0.06) + 2, int(h * rng.uniform(0.15, 0.25))
    col = choice(rng, ((20, 20, 20), (200, 200, 205), (40, 40, 60)))
    img = Image.new("RGB", (w + 2 * side, h + top + bottom), col)
    img.paste(plate, (side, top))
    text = choice(rng, DEALERS) + (f"  {rng.integers(100, 999)} {rng.integers(1000, 9999)}" if rng.random() < 0.6 else "")
    font = pick_font(rng, choice(rng, ("sans_bold", "condensed")), max(int(bottom * 0.6), 6))
    tw = font.getlength(text)
    box = draw_text(ImageDraw.Draw(img), ((img.width - tw) / 2, top + h + bottom * 0.2), text, font,
                    (240, 240, 240) if col[0] < 128 else (20, 20, 20))
    shift = lambda q: [(x + side, y + top) for x, y in q]
    return img, shift(quad), [(t, shift(q)) for t, q in extras] + [(text, rect_quad(*box))]


# ----------------------------------------------------------------------------- samples


def plate_line(rng: np.random.Generator, plate: PlateText | None = None) -> RecSample:
    """A plate text crop as a detector would hand it to the recognizer: tilted, low-res, degraded."""
    plate = plate or random_plate_text(rng)
    img, quad, _ = render_plate(rng, plate)
    target_h = int(rng.integers(12, 64))
    f = min(1.0, 1.5 * target_h / (quad[2][1] - quad[0][1]))  # shrink first: warping a big plate is slow
    if f < 1.0:
        img = img.resize((max(int(img.width * f), 8), max(int(img.height * f), 8)), Image.Resampling.BILINEAR)
        quad = [(x * f, y * f) for x, y in quad]
    w, h = img.size
    hm = rotation(rng.uniform(-5, 5), w / 2, h / 2) @ random_perspective(rng, w, h, 0.06)
    hm, size = fit_canvas(hm, w, h)
    img = warp(img, hm, size, fill=tuple(int(c) for c in rng.integers(0, 120, 3)))
    x0, y0, x1, y1 = quad_bbox(apply_homography(hm, quad))
    th = y1 - y0
    if rng.random() < 0.3:  # the whole plate (some detectors and labellers box the plate, not the characters)
        x0, y0, x1, y1 = 0, 0, size[0], size[1]
    else:
        x0 -= th * rng.uniform(0.0, 0.35)
        x1 += th * rng.uniform(0.0, 0.35)
        y0 -= th * rng.uniform(0.0, 0.3)
        y1 += th * rng.uniform(0.0, 0.3)
    crop = img.crop((int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))))
    scale = target_h / crop.height
    crop = crop.resize((max(int(crop.width * scale), 8), target_h), Image.Resampling.BILINEAR)
    crop = degrade(crop, rng, level=float(rng.uniform(0.4, 1.4)), allow_glare=True, low_light=0.2)
    return RecSample(crop, plate.label)


# Car paint colours, roughly by how common they are on the road (white, black, grey, silver, blue, red...).
CAR_COLOURS = ((235, 235, 235), (25, 25, 28), (110, 112, 115), (175, 178, 182), (30, 50, 100), (150, 25, 30),
               (60, 80, 60), (120, 90, 60), (200, 170, 60))
CAR_WEIGHTS = np.array([0.25, 0.2, 0.15, 0.15, 0.1, 0.08, 0.03, 0.02, 0.02])


def _car_background(rng: np.random.Generator, w: int, h: int) -> tuple[Image.Image, tuple[float, float, float]]:
    """Procedural street scene with a car front/rear; returns it and (cx, cy, plate width) where the plate goes."""
    sky = choice(rng, ((170, 190, 215), (200, 205, 210), (140, 150, 160), (215, 210, 200), (110, 120, 110),
                       (60, 65, 75), (180, 160, 140)))
    sky = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in sky)
    img = paper_texture(rng, w, h, sky, amount=float(rng.uniform(0.5, 1.5)))
    d = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.3, 0.55))
    road = tuple(int(c) for c in rng.integers(50, 120, 1).repeat(3))
    d.rectangle((0, horizon, w, h), fill=road)
    for _ in range(int(rng.integers(3, 10))):  # clutter: buildings, poles, other cars
        x, y = rng.uniform(0, w), rng.uniform(0, horizon + 30)
        col = tuple(int(c) for c in rng.integers(20, 240, 3))
        d.rectangle((x, y, x + rng.uniform(10, w * 0.3), y + rng.uniform(10, h * 0.4)), fill=col)
    body = CAR_COLOURS[int(rng.choice(len(CAR_COLOURS), p=CAR_WEIGHTS))]
    body = tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in body)
    cw = w * rng.uniform(0.55, 0.95)
    cx = w * rng.uniform(0.35, 0.65)
    top_y, bot_y = h * rng.uniform(0.15, 0.35), h * rng.uniform(0.8, 1.0)
    d.rounded_rectangle((cx - cw / 2, top_y, cx + cw / 2, bot_y), radius=int(cw * 0.08), fill=body)
    glass = tuple(int(c * 0.35) for c in body)
    d.rounded_rectangle((cx - cw * 0.38, top_y + h * 0.02, cx + cw * 0.38, top_y + (bot_y - top_y) * 0.3),
                        radius=10, fill=glass)
    lamp_y = top_y + (bot_y - top_y) * rng.uniform(0.4, 0.5)
    lamp = choice(rng, ((240, 240, 230), (200, 30, 30), (230, 140, 30)))
    for sx in (-1, 1):
        lx = cx + sx * cw * 0.36
        d.ellipse((lx - cw * 0.08, lamp_y - h * 0.03, lx + cw * 0.08, lamp_y + h * 0.03), fill=lamp,
                  outline=(40, 40, 40), width=2)
    for k in range(int(rng.integers(0, 6))):  # grille slats
        gy = lamp_y - h * 0.02 + k * h * 0.015
        d.line((cx - cw * 0.22, gy, cx + cw * 0.22, gy), fill=tuple(int(c * 0.5) for c in body), width=3)
    plate_y = top_y + (bot_y - top_y) * rng.uniform(0.62, 0.75)
    d.rectangle((cx - cw * 0.5, plate_y + h * 0.06, cx + cw * 0.5, plate_y + h * 0.1),
                fill=tuple(int(c * 0.6) for c in body))  # bumper
    # Light from above: the lower part of the scene is darker; a soft highlight on the body.
    shade = np.linspace(1.05, rng.uniform(0.55, 0.9), h, dtype=np.float32)[:, None, None]
    arr = np.asarray(img, dtype=np.float32) * shade
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img, (cx, plate_y, cw * rng.uniform(0.2, 0.4))


def plate_scene(rng: np.random.Generator, plate: PlateText | None = None) -> DetSample:
    """A car-like cluttered scene with one plate; the first line is the plate's main text, the others
    are its small print marked ``ignore`` (don't care)."""
    plate = plate or random_plate_text(rng)
    pimg, quad, extras = render_plate(rng, plate)
    w, h = int(rng.integers(480, 900)), int(rng.integers(360, 700))
    scene, (cx, cy, pw) = _car_background(rng, w, h)
    scale = pw / pimg.width
    pw_, ph_ = pimg.width * scale, pimg.height * scale
    dst = [(cx - pw_ / 2, cy - ph_ / 2), (cx + pw_ / 2, cy - ph_ / 2), (cx + pw_ / 2, cy + ph_ / 2),
           (cx - pw_ / 2, cy + ph_ / 2)]
    jit = ph_ * 0.25
    dst = [(x + rng.uniform(-jit, jit), y + rng.uniform(-jit, jit)) for x, y in dst]
    hm = rotation(rng.uniform(-6, 6), cx, cy) @ homography(rect_quad(0, 0, pimg.width, pimg.height), dst)
    warped = warp(pimg.convert("RGBA"), hm, (w, h), fill=(0, 0, 0, 0))
    scene.paste(warped, (0, 0), warped)
    text_quad = apply_homography(hm, quad)
    text_h = float(np.hypot(text_quad[3][0] - text_quad[0][0], text_quad[3][1] - text_quad[0][1]))
    scene = degrade(scene, rng, level=float(rng.uniform(0.3, 1.1)), text_px=text_h, allow_glare=True,
                    low_light=0.15)
    rnd = lambda q: [(round(x, 1), round(y, 1)) for x, y in q]
    # Small print is real text but not what the plate task reads: a don't-care region for the detector.
    lines = [LineLabel(plate.label, rnd(text_quad))] + [
        LineLabel(t, rnd(apply_homography(hm, q)), ignore=True) for t, q in extras if t.strip()]
    return DetSample(scene, lines, {"plate": plate.label, "printed": plate.printed, "region": plate.region,
                                     "country": plate.country})

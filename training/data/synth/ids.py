"""Synthetic identity documents: passport (TD3) and ID-card (TD1) pages with valid ICAO 9303 MRZ.

The MRZ comes from ``service.profiles.mrz`` builders, so the data we train on and the validator the
service runs share one implementation of the check digits. Persons are invented from syllables.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from service.profiles.mrz import build_td1, build_td3
from training.data.samples import DetSample, LineLabel, RecSample
from training.data.synth.common import (
    apply_homography,
    choice,
    degrade,
    draw_text,
    fit_canvas,
    paper_texture,
    pick_font,
    random_perspective,
    rect_quad,
    rotation,
    warp,
    weighted,
)

COUNTRIES = (
    ("UTO", "UTOPIA"), ("AUT", "AUSTRIA"), ("BEL", "BELGIUM"), ("CAN", "CANADA"), ("CHE", "SWITZERLAND"),
    ("CZE", "CZECH REPUBLIC"), ("D", "GERMANY"), ("ESP", "SPAIN"), ("EST", "ESTONIA"), ("FIN", "FINLAND"),
    ("FRA", "FRANCE"), ("GBR", "UNITED KINGDOM"), ("GRC", "GREECE"), ("IRL", "IRELAND"), ("ITA", "ITALY"),
    ("KAZ", "KAZAKHSTAN"), ("LTU", "LITHUANIA"), ("MDA", "MOLDOVA"), ("MYS", "MALAYSIA"), ("NLD", "NETHERLANDS"),
    ("NOR", "NORWAY"), ("POL", "POLAND"), ("PRT", "PORTUGAL"), ("ROU", "ROMANIA"), ("SVK", "SLOVAKIA"),
    ("SWE", "SWEDEN"), ("UKR", "UKRAINE"), ("USA", "UNITED STATES OF AMERICA"), ("BLR", "BELARUS"), ("IND", "INDIA"),
)
_ONSETS = ("B", "BR", "C", "CH", "D", "F", "G", "H", "J", "K", "KR", "L", "M", "N", "P", "R", "S", "SH", "ST", "T",
           "TR", "V", "W", "Z", "")
_VOWELS = ("A", "E", "I", "O", "U", "AI", "EI", "OU", "IA", "Y")
_CODAS = ("", "", "N", "R", "S", "L", "M", "K", "NN", "RT", "SS", "TH", "NG")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def invented_name(rng: np.random.Generator, syllables: tuple[int, int] = (2, 4)) -> str:
    n = int(rng.integers(*syllables))
    return "".join(choice(rng, _ONSETS) + choice(rng, _VOWELS) for _ in range(n - 1)) + choice(rng, _ONSETS) \
        + choice(rng, _VOWELS) + choice(rng, _CODAS)


@dataclass(frozen=True)
class Person:
    """The holder data printed in the visual zone and encoded in the MRZ."""

    doc_type: str
    country: str
    country_name: str
    surname: str
    given_names: str
    number: str
    nationality: str
    birth: dt.date
    sex: str
    issue: dt.date
    expiry: dt.date
    personal_number: str

    def td3(self) -> tuple[str, str]:
        return build_td3(self.doc_type, self.country, self.surname, self.given_names, self.number, self.nationality,
                         self.birth, self.sex, self.expiry, self.personal_number)

    def td1(self) -> tuple[str, str, str]:
        return build_td1(self.doc_type, self.country, self.surname, self.given_names, self.number, self.nationality,
                         self.birth, self.sex, self.expiry, self.personal_number)


def random_person(rng: np.random.Generator, doc_type: str = "P") -> Person:
    code, name = choice(rng, COUNTRIES)
    nat = code if rng.random() < 0.85 else choice(rng, COUNTRIES)[0]
    surname = invented_name(rng)
    if rng.random() < 0.15:
        surname += " " + invented_name(rng, (2, 3))
    given = " ".join(invented_name(rng, (2, 4)) for _ in range(int(weighted(rng, {1: 6, 2: 3, 3: 1}))))
    alnum = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    number = "".join(choice(rng, alnum) for _ in range(9)) if rng.random() < 0.5 else \
        "".join(choice(rng, "ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(2)) + "".join(str(int(d)) for d in rng.integers(0, 10, 7))
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 66)))
    issue = dt.date(2014, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 11)))
    expiry = issue.replace(year=issue.year + int(choice(rng, (5, 10))), day=min(issue.day, 28))
    personal = "" if rng.random() < 0.6 else "".join(str(int(d)) for d in rng.integers(0, 10, int(rng.integers(6, 12))))
    sex = weighted(rng, {"M": 0.48, "F": 0.48, "X": 0.04})
    dtype = doc_type if doc_type != "P" else weighted(rng, {"P": 0.85, "PD": 0.05, "PS": 0.05, "PO": 0.05})
    return Person(dtype, code, name, surname, given, number, nat, birth, sex, issue, expiry, personal)


def fmt_date(rng: np.random.Generator, d: dt.date) -> str:
    m = MONTHS[d.month - 1]
    return choice(rng, (f"{d.day:02d} {m} {d.year}", f"{d.day:02d}.{d.month:02d}.{d.year}", f"{d.day:02d}/{d.month:02d}/{d.year}",
                        f"{d.day:02d} {m} {d.year % 100:02d}", f"{d.year}-{d.month:02d}-{d.day:02d}",
                        f"{d.day:02d} {m}/{m[:3].title()} {d.year}"))


def mrz_lines(person: Person, kind: str) -> list[str]:
    return list(person.td3() if kind == "TD3" else person.td1())


# ----------------------------------------------------------------------------- backgrounds


def guilloche(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Security-print backdrop: pastel paper with families of interleaved sine curves and a rosette."""
    base = tuple(int(c) for c in rng.integers(200, 250, 3))
    img = paper_texture(rng, w, h, base, float(rng.uniform(0.2, 0.6)))
    d = ImageDraw.Draw(img)
    xs = np.linspace(0, w, max(w // 3, 2))
    for _ in range(int(rng.integers(2, 4))):
        col = tuple(int(c) for c in np.clip(np.asarray(base) - rng.integers(20, 70, 3), 0, 255))
        amp, per = rng.uniform(3, max(h * 0.06, 6)), rng.uniform(0.05, 0.3) * max(w, 200)
        step = rng.uniform(5, 14)
        ph = rng.uniform(0, 2 * np.pi)
        for k, y0 in enumerate(np.arange(-amp, h + amp, step)):
            ys = y0 + amp * np.sin(2 * np.pi * xs / per + ph + k * 0.3)
            d.line(list(zip(xs.tolist(), ys.tolist())), fill=col, width=1)
    if rng.random() < 0.7:
        cx, cy, r0 = rng.uniform(0.3, 0.8) * w, rng.uniform(0.2, 0.6) * h, rng.uniform(0.1, 0.25) * h
        col = tuple(int(c) for c in np.clip(np.asarray(base) - rng.integers(20, 60, 3), 0, 255))
        t = np.linspace(0, 2 * np.pi, 400)
        for k in range(int(rng.integers(6, 14))):
            r = r0 * (1 + 0.25 * np.sin(7 * t + k * 0.45))
            d.line(list(zip((cx + r * np.cos(t)).tolist(), (cy + r * np.sin(t)).tolist())), fill=col, width=1)
    return img


def _photo(img: Image.Image, rng: np.random.Generator, box: tuple[float, float, float, float]) -> None:
    """Holder photo placeholder: a portrait silhouette on a plain backdrop, pasted into ``box``."""
    x0, y0, x1, y1 = (int(v) for v in box)
    w, h = x1 - x0, y1 - y0
    bg = tuple(int(c) for c in rng.integers(170, 235, 1).repeat(3))
    face = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(face)
    skin = tuple(int(c) for c in rng.integers(90, 200, 3))
    cx = w / 2
    d.ellipse((cx - w * 0.45, h * 0.62, cx + w * 0.45, h * 1.3), fill=tuple(int(c * 0.5) for c in skin))
    d.ellipse((cx - w * 0.22, h * 0.15, cx + w * 0.22, h * 0.58), fill=skin)
    img.paste(face, (x0, y0))


# ----------------------------------------------------------------------------- samples


def _field_pairs(rng: np.random.Generator, p: Person, kind: str) -> list[tuple[str, str]]:
    """(label, value) pairs of the visual zone, in print order."""
    bil = rng.random() < 0.6
    lab = (lambda en, fr: f"{en} / {fr}") if bil else (lambda en, fr: en)
    pairs = [
        (lab("Surname", "Nom"), p.surname),
        (lab("Given names", "Prénoms"), p.given_names),
        (lab("Nationality", "Nationalité"), p.country_name if p.nationality == p.country else p.nationality),
        (lab("Date of birth", "Date de naissance"), fmt_date(rng, p.birth)),
        (lab("Sex", "Sexe"), p.sex),
        (lab("Place of birth", "Lieu de naissance"), invented_name(rng).upper()),
        (lab("Date of issue", "Date de délivrance"), fmt_date(rng, p.issue)),
        (lab("Date of expiry", "Date d'expiration"), fmt_date(rng, p.expiry)),
    ]
    if kind == "TD3":
        pairs.insert(0, (lab("Passport No.", "N° du passeport"), p.number))
        pairs.append((lab("Authority", "Autorité"), invented_name(rng).upper() + " " + choice(rng, ("POLICE", "MFA", "MINISTRY", "CITY OFFICE"))))
    else:
        pairs.insert(0, (lab("Document No.", "N° du document"), p.number))
    return pairs


def id_page(rng: np.random.Generator, kind: str | None = None) -> DetSample:
    """A passport data page (TD3) or an ID card (TD1), photographed: every printed line is a labelled quad."""
    kind = kind or weighted(rng, {"TD3": 0.65, "TD1": 0.35})
    person = random_person(rng, "P" if kind == "TD3" else choice(rng, ("I", "ID", "IR", "AC")))
    w, h = (880, 620) if kind == "TD3" else (860, 540)
    img = guilloche(rng, w, h)
    d = ImageDraw.Draw(img)
    placed: list[tuple[str, tuple[float, float, float, float]]] = []
    ink = tuple(int(c) for c in rng.integers(0, 60, 3))
    accent = tuple(int(c) for c in rng.integers(40, 160, 3))

    def put(text: str, xy: tuple[float, float], font, fill) -> float:
        box = draw_text(d, xy, text, font, fill)
        placed.append((text, box))
        return box[3]

    title_font = pick_font(rng, choice(rng, ("sans_bold", "serif", "condensed")), int(rng.integers(24, 34)))
    title = choice(rng, ("PASSPORT", "PASSPORT / PASSEPORT", "REISEPASS / PASSPORT")) if kind == "TD3" else \
        choice(rng, ("IDENTITY CARD", "IDENTITY CARD / CARTE D'IDENTITÉ", "NATIONAL ID CARD", "RESIDENCE PERMIT"))
    put(person.country_name, (30, 22), title_font, accent)
    put(title, (w * rng.uniform(0.4, 0.5), 26), pick_font(rng, "sans", int(rng.integers(18, 24))), accent)
    mrz_rows = 2 if kind == "TD3" else 3
    mrz_size = int(rng.integers(24, 30)) if kind == "TD3" else int(rng.integers(30, 36))
    mrz_font = pick_font(rng, "ocrb", mrz_size)
    mrz_h = mrz_rows * mrz_size * 1.45 + 16
    photo = (30, 80, 30 + w * 0.26, 80 + (h - 80 - mrz_h - 20) * 0.95)
    _photo(img, rng, photo)
    lab_font = pick_font(rng, choice(rng, ("sans", "condensed", "serif")), int(rng.integers(11, 15)))
    val_font = pick_font(rng, choice(rng, ("sans_bold", "sans", "mono_bold", "condensed")), int(rng.integers(17, 24)))
    pairs = _field_pairs(rng, person, kind)
    x, y = photo[2] + 30, 80.0
    col_w = (w - x - 20) / 2
    row_h = ((h - mrz_h - 20) - y) / ((len(pairs) + 1) // 2)
    for i, (label, value) in enumerate(pairs):  # two columns of label-over-value fields
        cx, cy = x + (i % 2) * col_w, y + (i // 2) * row_h
        bottom = put(label, (cx, cy), lab_font, accent)
        vfont = val_font
        while vfont.getlength(value) > col_w - 10 and vfont.size > 10:  # long names: shrink to the column
            vfont = vfont.font_variant(size=vfont.size - 1)
        put(value, (cx, bottom + 4), vfont, ink)
    # MRZ band: plain light strip, OCR-B, monospaced, starting at a fixed left margin.
    band_y = h - mrz_h
    d.rectangle((0, band_y, w, h), fill=tuple(int(c) for c in rng.integers(225, 250, 1).repeat(3)))
    lines = mrz_lines(person, kind)
    char_w = mrz_font.getlength("<")
    mx = max((w - char_w * len(lines[0])) / 2, 4)
    for k, line in enumerate(lines):
        put(line, (mx, band_y + 8 + k * mrz_size * 1.45), mrz_font, (10, 10, 10))
    # Photograph it: tilt, perspective, background, camera degradations.
    hm = rotation(rng.uniform(-5, 5), w / 2, h / 2) @ random_perspective(rng, w, h, 0.03)
    hm, size = fit_canvas(hm, w, h, margin=float(rng.uniform(10, 80)))
    bg = tuple(int(c) for c in rng.integers(10, 200, 3))
    img = warp(img, hm, size, fill=bg)
    img = degrade(img, rng, level=float(rng.uniform(0.1, 0.9)), text_px=18, allow_glare=True)
    labels = [LineLabel(t, [(round(px, 1), round(py, 1)) for px, py in
                            apply_homography(hm, rect_quad(x0 - 2, y0 - 2, x1 + 2, y1 + 2))])
              for t, (x0, y0, x1, y1) in placed]
    fields = {"mrz_type": kind, "document_code": person.doc_type, "issuing_country": person.country,
              "surname": person.surname, "given_names": person.given_names, "document_number": person.number,
              "nationality": person.nationality, "birth_date": person.birth.strftime("%y%m%d"), "sex": person.sex,
              "expiry_date": person.expiry.strftime("%y%m%d"), "mrz": "\n".join(lines)}
    return DetSample(img, labels, fields)


def id_line(rng: np.random.Generator) -> RecSample:
    """An MRZ line (TD3 or TD1, OCR-B) or a visual-zone field line, cropped from a security-print background."""
    kind = weighted(rng, {"TD3": 0.6, "TD1": 0.4})
    person = random_person(rng, "P" if kind == "TD3" else choice(rng, ("I", "ID", "IR", "AC")))
    if rng.random() < 0.55:
        text = choice(rng, mrz_lines(person, kind))
        font = pick_font(rng, "ocrb", int(rng.integers(20, 40)))
    else:
        label, value = choice(rng, _field_pairs(rng, person, kind))
        text = value if rng.random() < 0.75 else label
        family = choice(rng, ("sans_bold", "sans", "mono_bold", "condensed", "serif"))
        font = pick_font(rng, family, int(rng.integers(16, 36)))
    l, t, r, b = font.getbbox(text)
    th = b - t
    pad = [int(rng.uniform(0.05, 0.5) * th) for _ in range(4)]
    w, h = r - l + pad[0] + pad[2], th + pad[1] + pad[3]
    img = guilloche(rng, w, h) if rng.random() < 0.7 else paper_texture(rng, w, h, (238, 238, 235), 0.4)
    ink = tuple(int(c) for c in rng.integers(0, 70, 3))
    ImageDraw.Draw(img).text((pad[0] - l, pad[1] - t), text, font=font, fill=ink)
    hm = rotation(rng.uniform(-1.5, 1.5), w / 2, h / 2)
    hm, size = fit_canvas(hm, w, h)
    img = warp(img, hm, size, fill=(200, 200, 200))
    target_h = int(rng.integers(18, 48))
    img = img.resize((max(int(img.width * target_h / img.height), 8), target_h), Image.Resampling.BILINEAR)
    img = degrade(img, rng, level=float(rng.uniform(0.1, 0.9)), allow_glare=True)
    return RecSample(img, text)

"""Synthetic receipts and invoices: thermal-print line crops and whole pages with line quads.

The text follows the conventions of Malaysian retail receipts (SDN BHD companies, RM amounts, GST/SST
lines) in the upper-case style of the SROIE transcripts, but every string is generated here from small
word lists and number patterns; nothing is taken from the evaluation data. Labels are exactly the
rendered text (mostly upper case; a minority of lines keeps mixed case, as printed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from training.data.samples import DetSample, LineLabel, RecSample
from training.data.synth.common import (
    _smooth_field,
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

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
NAME_WORDS = (
    "GOLDEN", "LUCKY", "SINAR", "MAJU", "JAYA", "BESTARI", "ANEKA", "CAHAYA", "MEGA", "UNITED", "GREEN", "STAR",
    "OCEAN", "PREMIER", "RAYA", "HENG", "HUAT", "SENG", "KIM", "WAH", "FOOK", "MUTIARA", "DELIMA", "INDAH", "SRI",
    "NEW", "GRAND", "ROYAL", "PERMATA", "HARMONI", "SEJAHTERA", "SUN", "PACIFIC", "EASTERN", "BRIGHT", "DAILY",
    "FRESH", "HAPPY", "SUPER", "CITY", "METRO", "KAMPUNG", "BUKIT", "TAMAN", "PANTAI", "SETIA", "ALAM", "MAKMUR",
)
BUSINESS = (
    "TRADING", "ENTERPRISE", "HARDWARE", "RESTAURANT", "MINI MARKET", "BOOKSTORE", "STATIONERY", "BAKERY",
    "KOPITIAM", "CAFE", "PHARMACY", "ELECTRICAL", "AUTO PARTS", "FOOD INDUSTRIES", "MARKETING", "SUPERMARKET",
    "HOLDINGS", "SERVICES", "TEXTILE", "FURNITURE", "NASI KANDAR", "SEAFOOD",
)
COMPANY_SUFFIX = ("SDN BHD", "SDN. BHD.", "(M) SDN BHD", "SDN.BHD", "ENTERPRISE", "TRADING", "", "PLT", "BHD")
STREET_WORDS = (
    "TAMPIN", "MERANTI", "CEMPAKA", "KENANGA", "MAWAR", "SEROJA", "INDUSTRI", "PERDANA", "KLANG LAMA", "IPOH",
    "PUDU", "TUN RAZAK", "AMPANG", "KUCHAI", "BAKAWALI", "DAHLIA", "TEMBUSU", "KERUING", "PINANG", "SELASIH",
)
CITIES = (
    ("KUALA LUMPUR", "WILAYAH PERSEKUTUAN"), ("PETALING JAYA", "SELANGOR"), ("SHAH ALAM", "SELANGOR"),
    ("KLANG", "SELANGOR"), ("PUCHONG", "SELANGOR"), ("JOHOR BAHRU", "JOHOR"), ("SKUDAI", "JOHOR"),
    ("IPOH", "PERAK"), ("SEREMBAN", "NEGERI SEMBILAN"), ("MELAKA", "MELAKA"), ("KUANTAN", "PAHANG"),
    ("GEORGE TOWN", "PULAU PINANG"), ("KOTA BHARU", "KELANTAN"), ("RAWANG", "SELANGOR"), ("KAJANG", "SELANGOR"),
)
ITEMS = (
    "NASI LEMAK", "NASI GORENG KAMPUNG", "MEE GORENG MAMAK", "ROTI CANAI", "TEH TARIK", "KOPI O AIS", "MILO AIS",
    "CHICKEN RICE", "WANTAN MEE", "CHAR KUEY TEOW", "LIMAU AIS", "TEH O", "SIRAP BANDUNG", "ROTI TELUR",
    "MINERAL WATER 500ML", "WHITE BREAD", "FRESH MILK 1L", "EGG GRADE A 10S", "SUGAR 1KG", "COOKING OIL 2KG",
    "A4 PAPER 80GSM", "BALL PEN BLUE", "EXERCISE BOOK", "GLUE STICK", "SCOTCH TAPE 24MM", "FILE FOLDER",
    "PVC PIPE 1/2\"", "WOOD SCREW 2\" (100PCS)", "CABLE TIE 8\"", "LED BULB 9W", "EXTENSION PLUG 3 WAY",
    "SANDPAPER #120", "PAINT BRUSH 2\"", "SILICONE SEALANT", "BATTERY AA 4S", "TISSUE BOX", "DISH SOAP 900ML",
    "COFFEE", "LATTE", "CAPPUCCINO", "ICED LEMON TEA", "CHEESE CAKE", "CROISSANT", "FRIED RICE", "SATAY (10 STK)",
)
PERSON = ("AHMAD", "SITI", "LIM", "TAN", "KUMAR", "NURUL", "WONG", "RAJ", "AISYAH", "CHONG", "FARID", "MEI LING")
FOOTERS = (
    "THANK YOU", "THANK YOU & PLEASE COME AGAIN", "PLEASE COME AGAIN", "GOODS SOLD ARE NOT RETURNABLE",
    "GOODS SOLD ARE NOT REFUNDABLE", "THANK YOU FOR SHOPPING WITH US", "** THANK YOU **", "HAVE A NICE DAY",
    "KEEP THIS RECEIPT FOR EXCHANGE", "PRICES INCLUSIVE OF GST", "E. & O.E.",
)


def _d(rng: np.random.Generator, n: int) -> str:
    return "".join(str(int(x)) for x in rng.integers(0, 10, n))


def _money(rng: np.random.Generator, lo: float = 0.5, hi: float = 120.0) -> float:
    return round(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), 2)


def fmt_money(v: float, thousands: bool = True) -> str:
    return f"{v:,.2f}" if thousands else f"{v:.2f}"


def company_name(rng: np.random.Generator) -> str:
    words = [choice(rng, NAME_WORDS) for _ in range(int(rng.integers(1, 3)))]
    if rng.random() < 0.7:
        words.append(choice(rng, BUSINESS))
    suffix = choice(rng, COMPANY_SUFFIX)
    return " ".join(words + ([suffix] if suffix else []))


def registration(rng: np.random.Generator) -> str:
    num = f"{_d(rng, int(rng.integers(5, 8)))}-{choice(rng, 'ADHKMPTUVWX')}"
    return choice(rng, (f"({num})", f"CO. REG: {num}", f"ROC NO: {num}", f"CO.NO. {num}", f"COMPANY NO: {num}"))


def gst_line(rng: np.random.Generator) -> str:
    num = "00" + _d(rng, 10)
    return choice(rng, (f"GST ID : {num}", f"GST REG NO: {num}", f"GST NO. {num}", f"GST ID NO:{num}",
                        f"SST ID: W10-{_d(rng, 4)}-{_d(rng, 8)}"))


def address_lines(rng: np.random.Generator) -> list[str]:
    city, state = choice(rng, CITIES)
    no = choice(rng, (f"NO. {int(rng.integers(1, 300))}", f"NO.{int(rng.integers(1, 90))}-{int(rng.integers(1, 9))}",
                      f"LOT {int(rng.integers(100, 9999))}", f"{int(rng.integers(1, 99))}"))
    street = f"JALAN {choice(rng, STREET_WORDS)}" + (f" {int(rng.integers(1, 20))}/{int(rng.integers(1, 9))}"
                                                     if rng.random() < 0.4 else "")
    area = choice(rng, ("TAMAN", "KAWASAN PERINDUSTRIAN", "BANDAR", "SEKSYEN", "PUSAT BANDAR")) + " " + choice(
        rng, NAME_WORDS)
    post = f"{int(rng.integers(10000, 99999))} {city}"
    if rng.random() < 0.5:
        return [f"{no}, {street},", f"{area}, {post},", f"{state}."]
    return [f"{no}, {street}, {area},", f"{post}, {state}"]


def phone_line(rng: np.random.Generator) -> str:
    num = f"0{int(rng.integers(3, 10))}-{_d(rng, int(rng.integers(3, 5)))} {_d(rng, 4)}"
    return choice(rng, (f"TEL: {num}", f"TEL NO: {num}", f"TEL : {num}", f"PHONE: {num}", f"TEL/FAX: {num}",
                        f"TEL: {num} FAX: 0{int(rng.integers(3, 10))}-{_d(rng, 4)} {_d(rng, 4)}"))


def date_string(rng: np.random.Generator) -> str:
    day, mon, year = int(rng.integers(1, 29)), int(rng.integers(1, 13)), int(rng.integers(2015, 2026))
    m = MONTHS[mon - 1]
    return choice(rng, (
        f"{day:02d}/{mon:02d}/{year}", f"{day:02d}-{mon:02d}-{year}", f"{year}-{mon:02d}-{day:02d}",
        f"{day} {m} {year}", f"{day:02d}.{mon:02d}.{year % 100:02d}", f"{m} {day}, {year}", f"{day:02d}-{m}-{year % 100:02d}",
        f"{day:02d}/{mon:02d}/{year % 100:02d}", f"{day:02d} {m} {year}", f"{year}/{mon:02d}/{day:02d}",
    ))


def time_string(rng: np.random.Generator) -> str:
    h, mi, s = int(rng.integers(0, 24)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
    return choice(rng, (f"{h:02d}:{mi:02d}", f"{h:02d}:{mi:02d}:{s:02d}", f"{(h % 12) or 12}:{mi:02d} {'PM' if h >= 12 else 'AM'}",
                        f"{(h % 12) or 12}:{mi:02d}:{s:02d}{'PM' if h >= 12 else 'AM'}"))


def invoice_number(rng: np.random.Generator) -> str:
    code = choice(rng, (f"CS{_d(rng, 8)}", f"OR{_d(rng, 14)}", f"{_d(rng, 6)}", f"INV-{_d(rng, 5)}",
                        f"T{_d(rng, 3)}-{_d(rng, 6)}", f"{choice(rng, 'ABCDEFGHK')}{_d(rng, 7)}"))
    label = choice(rng, ("INVOICE NO:", "INVOICE # :", "RECEIPT NO:", "BILL NO:", "DOC NO.:", "INV NO.", "RECEIPT #",
                         "CASH BILL NO:", "SLIP NO."))
    return f"{label} {code}"


@dataclass
class Item:
    name: str
    qty: int
    unit: float

    @property
    def amount(self) -> float:
        return round(self.qty * self.unit, 2)


def random_items(rng: np.random.Generator, n: int) -> list[Item]:
    return [Item(choice(rng, ITEMS), int(weighted(rng, {1: 6, 2: 2, 3: 1, 4: 0.5, 10: 0.3})), _money(rng, 0.8, 60))
            for _ in range(n)]


def item_rows(rng: np.random.Generator, item: Item, style: str, cur: str, tax: str) -> list[list[tuple[str, str]]]:
    """Rows of (text, align) segments for one item in the page's chosen style."""
    amt = fmt_money(item.amount) + tax
    if style == "inline":
        return [[(f"{item.qty} X {item.name}" if item.qty > 1 or rng.random() < 0.3 else item.name, "left"),
                 (amt, "right")]]
    if style == "columns":
        return [[(item.name, "left"), (str(item.qty), "mid"), (amt, "right")]]
    if style == "two_row":
        code = _d(rng, int(rng.integers(6, 13)))
        return [[(f"{code} {item.name}", "left")],
                [(f"{item.qty} X {cur}{fmt_money(item.unit)}", "left"), (amt, "right")]]
    return [[(f"{item.name} {cur}{fmt_money(item.amount)}", "left")]]  # one segment, e.g. "NASI LEMAK 8.90"


def total_rows(rng: np.random.Generator, items: list[Item], cur: str) -> tuple[list[list[tuple[str, str]]], str]:
    """Subtotal/tax/rounding/total/cash/change rows and the printed total amount."""
    sub = round(sum(i.amount for i in items), 2)
    rate = choice(rng, (0.06, 0.06, 0.1, 0.0))
    tax = round(sub * rate, 2)
    total = round(sub + tax, 2)
    rounded = round(round(total * 20) / 20, 2)
    rows: list[list[tuple[str, str]]] = []

    def row(label: str, value: str) -> None:
        if rng.random() < 0.25:
            rows.append([(f"{label} {value}", "right")])
        else:
            rows.append([(label, "left" if rng.random() < 0.5 else "midright"), (value, "right")])

    if rng.random() < 0.7:
        row(choice(rng, ("SUBTOTAL", "SUB TOTAL", "SUB-TOTAL :", "TOTAL SALES (EXCL GST)")), fmt_money(sub))
    if rate:
        kind = choice(rng, ("GST", "SST", "SERVICE CHARGE", "TAX"))
        row(f"{kind} @{int(rate * 100)}%" if rng.random() < 0.5 else f"{kind} {int(rate * 100)}%", fmt_money(tax))
    if rounded != total and rng.random() < 0.6:
        row(choice(rng, ("ROUNDING ADJ", "ROUNDING", "ROUNDING ADJUSTMENT")), f"{rounded - total:.2f}")
        total = rounded
    total_str = fmt_money(total)
    row(choice(rng, ("TOTAL", "GRAND TOTAL", "TOTAL AMOUNT", "NETT TOTAL", "TOTAL (INCL. GST)", "TOTAL:", "GRAND TOTAL:",
                     f"TOTAL {cur.strip()}".strip(), "AMOUNT DUE")), total_str)
    if rng.random() < 0.6:
        paid = max(total, float(choice(rng, (10, 20, 50, 100, 200, total))))
        row(choice(rng, ("CASH", "PAID", "TENDERED", "CASH TENDERED")), fmt_money(paid))
        row(choice(rng, ("CHANGE", "CHANGE DUE", "BALANCE")), fmt_money(paid - total))
    if rng.random() < 0.4:
        rows.append([(f"TOTAL QTY: {sum(i.qty for i in items)}", "left")])
    if rate and rng.random() < 0.4:
        rows.append([("GST SUMMARY", "left"), ("AMOUNT", "mid"), ("TAX", "right")])
        rows.append([(f"SR @ {int(rate * 100)}%", "left"), (fmt_money(sub), "mid"), (fmt_money(tax), "right")])
    return rows, total_str


def receipt_rows(rng: np.random.Generator) -> tuple[list[list[tuple[str, str]]], dict[str, str]]:
    """The whole receipt as rows of (text, align) segments plus its key fields."""
    company = company_name(rng)
    addr = address_lines(rng)
    date = date_string(rng)
    rows: list[list[tuple[str, str]]] = [[(company, "center")]]
    if rng.random() < 0.7:
        rows.append([(registration(rng), "center")])
    rows += [[(a, "center")] for a in addr]
    if rng.random() < 0.7:
        rows.append([(phone_line(rng), "center")])
    if rng.random() < 0.6:
        rows.append([(gst_line(rng), "center")])
    rows.append([(choice(rng, ("TAX INVOICE", "SIMPLIFIED TAX INVOICE", "CASH BILL", "RECEIPT", "OFFICIAL RECEIPT",
                               "INVOICE", "CASH SALE")), "center")])
    rows.append([(invoice_number(rng), "left")])
    ds = choice(rng, (f"DATE: {date}", f"DATE : {date} {time_string(rng)}", f"{date} {time_string(rng)}", date))
    if rng.random() < 0.5:
        rows.append([(ds, "left"), (f"TIME: {time_string(rng)}", "right")])
    else:
        rows.append([(ds, "left")])
    if rng.random() < 0.6:
        rows.append([(choice(rng, ("CASHIER:", "CASHIER :", "SALESPERSON:", "SERVED BY:")) + " " + choice(rng, PERSON),
                      "left")] + ([(f"TABLE: {int(rng.integers(1, 40))}", "right")] if rng.random() < 0.3 else []))
    rows.append([("SEP", "sep")])
    style = weighted(rng, {"inline": 3, "columns": 2, "two_row": 2, "single": 1})
    if style == "columns":
        rows.append([("ITEM", "left"), ("QTY", "mid"), ("AMOUNT" if rng.random() < 0.5 else "TOTAL", "right")])
    elif rng.random() < 0.4:
        rows.append([("DESCRIPTION", "left"), ("AMT(RM)" if rng.random() < 0.5 else "RM", "right")])
    cur = choice(rng, ("", "", "RM", "RM ", "$"))
    tax = choice(rng, ("", "", " SR", " ZR", " T", " S"))
    items = random_items(rng, int(rng.integers(1, 9)))
    for it in items:
        rows += item_rows(rng, it, style, cur, tax)
    rows.append([("SEP", "sep")])
    trows, total = total_rows(rng, items, cur)
    rows += trows
    rows.append([("SEP", "sep")])
    for _ in range(int(rng.integers(0, 3))):
        rows.append([(choice(rng, FOOTERS), "center")])
    return rows, {"company": company, "date": date, "address": " ".join(addr), "total": total}


def random_line_text(rng: np.random.Generator) -> str:
    """One receipt line of any kind, for recognizer crops."""
    kind = weighted(rng, {"item": 4, "total": 2, "company": 1, "address": 1, "date": 1, "invoice": 1, "phone": 0.5,
                          "gst": 0.5, "footer": 0.5, "amount": 1.5, "reg": 0.3})
    if kind == "item":
        it = random_items(rng, 1)[0]
        rows = item_rows(rng, it, choice(rng, ("inline", "two_row", "single", "columns")), choice(rng, ("", "RM", "$")),
                         choice(rng, ("", " SR")))
        segs = [s for r in rows for s in r]
        return choice(rng, segs)[0] if rng.random() < 0.5 else " ".join(s[0] for s in choice(rng, rows))
    if kind == "total":
        rows, _ = total_rows(rng, random_items(rng, int(rng.integers(1, 5))), choice(rng, ("", "RM", "RM ")))
        return " ".join(s[0] for s in choice(rng, rows))
    if kind == "amount":
        return choice(rng, ("", "RM", "$", "RM ")) + fmt_money(_money(rng, 0.1, 5000), rng.random() < 0.5)
    if kind == "company":
        return company_name(rng)
    if kind == "address":
        return choice(rng, address_lines(rng))
    if kind == "date":
        return choice(rng, (date_string(rng), f"DATE: {date_string(rng)}", f"{date_string(rng)} {time_string(rng)}",
                            time_string(rng)))
    if kind == "invoice":
        return invoice_number(rng)
    if kind == "phone":
        return phone_line(rng)
    if kind == "gst":
        return gst_line(rng)
    if kind == "reg":
        return registration(rng)
    return choice(rng, FOOTERS)


_KEEP_UPPER = {"AM", "PM", "RM", "SDN", "BHD", "GST", "SST", "PLT", "SR", "ZR", "ID", "NO", "TEL", "QTY", "(M)"}


def mixed_case(text: str) -> str:
    """Capitalise plain words ("JALAN IPOH" -> "Jalan Ipoh"), keeping codes, abbreviations and short words
    ("AA", "4S") upper case."""
    return " ".join(w.capitalize() if w.isalpha() and len(w) > 2 and w not in _KEEP_UPPER else w
                    for w in text.split(" "))


def _case(rng: np.random.Generator, text: str) -> str:
    """Most receipts print upper case; some print mixed case (the label follows what is printed)."""
    return mixed_case(text) if rng.random() < 0.15 else text


# ----------------------------------------------------------------------------- rendering


@dataclass
class Look:
    """Print appearance shared by every line of one receipt."""

    family: str
    size: int
    ink: tuple[int, int, int]
    paper: tuple[int, int, int]
    fade: float
    dots: int  # dot-matrix period in px (0 = solid)


def random_look(rng: np.random.Generator, size: int) -> Look:
    family = weighted(rng, {"mono": 4, "mono_bold": 2, "condensed": 2, "sans": 2, "sans_bold": 1, "serif": 0.5})
    ink_v = int(rng.integers(0, 80))
    ink = (ink_v, ink_v, ink_v + int(rng.integers(0, 40))) if rng.random() < 0.2 else (ink_v,) * 3
    paper = choice(rng, ((250, 250, 248), (245, 243, 235), (238, 238, 238), (250, 248, 240), (228, 228, 225)))
    fade = float(rng.uniform(0, 0.7)) if rng.random() < 0.6 else 0.0
    dots = int(rng.integers(2, 4)) if rng.random() < 0.15 and size >= 14 else 0
    return Look(family, size, ink, paper, fade, dots)


def _ink_to_rgb(rng: np.random.Generator, alpha: np.ndarray, look: Look, base: Image.Image) -> Image.Image:
    """Composite an ink coverage map onto paper with thermal fading streaks and optional dot-matrix texture."""
    h, w = alpha.shape
    a = alpha.astype(np.float32) / 255.0
    if look.fade > 0:
        streak = _smooth_field(rng, max(w // 8, 2), 1, cells=int(rng.integers(4, 12)))  # varies along x only
        streak = np.asarray(Image.fromarray((streak * 255).astype(np.uint8)).resize((w, 1), Image.Resampling.BILINEAR),
                            dtype=np.float32) / 255.0
        blot = _smooth_field(rng, w, h, cells=5)
        a = a * (1.0 - look.fade * (0.6 * streak + 0.4 * blot))
    if look.dots:
        yy, xx = np.mgrid[0:h, 0:w]
        a = a * (((xx % look.dots) < look.dots - 1) & ((yy % look.dots) < look.dots - 1)).astype(np.float32) \
            + a * 0.25
        a = np.clip(a, 0, 1)
    paper = np.asarray(base, dtype=np.float32)
    ink = np.asarray(look.ink, dtype=np.float32)[None, None, :]
    out = paper * (1 - a[..., None]) + ink * a[..., None]
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def receipt_line(rng: np.random.Generator, text: str | None = None) -> RecSample:
    """A receipt line crop: thermal/laser print, faded, slightly skewed, noisy."""
    text = _case(rng, text or random_line_text(rng))
    look = random_look(rng, int(rng.integers(16, 40)))
    font = pick_font(rng, look.family, look.size)
    l, t, r, b = font.getbbox(text)
    pad_l, pad_r = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    pad_t, pad_b = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    w, h = r - l + pad_l + pad_r, b - t + pad_t + pad_b
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).text((pad_l - l, pad_t - t), text, font=font, fill=255)
    if rng.random() < 0.4:  # neighbouring lines' ink bleeding into the crop
        d = ImageDraw.Draw(mask)
        d.text((pad_l - l, -(b - t) * 0.85 - t), text[::-1], font=font, fill=255)
    paper = paper_texture(rng, w, h, look.paper, float(rng.uniform(0.1, 0.6)))
    img = _ink_to_rgb(rng, np.asarray(mask), look, paper)
    shear = rng.uniform(-0.03, 0.03)
    hm = rotation(rng.uniform(-1.5, 1.5), w / 2, h / 2) @ np.array([[1, shear, 0], [0, 1, 0], [0, 0, 1.0]])
    hm, size = fit_canvas(hm, w, h)
    img = warp(img, hm, size, fill=look.paper)
    target_h = int(rng.integers(16, 48))
    img = img.resize((max(int(img.width * target_h / img.height), 8), target_h), Image.Resampling.BILINEAR)
    img = degrade(img, rng, level=float(rng.uniform(0.2, 1.0)))
    return RecSample(img, text)


def wrap_text(font, text: str, width: float) -> list[str]:
    """Greedy word wrap to ``width`` pixels (a word longer than the width is cut, as printers do)."""
    lines: list[str] = []
    cur = ""
    for word in text.split(" "):
        cand = f"{cur} {word}" if cur else word
        if font.getlength(cand) <= width:
            cur = cand
            continue
        if cur:
            lines.append(cur)
        while font.getlength(word) > width and len(word) > 1:
            k = max(int(len(word) * width / font.getlength(word)), 1)
            lines.append(word[:k])
            word = word[k:]
        cur = word
    if cur:
        lines.append(cur)
    return lines or [text]


_X_ALIGN = {"left": 0.0, "mid": 0.55, "midright": 0.45, "right": 1.0, "center": 0.5}


def receipt_page(rng: np.random.Generator) -> DetSample:
    """A whole receipt photographed/scanned: every printed segment is one labelled quad."""
    rows, fields = receipt_rows(rng)
    fields["layout"] = "receipt"
    look = random_look(rng, int(rng.integers(14, 24)))
    font = pick_font(rng, look.family, look.size)
    cols = int(rng.integers(32, 48))
    char_w = font.getlength("0")
    margin = int(rng.uniform(1.5, 4) * char_w)
    width = int(cols * char_w) + 2 * margin
    line_h = int(look.size * rng.uniform(1.15, 1.6))
    case_mixed = rng.random() < 0.15
    placed: list[tuple[str, tuple[float, float, float, float]]] = []
    y = margin + int(rng.integers(0, 3 * look.size))
    draws: list[tuple[tuple[float, float], str]] = []
    seps: list[tuple[float, str]] = []
    inner = width - 2 * margin
    for row in rows:
        if row[0][1] == "sep":
            seps.append((y + line_h * 0.35, choice(rng, ("dash", "solid", "double", "none"))))
            y += line_h * 0.7
            continue
        if case_mixed:
            row = [(mixed_case(t) if a in ("left", "center") else t, a) for t, a in row]
        if len(row) == 1:
            wrapped = [[(part, row[0][1])] for part in wrap_text(font, row[0][0], inner)]
        else:  # shorten the first (description) segment at a word boundary so the columns fit
            rest = sum(font.getlength(t) for t, _ in row[1:]) + char_w * 2 * (len(row) - 1)
            first = wrap_text(font, row[0][0], max(inner - rest, char_w * 4))
            wrapped = [[(first[0], row[0][1])] + row[1:]] + [[(part, row[0][1])] for part in first[1:]]
        for segs in wrapped:
            prev_end = -1e9
            for text, align in segs:
                l, t, r, b = font.getbbox(text)
                tw = r - l
                x = max(margin + max(inner - tw, 0) * _X_ALIGN[align], prev_end + char_w)  # never overlap
                prev_end = x + tw
                draws.append(((x - l, y), text))
                placed.append((text, (x, y + t, x + tw, y + b)))
            y += line_h
    height = int(y + margin + rng.integers(0, 4 * look.size))
    mask = Image.new("L", (width, height), 0)
    d = ImageDraw.Draw(mask)
    for (x, yy), text in draws:
        d.text((x, yy), text, font=font, fill=255)
    for sy, kind in seps:
        if kind == "dash":
            for sx in np.arange(margin, width - margin, char_w):
                d.line((sx, sy, sx + char_w * 0.6, sy), fill=230, width=max(look.size // 10, 1))
        elif kind in ("solid", "double"):
            d.line((margin, sy, width - margin, sy), fill=230, width=max(look.size // 12, 1))
            if kind == "double":
                d.line((margin, sy + 3, width - margin, sy + 3), fill=230, width=max(look.size // 12, 1))
    paper = paper_texture(rng, width, height, look.paper, float(rng.uniform(0.1, 0.6)))
    page = _ink_to_rgb(rng, np.asarray(mask), look, paper)
    page, lines = _photograph(rng, page, placed, look.size)
    return DetSample(page, lines, fields)


def _photograph(rng: np.random.Generator, page: Image.Image, placed: list[tuple[str, tuple[float, float, float, float]]],
                text_px: float) -> tuple[Image.Image, list[LineLabel]]:
    """Place the paper on a scanner bed / table, tilted, with a bit of perspective; map the text boxes along."""
    width, height = page.size
    hm = rotation(rng.uniform(-4, 4), width / 2, height / 2) @ random_perspective(rng, width, height, 0.025)
    hm, size = fit_canvas(hm, width, height, margin=float(rng.uniform(5, 60)))
    bg = tuple(int(c) for c in (rng.integers(20, 230, 3) if rng.random() < 0.5 else rng.integers(180, 250, 1).repeat(3)))
    page = warp(page, hm, size, fill=bg)
    page = degrade(page, rng, level=float(rng.uniform(0.1, 0.9)), text_px=text_px)
    pad = max(text_px * 0.08, 1.0)
    lines = [LineLabel(text, [(round(x, 1), round(yy, 1)) for x, yy in
                              apply_homography(hm, rect_quad(x0 - pad, y0 - pad, x1 + pad, y1 + pad))])
             for text, (x0, y0, x1, y1) in placed]
    return page, lines


def invoice_page(rng: np.random.Generator) -> DetSample:
    """A business invoice (A4-like, laser print): header, bill-to block, item table, totals, payment terms."""
    width = int(rng.integers(760, 900))
    height = int(width * 1.414)
    size = int(rng.integers(13, 18))
    family = choice(rng, ("sans", "condensed", "serif", "mono"))
    font = pick_font(rng, family, size)
    bold = pick_font(rng, "sans_bold" if family != "serif" else "serif", int(size * rng.uniform(1.0, 1.2)))
    big = pick_font(rng, "sans_bold", int(size * rng.uniform(1.6, 2.2)))
    ink = tuple(int(c) for c in rng.integers(0, 50, 3))
    paper = paper_texture(rng, width, height, (250, 250, 248), float(rng.uniform(0.05, 0.3)))
    d = ImageDraw.Draw(paper)
    placed: list[tuple[str, tuple[float, float, float, float]]] = []

    def put(text: str, x: float, y: float, f, align: str = "left") -> float:
        tw = f.getlength(text)
        x = x - tw if align == "right" else x
        box = draw_text(d, (x, y), text, f, ink)
        placed.append((text, box))
        return box[3]

    m = width * rng.uniform(0.06, 0.09)
    right = width - m
    line_h = size * rng.uniform(1.35, 1.7)
    company = company_name(rng)
    addr = address_lines(rng)
    y = put(company, m, m, bold) + size * 0.5
    for a in addr + [phone_line(rng)]:
        put(a, m, y, font)
        y += line_h
    title = choice(rng, ("INVOICE", "TAX INVOICE", "Invoice", "COMMERCIAL INVOICE", "QUOTATION"))
    ty = put(title, right, m, big, "right") + size * 0.8
    date = date_string(rng)
    for lab, val in ((choice(rng, ("Invoice No:", "INVOICE NO.", "Invoice #")), f"INV-{_d(rng, int(rng.integers(4, 7)))}"),
                     (choice(rng, ("Date:", "DATE", "Invoice Date:")), date),
                     (choice(rng, ("Due Date:", "DUE DATE", "Terms:")), choice(rng, (date_string(rng), "30 DAYS", "C.O.D."))),
                     (choice(rng, ("Customer ID:", "Account No:", "PO No:")), _d(rng, int(rng.integers(4, 9))))):
        put(lab, right - width * 0.3, ty, font)
        put(val, right, ty, font, "right")
        ty += line_h
    y = max(y, ty) + line_h
    put(choice(rng, ("BILL TO:", "Bill To", "CUSTOMER:", "Sold To:")), m, y, bold)
    y += line_h * 1.1
    for a in [company_name(rng)] + address_lines(rng):
        put(a, m, y, font)
        y += line_h
    y += line_h
    cols = [m, m + width * 0.07, right - width * 0.36, right - width * 0.17, right]
    heads = [("NO", "left"), (choice(rng, ("DESCRIPTION", "Description", "ITEM")), "left"), ("QTY", "right"),
             (choice(rng, ("UNIT PRICE", "Unit Price", "RATE")), "right"), (choice(rng, ("AMOUNT", "Amount", "TOTAL (RM)")), "right")]
    d.rectangle((m - 4, y - 4, right + 4, y + line_h - 2), fill=tuple(int(c) for c in rng.integers(200, 240, 1).repeat(3)))
    for (h, al), x in zip(heads, (cols[0], cols[1], cols[2], cols[3], cols[4])):
        put(h, x, y, bold, al)
    y += line_h * 1.2
    items = random_items(rng, int(rng.integers(2, 12)))
    for k, it in enumerate(items, 1):
        put(str(k), cols[0], y, font)
        put(it.name, cols[1], y, font)
        put(str(it.qty), cols[2], y, font, "right")
        put(fmt_money(it.unit), cols[3], y, font, "right")
        put(fmt_money(it.amount), cols[4], y, font, "right")
        y += line_h
    d.line((m, y, right, y), fill=ink, width=1)
    y += line_h * 0.5
    sub = round(sum(i.amount for i in items), 2)
    rate = choice(rng, (0.06, 0.08, 0.1, 0.0))
    tax = round(sub * rate, 2)
    total = fmt_money(sub + tax)
    for lab, val, f in (("Subtotal" if rng.random() < 0.5 else "SUBTOTAL", fmt_money(sub), font),
                        (f"{choice(rng, ('SST', 'GST', 'Tax', 'Service Tax'))} {int(rate * 100)}%", fmt_money(tax), font),
                        (choice(rng, ("TOTAL", "Total Due", "GRAND TOTAL", "TOTAL (RM)")), total, bold)):
        put(lab, cols[3] - width * 0.12, y, f)
        put(val, right, y, f, "right")
        y += line_h
    y += line_h
    for extra in (choice(rng, ("Payment terms: 30 days", "PAYMENT DUE WITHIN 14 DAYS", "Thank you for your business")),
                  f"Bank: {choice(rng, NAME_WORDS)} BANK  Account No: {_d(rng, 4)}-{_d(rng, 4)}-{_d(rng, 4)}"):
        if y + line_h < height - m:
            put(extra, m, y, font)
            y += line_h
    page, lines = _photograph(rng, paper, placed, size)
    return DetSample(page, lines, {"company": company, "date": date, "address": " ".join(addr), "total": total,
                                   "layout": "invoice"})


def document_page(rng: np.random.Generator) -> DetSample:
    """A receipt (most of the time) or a business invoice."""
    return invoice_page(rng) if rng.random() < 0.25 else receipt_page(rng)

"""Receipts and invoices: company, date, total, currency and address from OCR lines.

Company and address come from a learned word tagger (`invoice_tagger.py`, trained on real receipts by
`ocrnet train-fields`) when the model bundle names one in model.json (`fields_model`); the rules below are the
fallback without it, and for a field the tagger finds no word for. Date, total and currency are rules:
receipts put the company at the top, the address right under it and the total next to a
TOTAL-like keyword, and rules are explainable and cheap. Dates are normalised to ISO 8601 (day-first, as on
Malaysian/European receipts; month-first only when day-first is impossible); `date_raw` keeps the text as
printed. The total is the amount printed next to the strongest total keyword (GRAND TOTAL, AMOUNT DUE, NETT,
ROUNDED, TOTAL), never a subtotal, tax, cash or change line unless nothing else exists.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, Field

from .base import (
    LineBox,
    Profile,
    TextLineLike,
    fields_model_file,
    group_rows,
    line_boxes,
)

if TYPE_CHECKING:
    from .invoice_tagger import FieldTagger

__all__ = ["InvoiceFields", "InvoiceProfile", "find_date", "find_total", "parse_amount", "parse_date"]

_MONTHS = {m: i + 1 for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}
_MONTHS.update({"SEPT": 9, "JANUARY": 1, "FEBRUARY": 2, "MARCH": 3, "APRIL": 4, "JUNE": 6, "JULY": 7,
                "AUGUST": 8, "SEPTEMBER": 9, "OCTOBER": 10, "NOVEMBER": 11, "DECEMBER": 12})
_MON = r"(?P<mon>JAN(?:UARY)?|FEB(?:RUARY)?|MAR(?:CH)?|APR(?:IL)?|MAY|JUNE?|JULY?|AUG(?:UST)?|SEPT?(?:EMBER)?" \
       r"|OCT(?:OBER)?|NOV(?:EMBER)?|DEC(?:EMBER)?)"
# Ordered: the first pattern that yields a real calendar date wins.
_DATE_PATTERNS = [
    re.compile(r"(?<!\d)(?P<y>(?:19|20)\d{2})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})(?!\d)"),  # ISO
    re.compile(r"(?<![\d/.-])(?P<d>\d{1,2})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})"
               r"(?:(?![\d/])|(?<=\d{4})(?=\d{1,2}:\d{2}))"),  # d/m/y, also glued to a time: 30-04-201815:57
    re.compile(r"(?<!\d)(?P<d>\d{1,2})(?:ST|ND|RD|TH)?[\s\-/.]*" + _MON + r"[\s\-/.,]*(?P<y>\d{4}|\d{2})(?!\d)"),
    re.compile(_MON + r"[\s\-/.]*(?P<d>\d{1,2})(?:ST|ND|RD|TH)?[\s,]+(?P<y>\d{4}|\d{2})(?!\d)"),
]
_AMOUNT = re.compile(r"(?<![\d.,])-?\d{1,3}(?:,\d{3})*(?:[.,]\d{2})(?![\d])|(?<![\d.,])-?\d+[.,]\d{2}(?!\d)")
# Currency rule: an ISO 4217 code only where the document names the currency (a code, or a symbol that belongs to
# one currency); a bare '$' (USD, SGD, AUD, CAD, HKD, NZD, MXN... all print it) is returned as printed.
_CURRENCIES = [("MYR", r"\bMYR\b|\bRM\s?(?=\d)|\bRM\b|\(RM\)"), ("EUR", r"€|\bEUR\b"), ("GBP", r"£|\bGBP\b"),
               ("USD", r"\bUSD\b|\bUS\$"), ("SGD", r"\bSGD\b|\bSG?\$"), ("AUD", r"\bAUD\b|\bAU?\$"),
               ("CAD", r"\bCAD\b|\bCA?\$"), ("HKD", r"\bHKD\b|\bHK\$"), ("NZD", r"\bNZD\b|\bNZ\$")]
_PREFIXED_DOLLAR = re.compile(r"\b[A-Z]{1,2}\$")  # US$, S$, HK$...: named above, not a bare '$'
BARE_DOLLAR = "$"
# Total keywords, strongest first. A line's tier is the first that matches.
_TOTAL_TIERS = [
    re.compile(r"AFTER\s*(?:ROUNDING|ROUNDED|ADJ)|ROUNDED\s*TOTAL|TOTAL\s*ROUNDED|GRAND\s*TOTAL|AMOUNT\s*DUE|TOTAL\s*DUE|BALANCE\s*DUE|TOTAL\s*PAYABLE|AMOUNT\s*PAYABLE"),
    re.compile(r"NETT?\s*TOTAL|TOTAL\s*NETT?|TOTAL\s*\(?INCL|TOTAL\s*AMOUNT|TOTAL\s*SALES?|TOTAL\s*\(?RM|"
               r"NETT?\s*(?:AMOUNT|AMT)"),
    re.compile(r"TOTAL|\bAMOUNT\b|\bAMT\b|\bJUMLAH\b"),  # SUBTOTAL lands here, then in the fallback pool
]
_NOT_TOTAL = re.compile(r"SUB\s*-?\s*TOTAL|\bTAX\b|\bGST\b|\bSST\b|\bVAT\b|TOTAL\s*(?:QTY|QUANTITY|ITEMS?|DISC)|"
                        r"DISCOUNT|\bCHANGE\b|\bCASH\b|TENDER|ROUNDING|\bADJ|SAVING|EXCL|\bPAID\b|\bCARD\b|VISA|GROSS")
# Phrases that mention tax or rounding but describe the final amount ("TOTAL SALES (INCLUSIVE OF GST)").
_FINAL_PHRASES = re.compile(r"INCL\w*\.?\s*(?:OF\s*)?(?:GST|SST|TAX|VAT)|AFTER\s*(?:ROUNDING|ROUNDED|ADJ\w*)")
_COMPANY_CUES = re.compile(r"\bSDN\.?\s*BHD\b|\bS/B\b|\bBHD\b|\bLTD\b|\bLIMITED\b|\bGMBH\b|\bINC\b|\bLLC\b|\bPLC\b|"
                           r"\bCORP\b|\bCO\.|\bCOMPANY\b|\bENTERPRISE\b|\bTRADING\b|\bRESTAURANT\b|\bRESTORAN\b|"
                           r"\bSTATIONERY\b|\bHARDWARE\b|\bMART\b|\bSTORE\b|\bSHOP\b|\bPHARMACY\b|\bBAKERIES\b|"
                           r"\bS\.?A\.?R?\.?L?\b(?=$)|\bAG\b$|\bB\.?V\.?$|\bNIAGA\b|\bPERNIAGAAN\b|\bSUPERMARKET\b")
_NOT_COMPANY = re.compile(r"TAX\s*INVOICE|^INVOICE|RECEIPT|WELCOME|THANK|^TEL|^FAX|^GST|^REG|^CO\.?\s*REG|"
                          r"^\(?\d{5,}|^DATE|^NO\.?\s*\d|\bJALAN\b|\bJLN\b|^LOT\b")
_ADDRESS_CUES = re.compile(r"\bJALAN\b|\bJLN\b|\bLOT\b|\bNO\.?\s*\d|\bTAMAN\b|\bTMN\b|\bBANDAR\b|\bBDR\b|\bBATU\b|"
                           r"\bSEKSYEN\b|\bKAWASAN\b|\bPERINDUSTRIAN\b|\bLORONG\b|\bPERSIARAN\b|\bKAMPUNG\b|\bKG\b|"
                           r"\bSELANGOR\b|\bKUALA\s*LUMPUR\b|\bJOHOR\b|\bPENANG\b|\bPERAK\b|\bSABAH\b|\bSARAWAK\b|"
                           r"\bMELAKA\b|\bKEDAH\b|\bPAHANG\b|\bMALAYSIA\b|\bSHAH\s*ALAM\b|\bPETALING\b|\bCHERAS\b|"
                           r"\bSTREET\b|\bST\.|\bROAD\b|\bRD\b|\bAVENUE\b|\bAVE\b|\bSTRASSE\b|\bSTR\.|\bRUE\b|\bVIA\b|"
                           r"\bFLOOR\b|\bFLR\b|\bBLOCK\b|\bBLK\b|\bSUITE\b|\bUNIT\b|\bMALL\b|\bPLAZA\b|\bCENTRE\b|"
                           r"\bCENTER\b|\bKL\b|\bOFF\b|(?<!\d)\d{5}(?!\d)|\d+[A-Z]?,")
_ADDRESS_STOP = re.compile(r"\bTEL\b|\bPHONE\b|\bFAX\b|\bH/P\b|GST\s*(?:REG|ID|NO)|\bREG\b|INVOICE|RECEIPT|"
                           r"\bDATE\b|@|WWW\.|HTTP|\bCASHIER\b|\bTABLE\b|\bBILL\b|\bEMAIL\b|\bE-MAIL\b")
_REG_NUMBER = re.compile(r"^\(?\s*(?:CO\.?\s*(?:REG\.?)?\s*(?:NO\.?)?\s*:?)?\s*\(?\d{4,}[- ]?[A-Z]\)?\s*\)?$")
# A company registration number printed after the name: "(728515-M)", "(139386 X)".
_TRAILING_REG = re.compile(r"\s*\(?\s*(?:CO\.?\s*REG\.?\s*(?:NO\.?)?\s*:?\s*)?\d{4,}[-\s]?[A-Z]\s*\)?\s*$")
# What is left of a name once its legal suffix is removed; one word or less means the name began a row above.
_LEGAL_SUFFIX = re.compile(r"\(M\)|\bSDN\.?\s*BHD\.?|\bS/B\b|\bBHD\.?|\bLTD\.?|\bLIMITED\b|\bGMBH\b|\bINC\.?|"
                           r"\bLLC\b|\bPLC\b|\bCORP\.?|\bCO\.|\([A-Z]{1,3}\)")


def _valid_date(y: int, m: int, d: int) -> _dt.date | None:
    try:
        return _dt.date(y, m, d)
    except ValueError:
        return None


def parse_date(text: str) -> tuple[str, str] | None:
    """First date in `text` as (ISO 8601, the text as printed); None when there is none.

    Numeric dates are read day-first (dd/mm/yyyy, dd-mm-yy) and month-first only when the day-first reading is
    not a date (e.g. 12/13/2016); two-digit years are 20yy. Month names in English (12 MAR 2018, Mar 12, 2018).
    """
    upper = text.upper()
    for pattern in _DATE_PATTERNS:
        for m in pattern.finditer(upper):
            g = m.groupdict()
            y = int(g["y"])
            if y < 100:
                y += 2000
            if not 1970 <= y <= 2099:
                continue
            if g.get("mon"):
                date = _valid_date(y, _MONTHS[g["mon"][:4] if g["mon"][:4] == "SEPT" else g["mon"][:3]],
                                   int(g["d"]))
            else:
                a, b = int(g["d"]), int(g["m"])
                date = _valid_date(y, b, a) or (_valid_date(y, a, b) if "y" in g and m.re is not _DATE_PATTERNS[0]
                                                else None)
            if date is not None:
                return date.isoformat(), text[m.start():m.end()].strip()
    return None


def find_date(texts: Sequence[str]) -> tuple[str, str] | None:
    """The first date among lines, preferring a line labelled DATE."""
    labelled = [t for t in texts if re.search(r"\bDATE\b|\bTARIKH\b", t.upper())]
    for t in labelled + list(texts):
        found = parse_date(t)
        if found:
            return found
    return None


def parse_amount(text: str) -> Decimal | None:
    """The last money amount in `text` ('RM 1,234.50' -> 1234.50; '12,50' -> 12.50); None when absent."""
    found = _AMOUNT.findall(text.upper().replace("O", "0") if re.search(r"\d", text) else text)
    if not found:
        return None
    raw = re.sub(r"\s", "", found[-1])
    if re.search(r",\d{2}$", raw):
        raw = raw.replace(".", "").replace(",", ".")
    else:
        raw = raw.replace(",", "")
    try:
        return Decimal(raw)
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class _TotalCandidate:
    tier: int
    amount: Decimal
    order: int


def _row_amount(box: LineBox, rows: list[list[LineBox]]) -> Decimal | None:
    """Amount on the keyword line itself, else on a box to its right in the same row."""
    own = parse_amount(box.text)
    if own is not None:
        return own
    for row in rows:
        if box in row:
            right = [b for b in row if b.x0 >= box.x0 and b is not box]
            for b in sorted(right, key=lambda b: b.x0, reverse=True):
                amount = parse_amount(b.text)
                if amount is not None:
                    return amount
    return None


def find_total(boxes: Sequence[LineBox]) -> Decimal | None:
    """The receipt total: strongest keyword tier, then the largest credible amount, then the last line."""
    rows = group_rows(boxes)
    ordered = [b for row in rows for b in row]
    cands: list[_TotalCandidate] = []
    fallback: list[_TotalCandidate] = []
    for order, box in enumerate(ordered):
        upper = box.text.upper()
        tier = next((i for i, p in enumerate(_TOTAL_TIERS) if p.search(upper)), None)
        if tier is None:
            continue
        amount = _row_amount(box, rows)
        if amount is None or amount <= 0:
            continue
        target = fallback if _NOT_TOTAL.search(_FINAL_PHRASES.sub(" ", upper)) else cands
        target.append(_TotalCandidate(tier, amount, order))
    pool = cands or fallback
    if not pool:
        return None
    best_tier = min(c.tier for c in pool)
    top = [c for c in pool if c.tier == best_tier]
    return max(top, key=lambda c: (c.amount, c.order)).amount


def _currency(texts: Sequence[str]) -> str | None:
    """The ISO code the document names most often; else '$' when it prints only bare dollar signs; else None."""
    joined = "\n".join(texts).upper()
    counts = {}
    for code, pattern in _CURRENCIES:
        n = len(re.findall(pattern, joined))
        if n and code not in counts:
            counts[code] = n
    if counts:
        return max(counts, key=counts.__getitem__)
    return BARE_DOLLAR if BARE_DOLLAR in _PREFIXED_DOLLAR.sub("", joined) else None


def _is_company_line(text: str) -> bool:
    letters = sum(c.isalpha() for c in text)
    return letters >= 3 and letters >= 0.5 * len(text.replace(" ", "")) and not _NOT_COMPANY.search(text.upper())


def _company(rows: list[list[LineBox]], top_n: int = 8) -> tuple[str | None, int]:
    """Company name and the index of its row: a top row with a company suffix, else the first name-like row."""
    texts = [_TRAILING_REG.sub("", " ".join(b.text for b in row)).strip() for row in rows[:top_n]]
    for i, t in enumerate(texts):
        if _COMPANY_CUES.search(t.upper()) and _is_company_line(t):
            rest = _LEGAL_SUFFIX.sub(" ", t.upper()).split()
            # The row above holds the start of the name ('&' is often read as '8').
            if i > 0 and (len(rest) <= 1 or rest[0] in ("&", "8")) and _is_company_line(texts[i - 1]) \
                    and not _COMPANY_CUES.search(texts[i - 1].upper()):
                return f"{texts[i - 1]} {t}", i
            return t, i
    for i, t in enumerate(texts):
        if _is_company_line(t):
            return t, i
    return None, -1


def _address(rows: list[list[LineBox]], company_row: int, top_n: int = 14) -> str | None:
    """Consecutive rows with address cues after the company (registration numbers in between are skipped)."""
    texts = [" ".join(b.text for b in row).strip() for row in rows]
    start = company_row + 1
    parts: list[str] = []
    window = texts[start:start + top_n]
    for i, t in enumerate(window):
        upper = t.upper()
        if _REG_NUMBER.match(upper) and not parts:
            continue
        if _ADDRESS_STOP.search(upper) or parse_date(t):
            if parts:
                break
            continue
        nxt = window[i + 1].upper() if i + 1 < len(window) else ""
        # A row without cues still belongs to the address when the row after it continues it.
        continues = bool(parts) and (parts[-1].rstrip().endswith(",") or
                                     (bool(_ADDRESS_CUES.search(nxt)) and not _ADDRESS_STOP.search(nxt)))
        if _ADDRESS_CUES.search(upper) or continues:
            parts.append(t)
        elif parts:
            break
    return " ".join(parts) if parts else None


class InvoiceFields(BaseModel):
    """Key fields of a receipt or invoice; a field is null when it was not found."""

    company: str | None = Field(None, examples=["UNIHAKKA INTERNATIONAL SDN BHD"])
    date: str | None = Field(None, description="ISO 8601 date", examples=["2018-03-10"])
    date_raw: str | None = Field(None, description="the date as printed", examples=["10/03/2018"])
    total: str | None = Field(None, description="total amount, decimal string with a '.' separator",
                              examples=["8.20"])
    currency: str | None = Field(
        None, examples=["MYR", "$"],
        description="ISO 4217 code where the document names the currency (RM/MYR -> MYR, € -> EUR, £ -> GBP, "
                    "US$/USD -> USD, S$/SGD -> SGD); a bare '$' is ambiguous and is returned as printed: '$'")
    address: str | None = Field(None, description="address lines under the company, joined by spaces",
                                examples=["12, JALAN TAMPOI 7/4, 81200 JOHOR BAHRU, JOHOR"])


class InvoiceProfile(Profile):
    name: ClassVar[str] = "invoice"
    description: ClassVar[str] = "Receipts and invoices: company, date, total, currency, address"
    fields_model: ClassVar[type[BaseModel]] = InvoiceFields

    def __init__(self, tagger: FieldTagger | None = None) -> None:
        self.tagger = tagger

    def for_model_dir(self, root: str | Path) -> InvoiceProfile:
        """This profile with the bundle's learned field tagger (model.json `fields_model`); the rules without one,
        or when `fields_model` is another profile's model (the plate picker of a bundle that serves both).

        Raises ValueError when the tagger file is not JSON, or says it is a tagger but is not a valid one."""
        from .invoice_tagger import FORMAT, FieldTagger

        path = fields_model_file(root, FORMAT, claim_unmarked=True)
        return self if path is None else InvoiceProfile(FieldTagger.load(path))

    def extract(self, lines: Sequence[TextLineLike], image_size: tuple[int, int]) -> InvoiceFields:
        boxes = line_boxes(lines)
        rows = group_rows(boxes)
        texts = [b.text for b in boxes]
        learned = self.tagger.tag(boxes) if self.tagger is not None else {}
        company, address = learned.get("company"), learned.get("address")
        if company is None or address is None:  # rules for what the tagger did not find (or without a tagger)
            rule_company, company_row = _company(rows)
            company = company if company is not None else rule_company
            if address is None and company_row >= 0:
                address = _address(rows, company_row)
        date = find_date(texts)
        total = find_total(boxes)
        return InvoiceFields(
            company=company,
            date=date[0] if date else None,
            date_raw=date[1] if date else None,
            total=f"{total:.2f}" if total is not None else None,
            currency=_currency(texts),
            address=address,
        )

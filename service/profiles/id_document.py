"""ID documents: locate and validate the ICAO 9303 MRZ (TD1, TD2, TD3) among the OCR lines.

Only the MRZ is read: it is the one part of an ID page with a fixed layout and check digits, so its fields
can be trusted when `valid` is true. The visual zone varies per country and is left to the generic lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, Field

from .base import (
    Evidence,
    FocusedRead,
    LineBox,
    Profile,
    TextLineLike,
    char_evidence,
    group_rows,
    line_boxes,
)
from .mrz import LineEvidence, find_mrz, normalise_mrz_with
from .mrz_band import MrzBand

__all__ = ["IdDocumentFields", "IdDocumentProfile"]


class IdDocumentFields(BaseModel):
    """Fields parsed from the machine-readable zone; all null when no MRZ was found."""

    mrz_type: str | None = Field(None, description="TD1 (3x30), TD2 (2x36) or TD3 (2x44, passports)",
                                 examples=["TD3"])
    document_type: str | None = Field(None, examples=["P"])
    issuing_country: str | None = Field(None, description="ICAO 3-letter code", examples=["UTO"])
    surname: str | None = Field(None, examples=["ERIKSSON"])
    given_names: str | None = Field(None, examples=["ANNA MARIA"])
    document_number: str | None = Field(None, examples=["L898902C3"])
    nationality: str | None = Field(None, examples=["UTO"])
    birth_date: str | None = Field(None, description="ISO 8601 date", examples=["1974-08-12"])
    sex: str | None = Field(None, description="M, F or X (unspecified)", examples=["F"])
    expiry_date: str | None = Field(None, description="ISO 8601 date", examples=["2012-04-15"])
    personal_number: str | None = Field(None, examples=["ZE184226B"])
    check_digits: dict[str, bool] = Field(default_factory=dict,
                                          description="per-field ICAO 9303 check digit result, incl. composite")
    valid: bool = Field(False, description="true when an MRZ was found, every check digit of its lines (fillers "
                                           "restored to the type's length) matches, and no other reading the "
                                           "recogniser found nearly as likely would pass them too")
    failed_checks: list[str] = Field(default_factory=list,
                                     description="why valid is false: the check digits that fail, then the fields "
                                                 "another reading would pass in as well (a close alternative of "
                                                 "the recogniser, O/0 in the document number, a repair the check "
                                                 "digit chose) and lineN where the fillers had to be guessed",
                                     examples=[["document_number", "composite"]])
    mrz_lines: list[str] = Field(default_factory=list, description="the MRZ lines as parsed (normalised)")


@dataclass(frozen=True)
class _Moved:
    """A character's evidence without its time-step span: spans of pieces cropped apart share no time axis."""

    alternatives: Sequence[tuple[str, float]]
    start: int = -1
    end: int = -1


def _merge_row(lines: Sequence[TextLineLike], row: list[LineBox]) -> tuple[str, LineEvidence | None]:
    """An MRZ line split by the detector into pieces on one row is read left to right as one line."""
    parts = [normalise_mrz_with(b.text, char_evidence(lines[b.index])) for b in row]
    text = "".join(t for t, _ in parts)
    if any(ev is None for _, ev in parts):
        return text, None
    if len(parts) == 1:
        return parts[0]
    merged: list[Evidence | None] = [None if e is None else _Moved(e.alternatives) for _, ev in parts
                                     for e in ev]  # type: ignore[union-attr]
    return text, tuple(merged)


class IdDocumentProfile(Profile):
    name: ClassVar[str] = "id"
    description: ClassVar[str] = "ID documents and passports: ICAO 9303 MRZ (TD1/TD2/TD3) with check digits"
    fields_model: ClassVar[type[BaseModel]] = IdDocumentFields
    focus: ClassVar[FocusedRead | None] = MrzBand()  # the MRZ band only, unless the request asks for all text

    def extract(self, lines: Sequence[TextLineLike], image_size: tuple[int, int]) -> IdDocumentFields:
        boxes = line_boxes(lines)
        rows = group_rows(boxes)
        merged = [_merge_row(lines, r) for r in rows]
        # Whole rows first (split lines); single lines as well, in case unrelated text shares a row.
        result = find_mrz([t for t, _ in merged], [sc for _, sc in merged])
        if result is None or not result.valid:
            alt = find_mrz([b.text for b in boxes], [char_evidence(lines[b.index]) for b in boxes])
            if alt is not None and (result is None or sum(alt.check_digits.values()) >
                                    sum(result.check_digits.values())):
                result = alt
        if result is None:
            return IdDocumentFields()
        d = result.as_dict()
        return IdDocumentFields(**{k: d[k] for k in IdDocumentFields.model_fields})

"""The generic profile: plain OCR, no domain fields (the lines in the response are the result)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from .base import Profile, TextLineLike

__all__ = ["GenericFields", "GenericProfile"]


class GenericFields(BaseModel):
    """No fields: the generic profile returns only the recognised lines."""

    model_config = ConfigDict(extra="forbid")


class GenericProfile(Profile):
    name: ClassVar[str] = "generic"
    description: ClassVar[str] = "Any document: text lines only, no field extraction"
    fields_model: ClassVar[type[BaseModel]] = GenericFields

    def extract(self, lines: Sequence[TextLineLike], image_size: tuple[int, int]) -> GenericFields:
        return GenericFields()

"""Domain profiles: turn OCR lines into typed fields (generic, invoice, id, plate).

    from service.profiles import get_profile
    fields = get_profile("plate").extract_fields(lines, (width, height))  # JSON-serialisable dict

Each profile also exposes `fields_model` (pydantic) so the API can document the fields in its OpenAPI schema.
"""

from __future__ import annotations

from .base import Profile, TextLineLike
from .generic import GenericFields, GenericProfile
from .id_document import IdDocumentFields, IdDocumentProfile
from .invoice import InvoiceFields, InvoiceProfile
from .plate import PlateFields, PlateProfile

__all__ = [
    "PROFILES", "GenericFields", "IdDocumentFields", "InvoiceFields", "PlateFields", "Profile", "TextLineLike",
    "UnknownProfileError", "get_profile",
]

PROFILES: dict[str, Profile] = {p.name: p for p in (GenericProfile(), InvoiceProfile(), IdDocumentProfile(),
                                                    PlateProfile())}


class UnknownProfileError(KeyError):
    """Raised by get_profile for a name that is not in PROFILES (the API maps it to a 4xx)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown profile {self.name!r}; available: {', '.join(sorted(PROFILES))}"


def get_profile(name: str) -> Profile:
    """The registered profile called `name`; raises UnknownProfileError (a KeyError) otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownProfileError(name) from None

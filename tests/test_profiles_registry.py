"""Profile registry: names, lookup errors, the generic profile and the pydantic field models (OpenAPI)."""

from __future__ import annotations

import json

import pytest
from profile_lines import line

from service.profiles import PROFILES, Profile, UnknownProfileError, get_profile


def test_registry_names_and_lookup() -> None:
    assert set(PROFILES) == {"generic", "invoice", "id", "plate"}
    for name, profile in PROFILES.items():
        assert isinstance(profile, Profile) and profile.name == name and profile.description
        assert get_profile(name) is profile


def test_unknown_profile_raises_a_keyerror_subclass_with_the_choices() -> None:
    with pytest.raises(UnknownProfileError) as exc:
        get_profile("passport")
    assert isinstance(exc.value, KeyError)
    assert "passport" in str(exc.value) and "invoice" in str(exc.value)


def test_generic_has_no_fields() -> None:
    assert get_profile("generic").extract_fields([line("HELLO", 0, 0, 50, 10)], (100, 100)) == {}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_fields_are_json_and_match_the_documented_model(name: str) -> None:
    profile = get_profile(name)
    lines = [line("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", 10, 10, 900, 40),
             line("TOTAL RM 12.00 10/03/2018", 10, 50, 400, 80), line("AB-123-CD", 10, 90, 200, 130)]
    fields = profile.extract_fields(lines, (1000, 200))
    json.dumps(fields)
    assert set(fields) == set(profile.fields_model.model_fields)
    schema = profile.fields_model.model_json_schema()
    assert set(schema.get("properties", {})) == set(fields)

"""Plate profile: format matching, confusion fixes only where a format demands them, picking the plate."""

from __future__ import annotations

import pytest
from profile_lines import line

from service.profiles import get_profile
from service.profiles.plate import PlateFields, match_plate, plate_key


@pytest.mark.parametrize("raw,key,country,display", [
    ("AB-123-CD", "AB123CD", "FR", "AB-123-CD"),
    ("ab-123-cd", "AB123CD", "FR", "AB-123-CD"),
    ("B-AB 1234", "BAB1234", "DE", "B-AB 1234"),
    ("M AB 123E", "MAB123E", "DE", "M-AB 123E"),
    ("1234 BCD", "1234BCD", "ES", "1234 BCD"),
    ("AB12 CDE", "AB12CDE", "GB", "AB12 CDE"),
    ("ABC1D23", "ABC1D23", "BR", "ABC1D23"),
    ("ABC-1234", "ABC1234", "BR", "ABC-1234"),
    ("RK-828AG", "RK828AG", "SK", "RK-828AG"),
    ("1B1 9839", "1B19839", "CZ", "1B1 9839"),
    ("WSQ 3021", "WSQ3021", "PL", "WSQ 3021"),
    ("12-ABC-3", "12ABC3", "NL", "12-ABC-3"),
    ("7ABC123", "7ABC123", "US", "7ABC123"),
    ("5LTA600", "5LTA600", "US", "5LTA600"),
])
def test_formats(raw: str, key: str, country: str, display: str) -> None:
    m = match_plate(raw)
    assert m is not None
    assert (m.plate, m.country, m.display) == (key, country, display)


@pytest.mark.parametrize("raw,key", [
    ("AB-I23-CD", "AB123CD"),   # I read for 1 in a digit slot (FR)
    ("A8-123-CD", "AB123CD"),   # 8 read for B in a letter slot
    ("ABC-I234", "ABC1234"),    # BR old
    ("I234 BCD", "1234BCD"),    # ES
    ("AB12 CD5", "AB12CDS"),    # GB: S/5 in the last letter group
    ("RK 8Z8AG", "RK828AG"),    # SK/IT grouping, Z/2
])
def test_confusions_fixed_where_the_printed_grouping_demands(raw: str, key: str) -> None:
    m = match_plate(raw)
    assert m is not None and m.plate == key and m.fixes >= 1


@pytest.mark.parametrize("raw", ["P602849", "SB3X6N", "HB6L0Z", "0SG719", "NEILDMND"])
def test_ungrouped_text_is_never_rewritten(raw: str) -> None:
    m = match_plate(raw)
    assert m is not None and m.plate == raw and m.fixes == 0


def test_not_plates() -> None:
    assert match_plate("") is None
    assert match_plate("CALIFORNIA DMV") is None  # 13 letters: no format, not 2-8 alphanumerics
    assert plate_key(" ab-12.c d ") == "AB12CD"


W, H = 1000, 600


def test_picks_the_plate_among_car_text() -> None:
    lines = [
        line("California", 380, 250, 620, 285, 0.99),
        line("7ABC123", 390, 290, 610, 350, 0.93),
        line("DMV.CA.GOV", 420, 355, 580, 370, 0.9),
        line("TOYOTA OF SUNNYVALE 555 1234", 300, 380, 700, 398, 0.88),
        line("4RUNNER", 800, 100, 900, 130, 0.97),
    ]
    f = get_profile("plate").extract_fields(lines, (W, H))
    assert f["plate"] == "7ABC123" and f["country_guess"] == "US"
    assert f["plate_raw"] == "7ABC123" and f["format"] == "generic"
    assert 0 < f["confidence"] <= 1
    PlateFields.model_validate(f)


def test_specific_format_beats_a_generic_sticker() -> None:
    lines = [line("AB-123-CD", 400, 300, 600, 350, 0.9), line("WASH 24", 50, 40, 150, 60, 0.99)]
    f = get_profile("plate").extract_fields(lines, (W, H))
    assert (f["plate"], f["country_guess"], f["plate_display"]) == ("AB123CD", "FR", "AB-123-CD")


def test_plate_split_by_the_detector_is_merged() -> None:
    lines = [line("RK", 400, 300, 440, 340), line("828AG", 455, 300, 560, 340), line("SKODA", 430, 200, 530, 230)]
    f = get_profile("plate").extract_fields(lines, (W, H))
    assert f["plate"] == "RK828AG" and f["plate_raw"] == "RK 828AG"


def test_eu_band_code_is_dropped() -> None:
    f = get_profile("plate").extract_fields([line("SK RK-828AG", 380, 300, 620, 340)], (W, H))
    assert f["plate"] == "RK828AG" and f["country_guess"] == "SK"


def test_brazil_mercosul_with_confusion_in_a_grouped_reading() -> None:
    f = get_profile("plate").extract_fields([line("BRASIL", 450, 280, 550, 300),
                                             line("ABC-I234", 400, 305, 600, 360)], (W, H))
    assert f["plate"] == "ABC1234" and f["country_guess"] == "BR"


def test_no_lines_gives_empty_fields() -> None:
    f = get_profile("plate").extract_fields([], (W, H))
    assert f == PlateFields().model_dump(mode="json") and f["plate"] is None


def test_camera_timestamps_are_not_plates() -> None:
    lines = [line("2014-05-12 06:11:43", 0, 2, 127, 19, 0.97), line("06:11:45", 1219, 706, 1274, 719, 0.94),
             line("SGT-E5", 668, 633, 751, 688, 0.9)]
    f = get_profile("plate").extract_fields(lines, (1280, 720))
    assert f["plate"] == "SGTE5"


def test_emblem_read_as_a_leading_letter_is_dropped_and_colon_kept_for_czech() -> None:
    f = get_profile("plate").extract_fields([line("RRK:346AL", 225, 201, 350, 235)], (576, 432))
    assert f["plate"] == "RK346AL"
    f = get_profile("plate").extract_fields([line("1B1:9839", 150, 200, 300, 240)], (425, 330))
    assert f["plate"] == "1B19839" and f["country_guess"] == "CZ"


@pytest.mark.parametrize(("raw", "plate"), [
    ("4ASC7399", "ASC7399"),  # a state graphic read as a digit: 8 characters, the rest an exact LLL-DDDD
    ("7DD12AB", "7DD12AB"),  # 7 characters: a US plate, though 'DD12AB' alone would fit a Dutch layout
    ("48ASC739", "48ASC739"),  # 8 characters whose rest fits no fixed layout: kept as read
])
def test_leading_digit_is_dropped_only_from_one_character_too_many(raw: str, plate: str) -> None:
    f = get_profile("plate").extract_fields([line(raw, 225, 201, 350, 235)], (576, 432))
    assert f["plate"] == plate


@pytest.mark.parametrize(("raw", "key", "display"), [("RK0565AV", "RK565AV", "RK-565AV"),
                                                      ("RKO069AV", "RK069AV", "RK-069AV")])
def test_separator_read_as_an_extra_o_or_0_is_dropped(raw: str, key: str, display: str) -> None:
    """A hyphen or fixing bolt between the groups read as O/0: one character too many, exactly where a fixed
    layout (here SK LL-DDDLL) has its separator, and the rest fits that layout without any fix."""
    f = get_profile("plate").extract_fields([line(raw, 225, 201, 350, 235)], (576, 432))
    assert (f["plate"], f["plate_display"], f["country_guess"]) == (key, display, "SK")


@pytest.mark.parametrize("raw", ["RK-0565AV", "AB0C1234", "1234ABCD"])
def test_extra_characters_elsewhere_are_not_dropped(raw: str) -> None:
    """Only at a separator position, only O/0/I/1, only with no separator read: other 8-9 character reads stay
    (a leading digit before an exact 7-character layout is the leading-glyph rule's case, tested above)."""
    f = get_profile("plate").extract_fields([line(raw, 225, 201, 350, 235)], (576, 432))
    assert f["plate"] == plate_key(raw)

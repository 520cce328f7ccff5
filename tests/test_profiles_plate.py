"""Plate profile: format matching, changes only on the recogniser's evidence and never to a read that fits a layout,
picking the plate by its region, the candidates with their scores."""

from __future__ import annotations

import pytest
from profile_lines import evidence_line, line

from service.profiles import get_profile
from service.profiles.plate import PlateFields, match_plate, plate_key
from service.profiles.plate_layouts import CLOSE_RATIO, fits_known_layout


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


def _pick(ln) -> dict:
    return get_profile("plate").extract_fields([ln], (W, H))


@pytest.mark.parametrize("raw,at,alt,key", [
    ("AB-I23-CD", 3, "1", "AB123CD"),   # I read for 1 in a digit slot (FR)
    ("A8-123-CD", 1, "B", "AB123CD"),   # 8 read for B in a letter slot
    ("ABC-12I4", 6, "3", "ABC1234"),    # BR old (not 'ABC-I234': that is a German plate as read)
    ("I234 BCD", 0, "1", "1234BCD"),    # ES
    ("AB12 CD5", 7, "S", "AB12CDS"),    # GB: S/5 in the last letter group
    ("RK 8Z8AG", 4, "2", "RK828AG"),    # SK/IT grouping, Z/2
])
def test_a_close_alternative_fixes_a_read_that_fits_no_layout(raw: str, at: int, alt: str, key: str) -> None:
    assert not fits_known_layout(raw)
    f = _pick(evidence_line(raw, 400, 300, 600, 350, probs={at: 0.6}, alts={at: [(alt, 0.35)]}))
    assert f["plate"] == key
    assert f["candidates"][0]["rule"] == "alternative" and f["candidates"][0]["read"] == raw


@pytest.mark.parametrize("raw,at,alt", [("AB-I23-CD", 3, "1"), ("A8-123-CD", 1, "B"), ("I234 BCD", 0, "1")])
def test_no_change_without_close_evidence(raw: str, at: int, alt: str) -> None:
    """A far alternative, or none at all (lines of other OCR engines), leaves the read as it is."""
    far = evidence_line(raw, 400, 300, 600, 350, probs={at: 0.9}, alts={at: [(alt, 0.9 * CLOSE_RATIO * 0.9)]})
    for ln in (far, line(raw, 400, 300, 600, 350)):
        f = _pick(ln)
        assert f["plate"] == plate_key(raw) and f["candidates"][0]["rule"] == "as_read"


@pytest.mark.parametrize("raw,at,alt", [
    ("WX 81234", 2, "B"),   # PL LL DDDDD as read: the 8 stays an 8 even with B a close second
    ("8ABC123", 0, "B"),    # a common US layout (DLLLDDD)
    ("AB-123-CD", 3, "I"),  # FR
    ("B-AB 1234", 5, "I"),  # DE
])
def test_a_read_that_fits_a_layout_is_never_changed(raw: str, at: int, alt: str) -> None:
    assert fits_known_layout(raw)
    f = _pick(evidence_line(raw, 400, 300, 600, 350, probs={at: 0.5}, alts={at: [(alt, 0.49)]}))
    assert f["plate"] == plate_key(raw)
    assert all(c["rule"] == "as_read" for c in f["candidates"])


def test_two_equally_likely_rewrites_change_nothing() -> None:
    """'AB-I2S-CD': I->1 (FR) needs the 5 too; with two changes equally cheap to two layouts, keep the read."""
    ln = evidence_line("ABI23CDX", 400, 300, 600, 350, probs={2: 0.5, 7: 0.5}, alts={2: [("1", 0.4)]})
    assert _pick(ln)["plate"] == "ABI23CDX"
@pytest.mark.parametrize("raw", ["P602849", "SB3X6N", "HB6L0Z", "0SG719", "NEILDMND"])
def test_match_plate_never_rewrites(raw: str) -> None:
    m = match_plate(raw)
    assert m is not None and m.plate == raw


@pytest.mark.parametrize("raw", ["P602849", "SB3X6N", "HB6L0Z"])
def test_us_reads_that_fit_a_us_layout_keep_every_doubted_character(raw: str) -> None:
    """Every look-alike read with its twin a close second: still the plate as read (US LDDDDDD, LLDLDL)."""
    twins = {"0": "O", "O": "0", "6": "G", "B": "8", "8": "B", "S": "5", "2": "Z", "L": "1", "Z": "2", "P": "R"}
    alts = {i: [(twins[c], 0.45)] for i, c in enumerate(raw) if c in twins}
    f = _pick(evidence_line(raw, 400, 300, 600, 350, probs=dict.fromkeys(alts, 0.5), alts=alts))
    assert f["plate"] == raw and f["candidates"][0]["rule"] == "as_read"


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


def test_brazil_old_format_with_a_close_alternative() -> None:
    f = get_profile("plate").extract_fields([line("BRASIL", 450, 280, 550, 300),
                                             evidence_line("ABC-12S4", 400, 305, 600, 360, probs={6: 0.5},
                                                           alts={6: [("5", 0.45)]})], (W, H))
    assert f["plate"] == "ABC1254" and f["country_guess"] == "BR"


def test_no_lines_gives_empty_fields() -> None:
    f = get_profile("plate").extract_fields([], (W, H))
    assert f == PlateFields().model_dump(mode="json") and f["plate"] is None


def test_camera_timestamps_are_not_plates() -> None:
    lines = [line("2014-05-12 06:11:43", 0, 2, 127, 19, 0.97), line("06:11:45", 1219, 706, 1274, 719, 0.94),
             line("SGT-E5", 668, 633, 751, 688, 0.9)]
    f = get_profile("plate").extract_fields(lines, (1280, 720))
    assert f["plate"] == "SGTE5"


def test_emblem_read_as_a_leading_letter_is_dropped_on_its_evidence_and_colon_kept_for_czech() -> None:
    doubtful = evidence_line("RRK:346AL", 225, 201, 350, 235, probs={0: 0.3})
    assert _pick(doubtful)["plate"] == "RK346AL" and _pick(doubtful)["candidates"][0]["rule"] == "leading_glyph"
    apart = evidence_line("RRK:346AL", 225, 201, 350, 235, centres=[0, 6, 8, 10, 12, 14, 16, 18, 20])
    assert _pick(apart)["plate"] == "RK346AL"
    confident = evidence_line("RRK:346AL", 225, 201, 350, 235)
    assert _pick(confident)["plate"] == "RRK346AL"
    f = get_profile("plate").extract_fields([line("1B1:9839", 150, 200, 300, 240)], (425, 330))
    assert f["plate"] == "1B19839" and f["country_guess"] == "CZ"


@pytest.mark.parametrize(("raw", "prob", "plate"), [
    ("4ASC7399", 0.3, "ASC7399"),   # a state graphic read as a doubtful digit: the rest an exact LLL-DDDD
    ("4ASC7399", 0.9, "4ASC7399"),  # the same glyph read with confidence, not standing apart: kept
    ("7DD12AB", 0.3, "DD12AB"),     # a doubtful glyph before an exact NL LL-DD-LL: dropped
    ("7DD1ZAB", 0.3, "7DD1ZAB"),    # fits no layout, but neither does the rest: kept
    ("48AS7C39", 0.3, "48AS7C39"),  # 8 characters whose rest fits no layout: kept as read
    ("ASC73994", 0.3, "ASC7399"),   # a trailing glyph, likewise
])
def test_end_glyph_is_dropped_only_on_its_own_evidence(raw: str, prob: float, plate: str) -> None:
    at = len(raw) - 1 if raw == "ASC73994" else 0
    assert _pick(evidence_line(raw, 225, 201, 350, 235, probs={at: prob}))["plate"] == plate


def test_a_correct_read_does_not_lose_its_first_letter_to_fit_a_dutch_layout() -> None:
    """'S12ABC7' is no known layout, 'S' read with confidence: 12-ABC-7 (NL DD-LLL-D) is not a reason to drop it."""
    assert _pick(evidence_line("S12ABC7", 225, 201, 350, 235))["plate"] == "S12ABC7"


@pytest.mark.parametrize(("raw", "key", "display"), [("RK0565AV", "RK565AV", "RK-565AV"),
                                                      ("RKO069AV", "RK069AV", "RK-069AV")])
def test_separator_read_as_a_doubtful_o_or_0_becomes_the_separator(raw: str, key: str, display: str) -> None:
    """A hyphen or fixing bolt between the groups read as O/0 with low probability: one character too many,
    exactly where a fixed layout (here SK LL-DDDLL) has its separator, and the rest fits that layout exactly."""
    f = _pick(evidence_line(raw, 225, 201, 350, 235, probs={2: 0.4}))
    assert (f["plate"], f["plate_display"], f["country_guess"]) == (key, display, "SK")
    kept = _pick(evidence_line(raw, 225, 201, 350, 235))["plate"]  # read with confidence: kept, as a US plate
    assert kept == match_plate(raw).plate == raw.replace("O", "0")


@pytest.mark.parametrize("raw", ["RK-0565AV", "AB0C1234", "1234ABCD"])
def test_extra_characters_elsewhere_are_not_dropped(raw: str) -> None:
    """Only at a separator position, only O/0/I/1, only with no separator read."""
    f = _pick(evidence_line(raw, 225, 201, 350, 235, probs={2: 0.4, 3: 0.4, 4: 0.4}))
    assert f["plate"] == plate_key(raw)


def test_the_largest_plate_shaped_line_beats_a_sticker_that_fits_a_fixed_format() -> None:
    """A parking sticker 'AB-123-CD' (a French layout) at a third of the plate line's height loses to the plate
    read in the generic pattern; the candidates say why."""
    lines = [line("AB-123-CD", 700, 100, 790, 120, 0.99), line("7XYZ123", 380, 300, 620, 360, 0.9),
             line("RESIDENT PARKING", 300, 380, 700, 440, 0.99)]
    f = get_profile("plate").extract_fields(lines, (W, H))
    assert f["plate"] == "7XYZ123"
    first, *rest = f["candidates"]
    assert first["plate"] == "7XYZ123" and first["region"] == 1.0
    sticker = next(c for c in rest if c["plate"] == "AB123CD")
    assert sticker["pattern"] > first["pattern"] and sticker["region"] < 0.5 and sticker["score"] < first["score"]
    assert [c["score"] for c in f["candidates"]] == sorted((c["score"] for c in f["candidates"]), reverse=True)
    PlateFields.model_validate(f)


def test_candidates_are_a_named_model_in_the_fields_schema() -> None:
    """The API's OpenAPI components take the fields model's $defs: clients get a PlateCandidate model."""
    schema = PlateFields.model_json_schema(ref_template="#/components/schemas/{model}")
    assert "PlateCandidate" in schema["$defs"]
    assert schema["properties"]["candidates"]["items"] == {"$ref": "#/components/schemas/PlateCandidate"}


def _spaced(raw: str, gaps_after: set[int]) -> list[int]:
    """CTC centres three steps apart, five where the plate prints a separator after key character k."""
    centres, at = [], 0
    for k in range(len(raw)):
        centres.append(at)
        at += 5 if k + 1 in gaps_after else 3
    return centres


@pytest.mark.parametrize("gaps_after,country,display", [
    ({2}, "SK", "TT-703HW"),        # one wide gap after the district: Slovak LL-DDDLL
    ({2, 5}, "FR", "AB-123-CD"),    # two: French LL-DDD-LL
])
def test_a_read_without_separators_takes_its_grouping_from_the_spacing(gaps_after, country, display) -> None:
    """A recognizer that writes no separator still leaves the gap a hyphen makes; that tells SK from FR (the same
    letters and digits), while evenly spaced characters leave the formats' own order (FR first)."""
    raw = display.replace("-", "")
    f = _pick(evidence_line(raw, 225, 201, 350, 235, centres=_spaced(raw, gaps_after)))
    assert (f["plate"], f["country_guess"], f["plate_display"], f["plate_raw"]) == (raw, country, display, raw)
    even = _pick(evidence_line(raw, 225, 201, 350, 235, centres=_spaced(raw, set())))
    assert even["country_guess"] == "FR"


def test_printed_separators_outrank_the_spacing() -> None:
    """'TT-703HW' as read is SK even if its characters' spacing looks French."""
    raw = "TT-703HW"
    centres = _spaced("TT703HW", {2, 5})
    f = _pick(evidence_line(raw, 225, 201, 350, 235, centres=[*centres[:2], centres[2] - 1, *centres[2:]]))
    assert (f["country_guess"], f["plate_display"]) == ("SK", "TT-703HW")


def test_spacing_helpers() -> None:
    from service.profiles.plate_layouts import (
        SPACING_LOG_LR,
        boundary_gaps,
        separator_boundaries,
        spacing_support,
    )

    assert separator_boundaries("AB-123 CD") == (2, 5)
    assert separator_boundaries("LL-DDDLL") == (2,)
    assert separator_boundaries("-AB12-") == ()
    ev = evidence_line("AB123", 0, 0, 100, 20, centres=[0, 3, 8, 11, 14]).char_evidence
    assert boundary_gaps("AB123", ev) == [1.0, 5 / 3, 1.0, 1.0]
    assert boundary_gaps("AB", ev[:2]) is None  # no pitch from one gap
    gaps = boundary_gaps("AB123", ev)
    assert spacing_support(gaps, (2,)) == SPACING_LOG_LR[3] > 0 > spacing_support(gaps, (1,))
    assert spacing_support(gaps, (2, 9)) == spacing_support(gaps, (2,))  # a boundary past the read counts nothing


@pytest.mark.parametrize("raw,key,display", [
    ("OSG719", "0SG719", "0SG719"),        # the US O/0 glyph is spelled 0, as the TRAIN labels spell it
    ("SHO R7X", "SH0R7X", "SH0 R7X"),
    ("BA-302OZ", "BA302OZ", "BA-302OZ"),   # a fixed format keeps its letter slots (SK LL-DDDLL)
    ("ABC-1O34", "ABC1034", "ABC-1034"),   # ... and its digit slots read as digits, as before
])
def test_us_plates_spell_the_o_glyph_as_zero_and_fixed_formats_keep_their_slots(raw, key, display) -> None:
    m = match_plate(raw)
    assert m is not None and (m.plate, m.display) == (key, display)


def test_a_line_without_digits_keeps_its_letters() -> None:
    m = match_plate("DOMINION")
    assert m is not None and m.plate == "DOMINION" and m.country is None

"""ICAO 9303 check digits, builders and the tolerant MRZ parser (service/profiles/mrz.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from profile_lines import evidence_line

from service.profiles.mrz import (
    build_td1,
    build_td2,
    build_td3,
    check_digit,
    decide_type,
    find_mrz,
    normalise_mrz_text,
    parse_mrz,
    restore_fillers,
)

# ICAO Doc 9303 specimens (part 4 TD3 passport, part 5 TD1 card, part 6 TD2 card).
TD3 = ("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10")
TD1 = ("I<UTOD231458907<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6", "ERIKSSON<<ANNA<MARIA<<<<<<<<<<")
TD2 = ("I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<", "D231458907UTO7408122F1204159<<<<<<<6")
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ids" / "labels.jsonl"


@pytest.mark.parametrize("data,digit", [
    ("L898902C3", "6"), ("740812", "2"), ("120415", "9"), ("ZE184226B<<<<<", "1"),
    ("L898902C3674081221204159ZE184226B<<<<<1", "0"), ("D23145890", "7"), ("<<<<", "0"), ("AB2134<<<", "5"),
])
def test_check_digit_matches_icao_examples(data: str, digit: str) -> None:
    assert check_digit(data) == digit


def test_check_digit_rejects_characters_outside_the_mrz_alphabet() -> None:
    with pytest.raises(ValueError):
        check_digit("AB-12")


def test_td3_specimen_parses_and_validates() -> None:
    r = parse_mrz(TD3)
    assert r.mrz_type == "TD3" and r.valid
    assert (r.document_type, r.issuing_country, r.surname, r.given_names) == ("P", "UTO", "ERIKSSON", "ANNA MARIA")
    assert (r.document_number, r.nationality, r.sex, r.personal_number) == ("L898902C3", "UTO", "F", "ZE184226B")
    assert (r.birth_date, r.expiry_date) == ("1974-08-12", "2012-04-15")
    assert set(r.check_digits) == {"document_number", "birth_date", "expiry_date", "personal_number", "composite"}


def test_td1_specimen_parses_and_validates() -> None:
    r = parse_mrz(TD1)
    assert r.mrz_type == "TD1" and r.valid and all(r.check_digits.values())
    assert (r.document_number, r.surname, r.given_names, r.nationality) == ("D23145890", "ERIKSSON", "ANNA MARIA",
                                                                            "UTO")
    assert (r.birth_date, r.expiry_date, r.sex) == ("1974-08-12", "2012-04-15", "F")


def test_td2_specimen_is_not_mistaken_for_td3() -> None:
    r = parse_mrz(TD2)
    assert r.mrz_type == "TD2" and r.valid
    assert r.document_number == "D23145890" and r.mrz_lines == list(TD2)


@pytest.mark.parametrize("pos,field", [(3, "document_number"), (15, "birth_date"), (24, "expiry_date"),
                                       (30, "personal_number")])
def test_corrupted_character_fails_its_check_and_the_composite(pos: int, field: str) -> None:
    line2 = TD3[1]
    wrong = "7" if line2[pos] != "7" else "3"
    r = parse_mrz((TD3[0], line2[:pos] + wrong + line2[pos + 1:]))
    assert not r.valid
    assert r.check_digits[field] is False
    assert r.check_digits["composite"] is False
    assert sum(r.check_digits.values()) == 3


def test_corrupted_check_digit_is_detected() -> None:
    line2 = TD3[1][:9] + "5" + TD3[1][10:]
    r = parse_mrz((TD3[0], line2))
    assert r.check_digits["document_number"] is False and not r.valid


def test_ocr_noise_spaces_guillemets_and_letters_in_digit_positions() -> None:
    noisy = ("P<UTO ERIKSSON«ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C3 6UTO74O8122F12O4159ZE184226B<<<<<1O")
    r = parse_mrz(noisy)
    assert r.valid and r.mrz_lines == list(TD3)
    assert r.corrections  # the O->0 fixes are reported


def test_letters_in_the_document_number_are_not_changed() -> None:
    # 'O' inside the alphanumeric document number is legitimate and must survive.
    l1, l2 = build_td3("P", "UTO", "DOE", "JOHN", "AB0O12345", "UTO", "900101", "M", "300101")
    r = parse_mrz((l1, l2))
    assert r.valid and r.document_number == "AB0O12345"


def test_miscounted_fillers_are_refitted() -> None:
    short1 = TD3[0][:-5]  # OCR dropped five '<' of the name filler
    short2 = TD3[1].replace("<<<<<", "<<<")  # and two in the personal number filler
    r = parse_mrz((short1, short2))
    assert r.mrz_lines == list(TD3) and all(r.check_digits.values())
    # text only, line 1 has several runs: the five might have been the '<<' of the names, so not valid
    assert not r.valid and r.failed_checks == ["line1"]
    # the recogniser's spans show every cell read and the line stopping inside its trailing run: valid
    spans = [evidence_line(x, 0, 0, 10, 1, centres=[4 * i + 2 for i in range(len(x))]).char_evidence
             for x in (short1, short2)]
    r = parse_mrz((short1, short2), evidence=spans)
    assert r.mrz_lines == list(TD3) and r.valid


@pytest.mark.parametrize("builder,kind,n,length", [(build_td1, "TD1", 3, 30), (build_td2, "TD2", 2, 36),
                                                   (build_td3, "TD3", 2, 44)])
def test_builders_round_trip_through_the_parser(builder, kind: str, n: int, length: int) -> None:
    lines = builder("ID" if kind != "TD3" else "P", "D", "Müller-Lang", "Hans Peter", "C01X00T47",
                    "D", "640812", "M", "310101")
    assert len(lines) == n and all(len(x) == length for x in lines)
    assert all(set(x) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<") for x in lines)
    r = parse_mrz(lines)
    assert r.mrz_type == kind and r.valid, r.check_digits
    assert r.surname == "MULLER LANG" and r.given_names == "HANS PETER"
    assert r.issuing_country == "D" and r.document_number == "C01X00T47"
    assert r.birth_date == "1964-08-12" and r.expiry_date == "2031-01-01"


def test_builder_reproduces_the_td3_specimen() -> None:
    assert build_td3("P", "UTO", "Eriksson", "Anna Maria", "L898902C3", "UTO", "740812", "F", "120415",
                     "ZE184226B") == TD3
    assert build_td1("I", "UTO", "Eriksson", "Anna Maria", "D23145890", "UTO", "740812", "F", "120415") == TD1
    assert build_td2("I", "UTO", "Eriksson", "Anna Maria", "D23145890", "UTO", "740812", "F", "120415") == TD2


def test_find_mrz_among_other_text() -> None:
    texts = ["PASSPORT", "Surname / Nom", "ERIKSSON", "Given names", "ANNA MARIA", *TD3]
    r = find_mrz(texts)
    assert r is not None and r.mrz_type == "TD3" and r.valid
    assert find_mrz(["PASSPORT", "ANNA MARIA", "12 AUG 1974"]) is None


def test_find_mrz_td1_card() -> None:
    r = find_mrz(["IDENTITY CARD", *TD1, "signature"])
    assert r is not None and r.mrz_type == "TD1" and r.valid


def test_normalise_mrz_text() -> None:
    assert normalise_mrz_text("p<uto eriksson«anna") == "P<UTOERIKSSON<<ANNA"


def test_every_dev_label_mrz_validates() -> None:
    if not DATA.is_file():
        pytest.skip("../shared/data/ids not present")
    records = [json.loads(x) for x in DATA.read_text().splitlines() if x.strip()]
    for rec in records:
        lines = [x["text"] for x in rec["lines"]]
        r = parse_mrz(lines)
        f = rec["fields"]
        assert all(r.check_digits.values()) and r.mrz_lines == lines, rec["image"]
        # valid, unless an O/0 swap in the document number would pass every check digit too (2 of the 36)
        assert r.valid or r.failed_checks == ["document_number"], rec["image"]
        assert (r.document_number, r.surname, r.given_names) == (f["document_number"], f["surname"],
                                                                 f["given_names"])
        assert r.birth_date_raw == f["birth_date"] and r.expiry_date_raw == f["expiry_date"]


def test_digits_in_letter_only_fields_become_letters() -> None:
    # OCR-B 'O' read as '0' in names and country codes (seen on the base model).
    r = parse_mrz(("P<P0LD0NALDS0N<<EDGAR<<<<<<<<<<<<<<<<<<<<<<<", "PBKS39FYR6P0L2507248M2612052<<<<<<<<<<<<<<00"))
    assert r.valid and (r.issuing_country, r.surname, r.nationality) == ("POL", "DONALDSON", "POL")


def _ev(text: str, probs: dict[int, float] | None = None, alts: dict[int, list[tuple[str, float]]] | None = None):
    return evidence_line(text, 0, 0, 10, 1, probs=probs, alts=alts).char_evidence


def test_document_number_look_alikes_resolved_by_the_recognisers_alternatives() -> None:
    # Label QFTZ84KO1; OCR read Z as 2 and O as 0, each with the true character a close second.
    l1 = "P<BELMACIEL<<JAMES<<<<<<<<<<<<<<<<<<<<<<<<<<"
    read = "QFT284K012BEL6103051M2706225<<<<<<<<<<<<<<04"
    r = parse_mrz((l1, read), evidence=[None, _ev(read, {3: 0.6, 7: 0.6}, {3: [("Z", 0.3)], 7: [("O", 0.3)]})])
    assert r.valid and r.document_number == "QFTZ84KO1" and r.failed_checks == []
    assert [c.split(":")[0] for c in r.corrections] == ["document_number", "document_number"]


def test_without_the_recognisers_evidence_a_failing_document_number_stays_invalid_and_named() -> None:
    r = parse_mrz(("P<BELMACIEL<<JAMES<<<<<<<<<<<<<<<<<<<<<<<<<<", "QFT284K012BEL6103051M2706225<<<<<<<<<<<<<<04"))
    assert not r.valid and r.check_digits["document_number"] is False
    assert r.failed_checks == ["document_number", "composite"]


def test_unresolvable_document_number_stays_invalid() -> None:
    r = parse_mrz(("P<BELMACIEL<<JAMES<<<<<<<<<<<<<<<<<<<<<<<<<<", "QFTZ84KQ12BEL6103051M2706225<<<<<<<<<<<<<<04"))
    assert not r.valid and r.check_digits["document_number"] is False


def test_printed_labels_are_not_taken_for_an_mrz() -> None:
    r = find_mrz(["NATIONALITEITNATIONALITYNATIONALITE1", "PLACE OF BIRTH PLAATS VAN GEBOORTE", *TD3])
    assert r is not None and r.mrz_lines == list(TD3)


def test_equally_valid_readings_are_decided_by_the_recogniser_or_left_invalid() -> None:
    """O/0 at positions 1 and 7 of a document number carry the same check weight (3): both swaps pass every check
    digit, so only the recogniser's alternatives can tell which character it misread."""
    l1, l2 = build_td3("P", "D", "KEEN", "HOWARD", "XO6U89Q06", "D", "700628", "M", "330321")
    read = "X06U89Q06" + l2[9:]  # the O at position 1 read as 0
    assert parse_mrz([l1, read]).valid is False  # no evidence: the check digit fails, nothing is guessed
    both = _ev(read, {1: 0.6, 7: 0.6}, {1: [("O", 0.35)], 7: [("O", 0.35)]})
    r = parse_mrz([l1, read], evidence=[None, both])
    assert r.valid is False and r.ambiguous_fields == ["document_number"]
    one = _ev(read, {1: 0.6}, {1: [("O", 0.35)], 7: [("O", 0.001)]})
    fixed = parse_mrz([l1, read], evidence=[None, one])
    assert fixed.document_number == "XO6U89Q06" and fixed.mrz_lines[1] == l2
    assert fixed.corrections == ["document_number:1:1:0->O"]
    # right, yet not valid: swapping the O at 1 and the 0 at 7 (same weight) would pass every check digit as well
    assert fixed.valid is False and fixed.failed_checks == ["document_number"]
    # find_mrz takes the evidence per text line, in the same order as the texts
    found = find_mrz(["PASSPORT", l1, read], [None, None, one])
    assert found is not None and found.document_number == "XO6U89Q06"


def test_a_read_that_passes_is_not_valid_when_another_reading_passes_too() -> None:
    """Two O->0 misreads at check weights 7 and 3 cancel: the read passes every check digit with the wrong
    document number. The check digits cannot see it, so valid is false and the field named, evidence or not."""
    l1, l2 = build_td3("P", "GBR", "LEE", "ROSETTA", "OV63CV9O2", "GBR", "161124", "F", "251109")
    read = "0V63CV902" + l2[9:]
    for ev in (None, _ev(read, {0: 0.98}, {0: [("O", 0.02)]})):
        r = parse_mrz([l1, read], evidence=[None, ev])
        assert all(r.check_digits.values()) and r.valid is False and r.failed_checks == ["document_number"]


def test_a_repair_on_close_evidence_is_valid_and_one_the_check_digit_chose_is_not() -> None:
    l1, l2 = build_td3("P", "D", "KEEN", "HOWARD", "XO6U89Q17", "D", "700628", "M", "330321")
    read = "X06U89Q17" + l2[9:]
    close = parse_mrz([l1, read], evidence=[None, _ev(read, {1: 0.6}, {1: [("O", 0.3)]})])
    assert close.mrz_lines == [l1, l2] and close.valid
    far = parse_mrz([l1, read], evidence=[None, _ev(read, {1: 0.95}, {1: [("O", 0.02)]})])
    assert far.mrz_lines == [l1, l2] and far.valid is False and far.failed_checks == ["document_number"]


@pytest.mark.parametrize(("lines", "kind"), [
    (("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<", "L898902C36UTO7408122F1204159ZE18"), "TD3"),  # short reads, code P
    (("I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<", "D231458907UTO7408122F1204159<<<<<<<<<<<<6"), "TD2"),
    (("V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L8988901C4XXX4009078F96121096ZE184226B<<<<<<"), "TD3"),
    (("V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<", "L8988901C4XXX4009078F9612109<<<<<<<<"), "TD2"),
    (("I<UTOD231458907<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6", "ERIKSSON<<ANNA<MARIA<<<<<<<<<<"), "TD1"),
])
def test_the_type_comes_from_the_document_code_and_line_count_then_the_length(lines, kind: str) -> None:
    assert decide_type([normalise_mrz_text(x) for x in lines]) == kind


def test_filler_runs_are_restored_from_their_spans_on_the_line_image() -> None:
    """CTC merged '<<<<' into one '<': its time steps still cover four cells, so that run (not the longest one)
    gets the missing fillers."""
    true = "AB<<<<CD<<EF"
    read = "AB<CD<<EF"
    centres = [0, 2, 4, 10, 12, 14, 16, 18, 20]  # pitch 2: the merged run spans 4 cells between B (2) and C (10)
    ev = evidence_line(read, 0, 0, 10, 1, centres=centres).char_evidence
    assert restore_fillers(read, len(true), ev)[0] == true
    assert restore_fillers(read, len(true))[0] == "AB<CD<<<<<EF"  # without spans: the longest run grows

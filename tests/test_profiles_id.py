"""ID profile: finds the MRZ among OCR lines (split rows, noise) and returns validated fields."""

from __future__ import annotations

from profile_lines import evidence_line, line

from service.profiles import IdDocumentFields, get_profile
from service.profiles.mrz import build_td1

TD3 = ("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10")
SIZE = (1200, 850)


def _page(mrz: tuple[str, ...], y0: float = 700) -> list:
    vis = [line("PASSPORT", 400, 40, 700, 80), line("Surname", 400, 120, 500, 140), line("ERIKSSON", 400, 145, 560, 170),
           line("Date of birth 12 AUG 1974", 400, 200, 700, 225)]
    return vis + [line(t, 40, y0 + 45 * i, 1160, y0 + 45 * i + 38) for i, t in enumerate(mrz)]


def test_passport_page() -> None:
    f = get_profile("id").extract_fields(_page(TD3), SIZE)
    IdDocumentFields.model_validate(f)
    assert f["valid"] and f["mrz_type"] == "TD3" and f["mrz_lines"] == list(TD3)
    assert (f["surname"], f["given_names"], f["document_number"]) == ("ERIKSSON", "ANNA MARIA", "L898902C3")
    assert (f["birth_date"], f["expiry_date"], f["sex"], f["nationality"]) == ("1974-08-12", "2012-04-15", "F", "UTO")
    assert f["check_digits"] == {"document_number": True, "birth_date": True, "expiry_date": True,
                                 "personal_number": True, "composite": True}


def test_mrz_line_split_into_two_boxes_on_one_row() -> None:
    l2 = TD3[1]
    lines = _page((TD3[0],)) + [line(l2[:20], 40, 745, 560, 783), line(l2[20:], 580, 746, 1160, 784)]
    f = get_profile("id").extract_fields(lines, SIZE)
    assert f["valid"] and f["mrz_lines"][1] == l2


def test_ocr_noise_is_tolerated_but_a_wrong_digit_is_reported() -> None:
    noisy = (TD3[0].replace("<<<<<<<<", "« <<<<<<"), TD3[1].replace("7408122", "74O8122"))
    f = get_profile("id").extract_fields(_page(noisy), SIZE)
    assert f["valid"] and f["mrz_lines"] == list(TD3)
    bad = (TD3[0], TD3[1].replace("L898902C3", "L898902C8"))
    f = get_profile("id").extract_fields(_page(bad), SIZE)
    assert f["mrz_type"] == "TD3" and not f["valid"]
    assert f["check_digits"]["document_number"] is False and f["check_digits"]["birth_date"] is True


def test_id_card_td1() -> None:
    mrz = build_td1("ID", "FRA", "Dupont", "Marie Claire", "X4RTBPFW4", "FRA", "900615", "F", "300614")
    f = get_profile("id").extract_fields(_page(mrz), SIZE)
    assert f["valid"] and f["mrz_type"] == "TD1"
    assert (f["surname"], f["given_names"], f["birth_date"]) == ("DUPONT", "MARIE CLAIRE", "1990-06-15")


def test_no_mrz() -> None:
    f = get_profile("id").extract_fields(_page(()), SIZE)
    assert f["mrz_type"] is None and f["valid"] is False and f["mrz_lines"] == []


def test_the_recognisers_alternatives_decide_a_correction_also_through_a_row_split_in_two_boxes() -> None:
    """The pipeline's TextLine.char_evidence reaches the MRZ parser, also through a row split in two boxes."""
    from service.profiles.mrz import build_td3

    l1, l2 = build_td3("P", "D", "KEEN", "HOWARD", "XO6U89Q17", "D", "700628", "M", "330321")
    read = "X06U89Q17" + l2[9:]
    left, right = read[:20], read[20:]
    lines = _page((l1,)) + [
        evidence_line(left, 40, 745, 560, 783, probs={1: 0.6}, alts={1: [("O", 0.35)]}),
        evidence_line(right, 580, 746, 1160, 784)]
    f = get_profile("id").extract_fields(lines, SIZE)
    assert f["valid"] and f["document_number"] == "XO6U89Q17" and f["mrz_lines"] == [l1, l2]
    plain = _page((l1,)) + [line(read, 40, 745, 1160, 783)]  # no evidence: the check digit fails, reported
    f = get_profile("id").extract_fields(plain, SIZE)
    assert f["valid"] is False and f["failed_checks"] == ["document_number", "composite"]


def test_a_short_filler_run_does_not_make_a_passport_a_td2_card() -> None:
    """A passport whose '<' runs were read short (one line now 36 characters, like a TD2 card's): the document code
    says TD3, the fillers are restored to 44 and only then validated."""
    l2 = "L898902C36UTO7408122F1204159<<<<<<<<<<<<<<02"
    from service.profiles.mrz import check_digit
    l2 = l2[:43] + check_digit(l2[0:10] + l2[13:20] + l2[21:43])
    short = (TD3[0][:30], l2.replace("<" * 14, "<" * 6))
    f = get_profile("id").extract_fields(_page(short), SIZE)
    assert f["mrz_type"] == "TD3" and f["document_type"] == "P" and f["mrz_lines"] == [TD3[0], l2]
    assert all(f["check_digits"].values()) and f["failed_checks"] == ["line1"]  # text only: where did 14 go?
    # the pipeline's lines: the 6 '<' of line 2 span 14 cells, line 1 stops inside its trailing run
    centres = [[4 * i + 2 for i in range(30)], [4 * i + 2 for i in range(28)] + [114 + 8 * i for i in range(6)] +
               [170, 174]]
    lines = _page(()) + [evidence_line(t, 40, 700 + 45 * i, 1160, 738 + 45 * i, centres=c)
                         for i, (t, c) in enumerate(zip(short, centres))]
    f = get_profile("id").extract_fields(lines, SIZE)
    assert f["mrz_lines"] == [TD3[0], l2] and f["valid"]

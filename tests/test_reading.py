"""The read plan (service.reading) and where the id profile looks for the MRZ (service.profiles.mrz_band).

Geometry and plan tests use made-up boxes and steps; the end-to-end ones read a rendered passport-like page with the
shipped id bundle, through the pipeline and through the API.
"""
from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rendering import OCR_B, PageLine, render_page

from service.pipeline import OcrPipeline, TextLine
from service.profiles import IdDocumentProfile, get_profile
from service.profiles.mrz_band import MrzBand, find_mrz_band
from service.reading import ReadOptions, read_for_profile, read_for_profile_async

SPECIMEN = ("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10")


def quad(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def test_the_band_is_the_widest_stack_of_long_lines_not_a_deeper_stack_of_fields():
    quads = [quad(800, 200, 1400, 250),   # three stacked field lines, each > 10x as wide as tall
             quad(800, 300, 1380, 350),
             quad(800, 400, 1390, 450),
             quad(300, 80, 1600, 180),     # a wide title, alone
             quad(240, 1255, 2025, 1316),  # the two MRZ lines
             quad(242, 1371, 2022, 1432)]
    band = find_mrz_band(np.stack(quads), (2400, 1648))
    assert band is not None
    assert band.y0 < 1255 and band.y1 > 1432 and band.x0 < 240 and band.x1 > 2025
    assert band.y0 > 450  # none of the fields above
    assert band.y1 <= 1648 and band.x1 <= 2400


def test_a_lone_mrz_line_gets_room_for_the_line_the_low_resolution_pass_missed():
    band = find_mrz_band(quad(240, 1255, 2025, 1316)[None], (2400, 1648))
    assert band is not None
    pitch = 116  # where the second line of a TD3 MRZ sits
    assert band.y1 >= 1316 + pitch and band.y0 <= 1255 - pitch


def test_no_band_without_long_lines():
    assert find_mrz_band(np.zeros((0, 4, 2), np.float32), (800, 600)) is None
    assert find_mrz_band(np.stack([quad(10, 10, 200, 60), quad(10, 100, 300, 140)]), (800, 600)) is None


def line(text: str, x0: float, y0: float, x1: float, y1: float) -> TextLine:
    return TextLine(text, 0.99, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


class FakeSteps:
    """ReadSteps that record what was asked; the whole page has a title and the MRZ, the region only the MRZ."""

    def __init__(self, page: list[TextLine], region: list[TextLine], quads: np.ndarray,
                 retry: list[TextLine] | None = None) -> None:
        """``retry``: what the region's second read (at MrzBand's retry limits) finds; unset: the same as the first."""
        self.page, self.region, self.quads = page, region, quads
        self.retry = region if retry is None else retry
        self.calls: list[tuple[str, Any]] = []

    async def locate(self, image: Image.Image, det_limit: tuple[int, str]) -> np.ndarray:
        self.calls.append(("locate", det_limit))
        return self.quads

    async def read(self, image: Image.Image, det_limit: tuple[int, str] | None = None) -> list[TextLine]:
        self.calls.append(("read", (image.size, det_limit)))
        if image.size == (2400, 1648):
            return self.page
        return self.retry if det_limit == MrzBand.region_retry_det_limit else self.region

    def complete(self, lines: list[TextLine]) -> list[TextLine]:
        return lines

    async def fields(self, profile, lines, size) -> dict[str, Any]:
        return profile.extract_fields(lines, size)

    def may_read_again(self, profile) -> bool:
        return True


MRZ_QUADS = np.stack([quad(240, 1255, 2025, 1316), quad(242, 1371, 2022, 1432)])


def run_plan(steps: FakeSteps, **options) -> Any:
    page = Image.new("RGB", (2400, 1648), "white")
    return asyncio.run(read_for_profile_async(steps, get_profile("id"), page, ReadOptions(**options)))


def test_the_id_plan_reads_the_band_and_answers_in_page_coordinates():
    region = [line(SPECIMEN[0], 10, 60, 1790, 120), line(SPECIMEN[1], 12, 176, 1790, 236)]
    steps = FakeSteps([line("PASSPORT", 100, 100, 600, 160)], region, MRZ_QUADS)
    result = run_plan(steps)
    assert result.scope == "region" and result.fields["valid"]
    assert [c[0] for c in steps.calls] == ["locate", "read"]
    assert steps.calls[0][1] == MrzBand.locate_det_limit and steps.calls[1][1][1] == MrzBand.region_det_limit
    band = find_mrz_band(MRZ_QUADS, (2400, 1648))
    assert result.lines[0].polygon[0] == (10 + band.x0, 60 + band.y0)


def test_the_id_plan_reads_the_whole_page_when_the_band_has_no_valid_mrz():
    broken = [line(SPECIMEN[0], 10, 60, 1790, 120), line(SPECIMEN[1][:20], 12, 176, 900, 236)]  # cut short
    page = [line("PASSPORT", 100, 100, 600, 160), line(SPECIMEN[0], 250, 1260, 2020, 1310),
            line(SPECIMEN[1], 250, 1376, 2020, 1426)]
    steps = FakeSteps(page, broken, MRZ_QUADS)
    result = run_plan(steps)
    assert result.scope == "page" and result.fields["valid"] and len(result.lines) == 3
    assert [c[0] for c in steps.calls] == ["locate", "read", "read", "read"]
    assert steps.calls[2][1][1] == MrzBand.region_retry_det_limit  # the band again, at its own resolution
    assert steps.calls[3][1] == ((2400, 1648), None)  # then the page, at the bundle's own detector limits


def test_the_band_read_again_at_its_own_resolution_answers_without_the_page():
    broken = [line(SPECIMEN[0], 10, 60, 1790, 120), line(SPECIMEN[1][:20], 12, 176, 900, 236)]
    whole = [line(SPECIMEN[0], 10, 60, 1790, 120), line(SPECIMEN[1], 12, 176, 1790, 236)]
    steps = FakeSteps([line("PASSPORT", 100, 100, 600, 160)], broken, MRZ_QUADS, retry=whole)
    result = run_plan(steps)
    assert result.scope == "region" and result.fields["valid"]
    assert [c[0] for c in steps.calls] == ["locate", "read", "read"]


def test_a_settled_band_answers_and_a_failing_check_digit_sends_the_page():
    band = MrzBand()
    checks = {"document_number": True, "birth_date": True, "expiry_date": True, "composite": True}
    # every check digit holds, yet not valid (another reading of the number passes too): the band held the MRZ
    assert band.settled({"mrz_type": "TD3", "valid": False, "check_digits": checks})
    assert not band.settled({"mrz_type": "TD3", "valid": False, "check_digits": {**checks, "composite": False}})
    assert not band.settled({"mrz_type": None, "valid": False, "check_digits": {}})
    assert not band.settled({"mrz_type": "TD3", "valid": False, "check_digits": {}})


def test_all_text_reads_the_whole_page_without_locating_and_min_confidence_applies():
    page = [line("PASSPORT", 100, 100, 600, 160), TextLine("smudge", 0.2, [(0, 0), (9, 0), (9, 9), (0, 9)])]
    steps = FakeSteps(page, [], MRZ_QUADS)
    result = run_plan(steps, all_text=True, min_confidence=0.5)
    assert [c[0] for c in steps.calls] == ["read"]
    assert result.scope == "page" and [ln.text for ln in result.lines] == ["PASSPORT"]


def test_profiles_without_a_focus_read_the_page_once():
    steps = FakeSteps([line("Total 42.50", 10, 10, 300, 40)], [], MRZ_QUADS)
    page = Image.new("RGB", (2400, 1648), "white")
    result = asyncio.run(read_for_profile_async(steps, get_profile("invoice"), page))
    assert [c[0] for c in steps.calls] == ["read"] and result.scope == "page"


def passport_page() -> Image.Image:
    """A passport-like page: visual-zone text at the top, the ICAO specimen MRZ in OCR-B at the foot."""
    visual = [PageLine(t, size=30, x=60) for t in ("PASSPORT  UTOPIA", "Surname ERIKSSON", "Given names ANNA MARIA",
                                                    "Date of birth 12 AUG 1974", "Date of expiry 15 APR 2012")]
    mrz = [PageLine(t, size=34, font=OCR_B, x=60) for t in SPECIMEN]
    return render_page([*visual, PageLine(" ", size=60), *mrz], width=1100).image


@pytest.fixture(scope="module")
def id_pipeline() -> OcrPipeline:
    return OcrPipeline.from_dir("models/id", providers=["CPUExecutionProvider"], intra_threads=2)


def test_the_shipped_id_bundle_reads_the_mrz_band_of_a_rendered_page(id_pipeline):
    page = passport_page()
    focused = read_for_profile(id_pipeline, get_profile("id"), page)
    assert focused.scope == "region" and focused.fields["valid"]
    assert focused.fields["mrz_lines"] == list(SPECIMEN)
    assert all(min(y for _, y in ln.polygon) > page.height / 2 for ln in focused.lines)  # the band, in page pixels
    whole = read_for_profile(id_pipeline, get_profile("id"), page, ReadOptions(all_text=True))
    assert whole.scope == "page" and whole.fields["mrz_lines"] == list(SPECIMEN)
    assert any("ERIKSSON" in ln.text and "<" not in ln.text for ln in whole.lines)
    assert len(whole.lines) > len(focused.lines)


def test_the_api_answers_the_id_profile_with_the_band_unless_all_text_is_asked(tmp_path):
    from api_support import encode, metric_value, ready_client

    data = encode(passport_page())
    with ready_client(profile_models={"id": "models/id"}) as client:
        focused = client.post("/v1/ocr", params={"profile": "id"}, files={"files": ("p.png", data, "image/png")})
        whole = client.post("/v1/ocr", data={"profile": "id", "all_text": "true"},
                            files={"files": ("p.png", data, "image/png")})
        assert focused.status_code == whole.status_code == 200
        a, b = focused.json()["images"][0], whole.json()["images"][0]
        assert a["fields"]["valid"] and b["fields"]["valid"] and a["fields"]["mrz_lines"] == list(SPECIMEN)
        assert any("ERIKSSON" in ln["text"] and "<" not in ln["text"] for ln in b["lines"])
        assert not any("ERIKSSON" in ln["text"] and "<" not in ln["text"] for ln in a["lines"])
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "ocrnet_focused_reads_total", profile="id", answered="region") == 1
        schema = client.get("/openapi.json").json()
        assert "all_text" in schema["components"]["schemas"]["OcrUpload"]["properties"]
        assert any(p["name"] == "all_text" for p in schema["paths"]["/v1/ocr"]["post"]["parameters"])
        bad = client.post("/v1/ocr", data={"profile": "id", "all_text": "maybe"},
                          files={"files": ("p.png", data, "image/png")})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"


def test_the_plan_answers_from_a_settled_band_without_reading_the_page():
    class Unaccepting(MrzBand):
        """Accepts nothing, so only `settled` can keep the page from being read."""

        def accept(self, fields: dict[str, Any]) -> bool:
            return False

    class Strict(IdDocumentProfile):
        focus = Unaccepting()

    region = [line(SPECIMEN[0], 10, 60, 1790, 120), line(SPECIMEN[1], 12, 176, 1790, 236)]
    steps = FakeSteps([line("PASSPORT", 100, 100, 600, 160)], region, MRZ_QUADS)
    page = Image.new("RGB", (2400, 1648), "white")
    result = asyncio.run(read_for_profile_async(steps, Strict(), page))
    assert result.scope == "region" and [c[0] for c in steps.calls] == ["locate", "read", "read"]
    broken = [line(SPECIMEN[0], 10, 60, 1790, 120), line(SPECIMEN[1].replace("C36", "C37"), 12, 176, 1790, 236)]
    steps = FakeSteps([line("PASSPORT", 100, 100, 600, 160)], broken, MRZ_QUADS)
    result = asyncio.run(read_for_profile_async(steps, Strict(), page))
    assert result.scope == "page" and [c[0] for c in steps.calls] == ["locate", "read", "read", "read"]

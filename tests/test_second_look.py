"""A profile's second look: one more read at other detector limits when the first found nothing usable.

Same rule in the service (engine) and in the evaluation, so DEV numbers are what the API returns.
"""
from __future__ import annotations

import numpy as np

from api_support import encode, metric_samples, ready_client, square_doc
from profile_lines import line
from service.profiles import get_profile


def test_plate_profile_asks_for_a_second_look_only_without_a_plausible_plate():
    plate = get_profile("plate")
    assert plate.second_look_det_limit == (1280, "max")
    assert plate.wants_second_look({"plate": None})
    assert plate.wants_second_look({"plate": "METRO"})  # a dealer name picked for want of a plate
    assert not plate.wants_second_look({"plate": "2DA044"})
    assert plate.prefer_second_look({"plate": "METRO"}, {"plate": "2DA044"})
    assert not plate.prefer_second_look({"plate": "METRO"}, {"plate": None})
    for name in ("generic", "invoice", "id"):
        profile = get_profile(name)
        assert profile.second_look_det_limit is None and not profile.wants_second_look({})


def test_prepare_det_takes_a_per_call_limit(base_pipeline):
    img = np.zeros((720, 1280, 3), np.uint8)
    assert base_pipeline.prepare_det(img).valid_hw == (736, 1312)  # bundle: short side >= 736
    assert base_pipeline.prepare_det(img, (640, "max")).valid_hw == (352, 640)
    assert base_pipeline.det_config.limit_side_len == 736  # the override does not stick


def test_evaluation_applies_the_second_look_like_the_service():
    from training.evaluation.run import _second_looks

    class Reader:
        def __init__(self) -> None:
            self.calls: list[tuple[int, tuple[int, str] | None]] = []

        def read_batch(self, images, det_limit=None):
            self.calls.append((len(images), det_limit))
            return [[line("2DA 044", 500, 300, 700, 340)] for _ in images]

    first = [[line("METRO", 100, 100, 300, 140)], [line("AB 1234", 500, 300, 700, 340)]]
    reader = Reader()
    preds = list(first)
    assert _second_looks(reader, "plates", [b"a", b"b"], preds, [(1280, 720)] * 2) == 1
    assert reader.calls == [(1, (1280, "max"))]  # only the image without a plausible plate
    assert preds[0][0].text == "2DA 044" and preds[1] is first[1]

    class OneShot:  # readers without det_limit (RapidOCR) are read once, as their own API does
        def read_batch(self, images):
            raise AssertionError("no second read expected")

    assert _second_looks(OneShot(), "plates", [b"a"], [first[0]], [(1280, 720)]) == 0
    assert _second_looks(reader, "ids", [b"a"], [first[0]], [(1280, 720)]) == 0


def test_service_reads_again_and_counts_it(monkeypatch):
    from service.profiles.plate import PlateProfile

    monkeypatch.setattr(PlateProfile, "second_look_det_limit", (960, "max"))
    with ready_client() as client:
        no_plate = encode(square_doc(("HELLO WORLD",)))
        r = client.post("/v1/ocr", params={"profile": "plate"}, files={"files": ("a.png", no_plate, "image/png")})
        assert r.status_code == 200, r.text
        assert r.json()["images"][0]["fields"]["plate"] is None
        with_plate = encode(square_doc(("AB 1234",)))
        r = client.post("/v1/ocr", params={"profile": "plate"}, files={"files": ("b.png", with_plate, "image/png")})
        assert r.json()["images"][0]["fields"]["plate"] == "AB1234"
        samples = metric_samples(client.get("/metrics").text, "ocrnet_second_looks_total")
        assert [(s["profile"], s["kept"], v) for s, v in samples] == [("plate", "false", 1.0)]


def test_no_second_look_when_the_deadline_leaves_no_room(monkeypatch):
    """The second read is outside admission control: it must not turn a good-enough answer into a 504."""
    from service.api.engine import Engine
    from service.profiles.plate import PlateProfile

    monkeypatch.setattr(PlateProfile, "second_look_det_limit", (960, "max"))
    monkeypatch.setattr(Engine, "expected_wait_s", lambda self, runner, det_mpx: 1e6)  # far past any deadline
    with ready_client() as client:
        r = client.post("/v1/ocr", params={"profile": "plate"},
                        files={"files": ("a.png", encode(square_doc(("HELLO WORLD",))), "image/png")})
        assert r.status_code == 200, r.text
        samples = metric_samples(client.get("/metrics").text, "ocrnet_second_looks_total")
        assert [(s["profile"], s["kept"], v) for s, v in samples] == [("plate", "skipped", 1.0)]

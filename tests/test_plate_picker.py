"""The learned plate picker: its features, its fit on photos where the hand-set ranking is wrong, its JSON file,
and a bundle naming it changing the pick while the layout rules still choose a line's reading."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from profile_lines import evidence_line, line

from service.profiles import get_profile
from service.profiles.plate import PlateProfile, plate_readings
from service.profiles.plate_picker import (
    FEATURES,
    PlatePicker,
    Reading,
    features,
    line_best,
)
from training.plate_picker import FitConfig, fit, main, photo_of, picks

ROOT = Path(__file__).resolve().parents[1]
W, H = 1000, 600


def _reading(read: str = "7ABC123", box: tuple[float, float, float, float] = (400, 300, 600, 350), **kw) -> Reading:
    args = {"read": read, "text": read, "key": read.replace(" ", "").replace("-", ""), "layout": "generic",
            "rule": "as_read", "line": 0, "joined": False, "box": box, "confidence": 0.9, "region": 1.0,
            "pattern": 0.7, "centrality": 0.8, "hand_score": 0.5}
    args.update(kw)
    return Reading(**args)


def col(X: np.ndarray, name: str) -> np.ndarray:
    return X[:, FEATURES.index(name)]


def test_features_of_a_plate_a_vanity_plate_and_a_sign() -> None:
    plate = _reading("7ABC123", (400, 300, 600, 350))
    vanity = _reading("FZ RULZ", (100, 400, 250, 425), line=1)  # no digit, half the plate's height
    sign = _reading("S300:", (0, 0, 400, 25), line=2, joined=True, key="S300")
    X = features([plate, vanity, sign], (W, H))
    assert X.shape == (3, len(FEATURES)) and X.dtype == np.float32 and np.isfinite(X).all()
    assert col(X, "height_vs_tallest").tolist() == [1.0, 0.5, 0.5]
    assert col(X, "log_height")[0] == pytest.approx(math.log(50 / H))
    assert col(X, "log_aspect")[0] == pytest.approx(math.log(4.0))
    assert col(X, "has_digit").tolist() == [1, 0, 1] and col(X, "has_letter").tolist() == [1, 1, 1]
    assert col(X, "digit_share")[0] == pytest.approx(4 / 7) and col(X, "digit_share")[2] == pytest.approx(3 / 4)
    assert col(X, "plate_shaped").tolist() == [1, 1, 0]  # the sign is 16 times as wide as high
    assert col(X, "us_layout").tolist() == [1, 0, 0]  # 'DLLLDDD'
    assert col(X, "serial_length").tolist() == [1, 1, 0] and col(X, "chars")[2] == pytest.approx(0.5)
    assert col(X, "joined").tolist() == [0, 0, 1] and col(X, "other_marks").tolist() == [0, 0, 1]
    assert col(X, "centre_y").tolist() == pytest.approx([325 / H, 412.5 / H, 12.5 / H])
    assert col(X, "off_centre_x").tolist() == pytest.approx([0.0, 0.325, 0.3])
    assert features([], (W, H)).shape == (0, len(FEATURES))
    degenerate = features([_reading(box=(5, 5, 5, 5))], (0, 0))
    assert np.isfinite(degenerate).all()


def test_the_profile_readings_carry_the_hand_ranking_and_their_line() -> None:
    got = plate_readings([evidence_line("AB-I23-CD", 400, 300, 600, 350, probs={3: 0.6}, alts={3: [("1", 0.35)]}),
                          line("HELLO", 10, 10, 200, 40)], (W, H))
    assert {(r.read, r.text, r.rule) for r in got} == {("AB-I23-CD", "AB-I23-CD", "as_read"),
                                                       ("AB-I23-CD", "AB-123-CD", "alternative"),
                                                       ("HELLO", "HELLO", "as_read")}
    fixed = [r for r in got if r.read == "AB-I23-CD"]
    assert fixed[0].line == fixed[1].line != next(r.line for r in got if r.read == "HELLO")
    best = [got[i] for i in line_best(got)]
    assert sorted(r.text for r in best) == ["AB-123-CD", "HELLO"]  # the rules prefer the fixed read
    assert all(r.hand_score >= o.hand_score for r in best for o in got if o.line == r.line)


def _photo_lines(rng: random.Random) -> tuple[str, list]:
    """A car photo where the hand-set ranking is wrong: a taller plate-like sign at the centre, the plate smaller
    and low in the frame. Both texts are serials of the same kind, so only where they sit tells them apart."""
    def serial() -> str:
        return "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(3)) + f"{rng.randrange(1000, 9999)}"

    plate, sign = serial(), serial()
    sx, sy, sh = rng.uniform(380, 450), rng.uniform(250, 280), rng.uniform(44, 50)
    px, py, ph = rng.uniform(100, 700), rng.uniform(480, 540), rng.uniform(26, 32)
    return plate, [line(sign, sx, sy, sx + 4 * sh, sy + sh), line(plate, px, py, px + 4 * ph, py + ph)]


def _photos(n: int, seed: int) -> list:
    rng = random.Random(seed)
    return [photo_of(f"p{i}.jpg", *_photo_lines(rng), (W, H)) for i in range(n)]


def test_fit_learns_where_the_plate_is_where_the_hand_ranking_fails() -> None:
    train, held_out = _photos(40, 0), _photos(30, 1)
    assert sum(picks(held_out, PlateProfile())) == 0  # the case the hand weights get wrong
    picker = fit(train, FitConfig(l2=0.01, steps=500))
    assert picker.weights[FEATURES.index("centre_y")] > 0  # lower in the frame: more likely the plate
    assert sum(picks(held_out, PlateProfile(picker))) == len(held_out)
    assert picker.meta["photos"] == 40 and picker.meta["lines"] == 80


def test_fit_keeps_dropped_features_at_zero_and_refuses_what_it_cannot_learn() -> None:
    picker = fit(_photos(20, 2), FitConfig(steps=200, drop=("centre_y", "confidence")))
    assert picker.weights[FEATURES.index("centre_y")] == 0 and picker.weights[FEATURES.index("confidence")] == 0
    with pytest.raises(ValueError, match="unknown feature"):
        fit(_photos(5, 3), FitConfig(drop=("colour",)))
    unlabelled = [photo_of("x.jpg", "ZZZ999", [line("ABC1234", 400, 300, 600, 350)], (W, H))]
    with pytest.raises(ValueError, match="nothing to learn"):
        fit(unlabelled, FitConfig())


def _eval_json(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        plate, lines = _photo_lines(rng)
        items.append({"image": f"p{i}.jpg", "label": plate, "image_size": [W, H],
                      "pred_lines": [{"text": ln.text, "confidence": ln.confidence,
                                      "polygon": [list(p) for p in ln.polygon]} for ln in lines]})
    path.write_text(json.dumps({"models/x": [{"domain": "plates", "per_image": items}]}), encoding="utf-8")
    return path


def test_the_cli_trains_on_saved_reads_and_writes_a_loadable_picker(tmp_path: Path, capsys) -> None:
    saved = _eval_json(tmp_path / "train.json", 40, 4)
    out = tmp_path / "models" / "picker.json"
    assert main(["--eval-json", str(saved), "--out", str(out), "--folds", "4", "--steps", "500"]) == 0
    report = capsys.readouterr().out
    assert "| plate exact, all photos (40) | 0 (0.0%) | 40 (100.0%) |" in report
    picker = PlatePicker.load(out)
    assert picker.meta["cv"]["learned"] == 40 and picker.meta["dropped"] == ["confidence"]
    held_out = _photos(20, 5)
    assert sum(picks(held_out, PlateProfile(picker))) == 20


def test_json_round_trip_and_clear_errors_for_bad_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    picker = PlatePicker(rng.normal(size=len(FEATURES)), rng.uniform(0.5, 2, len(FEATURES)),
                         rng.normal(size=len(FEATURES)), {"photos": 3})
    picker.save(tmp_path / "picker.json")
    again = PlatePicker.load(tmp_path / "picker.json")
    X = rng.normal(size=(5, len(FEATURES))).astype(np.float32)
    assert np.allclose(again.scores(X), picker.scores(X), atol=1e-4) and again.meta == {"photos": 3}
    spec = picker.to_json()
    bad = {"not json": "{", "a list": "[1, 2]", "other format": json.dumps({**spec, "format": "ocrnet-x/1"}),
           "other features": json.dumps({**spec, "features": list(FEATURES[:-1])}),
           "short weights": json.dumps({**spec, "weights": [1.0, 2.0]}),
           "text weights": json.dumps({**spec, "weights": ["a"] * len(FEATURES)}),
           "no weights": json.dumps({k: v for k, v in spec.items() if k != "weights"}),
           "infinite": json.dumps({**spec, "mean": [1e999] * len(FEATURES)})}
    for name, text in bad.items():
        path = tmp_path / f"{name.replace(' ', '_')}.json"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=f"{path.name}: unreadable plate picker"):
            PlatePicker.load(path)
    with pytest.raises(ValueError, match="missing.json"):
        PlatePicker.load(tmp_path / "missing.json")


def _bundle(root: Path, manifest: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def _shape_picker() -> PlatePicker:
    """A picker by hand for the test: the tallest plate-shaped line wins, digits or not."""
    w = np.zeros(len(FEATURES))
    w[FEATURES.index("plate_shaped")], w[FEATURES.index("height_vs_tallest")] = 2.0, 4.0
    return PlatePicker(np.zeros(len(FEATURES)), np.ones(len(FEATURES)), w)


def test_a_bundle_with_a_picker_changes_the_pick_where_the_hand_weights_are_wrong(tmp_path: Path) -> None:
    """A vanity plate without digits has no plate-shaped region for the hand ranking, so a small sticker with
    digits wins; the learned picker named in model.json picks the plate."""
    lines = [line("FZ RULZ", 400, 300, 600, 350), line("MSCIS1", 700, 120, 760, 135)]
    hand = get_profile("plate")
    assert hand.extract_fields(lines, (W, H))["plate"] == "MSCIS1"
    bundle = _bundle(tmp_path / "b", {"name": "plate", "fields_model": "picker.json"})
    _shape_picker().save(bundle / "picker.json")
    bound = hand.for_model_dir(bundle)
    assert isinstance(bound, PlateProfile) and bound.picker is not None and hand.picker is None
    f = bound.extract_fields(lines, (W, H))
    assert f["plate"] == "FZRULZ" and f["plate_raw"] == "FZ RULZ"
    scores = [c["score"] for c in f["candidates"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(6.0, abs=1e-3)


def test_for_model_dir_without_a_picker_with_another_profiles_model_and_with_a_bad_one(tmp_path: Path) -> None:
    """A bundle may serve several profiles: its `fields_model` may be the invoice tagger, which the plate profile
    leaves alone (a missing file is the bundle loader's to report). A file that is not JSON, or that says it is a
    picker and is not a valid one, is a clear error."""
    hand = get_profile("plate")
    assert hand.for_model_dir(tmp_path / "absent") is hand
    assert hand.for_model_dir(_bundle(tmp_path / "plain", {"name": "plate"})) is hand
    assert hand.for_model_dir(_bundle(tmp_path / "m", {"fields_model": "missing.json"})) is hand
    invoice = _bundle(tmp_path / "invoice", {"fields_model": "fields.json"})
    (invoice / "fields.json").write_text(json.dumps({"format": "ocrnet-invoice-fields/1"}), encoding="utf-8")
    assert hand.for_model_dir(invoice) is hand
    broken = {"not json": "{", "a bad picker": json.dumps({**_shape_picker().to_json(), "weights": [1.0]})}
    for k, text in enumerate(broken.values()):
        (_bundle(tmp_path / f"x{k}", {"fields_model": "picker.json"}) / "picker.json").write_text(text, "utf-8")
        with pytest.raises(ValueError, match="picker.json: unreadable plate picker"):
            hand.for_model_dir(tmp_path / f"x{k}")


def test_with_a_picker_the_layout_rules_still_choose_a_lines_reading() -> None:
    """The picker picks the line; between a read and the change the rules make of it, the rules decide (a read
    that fits no layout loses to its fix), whatever the picker thinks of the two texts."""
    w = np.zeros(len(FEATURES))
    w[FEATURES.index("fixed_format")], w[FEATURES.index("height_vs_tallest")] = -5.0, 1.0  # dislikes the fix
    profile = PlateProfile(PlatePicker(np.zeros(len(FEATURES)), np.ones(len(FEATURES)), w))
    ln = evidence_line("AB-I23-CD", 400, 300, 600, 350, probs={3: 0.6}, alts={3: [("1", 0.35)]})
    f = profile.extract_fields([ln], (W, H))
    assert f["plate"] == "AB123CD" and f["candidates"][0]["rule"] == "alternative"
    assert f["candidates"][1]["text"] == "AB-I23-CD" and f["candidates"][1]["rule"] == "as_read"


def test_serving_the_picker_imports_neither_torch_nor_training(tmp_path: Path) -> None:
    _shape_picker().save(tmp_path / "picker.json")
    code = ("import sys\n"
            "from service.profiles.plate import PlateProfile\n"
            "from service.profiles.plate_picker import PlatePicker\n"
            "from profile_lines import line\n"
            f"p = PlateProfile(PlatePicker.load({str(tmp_path / 'picker.json')!r}))\n"
            "assert p.extract([line('ABC1234', 10, 10, 90, 30)], (100, 100)).plate == 'ABC1234'\n"
            "bad = [m for m in ('torch', 'sklearn', 'training') if m in sys.modules]\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False, env={"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr

"""OCRNetRec against the shipped PP-OCRv6 rec ONNX: full import, numeric parity, charset cut, export."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from training.models.rec import (
    OCRNetRec,
    RecProbs,
    cut_charset,
    load_onnx_weights,
    missing_characters,
    rec_from_onnx,
)
from training.pretrained import locate_pretrained

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
TOL = 1e-4


@pytest.fixture(scope="module")
def rec_path() -> Path:
    return locate_pretrained().rec


@pytest.fixture(scope="module")
def loaded(rec_path: Path) -> tuple[OCRNetRec, list[str]]:
    torch.manual_seed(0)
    return rec_from_onnx(rec_path)


@pytest.fixture(scope="module")
def session(rec_path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(rec_path), providers=["CPUExecutionProvider"])


def _render(text: str) -> np.ndarray:
    """1,3,48,W crop, BGR, normalised (x/255-0.5)/0.5 like PP-OCR's recogniser preprocessing."""
    font = ImageFont.truetype(str(FONT), 32)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("RGB", (right - left + 16, 48), "white")
    ImageDraw.Draw(img).text((8 - left, (48 - (bottom - top)) // 2 - top), text, fill="black", font=font)
    bgr = np.asarray(img, dtype=np.float32)[:, :, ::-1]
    return ((bgr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()


def _greedy(logits: torch.Tensor, classes: list[str]) -> str:
    idx = logits[0].argmax(-1).tolist()
    out, prev = [], 0
    for i in idx:
        if i != prev and i != 0:
            out.append(classes[i])
        prev = i
    return "".join(out)


def _signature(values: np.ndarray) -> bytes:
    return np.sort(values.astype(np.float32).ravel()).tobytes()


def test_import_fills_every_tensor_from_onnx(loaded: tuple[OCRNetRec, list[str]], rec_path: Path) -> None:
    model, chars = loaded
    assert len(chars) == 18709 and chars[-1] == " " and "" not in chars
    assert model.head.fc.out_features == 18710 == len(chars) + 1
    # Every float tensor of the module holds exactly the values of one ONNX initializer (no random
    # leftovers). Sorted values make the signature independent of Paddle's transposed Linear layout.
    proto = onnx.load(str(rec_path))
    weights = [onnx.numpy_helper.to_array(i) for i in proto.graph.initializer]
    weights = [w for w in weights if w.dtype == np.float32 and w.size > 1]
    sigs = {_signature(w) for w in weights}
    tensors = dict(model.named_parameters())
    tensors.update((k, v) for k, v in model.named_buffers() if "num_batches" not in k)
    assert len(tensors) == len(weights) == 151
    for name, t in tensors.items():
        assert _signature(t.detach().numpy()) in sigs, name
    # The loader must refuse a module whose layout drifts from the graph.
    drifted = OCRNetRec(18710)
    drifted.neck.blocks = drifted.neck.blocks[:1]
    with pytest.raises(ValueError, match="MatMul"):
        load_onnx_weights(drifted, proto)


@pytest.mark.parametrize("width", [320, 200, 77])
def test_probs_match_onnxruntime(loaded: tuple[OCRNetRec, list[str]], session: ort.InferenceSession,
                                 width: int) -> None:
    model, _ = loaded
    x = np.random.default_rng(width).uniform(-1, 1, (2, 3, 48, width)).astype(np.float32)
    ref = session.run(None, {"x": x})[0]
    with torch.no_grad():
        ours = model.predict_probs(torch.from_numpy(x)).numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < TOL


def test_forward_returns_logits(loaded: tuple[OCRNetRec, list[str]]) -> None:
    model, _ = loaded
    x = torch.from_numpy(_render("Total 12.50"))
    with torch.no_grad():
        logits = model(x)
        probs = model.predict_probs(x)
    assert logits.shape == probs.shape and logits.shape[0] == 1
    assert torch.allclose(torch.softmax(logits, -1), probs)
    assert float(logits.min()) < 0.0  # raw scores, not probabilities


def test_cut_charset_keeps_pretrained_reading(loaded: tuple[OCRNetRec, list[str]],
                                             caplog: pytest.LogCaptureFixture) -> None:
    model, chars = loaded
    text = "ABC-1234"
    x = torch.from_numpy(_render(text))
    new = list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-") + ["\ue000"]  # last: absent from PP-OCR dict
    assert missing_characters(chars, new) == ["\ue000"]
    with caplog.at_level(logging.WARNING, logger="training.models.rec"):
        cut = cut_charset(model, chars, new).eval()
    assert "\ue000" in caplog.text
    assert cut.head.fc.out_features == len(new) + 1
    assert model.head.fc.out_features == 18710  # original untouched
    assert cut.backbone is not model.backbone
    old_row = chars.index("A") + 1
    assert torch.equal(cut.head.fc.weight[new.index("A") + 1], model.head.fc.weight[old_row])
    assert torch.equal(cut.head.fc.weight[0], model.head.fc.weight[0])  # blank
    with torch.no_grad():
        full_text = _greedy(model(x), [""] + chars)
        cut_text = _greedy(cut(x), [""] + new)
    assert full_text == text
    assert cut_text == full_text
    # The class table form (blank first) is accepted too.
    assert cut_charset(model, [""] + chars, new).head.fc.out_features == len(new) + 1
    with pytest.raises(ValueError):
        cut_charset(model, chars[:-1], new)


@pytest.mark.slow
def test_dynamo_export_dynamic_batch_and_width(loaded: tuple[OCRNetRec, list[str]], tmp_path: Path) -> None:
    model, _ = loaded
    out = tmp_path / "rec.onnx"
    torch.onnx.export(
        RecProbs(model).eval(), (torch.randn(2, 3, 48, 320),), str(out), dynamo=True, external_data=False,
        input_names=["x"], output_names=["probs"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch"), 3: torch.export.Dim("width")}},
    )
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for n, w in ((1, 200), (3, 97)):
        x = np.random.default_rng(w).uniform(-1, 1, (n, 3, 48, w)).astype(np.float32)
        with torch.no_grad():
            ref = model.predict_probs(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"x": x})[0]
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() < TOL


def test_ctc_backward_reaches_every_parameter(loaded: tuple[OCRNetRec, list[str]]) -> None:
    model, chars = loaded
    cut = cut_charset(model, chars, list("0123456789")).train()
    x = torch.from_numpy(np.concatenate([_render("2024"), _render("7315")], axis=3)).repeat(2, 1, 1, 1)
    log_probs = cut(x).log_softmax(-1).transpose(0, 1)  # T,N,C for ctc_loss
    targets = torch.tensor([[3, 1, 3, 5, 8, 4, 2, 6]] * 2)
    t = log_probs.shape[0]
    loss = torch.nn.functional.ctc_loss(log_probs, targets, torch.full((2,), t), torch.full((2,), 8))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in cut.parameters())

"""OCRNetDet: ONNX weight import is complete, torch matches the shipped ONNX, train mode works,
and the module re-exports to ONNX (dynamo) with dynamic batch/height/width."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image, ImageDraw, ImageFont

ort = pytest.importorskip("onnxruntime")

from training.models.det import OCRNetDet, det_from_onnx, export_dynamic_shapes, load_onnx_weights  # noqa: E402
from training.pretrained import locate_pretrained  # noqa: E402

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PRETRAINED_PARTS = ("backbone.", "neck.", "head.")


@pytest.fixture(scope="module")
def det_path() -> Path:
    return locate_pretrained().det


@pytest.fixture(scope="module")
def model(det_path: Path) -> OCRNetDet:
    return det_from_onnx(det_path)


@pytest.fixture(scope="module")
def session(det_path: Path, tmp_path_factory: pytest.TempPathFactory) -> "ort.InferenceSession":
    """The shipped ONNX with the final Sigmoid's input added as a second output ("logits"):
    probabilities from random inputs sit near 0, where a prob-only comparison proves little."""
    proto = onnx.load(str(det_path))
    (sigmoid,) = [n for n in proto.graph.node if n.op_type == "Sigmoid"]
    proto.graph.output.append(onnx.helper.make_tensor_value_info(sigmoid.input[0], onnx.TensorProto.FLOAT, None))
    path = tmp_path_factory.mktemp("det") / "det_with_logits.onnx"
    onnx.save(proto, str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _render_text_batch(height: int = 160, width: int = 320) -> np.ndarray:
    """Two synthetic document snippets, normalised like PP-OCR det (BGR, /255, ImageNet mean/std)."""
    font = ImageFont.truetype(str(FONT), 22) if FONT.exists() else ImageFont.load_default()
    lines = [["INVOICE No 20931", "Total: 148.50 EUR", "VAT 19% 23.71"], ["ABC-1234", "Receipt 11/26/2026", "Cash 50.00"]]
    batch = []
    for i, text in enumerate(lines):
        img = Image.new("RGB", (width, height), (245, 242, 236) if i == 0 else (255, 255, 255))
        draw = ImageDraw.Draw(img)
        for row, line in enumerate(text):
            draw.text((12 + 8 * i, 14 + 46 * row), line, fill=(20, 20, 30), font=font)
        bgr = np.asarray(img, dtype=np.float32)[:, :, ::-1] / 255.0
        batch.append(((bgr - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(batch), dtype=np.float32)


def test_import_fills_every_pretrained_parameter(det_path: Path, model: OCRNetDet) -> None:
    torch.manual_seed(0)
    fresh = OCRNetDet()
    torch.manual_seed(0)
    loaded = OCRNetDet()
    filled = load_onnx_weights(loaded, det_path)
    pretrained_names = {n for n, _ in loaded.named_parameters() if n.startswith(PRETRAINED_PARTS)}
    assert filled == pretrained_names
    fresh_params = dict(fresh.named_parameters())
    still_random = [n for n in pretrained_names if torch.equal(dict(loaded.named_parameters())[n], fresh_params[n])]
    assert still_random == []
    # thresh_head stays fresh: it is not in the inference ONNX
    assert all(not n.startswith("thresh_head.") for n in filled)
    # every weight-bearing (4-D: conv weight or N,C,1,1 bias) initializer ended up in the model
    graph = onnx.load(str(det_path)).graph
    weight_elems = sum(int(np.prod(t.dims)) for t in graph.initializer if len(t.dims) == 4)
    assert weight_elems == sum(p.numel() for n, p in model.named_parameters() if n in pretrained_names)


def test_import_rejects_unused_initializer(det_path: Path, tmp_path: Path) -> None:
    proto = onnx.load(str(det_path))
    proto.graph.initializer.append(numpy_helper.from_array(np.ones((8, 8, 1, 1), np.float32), "orphan.w_0"))
    bad = tmp_path / "orphan.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(ValueError, match="orphan.w_0"):
        det_from_onnx(bad)


def test_import_rejects_shape_mismatch(det_path: Path) -> None:
    model = OCRNetDet()
    model.head.conv = torch.nn.Conv2d(96, 24, 5, padding=2)
    with pytest.raises(ValueError, match="head.conv"):
        load_onnx_weights(model, det_path)


@pytest.mark.parametrize("kind", ["random_1x3x64x96", "text_2x3x160x320"])
def test_parity_with_onnxruntime(kind: str, model: OCRNetDet, session: "ort.InferenceSession") -> None:
    if kind.startswith("random"):
        x = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    else:
        x = _render_text_batch()
    with torch.no_grad():
        ours = model.eval()(torch.from_numpy(x)).numpy()
        ours_logits = model.head(model.neck(model.backbone(torch.from_numpy(x)))).numpy()
    ref, ref_logits = session.run(None, {session.get_inputs()[0].name: x})
    assert ours.shape == ref.shape == (x.shape[0], 1, x.shape[2], x.shape[3])
    assert np.abs(ours - ref).max() < 1e-4
    assert np.abs(ours_logits - ref_logits).max() < 1e-3  # logits span about -30..+11
    if kind.startswith("text"):  # the real weights must find the rendered text, not saturate
        assert ref.max() > 0.9 and np.median(ref) < 0.05
        assert 0.01 < float((ref > 0.3).mean()) < 0.5


def test_train_mode_dict_and_thresh_grads(model: OCRNetDet) -> None:
    torch.manual_seed(1)
    net = OCRNetDet()
    net.load_state_dict(model.state_dict())
    net.train()
    out = net(torch.randn(2, 3, 64, 96))
    assert set(out) >= {"prob", "thresh", "binary"}
    for key in ("prob", "thresh", "binary"):
        assert out[key].shape == (2, 1, 64, 96)
        assert float(out[key].detach().min()) >= 0.0 and float(out[key].detach().max()) <= 1.0
    expected_binary = torch.sigmoid(net.k * (out["prob"] - out["thresh"]))
    assert torch.allclose(out["binary"], expected_binary)
    (out["prob"].mean() + out["thresh"].mean() + out["binary"].mean()).backward()
    for name, p in net.thresh_head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert net.head.conv.weight.grad is not None and net.backbone.stem.stem1.weight.grad is not None
    net.eval()
    assert isinstance(net(torch.randn(1, 3, 32, 32)), torch.Tensor)


@pytest.mark.slow
def test_dynamo_export_dynamic_shapes(model: OCRNetDet, tmp_path: Path) -> None:
    path = tmp_path / "det.onnx"
    torch.onnx.export(
        model.eval(), (torch.randn(1, 3, 64, 96),), str(path), dynamo=True, external_data=False,
        dynamic_shapes=export_dynamic_shapes(), input_names=["x"], output_names=["prob"],
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).standard_normal((2, 3, 128, 224)).astype(np.float32)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    exported = sess.run(None, {"x": x})[0]
    assert exported.shape == (2, 1, 128, 224)
    assert np.abs(exported - ours).max() < 1e-4

"""OCRNetDet: our PyTorch re-implementation of the PP-OCRv6 small DB text detector.

The architecture is read off the shipped ONNX graph (opset 11, BatchNorm already folded
into conv weight + bias): a PPHGNet-style stem, four stages of RepViT-like blocks
(depthwise 3x3 token mixer, optional squeeze-excite, GELU FFN with residual), an RSE-FPN
neck (1x1 lateral convs, nearest top-down fusion, 7x7 depthwise + 1x1 output convs) and a
DB probability head. The DB threshold head is not in the ONNX (it is training-only), so
``thresh_head`` is a fresh module used in train mode only.

``det_from_onnx`` fills every backbone/neck/head parameter from the ONNX initializers by
matching our conv modules, in the order forward() calls them, with the ONNX Conv /
ConvTranspose nodes in graph order, checking type, shape, stride, groups and padding.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DB_K = 50.0  # DB differentiable-binarisation steepness
STEM_CHANNELS = (24, 12, 48)  # stem1/stem2b out, stem2a out, stem4 out
STAGE_CHANNELS = (48, 96, 192, 384)
STAGE_BLOCKS = ((True, False), (True, False), (True, False, True, False), (True, False))
NECK_CHANNELS = 96
HEAD_CHANNELS = 24


class SamePadConv2d(nn.Conv2d):
    """Conv with explicit (top, left, bottom, right) zero padding: ONNX ``SAME_UPPER`` on an
    even kernel pads only bottom/right, which ``nn.Conv2d(padding=...)`` cannot express."""

    def __init__(self, cin: int, cout: int, kernel: int, pads: tuple[int, int, int, int]) -> None:
        super().__init__(cin, cout, kernel, padding=0, bias=True)
        self.pads = pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, left, bottom, right = self.pads
        return super().forward(F.pad(x, (left, right, top, bottom)))


def _same_upper_pads(kernel: int) -> tuple[int, int, int, int]:
    total = kernel - 1
    return (total // 2, total // 2, total - total // 2, total - total // 2)


class Stem(nn.Module):
    """HGNet stem: /4 resolution, 3 -> 48 channels (conv branch and max-pool branch concatenated)."""

    def __init__(self, cin: int = 3, c_mid: int = 24, c_half: int = 12, c_out: int = 48) -> None:
        super().__init__()
        self.stem1 = nn.Conv2d(cin, c_mid, 3, stride=2, padding=1)
        self.stem2a = SamePadConv2d(c_mid, c_half, 2, _same_upper_pads(2))
        self.stem2b = SamePadConv2d(c_half, c_mid, 2, _same_upper_pads(2))
        self.pool_pads = _same_upper_pads(2)
        self.stem3 = nn.Conv2d(2 * c_mid, c_mid, 3, stride=2, padding=1)
        self.stem4 = nn.Conv2d(c_mid, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem1(x))
        branch = F.relu(self.stem2b(F.relu(self.stem2a(x))))
        top, left, bottom, right = self.pool_pads
        pooled = F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), 2, stride=1)
        x = F.relu(self.stem3(torch.cat([pooled, branch], dim=1)))
        return F.relu(self.stem4(x))


class SqueezeExcite(nn.Module):
    """SE gate with a hard sigmoid ``clamp(slope*x + 0.5, 0, 1)``.

    The backbone uses slope 1/6 (torch hardsigmoid) and plain ``x * gate``; the neck (RSE
    layers) uses Paddle's slope 0.2 and the residual form ``x + x * gate``."""

    def __init__(self, channels: int, reduction: int = 4, slope: float = 1.0 / 6.0, residual: bool = False) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.conv_expand = nn.Conv2d(channels // reduction, channels, 1)
        self.slope = slope
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = self.conv_expand(F.relu(self.conv_reduce(s)))
        gate = torch.clamp(s * self.slope + 0.5, 0.0, 1.0)
        return x + x * gate if self.residual else x * gate


class FFN(nn.Module):
    """Pointwise expand -> exact GELU -> pointwise project."""

    def __init__(self, cin: int, hidden: int, cout: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(cin, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class RepBlock(nn.Module):
    """Stride-1 block: depthwise 3x3 (re-parameterised, identity folded in) [+ SE], then x + FFN(x)."""

    def __init__(self, channels: int, use_se: bool) -> None:
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.se = SqueezeExcite(channels) if use_se else nn.Identity()
        self.ffn = FFN(channels, 2 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.dw(x))
        return x + self.ffn(x)


class Downsample(nn.Module):
    """Stride-2 depthwise 3x3, then cin -> cout -> GELU -> cout pointwise (no residual)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride=2, padding=1, groups=cin)
        self.ffn = FFN(cin, cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.dw(x))


class Backbone(nn.Module):
    """Returns the four stage outputs at strides 4, 8, 16, 32 (48, 96, 192, 384 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = Stem(3, STEM_CHANNELS[0], STEM_CHANNELS[1], STEM_CHANNELS[2])
        stages = []
        cin = STEM_CHANNELS[2]
        for cout, se_flags in zip(STAGE_CHANNELS, STAGE_BLOCKS):
            layers: list[nn.Module] = [] if cout == cin else [Downsample(cin, cout)]
            layers += [RepBlock(cout, se) for se in se_flags]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.out_channels = STAGE_CHANNELS

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class RSEConv(nn.Module):
    """Optional depthwise kxk (with bias) -> 1x1 conv (no bias) -> residual SE."""

    def __init__(self, cin: int, cout: int, dw_kernel: int = 0) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, dw_kernel, padding=dw_kernel // 2, groups=cin) if dw_kernel else nn.Identity()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.se = SqueezeExcite(cout, reduction=4, slope=0.2, residual=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.conv(self.dw(x)))


class Neck(nn.Module):
    """RSE-FPN: laterals to 96 ch, nearest x2 top-down sums, per-level 96 -> 24 output convs,
    all levels upsampled to stride 4 and concatenated (deepest first) to 96 channels."""

    def __init__(self, in_channels: tuple[int, ...] = STAGE_CHANNELS, out_channels: int = NECK_CHANNELS) -> None:
        super().__init__()
        self.ins_conv = nn.ModuleList([RSEConv(c, out_channels) for c in in_channels])
        self.inp_conv = nn.ModuleList(
            [RSEConv(out_channels, out_channels // 4, dw_kernel=7) for _ in in_channels]
        )
        self.out_channels = out_channels

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        c2, c3, c4, c5 = feats
        # Same evaluation order as the ONNX graph (deepest level first).
        in5 = self.ins_conv[3](c5)
        in4 = self.ins_conv[2](c4)
        in3 = self.ins_conv[1](c3)
        in2 = self.ins_conv[0](c2)
        out4 = in4 + F.interpolate(in5, scale_factor=2.0, mode="nearest")
        out3 = in3 + F.interpolate(out4, scale_factor=2.0, mode="nearest")
        out2 = in2 + F.interpolate(out3, scale_factor=2.0, mode="nearest")
        p5 = self.inp_conv[3](in5)
        p4 = self.inp_conv[2](out4)
        p3 = self.inp_conv[1](out3)
        p2 = self.inp_conv[0](out2)
        p5 = F.interpolate(p5, scale_factor=8.0, mode="nearest")
        p4 = F.interpolate(p4, scale_factor=4.0, mode="nearest")
        p3 = F.interpolate(p3, scale_factor=2.0, mode="nearest")
        return torch.cat([p5, p4, p3, p2], dim=1)


class ProbHead(nn.Module):
    """Pretrained DB probability head (BN folded): 3x3 conv -> 2x deconv -> 2x deconv -> sigmoid.
    ``forward`` returns logits; the sigmoid is applied by the caller."""

    def __init__(self, cin: int = NECK_CHANNELS, mid: int = HEAD_CHANNELS) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, mid, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(mid, mid, 2, stride=2)
        self.up2 = nn.ConvTranspose2d(mid, 1, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up2(F.relu(self.up1(F.relu(self.conv(x)))))


class ThreshHead(nn.Module):
    """DB threshold head (training only, fresh init): conv3x3-BN-ReLU-deconv-BN-ReLU-deconv-sigmoid."""

    def __init__(self, cin: int = NECK_CHANNELS, mid: int = HEAD_CHANNELS) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, mid, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.up1 = nn.ConvTranspose2d(mid, mid, 2, stride=2)
        self.bn2 = nn.BatchNorm2d(mid)
        self.up2 = nn.ConvTranspose2d(mid, 1, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv(x)))
        x = F.relu(self.bn2(self.up1(x)))
        return torch.sigmoid(self.up2(x))


class OCRNetDet(nn.Module):
    """DB text detector. Input: N,3,H,W BGR image, /255, ImageNet mean/std; H, W multiples of 32.

    eval(): returns the probability map N,1,H,W.
    train(): returns dict(prob, thresh, binary, logits), binary = sigmoid(k*(prob - thresh));
    ``logits`` is the pre-sigmoid probability map, for autocast-safe BCE-with-logits.
    """

    def __init__(self, k: float = DB_K) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.neck = Neck(self.backbone.out_channels, NECK_CHANNELS)
        self.head = ProbHead(NECK_CHANNELS, HEAD_CHANNELS)
        self.thresh_head = ThreshHead(NECK_CHANNELS, HEAD_CHANNELS)
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        fused = self.neck(self.backbone(x))
        logits = self.head(fused)
        prob = torch.sigmoid(logits)
        if not self.training:
            return prob
        thresh = self.thresh_head(fused)
        binary = torch.sigmoid(self.k * (prob - thresh))
        return {"prob": prob, "thresh": thresh, "binary": binary, "logits": logits}


def export_dynamic_shapes(max_side: int = 4096) -> dict[str, dict[int, object]]:
    """``dynamic_shapes`` for ``torch.onnx.export(..., dynamo=True)``: dynamic batch, H and W
    constrained to multiples of 32 (the FPN's x2 fusions need exact halving)."""
    dim = torch.export.Dim
    batch = dim("batch", min=1, max=1024)
    h32 = dim("h32", min=1, max=max_side // 32)
    w32 = dim("w32", min=1, max=max_side // 32)
    return {"x": {0: batch, 2: 32 * h32, 3: 32 * w32}}


# ----------------------------------------------------------------------------- ONNX import

_WEIGHT_OPS = {"Conv", "ConvTranspose"}
_REJECTED_OPS = {"BatchNormalization", "Gemm", "MatMul", "InstanceNormalization", "LayerNormalization", "PRelu"}
_STRUCTURAL_CONSUMERS = {"Div", "Add", "Mul", "Resize"}  # GELU scalars, Resize roi/scales
_GELU_SCALARS = (float(np.sqrt(2.0)), 1.0, 0.5)


def _onnx_conv_specs(path: str | Path) -> tuple[list[dict], set[str], dict[str, np.ndarray], dict[str, list]]:
    """Conv/ConvTranspose nodes in graph order with weight, bias (traced) and attributes."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    bad = sorted({n.op_type for n in graph.node} & _REJECTED_OPS)
    if bad:
        raise ValueError(f"{path}: unsupported weight-bearing ops {bad}")
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)

    def constant_source(name: str) -> str | None:
        """Initializer behind ``name``, following Identity/Reshape chains."""
        while name not in inits:
            node = producer.get(name)
            if node is None or node.op_type not in ("Identity", "Reshape"):
                return None
            name = node.input[0]
        return name

    def value_consumers(name: str) -> list:
        """Consumers of ``name``, looking through Identity nodes."""
        found = []
        for node in consumers.get(name, []):
            found += value_consumers(node.output[0]) if node.op_type == "Identity" else [node]
        return found

    specs, used = [], set()
    for node in graph.node:
        if node.op_type not in _WEIGHT_OPS:
            continue
        wname = constant_source(node.input[1])
        if wname is None:
            raise ValueError(f"{node.name}: weight is not a constant")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        bias_name = constant_source(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if bias_name is None:
            after = value_consumers(node.output[0])
            if len(after) == 1 and after[0].op_type == "Add":
                other = [i for i in after[0].input if constant_source(i) is not None]
                if other:
                    bias_name = constant_source(other[0])
        spec = {"name": node.name, "op": node.op_type, "weight": inits[wname], "bias": None, "attrs": attrs}
        used.add(wname)
        if bias_name is not None:
            spec["bias"] = inits[bias_name].reshape(-1)
            used.add(bias_name)
        specs.append(spec)
    init_consumers = {name: [n.op_type for n in value_consumers(name)] for name in inits}
    return specs, used, inits, init_consumers


def _is_structural(arr: np.ndarray, consumer_ops: list[str]) -> bool:
    """True for graph constants that carry no learned weight: Resize roi/scales and the
    exact-GELU scalars (sqrt(2), 1, 0.5)."""
    if consumer_ops and set(consumer_ops) == {"Resize"}:
        return arr.size <= 4
    if arr.size == 1 and set(consumer_ops) <= _STRUCTURAL_CONSUMERS - {"Resize"}:
        return any(np.isclose(float(arr.reshape(())), v, rtol=0, atol=1e-6) for v in _GELU_SCALARS)
    return False


def _onnx_pads(spec: dict) -> tuple[int, int, int, int]:
    attrs = spec["attrs"]
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", ""):
        top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
        return (top, left, bottom, right)
    if auto_pad == "SAME_UPPER" and list(attrs.get("strides", [1, 1])) == [1, 1]:
        kh, kw = attrs["kernel_shape"]
        return (kh - 1) // 2, (kw - 1) // 2, kh - 1 - (kh - 1) // 2, kw - 1 - (kw - 1) // 2
    raise ValueError(f"{spec['name']}: unsupported auto_pad {auto_pad}")


def _module_pads(module: nn.Module) -> tuple[int, int, int, int]:
    if isinstance(module, SamePadConv2d):
        return module.pads
    ph, pw = module.padding
    return (ph, pw, ph, pw)


def _check_match(spec: dict, module: nn.Module, qualname: str) -> None:
    expected_type = nn.ConvTranspose2d if spec["op"] == "ConvTranspose" else nn.Conv2d
    attrs = spec["attrs"]
    problems = []
    if not isinstance(module, expected_type):
        problems.append(f"type {type(module).__name__} vs {spec['op']}")
    if tuple(module.weight.shape) != spec["weight"].shape:
        problems.append(f"weight {tuple(module.weight.shape)} vs {spec['weight'].shape}")
    if (module.bias is None) != (spec["bias"] is None):
        problems.append(f"bias presence {module.bias is not None} vs {spec['bias'] is not None}")
    elif module.bias is not None and tuple(module.bias.shape) != spec["bias"].shape:
        problems.append(f"bias {tuple(module.bias.shape)} vs {spec['bias'].shape}")
    if list(module.stride) != list(attrs.get("strides", [1, 1])):
        problems.append(f"stride {module.stride} vs {attrs.get('strides')}")
    if module.groups != attrs.get("group", 1):
        problems.append(f"groups {module.groups} vs {attrs.get('group', 1)}")
    if list(module.dilation) != list(attrs.get("dilations", [1, 1])):
        problems.append(f"dilation {module.dilation} vs {attrs.get('dilations')}")
    if _module_pads(module) != tuple(_onnx_pads(spec)):
        problems.append(f"pads {_module_pads(module)} vs {_onnx_pads(spec)}")
    if problems:
        raise ValueError(f"ONNX node {spec['name']} does not match {qualname}: {'; '.join(problems)}")


def _pretrained_parts(model: OCRNetDet) -> dict[str, nn.Module]:
    return {"backbone": model.backbone, "neck": model.neck, "head": model.head}


def _conv_call_order(model: OCRNetDet) -> list[tuple[str, nn.Module]]:
    """Conv modules of backbone/neck/head in the order an eval forward calls them."""
    names = {}
    for part, module in _pretrained_parts(model).items():
        for sub, m in module.named_modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                names[m] = f"{part}.{sub}"
    order: list[tuple[str, nn.Module]] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append((names[mod], mod))) for m in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if len({id(m) for _, m in order}) != len(order) or len(order) != len(names):
        raise RuntimeError("every conv must run exactly once per forward for the ONNX mapping")
    return order


def load_onnx_weights(model: OCRNetDet, path: str | Path) -> set[str]:
    """Copy the ONNX weights into ``model``; returns the filled parameter names. Raises on any
    mismatch, on an unfilled backbone/neck/head parameter or an unused weight initializer."""
    specs, used, inits, init_consumers = _onnx_conv_specs(path)
    order = _conv_call_order(model)
    if len(specs) != len(order):
        raise ValueError(f"ONNX has {len(specs)} conv nodes, model has {len(order)} conv modules")
    filled: set[str] = set()
    with torch.no_grad():
        for spec, (qualname, module) in zip(specs, order):
            _check_match(spec, module, qualname)
            module.weight.copy_(torch.from_numpy(spec["weight"].copy()))
            filled.add(f"{qualname}.weight")
            if module.bias is not None:
                module.bias.copy_(torch.from_numpy(spec["bias"].copy()))
                filled.add(f"{qualname}.bias")
    expected = {
        f"{part}.{name}"
        for part, module in _pretrained_parts(model).items()
        for name, _ in list(module.named_parameters()) + list(module.named_buffers())
    }
    missing = sorted(expected - filled)
    if missing:
        raise ValueError(f"parameters not filled from ONNX: {missing}")
    leftover = {
        name: arr for name, arr in inits.items() if name not in used and not _is_structural(arr, init_consumers[name])
    }
    if leftover:
        raise ValueError(f"ONNX weight initializers left unused: {sorted(leftover)}")
    return filled


def det_from_onnx(path: str | Path) -> OCRNetDet:
    """Build an OCRNetDet with every pretrained parameter taken from the PP-OCRv6 det ONNX (eval mode)."""
    model = OCRNetDet()
    load_onnx_weights(model, path)
    return model.eval()

"""OCRNetRec: our PyTorch re-implementation of the PP-OCRv6 small CTC text recognizer.

The architecture is read off the shipped ONNX graph (opset 11, 480 nodes), in execution order:

backbone (BatchNorm folded into conv weight+bias, as in the ONNX):
  stem   conv3x3/2 48 -> [maxpool2x2/1 | conv2x2 24 -> conv2x2 48] (both "SAME_UPPER": pad right/bottom
         only) -> concat 96 -> conv3x3/2 48 -> conv1x1 96, all ReLU
  13 blocks  depthwise 3x3 (stride 1 or (2,1)) [+ squeeze-excite ReLU/HardSigmoid]
             -> conv1x1 2x GELU(erf) conv1x1 (+ residual from the depthwise output when shape is kept)
  avgpool (3,2)/(3,2): height 3 -> 1, T = W/8
neck (sequence encoder, 120 wide): shortcut conv1x1+BN+SiLU; conv1x1+BN+SiLU plus a depthwise (1,7)
  conv+BN+SiLU residual; 2 pre-norm transformer blocks (8 heads x 15, SiLU MLP 240, LN eps 1e-5);
  final LN eps 1e-6; plus shortcut.
head: Linear 120 -> 18710 classes (index 0 = CTC blank).

`forward` returns logits (CTC training wants log_softmax); `predict_probs` gives the softmax the shipped
ONNX outputs, so an export of `RecProbs(model)` is a drop-in replacement for the service.
"""
from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

log = logging.getLogger(__name__)

NUM_CLASSES = 18710  # blank + 18708 dictionary characters + " "
REC_HEIGHT = 48

# (in_channels, out_channels, stride, squeeze_excite) per backbone block, from the ONNX Conv shapes.
BLOCKS: tuple[tuple[int, int, tuple[int, int], bool], ...] = (
    (96, 96, (1, 1), True),
    (96, 96, (1, 1), False),
    (96, 96, (1, 1), False),
    (96, 192, (2, 1), False),
    (192, 192, (1, 1), True),
    (192, 192, (1, 1), False),
    (192, 192, (1, 1), True),
    (192, 192, (1, 1), False),
    (192, 192, (1, 1), True),
    (192, 192, (1, 1), False),
    (192, 384, (2, 1), False),
    (384, 384, (1, 1), True),
    (384, 384, (1, 1), False),
)


class SamePadUpper(nn.Module):
    """ONNX auto_pad=SAME_UPPER for a 2x2 kernel at stride 1: one extra row/column at the end only."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, 1, 0, 1), value=self.value)


def _conv_relu(cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad), nn.ReLU())


class Stem(nn.Module):
    """Two-branch stem: H,W -> H/4,W/4 with 96 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv_relu(3, 48, 3, 2, 1)
        self.conv2a = nn.Sequential(SamePadUpper(), *_conv_relu(48, 24, 2))
        self.conv2b = nn.Sequential(SamePadUpper(), *_conv_relu(24, 48, 2))
        self.pool = nn.Sequential(SamePadUpper(float("-inf")), nn.MaxPool2d(2, 1))
        self.conv3 = _conv_relu(96, 48, 3, 2, 1)
        self.conv4 = _conv_relu(48, 96, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = torch.cat([self.pool(x), self.conv2b(self.conv2a(x))], dim=1)
        return self.conv4(self.conv3(x))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = F.hardsigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


class Block(nn.Module):
    """Depthwise token mixer (+SE) then a GELU channel MLP; residual around the MLP when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int], se: bool) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin)
        self.se = SqueezeExcite(cin) if se else nn.Identity()
        self.pw1 = nn.Conv2d(cin, 2 * cin, 1)
        self.act = nn.GELU()  # exact erf GELU, as the ONNX Erf nodes
        self.pw2 = nn.Conv2d(2 * cin, cout, 1)
        self.residual = cin == cout and stride == (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.dw(x))
        y = self.pw2(self.act(self.pw1(x)))
        return x + y if self.residual else y


class Backbone(nn.Module):
    """N,3,48,W -> N,384,1,T with T = floor(ceil(W/4)/2)."""

    out_channels = 384

    def __init__(self) -> None:
        super().__init__()
        self.stem = Stem()
        self.blocks = nn.Sequential(*(Block(*cfg) for cfg in BLOCKS))
        self.pool = nn.AvgPool2d((3, 2), (3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(self.stem(x)))


class ConvBNSiLU(nn.Sequential):
    """The only convolutions whose BatchNorm was left unfolded in the ONNX (running stats are loaded)."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], groups: int = 1) -> None:
        pad = (kernel[0] // 2, kernel[1] // 2)
        super().__init__(nn.Conv2d(cin, cout, kernel, 1, pad, groups=groups, bias=False),
                         nn.BatchNorm2d(cout, eps=1e-5), nn.SiLU())


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, c))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.silu(self.fc1(self.norm2(x))))


class SequenceEncoder(nn.Module):
    """N,384,1,T -> N,T,120: local conv mixing, two transformer blocks, conv shortcut."""

    def __init__(self, cin: int = 384, dim: int = 120, depth: int = 2, heads: int = 8,
                 mlp_dim: int = 240) -> None:
        super().__init__()
        self.dim = dim
        self.shortcut = ConvBNSiLU(cin, dim, (1, 1))
        self.proj = ConvBNSiLU(cin, dim, (1, 1))
        self.local = ConvBNSiLU(dim, dim, (1, 7), groups=dim)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, mlp_dim, 1e-5) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self.shortcut(x)
        z = self.proj(x)
        z = z + self.local(z)
        tokens = z.flatten(2).transpose(1, 2)  # N,T,C (height is 1)
        tokens = self.norm(self.blocks(tokens))
        return tokens + short.flatten(2).transpose(1, 2)


class CTCHead(nn.Module):
    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class OCRNetRec(nn.Module):
    """x: N,3,48,W (BGR, (x/255-0.5)/0.5) -> logits N,T,C, class 0 = CTC blank."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.neck = SequenceEncoder(self.backbone.out_channels)
        self.head = CTCHead(self.neck.dim, num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.fc.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.neck(self.backbone(x)))

    def predict_probs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(x), dim=-1)


class RecProbs(nn.Module):
    """Export wrapper: outputs softmax probabilities N,T,C like the shipped PP-OCRv6 ONNX."""

    def __init__(self, model: OCRNetRec) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict_probs(x)


# ----------------------------------------------------------------------------------------------
# Import from the PP-OCRv6 ONNX


class _Graph:
    """Constant folding just deep enough to resolve initializers behind Identity/Reshape nodes."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.nodes = list(g.node)
        self.inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.used: set[str] = set()

    def const(self, name: str, mark: bool = True) -> np.ndarray | None:
        """The constant behind `name` (initializer, Constant, or Identity/Reshape of constants)."""
        if name in self.inits:
            if mark:
                self.used.add(name)
            return self.inits[name]
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        if node.op_type == "Identity":
            return self.const(node.input[0], mark)
        if node.op_type == "Reshape":
            data, shape = self.const(node.input[0], False), self.const(node.input[1], False)
            if data is None or shape is None:
                return None
            self.const(node.input[0], mark)
            return data.reshape([d if d != 0 else data.shape[i] for i, d in enumerate(shape.tolist())])
        return None

    def next_op(self, name: str) -> onnx.NodeProto | None:
        """The single consumer of `name`, looking through Identity chains."""
        users = self.consumers.get(name, [])
        if len(users) != 1:
            return None
        if users[0].op_type == "Identity":
            return self.next_op(users[0].output[0])
        return users[0]

    def add_operand(self, output: str) -> np.ndarray | None:
        """Constant operand of an Add that directly follows `output` (a folded bias)."""
        nxt = self.next_op(output)
        if nxt is None or nxt.op_type != "Add":
            return None
        for name in nxt.input:
            if self.const(name, False) is not None:
                return self.const(name)
        return None


def _copy(dst: torch.Tensor, src: np.ndarray, what: str, filled: set[int]) -> None:
    src_t = torch.from_numpy(np.array(src, dtype=np.float32, copy=True))
    if tuple(src_t.shape) != tuple(dst.shape):
        raise ValueError(f"{what}: ONNX shape {tuple(src_t.shape)} != module shape {tuple(dst.shape)}")
    with torch.no_grad():
        dst.copy_(src_t)
    filled.add(id(dst))


def _module_slots(model: OCRNetRec) -> tuple[list[nn.Conv2d], list[nn.BatchNorm2d], list[nn.Linear],
                                            list[nn.LayerNorm]]:
    """Our layers in the ONNX execution order (forward order, shortcut conv first in the neck)."""
    convs, bns, linears, norms = [], [], [], []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            convs.append(m)
        elif isinstance(m, nn.BatchNorm2d):
            bns.append(m)
        elif isinstance(m, nn.Linear):
            linears.append(m)
        elif isinstance(m, nn.LayerNorm):
            norms.append(m)
    # modules() walks registration order; the transformer's LayerNorms interleave as norm1, norm2 per
    # block then the final norm, and Linear layers as qkv, proj, fc1, fc2 per block then the head: both
    # already match the ONNX order. In the stem the maxpool branch carries no weights, so the convs
    # follow the ONNX order conv1, conv2a, conv2b, conv3, conv4 too.
    return convs, bns, linears, norms


def _layer_norms(graph: _Graph) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(eps, gamma, beta) of each decomposed LayerNorm: Sub/Pow/ReduceMean/Add(eps)/Sqrt/Div/Mul/Add."""
    found = []
    for node in graph.nodes:
        if node.op_type != "Sqrt":
            continue
        eps_add = graph.producer[node.input[0]]
        eps = next(float(c) for c in (graph.const(i, False) for i in eps_add.input) if c is not None)
        div = graph.next_op(node.output[0])
        mul = graph.next_op(div.output[0])
        if mul is None or mul.op_type != "Mul":
            raise ValueError(f"unexpected LayerNorm pattern after {node.name}")
        gamma = next(graph.const(i) for i in mul.input if graph.const(i, False) is not None)
        beta = graph.add_operand(mul.output[0])
        if beta is None:
            raise ValueError(f"LayerNorm {node.name} has no beta")
        found.append((eps, gamma, beta))
    return found


def load_characters(model: onnx.ModelProto) -> list[str]:
    """Dictionary from metadata 'character' plus the trailing " " PP-OCR appends (no blank)."""
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise KeyError("ONNX metadata has no 'character' entry")
    return meta["character"].split("\n") + [" "]


def rec_from_onnx(path: str | Path) -> tuple[OCRNetRec, list[str]]:
    """Build OCRNetRec with every parameter and BN buffer from the PP-OCRv6 rec ONNX; also its charset."""
    proto = onnx.load(str(path))
    characters = load_characters(proto)
    head = [i for i in proto.graph.initializer if len(i.dims) == 2][-1]  # last Linear: (120, classes)
    if head.dims[1] != len(characters) + 1:
        raise ValueError(f"head has {head.dims[1]} classes but charset gives {len(characters)} + blank")
    model = OCRNetRec(int(head.dims[1]))
    load_onnx_weights(model, proto)
    return model, characters


def load_onnx_weights(model: OCRNetRec, proto: onnx.ModelProto) -> None:
    """Copy every ONNX weight into `model` (in place, then eval mode).

    Raises if a module tensor is left unfilled, a weight-bearing (float, >1 element) initializer is
    not consumed, or any shape/stride/epsilon differs, so an architecture drift never loads silently.
    """
    graph = _Graph(proto)
    conv_nodes = [n for n in graph.nodes if n.op_type == "Conv"]
    bn_nodes = [n for n in graph.nodes if n.op_type == "BatchNormalization"]
    mm_nodes = [n for n in graph.nodes if n.op_type == "MatMul" and graph.const(n.input[1], False) is not None]
    convs, bns, linears, norms = _module_slots(model)
    filled: set[int] = set()
    for kind, ours, theirs in (("Conv", convs, conv_nodes), ("BatchNormalization", bns, bn_nodes),
                               ("MatMul", linears, mm_nodes)):
        if len(ours) != len(theirs):
            raise ValueError(f"{kind}: module has {len(ours)}, ONNX has {len(theirs)}")

    for conv, node in zip(convs, conv_nodes):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if tuple(attrs.get("strides", (1, 1))) != tuple(conv.stride) or attrs.get("group", 1) != conv.groups:
            raise ValueError(f"{node.name}: stride/group {attrs} do not match {conv}")
        _copy(conv.weight, graph.const(node.input[1]), node.name, filled)
        bias = graph.const(node.input[2]) if len(node.input) > 2 else graph.add_operand(node.output[0])
        if conv.bias is not None:
            if bias is None:
                raise ValueError(f"{node.name}: no bias found for {conv}")
            _copy(conv.bias, bias.reshape(-1), f"{node.name} bias", filled)
        elif bias is not None:
            raise ValueError(f"{node.name}: ONNX has a bias the module lacks")

    for bn, node in zip(bns, bn_nodes):
        eps = next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon")
        if not math.isclose(eps, bn.eps, rel_tol=1e-6):
            raise ValueError(f"{node.name}: epsilon {eps} != {bn.eps}")
        for dst, src in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), node.input[1:]):
            _copy(dst, graph.const(src), f"{node.name}:{src}", filled)

    for lin, node in zip(linears, mm_nodes):
        _copy(lin.weight, graph.const(node.input[1]).T, node.name, filled)
        bias = graph.add_operand(node.output[0])
        if bias is None:
            raise ValueError(f"{node.name}: no bias")
        _copy(lin.bias, bias, f"{node.name} bias", filled)

    ln = _layer_norms(graph)
    if len(ln) != len(norms):
        raise ValueError(f"LayerNorm: module has {len(norms)}, ONNX has {len(ln)}")
    for norm, (eps, gamma, beta) in zip(norms, ln):
        if not math.isclose(eps, norm.eps, rel_tol=1e-6):
            raise ValueError(f"LayerNorm epsilon {eps} != {norm.eps}")
        _copy(norm.weight, gamma, "LayerNorm gamma", filled)
        _copy(norm.bias, beta, "LayerNorm beta", filled)

    tensors = dict(model.named_parameters())
    tensors.update((k, v) for k, v in model.named_buffers() if not k.endswith("num_batches_tracked"))
    unfilled = [k for k, v in tensors.items() if id(v) not in filled]
    if unfilled:
        raise ValueError(f"module tensors not filled from ONNX: {unfilled}")
    weights = {k for k, v in graph.inits.items() if v.dtype == np.float32 and v.size > 1}
    unused = sorted(weights - graph.used)
    if unused:
        raise ValueError(f"weight-bearing ONNX initializers not consumed: {unused}")
    model.eval()


# ----------------------------------------------------------------------------------------------
# Charset surgery


def missing_characters(old_characters: Sequence[str], new_characters: Sequence[str]) -> list[str]:
    """New characters the pretrained head has never seen (they get fresh rows in `cut_charset`)."""
    old = set(_strip_blank(old_characters))
    return [c for c in new_characters if c not in old]


def _strip_blank(characters: Sequence[str]) -> list[str]:
    # Accept either the character list or the full class table whose index 0 is the blank "".
    chars = list(characters)
    return chars[1:] if chars and chars[0] == "" else chars


def cut_charset(model: OCRNetRec, old_characters: Sequence[str],
                new_characters: Sequence[str]) -> OCRNetRec:
    """Copy of `model` whose CTC head covers [blank] + new_characters.

    Rows of known characters (and the blank) are copied from the pretrained head so recognition
    works before any finetuning; unknown characters get small random weights and the mean bias,
    and are logged.
    """
    old = _strip_blank(old_characters)
    new = list(new_characters)
    if len(old) + 1 != model.num_classes:
        raise ValueError(f"old charset has {len(old)} + blank classes, head has {model.num_classes}")
    if len(set(new)) != len(new) or "" in new:
        raise ValueError("new characters must be unique and non-empty")
    index = {}
    for i, c in enumerate(old):
        index.setdefault(c, i + 1)  # first occurrence wins if the dictionary repeats a character
    src = model.head.fc
    fc = nn.Linear(src.in_features, len(new) + 1).to(src.weight.device, src.weight.dtype)
    missing = []
    with torch.no_grad():
        nn.init.normal_(fc.weight, std=0.02)
        fc.bias.fill_(float(src.bias[1:].mean()))
        rows = [0] + [index.get(c, -1) for c in new]
        for dst_row, src_row in enumerate(rows):
            if src_row < 0:
                missing.append(new[dst_row - 1])
                continue
            fc.weight[dst_row] = src.weight[src_row]
            fc.bias[dst_row] = src.bias[src_row]
    if missing:
        log.warning("cut_charset: %d characters absent from the pretrained charset get fresh rows: %s",
                    len(missing), " ".join(missing))
    model.head.fc = nn.Identity()  # avoid deep-copying the large old head
    try:
        out = copy.deepcopy(model)
    finally:
        model.head.fc = src
    out.head.fc = fc
    return out

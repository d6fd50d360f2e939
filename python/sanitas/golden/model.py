"""Integer golden model: export of a trained Brevitas ``QNet`` and its integer executor.

The golden model is the reference of every sanitas level (HLS csim, RTL, board, fault campaigns).
Tensors are int64 numpy arrays holding exact integers; every edge carries a power-of-two exponent ``e``
(real value = int * 2**e). Per node:

* ``input``   float -> int8 at ``e_out``: round half to even, saturate (``rounding.quantize_float``)
* ``conv``    int8/uint8 (N, C, H, W) x int8 weights (O, C/g, kh, kw) + int32 bias -> int32 accumulators at
              ``e_in + e_w`` (two's-complement wrap to 32 bits, as the hardware accumulator; fault-free nets stay
              far inside: |acc| <= 255 * 127 * C*kh*kw + 2**31 bias bound is checked on export data)
* ``linear``  (N, F) x (O, F) + bias -> int32 at ``e_in + e_w``
* ``act``     requantise to ``bits``/``signed`` at ``e_out`` (shift, round half to even, saturate; uint8 = ReLU)
* ``add``     exact integer add (both inputs at one exponent, guaranteed by a shared quantiser)
* ``concat``, ``maxpool`` (padding = -inf), ``gsum`` (exact sum over H, W), ``flatten``

Each op's integer semantics is one kernel of the ``golden`` table (``sanitas.models.ops``); ``ProtectedModel``
runs the same kernels. Two backends share this file: ``backend="int"`` (numpy int64, the reference) and
``backend="f64"`` (torch float64 convolutions: exact because every product and partial sum is an integer below
2**53; it is asserted equal to "int" in the tests and is used where speed matters). Fault hooks:
``run_int(..., hook=f)`` calls ``f(node, site, array) -> array`` at sites ``input``, ``weight``, ``bias``, ``acc``
and ``output``.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from ..errors import SanitasError
from ..models.ops import kernels, node_shapes, spec
from .rounding import quantize_float, requantize

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32 range (what a 32-bit accumulator register does)."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


@dataclass
class GNode:
    """One integer node: op, inputs, exponents, types, integer parameters."""
    name: str
    op: str
    inputs: list[str]
    e_out: int                      # output exponent: value = int * 2**e_out
    bits: int                       # output integer width
    signed: bool
    attrs: dict = field(default_factory=dict)
    weight: np.ndarray | None = None   # int8 (O, C/g, kh, kw) or (O, F)
    bias: np.ndarray | None = None     # int32 (O,)
    e_w: int | None = None             # weight exponent
    narrow: bool = False


def _exp_of(scale) -> int:
    s = float(np.asarray(scale.detach().cpu() if hasattr(scale, "detach") else scale).reshape(-1)[0])
    e = math.log2(s)
    if abs(e - round(e)) > 1e-9:
        raise SanitasError(f"scale {s} is not a power of two: the integer contract needs 2**k scales")
    return int(round(e))


def conv2d_int(x, w, b, stride=1, padding=0, groups=1, dilation=1):
    """Exact integer conv: x (N, C, H, W) int64, w (O, C/g, kh, kw), b (O,) -> (N, O, Ho, Wo) int64 (unwrapped)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    eh, ew = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (eh, ew), axis=(2, 3))   # (N, C, H', W', eh, ew)
    win = win[:, :, ::stride, ::stride, ::dilation, ::dilation]                  # (N, C, Ho, Wo, kh, kw)
    ho, wo = win.shape[2], win.shape[3]
    og = o // groups
    xg = win.reshape(n, groups, cg, ho, wo, kh, kw)
    wg = w.reshape(groups, og, cg, kh, kw)
    if cg == 1 and og == 1:   # depthwise: no reduction over channels
        y = np.einsum("ngchwij,gocij->ngohw", xg, wg)
    else:
        cols = xg.transpose(0, 1, 3, 4, 2, 5, 6).reshape(n, groups, ho * wo, cg * kh * kw)
        y = np.matmul(cols, wg.reshape(groups, og, cg * kh * kw).transpose(0, 2, 1)[None])  # (N, G, HW, Og)
        y = y.transpose(0, 1, 3, 2).reshape(n, groups, og, ho, wo)
    y = y.reshape(n, o, ho, wo)
    return y + b.astype(np.int64)[None, :, None, None]


def conv2d_f64(x, w, b, stride=1, padding=0, groups=1, dilation=1):
    """Same as ``conv2d_int`` through torch float64 (exact: integers below 2**53)."""
    import torch
    y = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                                   torch.from_numpy(b.astype(np.float64)), stride, padding, dilation, groups)
    return y.numpy().astype(np.int64)


def maxpool_int(x, k, stride, padding):
    lo = np.iinfo(np.int64).min
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=lo)
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return win.max(axis=(4, 5))


class GoldenRun(NamedTuple):
    """What a golden kernel needs besides its node and inputs: the model (exponents of other nodes), the fault
    hook (or None) and the conv implementation of the backend."""
    gm: "GoldenModel"
    hook: Callable | None
    conv: Callable


# the integer semantics of every op: kernel(run, node, inputs) -> int64 array (inputs = [xq] for the input node)
GOLDEN = kernels("golden")


@GOLDEN.register("input")
def _g_input(run, n, ins):
    return np.asarray(ins[0], dtype=np.int64)


def mac_int(n, x, w, b, conv=conv2d_int, groups: int | None = None) -> np.ndarray:
    """Exact, unwrapped conv/linear accumulators of node ``n``: (N, O, Ho, Wo) or (N, O) int64; ``groups``
    overrides the node's group count (the sanity filters run as extra outputs of each group)."""
    if spec(n.op).spatial:
        a = n.attrs
        return conv(x, w.astype(np.int64), b, a["stride"], a["padding"], a["groups"] if groups is None else groups,
                    a["dilation"])
    return x.astype(np.int64) @ w.astype(np.int64).T + b.astype(np.int64)


@GOLDEN.register("conv", "linear")
def _g_mac(run, n, ins):
    w, b, hook = n.weight, n.bias, run.hook
    if hook is not None:
        w = hook(n, "weight", w)
        b = hook(n, "bias", b)
    y = wrap32(mac_int(n, ins[0], w, b, run.conv))
    return hook(n, "acc", y) if hook is not None else y


@GOLDEN.register("act")
def _g_act(run, n, ins):
    return requantize(ins[0], run.gm.by_name[n.inputs[0]].e_out, n.e_out, n.bits, n.signed, n.narrow)


@GOLDEN.register("add")
def _g_add(run, n, ins):
    return ins[0] + ins[1]


@GOLDEN.register("concat")
def _g_concat(run, n, ins):
    return np.concatenate(ins, axis=1)


@GOLDEN.register("maxpool")
def _g_maxpool(run, n, ins):
    return maxpool_int(ins[0], n.attrs["k"], n.attrs["stride"], n.attrs["padding"])


@GOLDEN.register("gsum")
def _g_gsum(run, n, ins):
    return ins[0].sum(axis=(2, 3))


@GOLDEN.register("flatten")
def _g_flatten(run, n, ins):
    return ins[0].reshape(ins[0].shape[0], -1)


class GoldenModel:
    """The integer twin of a ``QNet``: nodes in topological order, the last one gives int32 logits."""

    def __init__(self, nodes: list[GNode], input_shape, num_classes: int, spec: dict | None = None):
        self.nodes = nodes
        self.by_name = {n.name: n for n in nodes}
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.spec = spec or {}

    # ---------------------------------------------------------------- properties
    @property
    def input_node(self) -> GNode:
        return self.nodes[0]

    @property
    def output_node(self) -> GNode:
        return self.nodes[-1]

    @property
    def out_exp(self) -> int:
        return self.output_node.e_out

    def layers(self, ops=None) -> list[GNode]:
        """The nodes whose op is in ``ops`` (default: the ops with weights, i.e. conv and linear)."""
        if ops is None:
            return [n for n in self.nodes if spec(n.op).has_weights]
        return [n for n in self.nodes if n.op in ops]

    # ---------------------------------------------------------------- execution
    def quantize_input(self, x) -> np.ndarray:
        """Float images (N, C, H, W) -> int8 (as int64 array) at the input exponent."""
        n = self.input_node
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise SanitasError(f"input must have shape (N, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        return quantize_float(x, n.e_out, n.bits, n.signed)

    def run_int(self, xq, hook=None, backend: str = "int", return_all: bool = False):
        """Run on int8 inputs ``xq`` (N, C, H, W); returns int32 logits (N, classes) as int64, or all node outputs."""
        run = GoldenRun(self, hook, conv2d_int if backend == "int" else conv2d_f64)
        env = {}
        for n in self.nodes:
            ins = [env[i] for i in n.inputs]
            if hook is not None and ins:
                ins = [hook(n, "input", a) for a in ins]
            y = GOLDEN[n.op](run, n, ins or [xq])
            if hook is not None:
                y = hook(n, "output", y)
            env[n.name] = y
        return env if return_all else env[self.output_node.name]

    def predict(self, x, backend: str = "int") -> np.ndarray:
        """Float images -> int logits (N, classes)."""
        return self.run_int(self.quantize_input(x), backend=backend)

    # ---------------------------------------------------------------- analysis
    def macs(self) -> int:
        """Multiply-accumulates per image of all conv/linear layers (the op table's MAC counts)."""
        shapes = self.shapes()
        return sum(spec(n.op).macs(n.weight.shape, shapes[n.name]) for n in self.layers())

    def shapes(self) -> dict:
        """Output shape (batch 1) of every node (the op table's shape rules)."""
        per = node_shapes(self.nodes, self.input_shape, lambda n: n.weight.shape)
        return {k: (1,) + v for k, v in per.items()}

    # ---------------------------------------------------------------- persistence
    def save(self, path) -> Path:
        """Write ``path`` (.npz): integer parameters + a JSON description of the graph."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays, meta = {}, []
        for i, n in enumerate(self.nodes):
            d = asdict(n)
            for k in ("weight", "bias"):
                if d[k] is not None:
                    arrays[f"{i}_{k}"] = np.asarray(d[k])
                d[k] = None
            meta.append(d)
        head = {"input_shape": list(self.input_shape), "num_classes": self.num_classes, "nodes": meta,
                "spec": self.spec}
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, __meta__=np.frombuffer(json.dumps(head).encode(), dtype=np.uint8), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "GoldenModel":
        try:
            z = np.load(path, allow_pickle=False)
            head = json.loads(bytes(z["__meta__"]).decode())
        except Exception as e:  # noqa: BLE001
            raise SanitasError(f"{path}: not a sanitas golden model ({type(e).__name__})") from None
        nodes = []
        for i, d in enumerate(head["nodes"]):
            for k in ("weight", "bias"):
                if f"{i}_{k}" in z:
                    d[k] = z[f"{i}_{k}"]
            nodes.append(GNode(**d))
        return cls(nodes, head["input_shape"], head["num_classes"], head.get("spec"))


def export_golden(model, input_shape=None) -> GoldenModel:
    """Export a trained ``QNet`` (Brevitas) to a ``GoldenModel`` with integer weights, biases and exponents."""
    import torch
    was_training = model.training
    model.eval()
    shape = tuple(input_shape or model.spec["in_shape"])
    with torch.no_grad():
        env = model(torch.zeros((1,) + shape), return_all=True)
        nodes: list[GNode] = []
        gmap: dict[str, GNode] = {}
        for n in model.nodes:
            t = env[n.name]
            s = spec(n.op)
            if s.has_module:
                if not hasattr(t, "scale"):
                    raise SanitasError(f"node {n.name}: output is not a QuantTensor")
                e_out = _exp_of(t.scale)
                bits = int(round(float(t.bit_width)))
                signed = bool(t.signed)
            else:
                src = [gmap[i] for i in n.inputs]
                e_out, signed = src[0].e_out, src[0].signed
                if s.multi_input:
                    es = {g.e_out for g in src}
                    if len(es) != 1:
                        raise SanitasError(f"node {n.name}: inputs at different scales {sorted(es)}")
                    signed = any(g.signed for g in src)
                bits = s.out_bits([g.bits for g in src])
            g = GNode(n.name, n.op, list(n.inputs), e_out, bits, signed, dict(n.attrs))
            if s.has_weights:
                mod = model.module_of(n)
                qw = mod.quant_weight()
                g.weight = qw.int().cpu().numpy().astype(np.int8)
                g.e_w = _exp_of(qw.scale)
                qb = mod.bias_quant(mod.bias, env[n.inputs[0]], qw)
                g.bias = qb.int().cpu().numpy().astype(np.int32)
                e_acc = gmap[n.inputs[0]].e_out + g.e_w
                if e_acc != e_out:
                    raise SanitasError(f"node {n.name}: accumulator exponent {e_out} != e_in + e_w = {e_acc}")
                g.bits, g.signed = 32, True
            if s.requant:
                mod = model.module_of(n)
                g.narrow = bool(getattr(mod.act_quant, "is_narrow_range", False))
                g.attrs["relu"] = bool(n.attrs.get("relu", False))
            nodes.append(g)
            gmap[n.name] = g
    model.train(was_training)
    net_spec = dict(model.spec)
    return GoldenModel(nodes, shape, int(net_spec.get("num_classes", nodes[-1].weight.shape[0])), net_spec)

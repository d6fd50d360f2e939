"""The QNet op table: each graph op defined once, and the per-executor kernel tables that dispatch on it.

``OPS[name]`` is an ``OpSpec``: what the op is (its properties, read by every executor instead of comparing op
names), its shape rule and its MAC count. The kernels live with their executors, one ``KernelTable`` each, filled
by decorators (the way hls4ml keeps one template class per layer class)::

    GOLDEN = kernels("golden")          # sanitas.golden.model: the integer semantics (numpy, the reference)

    @GOLDEN.register("maxpool")
    def _maxpool(run, n, ins): ...

Executors: ``golden`` (integer reference; ``ProtectedModel`` runs these kernels too), ``brevitas``
(``QNet.forward``), ``supernet`` (the NAS supernet forward), ``dense`` (the batched torch campaign engine) and
``sparse`` (the concurrent fault-propagation engine). Adding an op is one ``OpSpec`` entry here plus one kernel
per executor; ``missing()`` names the kernels not written yet (a test asserts there are none).

Shapes are per image (no batch axis): (C, H, W) maps or (F,) vectors; weight shapes (O, C/g, kh, kw) or (O, F).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ..errors import SanitasError


def conv_out(h: int, k: int, s: int, p: int, d: int = 1) -> int:
    """Output length of a k-tap window sliding with stride s, padding p and dilation d over h positions."""
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


# ------------------------------------------------------------------------------------------------ shape rules
def _same(attrs, ins, w):
    return tuple(ins[0])


def _conv_shape(attrs, ins, w):
    _, h, wd = ins[0]
    o, _, kh, kw = w
    s, p, d = attrs["stride"], attrs["padding"], attrs.get("dilation", 1)
    return (o, conv_out(h, kh, s, p, d), conv_out(wd, kw, s, p, d))


def _linear_shape(attrs, ins, w):
    return (w[0],)


def _concat_shape(attrs, ins, w):
    return (sum(s[0] for s in ins),) + tuple(ins[0][1:])


def _pool_shape(attrs, ins, w):
    c, h, wd = ins[0]
    k, s, p = attrs["k"], attrs["stride"], attrs["padding"]
    return (c, conv_out(h, k, s, p), conv_out(wd, k, s, p))


def _gsum_shape(attrs, ins, w):
    return (ins[0][0],)


def _flatten_shape(attrs, ins, w):
    return (math.prod(ins[0]),)


# ------------------------------------------------------------------------------------------------ MAC counts
def _no_macs(w, out) -> int:
    return 0


def _conv_macs(w, out) -> int:
    """Every weight is used once per output position: O * C/g * kh * kw * Ho * Wo."""
    return math.prod(w) * math.prod(out[1:])


def _linear_macs(w, out) -> int:
    return math.prod(w)


# ------------------------------------------------------------------------------------------------ element-wise work
def _ew_out(attrs, n_out, n_ins) -> int:
    return n_out                    # one requantise / add / compare per output element


def _ew_pool(attrs, n_out, n_ins) -> int:
    return n_out * attrs["k"] ** 2  # k*k compares per output


def _ew_sum(attrs, n_out, n_ins) -> int:
    return n_ins[0]                 # one add per summed element


def _ew_none(attrs, n_out, n_ins) -> int:
    return 0                        # a copy / re-indexing


# ------------------------------------------------------------------------------------------------ bit widths
def _same_bits(bits):
    return bits[0]


def _add_bits(bits):
    return max(bits) + 1            # an exact sum of two inputs at one scale needs one more bit


def _max_bits(bits):
    return max(bits)


def _gsum_bits(bits):
    return 32


@dataclass(frozen=True)
class OpSpec:
    """One graph op: its properties (what executors ask instead of its name), shape rule, MAC count, widths."""
    name: str
    doc: str
    shape: Callable            # (attrs, input shapes, weight shape or None) -> output shape (per image)
    mac_count: Callable = _no_macs   # (weight shape, output shape) -> MACs per image
    bits: Callable = _same_bits      # output integer width of a module-free op from its inputs' widths
    ew_ops: Callable = _ew_out       # (attrs, output elements, input elements) -> element-wise ops per image
    has_weights: bool = False  # int8 weights + int32 bias -> int32 accumulators (conv, linear): MAC ops
    has_module: bool = False   # runs a Brevitas module whose output is a QuantTensor (input, conv, linear, act)
    is_source: bool = False    # no graph inputs: reads the image (input)
    spatial: bool = False      # weights slide over H x W (conv; linear is the dense (O, F) case)
    requant: bool = False      # requantisation: shift, round half to even, saturate (act)
    masking: bool = False      # a changed input may give an unchanged output (act, maxpool)
    windowed: bool = False     # output position = reduction over an input window (maxpool)
    multi_input: bool = False  # several inputs at one exponent (add, concat)
    sums_inputs: bool = False  # element-wise sum of its inputs (add)
    wide: bool = False         # exact int64 output, wider than an int32 accumulator (gsum)

    def out_shape(self, attrs: dict, in_shapes: list, weight_shape=None) -> tuple:
        return tuple(int(d) for d in self.shape(attrs, [tuple(s) for s in in_shapes], weight_shape))

    def macs(self, weight_shape, out_shape) -> int:
        """Multiply-accumulates per image (0 for ops without weights); out_shape per image or with batch 1."""
        if not self.has_weights:
            return 0
        out = tuple(out_shape)
        return int(self.mac_count(tuple(weight_shape), out[-3:] if self.spatial else out[-1:]))

    def out_bits(self, in_bits: list[int]) -> int:
        return int(self.bits(list(in_bits)))


OPS: dict[str, OpSpec] = {s.name: s for s in (
    OpSpec("input", "float image -> int8 (QuantIdentity)", _same, has_module=True, is_source=True),
    OpSpec("conv", "int8/uint8 (C, H, W) -> int32 accumulators (QuantConv2d; attrs stride, padding, groups, "
           "dilation)", _conv_shape, _conv_macs, has_weights=True, has_module=True, spatial=True),
    OpSpec("linear", "int8/uint8 (F,) -> int32 accumulators (QuantLinear)", _linear_shape, _linear_macs,
           has_weights=True, has_module=True),
    OpSpec("act", "requantise to bits/signed (QuantReLU uint8 / QuantIdentity int8)", _same, has_module=True,
           requant=True, masking=True),
    OpSpec("add", "exact integer sum of two inputs at one exponent", _same, bits=_add_bits, multi_input=True,
           sums_inputs=True),
    OpSpec("concat", "inputs at one exponent along the channel axis", _concat_shape, bits=_max_bits,
           ew_ops=_ew_none, multi_input=True),
    OpSpec("maxpool", "k x k max pool (attrs k, stride, padding; padding = -inf)", _pool_shape, ew_ops=_ew_pool,
           masking=True, windowed=True),
    OpSpec("gsum", "exact global sum over H, W (average pool with 1/(H*W) folded into the next scale)",
           _gsum_shape, bits=_gsum_bits, ew_ops=_ew_sum, wide=True),
    OpSpec("flatten", "(C, H, W) -> (C*H*W,), C-major", _flatten_shape, ew_ops=_ew_none),
)}
OP_NAMES = tuple(OPS)


def spec(op: str) -> OpSpec:
    """The ``OpSpec`` of op name ``op`` (a ``SanitasError`` for an unknown op)."""
    try:
        return OPS[op]
    except KeyError:
        raise SanitasError(f"unknown graph op {op!r} (known: {', '.join(OP_NAMES)})") from None


class KernelTable:
    """One executor's kernels, keyed by op name; filled with ``@table.register("op", ...)``."""

    def __init__(self, executor: str):
        self.executor = executor
        self._k: dict[str, Callable] = {}

    def register(self, *ops: str) -> Callable:
        for op in ops:
            spec(op)                                           # only ops of the table
        def deco(fn):
            for op in ops:
                if op in self._k:
                    raise ValueError(f"{self.executor}: kernel of {op!r} registered twice")
                self._k[op] = fn
            return fn
        return deco

    def __getitem__(self, op: str) -> Callable:
        k = self._k.get(op)
        if k is None:
            raise SanitasError(f"{self.executor}: no kernel for op {op!r}")
        return k

    def __contains__(self, op: str) -> bool:
        return op in self._k

    def missing(self) -> list[str]:
        """Ops of the table without a kernel here."""
        return [op for op in OP_NAMES if op not in self._k]


TABLES: dict[str, KernelTable] = {}


def kernels(executor: str) -> KernelTable:
    """The kernel table of ``executor`` (created on first use)."""
    if executor not in TABLES:
        TABLES[executor] = KernelTable(executor)
    return TABLES[executor]


def node_shapes(nodes, input_shape, weight_shape: Callable = lambda n: None) -> dict:
    """Per-image output shape of every node of a topologically ordered node list (the table's shape rules);
    ``weight_shape(node)`` gives a node's weight shape (needed for conv/linear)."""
    out: dict = {}
    for n in nodes:
        s = spec(n.op)
        ins = [out[i] for i in n.inputs] if n.inputs else [tuple(input_shape)]
        out[n.name] = s.out_shape(n.attrs, ins, weight_shape(n) if s.has_weights else None)
    return out


__all__ = ["OpSpec", "OPS", "OP_NAMES", "spec", "KernelTable", "TABLES", "kernels", "node_shapes", "conv_out"]

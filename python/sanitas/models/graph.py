"""QNet: a Brevitas INT8 network described as a small dataflow graph.

Each zoo model (and every net the search derives from a genotype) is a ``QNet``: an ordered list of
``Node``s whose torch forward uses Brevitas modules and whose integer twin is built from the same list by
``sanitas.golden.export_golden``.  One description, two executors: the structure cannot drift.

Node ops (defined once in the op table ``sanitas.models.ops``; each executor registers a kernel per op, the
Brevitas forward below is the ``brevitas`` table; tensor shapes NCHW; "acc" = int32 accumulator, "q" =
int8/uint8 activation):
* ``input``   float image -> q (QuantIdentity int8)
* ``conv``    q -> acc (QuantConv2d, attrs: stride, padding, groups, dilation)
* ``linear``  q (N, F) -> acc (N, O) (QuantLinear)
* ``act``     acc or q -> q (QuantReLU uint8 / QuantIdentity int8); ``attrs['module']`` may name a shared
              module so that two branches land on the same scale before an ``add`` or ``concat``
* ``add``     q + q at one scale -> wider integer at that scale (exact)
* ``concat``  q's at one scale, channel axis
* ``maxpool`` (attrs: k, stride, padding)
* ``gsum``    global sum over H, W (the average pool with 1/(H*W) folded into the next act's scale)
* ``flatten``
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops import OP_NAMES, kernels, spec

OPS = OP_NAMES       # the op names (their definitions: ``sanitas.models.ops.OPS``)


@dataclass
class Node:
    """One graph node: ``name`` (unique, also the key of its module), ``op``, input node names, attributes."""
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)

    @property
    def module_key(self) -> str:
        return self.attrs.get("module", self.name)


class GraphBuilder:
    """Helper to write nets as a sequence of calls: ``b.conv('c1', x, 1, 6, 5, padding=2)`` returns the node name."""

    def __init__(self):
        self.nodes: list[Node] = []
        self.modules: dict[str, nn.Module] = {}

    def _add(self, name, op, inputs, mod=None, **attrs):
        if any(n.name == name for n in self.nodes):
            raise ValueError(f"duplicate node name {name!r}")
        if mod is not None and attrs.get("module") is None:
            self.modules[name] = mod
        self.nodes.append(Node(name, op, list(inputs), attrs))
        return name

    def input(self, name="input"):
        from ..quant import qident
        return self._add(name, "input", [], qident())

    def conv(self, name, x, c_in, c_out, k, stride=1, padding=0, groups=1, dilation=1):
        from ..quant import qconv
        return self._add(name, "conv", [x], qconv(c_in, c_out, k, stride, padding, groups, dilation),
                         stride=stride, padding=padding, groups=groups, dilation=dilation, k=k)

    def linear(self, name, x, c_in, c_out):
        from ..quant import qlinear
        return self._add(name, "linear", [x], qlinear(c_in, c_out))

    def relu(self, name, x):
        from ..quant import qrelu
        return self._add(name, "act", [x], qrelu(), relu=True)

    def ident(self, name, x, share: str | None = None):
        """int8 requantisation; ``share`` = name of an earlier ident node whose module (and scale) is reused."""
        from ..quant import qident
        if share is not None:
            key = next(n for n in self.nodes if n.name == share).module_key
            return self._add(name, "act", [x], None, relu=False, module=key)
        return self._add(name, "act", [x], qident(), relu=False)

    def add(self, name, a, b):
        return self._add(name, "add", [a, b])

    def concat(self, name, xs):
        return self._add(name, "concat", list(xs))

    def maxpool(self, name, x, k, stride=None, padding=0):
        return self._add(name, "maxpool", [x], k=k, stride=stride or k, padding=padding)

    def gsum(self, name, x):
        return self._add(name, "gsum", [x])

    def flatten(self, name, x):
        return self._add(name, "flatten", [x])


def _safe(key: str) -> str:
    return key.replace(".", "__")


def value_of(t):
    """The plain tensor of a Brevitas QuantTensor (or the tensor itself)."""
    return t.value if hasattr(t, "value") else t


# the Brevitas (float, quantised) forward of every op: kernel(net, node, inputs) (inputs = [image] for input)
BREVITAS = kernels("brevitas")


@BREVITAS.register("input", "conv", "linear", "act")
def _b_module(net, n, ins):
    return net.module_of(n)(ins[0])


@BREVITAS.register("add")
def _b_add(net, n, ins):
    return ins[0] + ins[1]


@BREVITAS.register("concat")
def _b_concat(net, n, ins):
    return torch.cat(ins, dim=1)


@BREVITAS.register("maxpool")
def _b_maxpool(net, n, ins):
    return F.max_pool2d(ins[0], n.attrs["k"], n.attrs["stride"], n.attrs["padding"])


@BREVITAS.register("gsum")
def _b_gsum(net, n, ins):
    return value_of(ins[0]).sum(dim=(2, 3))


@BREVITAS.register("flatten")
def _b_flatten(net, n, ins):
    return ins[0].flatten(1)


def tensor_op(n, ins: list):
    """A parameter-free op (add, concat, maxpool, gsum, flatten) on a node's inputs; shared by ``QNet`` and
    the NAS supernet."""
    if spec(n.op).has_module:
        raise ValueError(f"tensor_op: op {n.op!r} runs a module")
    return BREVITAS[n.op](None, n, ins)


class QNet(nn.Module):
    """A Brevitas INT8 network defined by a node list; the last node is the output (int32 logits)."""

    def __init__(self, nodes: list[Node], modules: dict[str, nn.Module], spec: dict):
        super().__init__()
        self.nodes = nodes
        self.layers = nn.ModuleDict({_safe(k): m for k, m in modules.items()})
        self.spec = dict(spec)         # how to rebuild this net (stored in checkpoints)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (fan-in) init for every conv/linear, zero bias: without batch norm, PyTorch's default init
        shrinks the signal layer after layer until a 20-layer INT8 net quantises it to zero."""
        for n in self.nodes:
            if spec(n.op).has_weights:
                m = self.module_of(n)
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def module_of(self, node: Node) -> nn.Module:
        return self.layers[_safe(node.module_key)]

    def forward(self, x, return_all: bool = False):
        env: dict = {}
        for n in self.nodes:
            env[n.name] = BREVITAS[n.op](self, n, [env[i] for i in n.inputs] or [x])
        if return_all:
            return env
        return value_of(env[self.nodes[-1].name])

    @property
    def output_node(self) -> Node:
        return self.nodes[-1]

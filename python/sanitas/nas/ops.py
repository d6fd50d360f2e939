"""INT8 primitives of the FTT-NAS cell space, written once as graph nodes for both the supernet and derived nets.

Every op is emitted as ``sanitas.models.graph`` nodes (conv / act / maxpool / add / concat / gsum / linear) whose
modules are the sanitas Brevitas INT8 presets (int8 weights, int32 bias, uint8/int8 activations, power-of-two
scales), so a derived net is an ordinary ``QNet`` that ``export_golden`` runs bit-exactly. The ``Emitter`` has
two modes:

* derived (``bank=None``): a fresh module per node (a ``GraphBuilder``), shared quantisers via ``ident(share=)``;
* supernet (``bank=dict``): every module is looked up in a weight-sharing bank under a canonical key
  ``c{cell}_n{node}_{op}_s{stride}_{part}`` (ENAS-style sharing: one set of op weights per node, whichever
  input the edge takes), so the node list of any genotype runs on the same weights.

INT8 forms of the primitives (x: int8 node tensor with C channels, s = stride; "acc" = int32 accumulator):
* ``skip_connect``   s=1: x itself. s=2: relu -> 1x1 conv stride 2 (replaces DARTS' FactorizedReduce, whose
                     shifted slice x[:, :, 1:, 1:] is not a graph op) -> acc
* ``max_pool_3x3``   3x3 max pool, padding 1 (the golden maxpool pads with -inf, like torch) -> int8, x's scale
* ``avg_pool_3x3``   3x3 *sum* pool as a frozen depthwise conv (all 9 weights equal: 2**-3, one int8 code
                     at a power-of-two scale; bias 0; no gradient), padding 1 -> acc = code * window sum;
                     the remaining 8/9 (count_include_pad) is absorbed into the next requantiser's learned
                     power-of-two scale, exactly as the zoo's global sum pool. A true 1/9 average has no
                     exact power-of-two INT8 form.
* ``sep_conv_kxk``   (relu -> dw kxk -> int8 -> pw 1x1) twice (DARTS), the second dw with stride 1 -> acc
* ``dil_conv_kxk``   relu -> dw kxk dilation 2 -> int8 -> pw 1x1 -> acc
* ``relu_conv_bn_kxk`` relu -> conv kxk -> acc (no BN: the integer contract folds no BN; the int32 bias stays)
* ``conv_1x1``       conv 1x1 on x -> acc
* ``none``           no node (the edge is dropped)

A node j = cell_q(node_q(op_a) + node_q(op_b)) (one shared int8 quantiser per node so the add is exact, then
the cell's shared int8 quantiser so the concat is exact); with one live edge, cell_q(op_a).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..models.graph import GraphBuilder, Node
from ..models.ops import OPS, conv_out, spec
from ..quant import qconv, qident, qlinear, qrelu
from .space import SpaceConfig, live_edges

SUM_POOL_WEIGHT = 0.125      # 2**-3: power of two, exact in int8 at a power-of-two scale


def make_sum_pool(conv: nn.Module) -> nn.Module:
    """Turn a depthwise QuantConv2d into a fixed sum pool: all weights 2**-3 (~1/9, so the float path stays an
    average), bias 0, frozen. Whatever int8 code the weight quantiser picks, it is the same for every tap."""
    with torch.no_grad():
        conv.weight.fill_(SUM_POOL_WEIGHT)
        conv.bias.zero_()
    conv.weight.requires_grad_(False)
    conv.bias.requires_grad_(False)
    conv.sanitas_sum_pool = True
    return conv


def init_weights(modules) -> None:
    """Variance-preserving fan-in init of trainable convs/linears, zero bias; sum pools stay fixed.

    A conv fed by a ReLU gets He init (gain sqrt(2)), one fed by a signed int8 tensor (the pointwise conv after
    a depthwise one, the stem, conv_1x1) gets gain 1 (``m.sanitas_gain``, set by the ``Emitter``). Without
    batch norm, He init everywhere doubles the signal's variance at every such conv, so paths of different
    depth end at logit scales orders of magnitude apart — which is what keeps a weight-sharing supernet from
    learning at all (measured: chance accuracy after 10 epochs)."""
    for m in modules:
        if getattr(m, "sanitas_sum_pool", False):
            make_sum_pool(m)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            lin = getattr(m, "sanitas_gain", "relu") == "linear"
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="linear" if lin else "relu")
            nn.init.zeros_(m.bias)


def float_op(node, module, v: torch.Tensor) -> torch.Tensor:
    """Float shadow of one QNet module node: the same weights, quantisers bypassed (float warm-up)."""
    import torch.nn.functional as F
    s = spec(node.op)
    if s.is_source:
        return v
    if s.spatial:
        return F.conv2d(v, module.weight, module.bias, module.stride, module.padding, module.dilation, module.groups)
    if s.has_weights:
        return F.linear(v, module.weight, module.bias)
    return F.relu(v) if node.attrs.get("relu") else v


def init_head(fc: nn.Module, pooled_positions: int) -> None:
    """He init of the classifier divided by the number of positions the global *sum* pool adds up: without it
    the logits start ~H*W times too large (no batch norm here) and training diverges in the first steps."""
    with torch.no_grad():
        nn.init.kaiming_normal_(fc.weight, mode="fan_in", nonlinearity="relu")
        fc.weight.div_(float(pooled_positions))
        fc.bias.zero_()


class Emitter:
    """Writes graph nodes; tracks every node's shape (C, H, W) or (F,) and the conv/linear layers for MACs.

    ``layers``: name -> dict(kind, c_in, c_out, k, stride, padding, groups, dilation, h_out, w_out, macs,
    sum_pool) for every conv/linear node (per image).
    """

    def __init__(self, bank: dict | None = None, frozen_bank: bool = False, dry: bool = False):
        self.b = GraphBuilder()
        self.dry = dry                        # nodes, shapes and MACs only: no module is built (fast)
        self.bank = {} if dry and bank is None else bank
        self.frozen_bank = frozen_bank
        self.shape: dict[str, tuple] = {}
        self.layers: dict[str, dict] = {}
        self._first: dict[str, str] = {}      # derived mode: shared key -> first node name using it
        self._relu_out: set[str] = set()      # nodes that are ReLU outputs (their consumers get He init)
        self.supernet_norm = False            # emit "bn" nodes (set by emit_network(supernet=True))

    @property
    def nodes(self) -> list[Node]:
        return self.b.nodes

    # ----------------------------------------------------------------- module plumbing
    def _banked(self, name, op, inputs, key, factory, **attrs):
        """Supernet mode: node ``name`` runs bank module ``key`` (created on first use at construction)."""
        if key not in self.bank and not self.dry:
            if self.frozen_bank:
                raise KeyError(f"supernet has no module {key!r} (space changed?)")
            self.bank[key] = factory()
        if any(n.name == name for n in self.b.nodes):
            raise ValueError(f"duplicate node name {name!r}")
        self.b.nodes.append(Node(name, op, list(inputs), dict(attrs, module=key)))
        return name

    # ----------------------------------------------------------------- ops
    def input(self, shape):
        if self.bank is not None:
            name = self._banked("input", "input", [], "input", qident)
        else:
            name = self.b.input()
        self.shape[name] = tuple(shape)
        return name

    def conv(self, name, key, x, c_out, k, stride=1, padding=0, groups=1, dilation=1, sum_pool=False):
        c_in, h, w = self.shape[x]
        gain = "relu" if x in self._relu_out else "linear"
        if self.bank is not None:
            def factory():
                m = qconv(c_in, c_out, k, stride, padding, groups, dilation)
                m.sanitas_gain = gain
                return make_sum_pool(m) if sum_pool else m
            self._banked(name, "conv", [x], key, factory, stride=stride, padding=padding, groups=groups,
                         dilation=dilation, k=k)
        else:
            self.b.conv(name, x, c_in, c_out, k, stride, padding, groups, dilation)
            self.b.modules[name].sanitas_gain = gain
            if sum_pool:
                make_sum_pool(self.b.modules[name])
        if sum_pool:
            self.b.nodes[-1].attrs["sum_pool"] = True
        ho, wo = conv_out(h, k, stride, padding, dilation), conv_out(w, k, stride, padding, dilation)
        self.shape[name] = (c_out, ho, wo)
        self.layers[name] = dict(kind="conv", c_in=c_in, c_out=c_out, k=k, stride=stride, padding=padding,
                                 groups=groups, dilation=dilation, h_out=ho, w_out=wo, sum_pool=sum_pool,
                                 macs=OPS["conv"].macs((c_out, c_in // groups, k, k), (c_out, ho, wo)))
        return name

    def linear(self, name, key, x, c_out):
        (c_in,) = self.shape[x]
        if self.bank is not None:
            self._banked(name, "linear", [x], key, lambda: qlinear(c_in, c_out))
        else:
            self.b.linear(name, x, c_in, c_out)
        self.shape[name] = (c_out,)
        self.layers[name] = dict(kind="linear", c_in=c_in, c_out=c_out, k=1, stride=1, padding=0, groups=1,
                                 dilation=1, h_out=1, w_out=1, sum_pool=False,
                                 macs=OPS["linear"].macs((c_out, c_in), (c_out,)))
        return name

    def relu(self, name, key, x):
        if self.bank is not None:
            self._banked(name, "act", [x], key, qrelu, relu=True)
        else:
            self.b.relu(name, x)
        self._relu_out.add(name)
        self.shape[name] = self.shape[x]
        return name

    def ident(self, name, key, x, shared: bool = False):
        """int8 requantiser; ``shared``: every node emitted with this ``key`` uses one module (one scale)."""
        if self.bank is not None:
            self._banked(name, "act", [x], key, qident, relu=False)
        elif shared and key in self._first:
            self.b.ident(name, x, share=self._first[key])
        else:
            self.b.ident(name, x)
            if shared:
                self._first[key] = name
        self.shape[name] = self.shape[x]
        return name

    def maxpool(self, name, x, k, stride, padding):
        self.b.maxpool(name, x, k, stride, padding)
        c, h, w = self.shape[x]
        self.shape[name] = (c, conv_out(h, k, stride, padding), conv_out(w, k, stride, padding))
        return name

    def add(self, name, a, b):
        self.b.add(name, a, b)
        self.shape[name] = self.shape[a]
        return name

    def concat(self, name, xs):
        self.b.concat(name, xs)
        c = sum(self.shape[x][0] for x in xs)
        self.shape[name] = (c,) + tuple(self.shape[xs[0]][1:])
        return name

    def norm(self, name, x):
        """Supernet only: parameter-free batch normalisation (batch statistics, no affine); identity otherwise."""
        if not self.supernet_norm:
            return x
        self.b.nodes.append(Node(name, "bn", [x], {}))
        self.shape[name] = self.shape[x]
        return name

    def zeros(self, name, like, channels):
        """Supernet only: a dead node's place in the concat (zeros, ``channels`` x like's H x W)."""
        self.b.nodes.append(Node(name, "zeros", [like], {"channels": channels}))
        self.shape[name] = (channels,) + tuple(self.shape[like][1:])
        return name

    def gsum(self, name, x):
        self.pooled_positions = int(self.shape[x][1] * self.shape[x][2])     # H*W summed by the global pool
        self.b.gsum(name, x)
        self.shape[name] = (self.shape[x][0],)
        return name

    def macs(self) -> int:
        return sum(v["macs"] for v in self.layers.values())


# ------------------------------------------------------------------------------------------------ primitives
def emit_op(em: Emitter, op: str, x: str, c: int, stride: int, name: str, key: str) -> str:
    """Emit primitive ``op`` on int8 node ``x`` (c channels); returns its output node (acc or int8), c channels."""
    if op == "skip_connect":
        if stride == 1:
            return x
        r = em.relu(f"{name}_relu", f"{key}_relu", x)
        return em.conv(f"{name}_conv", f"{key}_conv", r, c, 1, stride)
    if op == "max_pool_3x3":
        return em.maxpool(f"{name}_pool", x, 3, stride, 1)
    if op == "avg_pool_3x3":
        return em.conv(f"{name}_sum", f"{key}_sum", x, c, 3, stride, 1, groups=c, sum_pool=True)
    if op.startswith("sep_conv_"):
        k = int(op[-1])
        y = x
        for i, s in ((1, stride), (2, 1)):
            y = em.relu(f"{name}_relu{i}", f"{key}_relu{i}", y)
            y = em.conv(f"{name}_dw{i}", f"{key}_dw{i}", y, c, k, s, k // 2, groups=c)
            y = em.ident(f"{name}_dw{i}_q", f"{key}_dw{i}_q", y)
            y = em.conv(f"{name}_pw{i}", f"{key}_pw{i}", y, c, 1)
        return y
    if op.startswith("dil_conv_"):
        k = int(op[-1])
        y = em.relu(f"{name}_relu", f"{key}_relu", x)
        y = em.conv(f"{name}_dw", f"{key}_dw", y, c, k, stride, (k // 2) * 2, groups=c, dilation=2)
        y = em.ident(f"{name}_dw_q", f"{key}_dw_q", y)
        return em.conv(f"{name}_pw", f"{key}_pw", y, c, 1)
    if op.startswith("relu_conv_bn_"):
        k = int(op[-1])
        y = em.relu(f"{name}_relu", f"{key}_relu", x)
        return em.conv(f"{name}_conv", f"{key}_conv", y, c, k, stride, k // 2)
    if op == "conv_1x1":
        return em.conv(f"{name}_conv", f"{key}_conv", x, c, 1, stride)
    raise ValueError(f"primitive {op!r} has no INT8 form")


def cell_plan(cfg: SpaceConfig) -> list[dict]:
    """Per cell: C, reduction, reduction of the previous cell."""
    plan, c, red_prev = [], cfg.channels, False
    for i in range(cfg.cells):
        red = i in cfg.reductions
        if red:
            c *= 2
        plan.append({"C": c, "reduce": red, "reduce_prev": red_prev})
        red_prev = red
    return plan


def _preprocess(em: Emitter, name: str, x: str, c: int, stride: int) -> str:
    """relu -> 1x1 conv (stride 2 after a reduction cell, for the cell-before-last input) -> int8."""
    y = em.relu(f"{name}_relu", f"{name}_relu", x)
    y = em.conv(f"{name}_conv", f"{name}_conv", y, c, 1, stride)
    return em.ident(f"{name}_q", f"{name}_q", em.norm(f"{name}_bn", y))


def emit_network(em: Emitter, cfg: SpaceConfig, genotype, in_shape, num_classes: int,
                 supernet: bool = False, prune: bool = False) -> Emitter:
    """Emit the whole cell network of ``genotype`` (stem, cells, head). ``supernet``: dead nodes become zeros
    so every cell output keeps nodes*C channels (the bank's pre-processing convs expect that width). ``prune``
    (derived nets): a cell input no live edge reads gets no pre-processing (its ReLU + 1x1 conv would be dead
    code: computed, never read, and dropped by the ONNX exporter)."""
    c_in, _, _ = in_shape
    em.supernet_norm = supernet
    c_stem = cfg.stem_multiplier * cfg.channels
    x = em.input(in_shape)
    stem = em.ident("stem_q", "stem_q", em.norm("stem_bn", em.conv("stem", "stem", x, c_stem, 3, 1, 1)))
    s0 = s1 = stem
    for ci, p in enumerate(cell_plan(cfg)):
        c = p["C"]
        edges = genotype.cell("reduce" if p["reduce"] else "normal")
        lives = live_edges(edges, cfg.nodes)
        read = {i for live in lives for _, _, i in live}
        pre = ((f"c{ci}_pre0", s0, 2 if p["reduce_prev"] else 1), (f"c{ci}_pre1", s1, 1))
        states = [_preprocess(em, name, x, c, stride) if supernet or not prune or k in read else None
                  for k, (name, x, stride) in enumerate(pre)]
        outs = []
        for j, live in enumerate(lives):
            if not live:                      # dead node: no graph node (a zeros block in the supernet)
                states.append(None)
                outs.append(None)
                continue
            branches = []
            for e, op, i in live:
                stride = 2 if (p["reduce"] and i < 2) else 1
                y = emit_op(em, op, states[i], c, stride, f"c{ci}_n{j}_e{e}_{op}", f"c{ci}_n{j}_{op}_s{stride}")
                branches.append(em.norm(f"c{ci}_n{j}_e{e}_bn", y))
            if len(branches) == 2:
                qa = em.ident(f"c{ci}_n{j}_qa", f"c{ci}_n{j}_q", branches[0], shared=True)
                qb = em.ident(f"c{ci}_n{j}_qb", f"c{ci}_n{j}_q", branches[1], shared=True)
                y = em.add(f"c{ci}_n{j}_add", qa, qb)
            else:
                y = branches[0]
            node = em.ident(f"c{ci}_n{j}", f"c{ci}_q", y, shared=True)
            states.append(node)
            outs.append(node)
        live_outs = [o for o in outs if o is not None]
        if not live_outs:
            raise ValueError(f"cell {ci} has no live node (invalid genotype)")
        if supernet:   # keep every node's channel block in place: dead nodes are zeros shaped like a live one
            outs = [o if o is not None else em.zeros(f"c{ci}_n{j}_zero", live_outs[0], c) for j, o in enumerate(outs)]
        else:
            outs = live_outs
        out = outs[0] if len(outs) == 1 else em.concat(f"c{ci}_out", outs)
        s0, s1 = s1, out
    y = em.ident("pool_q", "pool_q", em.gsum("pool", s1))
    em.linear("fc", "fc", y, num_classes)
    return em

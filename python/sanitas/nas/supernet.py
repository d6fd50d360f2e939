"""Weight-sharing supernet of the cell space with per-op (single-path) sampling (ENAS / FTT-NAS sec. 4.2).

The supernet owns one bank of Brevitas INT8 modules: the stem, every cell's pre-processing, and for every
(cell, node, primitive, stride) one op instance shared by whichever input an edge of that node takes
(``sanitas.nas.ops``). ``forward(x, genotype)`` emits the node list of ``genotype`` against the bank (cached per
genotype) and runs only the sampled ops, so a training step costs one sub-network, and the fault injectors of
``sanitas.faults.torch_inject`` (hooks on QuantConv2d/QuantLinear) see exactly the layers that run. Dead nodes
feed zeros to the concat, so every cell output keeps nodes*C channels.

It subclasses ``QNet`` so that, with a genotype selected (``use(g)``), it is a ``QNet`` of that sub-network.

Quantiser state: Brevitas' activation quantisers collect statistics for their first 300 training calls in
plain Python attributes (``counter``) and an unsaved ``buffer``; ``quant_state()`` / ``load_quant_state()``
save and restore them so that a resumed search continues bit-identically.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.graph import BREVITAS, QNet, _safe, value_of
from ..models.ops import OP_NAMES, kernels, spec
from .ops import Emitter, cell_plan, emit_network, emit_op, float_op, init_head, init_weights
from .space import Genotype, SearchSpace, SpaceConfig

# Brevitas activation quantisers use batch statistics for their first 300 training calls, then a learned scale.
# A supernet op instance runs in only a fraction of the steps, so it would sit in the (slow, percentile-based,
# noisy) statistics phase for most of a short search: the supernet switches after 30 calls instead.
# Derived nets keep the sanitas presets unchanged.
SUPERNET_STATS_STEPS = 30


class Supernet(QNet):
    """All candidate ops of ``space`` for inputs ``in_shape`` (C, H, W) and ``num_classes`` outputs."""

    def __init__(self, space: SpaceConfig, in_shape, num_classes: int):
        nn.Module.__init__(self)
        self.space = space
        self.search_space = SearchSpace(space)
        self.in_shape = tuple(in_shape)
        self.num_classes = int(num_classes)
        bank: dict[str, nn.Module] = {}
        # fixed parts (stem, pre-processing, shared quantisers of the nodes used, head) from one valid genotype
        first = next(p for p in space.primitives if p != "none")
        n_edges = 2 * space.nodes
        g0 = Genotype(((first, 0),) * n_edges, ((first, 0),) * n_edges if space.reductions else ())
        em0 = emit_network(Emitter(bank), space, g0, self.in_shape, self.num_classes, supernet=True)
        from ..quant import qident
        for ci, p in enumerate(cell_plan(space)):
            bank.setdefault(f"c{ci}_q", qident())
            for j in range(space.nodes):
                bank.setdefault(f"c{ci}_n{j}_q", qident())
                for op in space.primitives:
                    if op == "none":
                        continue
                    for s in ((1, 2) if p["reduce"] else (1,)):
                        em = Emitter(bank)
                        em.shape["x"] = (p["C"],) + self.in_shape[1:]
                        emit_op(em, op, "x", p["C"], s, "op", f"c{ci}_n{j}_{op}_s{s}")
        init_weights(bank.values())
        init_head(bank["fc"], em0.pooled_positions)
        self._bank = bank
        self._set_stats_steps()
        self.layers = nn.ModuleDict({_safe(k): m for k, m in bank.items()})
        self._cache: dict[str, tuple] = {}
        self._scopes: dict[str, nn.Module] = {}
        self.spec = {"name": "supernet", "space": space.to_dict(), "in_shape": list(self.in_shape),
                     "num_classes": self.num_classes}
        self.genotype: Genotype | None = None
        self.nodes = []
        self.float_mode = False      # True: run the float shadow (warm-up), no quantiser, no fault hook

    # ------------------------------------------------------------------ genotype selection
    def _emit(self, g: Genotype):
        key = g.key()
        if key not in self._cache:
            em = emit_network(Emitter(self._bank, frozen_bank=True), self.space, g, self.in_shape,
                              self.num_classes, supernet=True)
            self._cache[key] = (em.nodes, em)
            if len(self._cache) > 4096:          # bounded: a long search samples many genotypes
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    def set_genotype(self, g: Genotype) -> "Supernet":
        self.genotype = g
        self.nodes = self._emit(g)[0]
        return self

    @contextmanager
    def use(self, g: Genotype):
        old = self.genotype
        self.set_genotype(g)
        try:
            yield self
        finally:
            if old is not None:
                self.set_genotype(old)

    def fault_scope(self) -> nn.Module:
        """The modules the current genotype runs, as one container: fault injectors hook these only (hooking
        every bank module on every injected forward costs more than the forward itself)."""
        key = self.genotype.key()
        if key not in self._scopes:
            if len(self._scopes) > 256:
                self._scopes.clear()
            self._scopes[key] = nn.ModuleList(self.modules_of(self.genotype))
        return self._scopes[key]

    def modules_of(self, g: Genotype) -> list[nn.Module]:
        """The bank modules the sub-network of ``g`` runs (distinct)."""
        seen, out = set(), []
        for n in self._emit(g)[0]:
            if n.op in SUPERNET_ONLY:
                continue
            if spec(n.op).has_module and n.module_key not in seen:
                seen.add(n.module_key)
                out.append(self._bank[n.module_key])
        return out

    # ------------------------------------------------------------------ execution
    def forward(self, x, genotype: Genotype | None = None, return_all: bool = False):
        if genotype is not None:
            self.set_genotype(genotype)
        if self.genotype is None:
            raise RuntimeError("Supernet.forward needs a genotype (forward(x, g) or set_genotype(g))")
        env: dict = {}
        for n in self.nodes:
            k = SUPERNET_ONLY.get(n.op) or SUPERNET[n.op]
            env[n.name] = k(self, n, [env[i] for i in n.inputs] or [x])
        if return_all:
            return env
        return value_of(env[self.nodes[-1].name])

    def _float_op(self, n, v):
        """Float shadow of a bank module: the same weights, quantisers bypassed (float warm-up)."""
        return float_op(n, None if spec(n.op).is_source else self.module_of(n), v)

    # ------------------------------------------------------------------ analysis
    def derived_emitter(self, g: Genotype) -> Emitter:
        """Emitter of the *derived* net of ``g`` (dead nodes dropped): its ``layers`` / ``macs()``."""
        from .derive import emit_derived
        return emit_derived(g, self.space, self.in_shape, self.num_classes)

    # ------------------------------------------------------------------ quantiser state (resume)
    def quant_state(self) -> dict:
        """Counters, stats buffers and raw values of every runtime-stats scaling module."""
        out = {}
        for name, m in self.named_modules():
            if hasattr(m, "collect_stats_steps") and hasattr(m, "counter") and hasattr(m, "buffer"):
                out[name] = {"counter": int(m.counter), "buffer": m.buffer.detach().clone().cpu(),
                             "value": m.value.detach().clone().cpu()}
        return out

    def _set_stats_steps(self) -> None:
        for m in (mm for b in self._bank.values() for mm in b.modules()):
            if hasattr(m, "collect_stats_steps") and hasattr(m, "counter"):
                m.collect_stats_steps = SUPERNET_STATS_STEPS

    def load_full_state(self, state: dict, qstate: dict) -> None:
        """Weights + quantiser state. Brevitas leaves a quantiser's scale out of ``state_dict()`` until its
        first training call, so those keys (and only those) may be missing; ``qstate`` restores them."""
        res = self.load_state_dict(state, strict=False)
        bad = [k for k in res.missing_keys if not k.endswith("scaling_impl.value")] + list(res.unexpected_keys)
        if bad:
            raise RuntimeError(f"supernet state does not match: {bad[:3]}")
        self._set_stats_steps()         # Brevitas rebuilds its quantiser cores on load (back to 300 steps)
        self.load_quant_state(qstate)

    def load_quant_state(self, state: dict) -> None:
        mods = dict(self.named_modules())
        with torch.no_grad():
            for name, s in state.items():
                m = mods[name]
                m.counter = int(s["counter"])
                m.buffer.copy_(s["buffer"])
                m.value.copy_(s["value"])


def quant_state(model: nn.Module) -> dict:
    return Supernet.quant_state(model)


def load_quant_state(model: nn.Module, state: dict) -> None:
    Supernet.load_quant_state(model, state)


# ------------------------------------------------------------------------------------------------ op kernels
# the supernet forward of every op: kernel(supernet, node, inputs) (inputs = [image] for input); the module ops
# run their float shadow in ``float_mode``; the parameter-free ops are the Brevitas ones
SUPERNET = kernels("supernet")


@SUPERNET.register("input", "conv", "linear", "act")
def _sn_module(net, n, ins):
    if net.float_mode:
        return net._float_op(n, ins[0] if spec(n.op).is_source else value_of(ins[0]))
    return net.module_of(n)(ins[0])


@SUPERNET.register("concat")
def _sn_concat(net, n, ins):       # plain tensors: dead nodes' zeros have no scale
    return torch.cat([value_of(t) for t in ins], dim=1)


for _op in OP_NAMES:                 # the parameter-free rest: the Brevitas kernels
    if _op not in SUPERNET:
        SUPERNET.register(_op)(BREVITAS[_op])


def _sn_bn(net, n, ins):           # supernet-only normalisation (see module doc)
    return F.batch_norm(value_of(ins[0]), None, None, training=True, momentum=0.0, eps=1e-5)


def _sn_zeros(net, n, ins):        # a dead node's place in the concat
    ref = value_of(ins[0])
    return ref.new_zeros((ref.shape[0], n.attrs["channels"]) + tuple(ref.shape[2:]))


SUPERNET_ONLY = {"bn": _sn_bn, "zeros": _sn_zeros}      # ops of the supernet's node list only (not in OPS)

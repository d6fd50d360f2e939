"""Reward of the search: FTT-NAS' accuracy term plus the co-design cost terms of sanitas.

``R = (1 - alpha) * acc_clean + alpha * acc_faulty - macs_weight * MACs / macs_ref
      - overhead_weight * protection_MACs / macs_ref``   (Ning et al. eq. 3, alpha = 0.5 feature / 0.2 weight)

accuracies measured on the held-out reward split (20% of the training data) with the supernet's shared weights;
an architecture above ``max_macs`` (a hard budget, optional) gets ``R = 0`` (the reward of a useless net).

Protection overhead = extra MACs per image of the Sanity ABFT checksums on that architecture. With
``sanitas.protect.overhead`` present (the protection issue's model) its count is used — on a shape-only golden
model of the candidate, so nothing is built or trained; its default "sanity" scheme locates lazily (only the
total sanity neuron runs fault-free). Otherwise the analytic model below (eager: all M+1 sanity neurons), which
follows the same scheme (docs/architecture.md "References", Maintaining Sanity):

* conv / linear with ``C`` outputs per group (C > 1): ``floor(log2 C) + 1`` partial + 1 total sanity neurons per
  group, each as costly as one output: extra = ``(floor(log2 C) + 2) / C`` of the layer's MACs;
* depthwise (one output per group): per-channel spatial checksums ``sum_p y[c,p] = w_c . boxsum_c + P b_c``:
  ``C_out * (k*k + 1)`` MACs (a cross-channel checksum would cost as much as the layer).

``layers`` are the per-layer dicts of ``sanitas.nas.ops.Emitter.layers`` (c_in, c_out, k, groups, h_out, w_out,
macs, sum_pool), so the cost of a candidate is computed without building it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..models.ops import spec


def analytic_overhead(layers: dict) -> int:
    """Extra MACs per image of Sanity checksums on every conv/linear of ``layers`` (see module doc)."""
    extra = 0
    for ly in layers.values():
        per_group = ly["c_out"] // ly["groups"]
        if per_group == 1:                                   # depthwise / sum pool: spatial checksums
            extra += ly["c_out"] * (ly["k"] * ly["k"] + 1)
        else:
            extra += (per_group.bit_length() + 1) * ly["macs"] // per_group   # bit_length = floor(log2 C)+1
    return int(extra)


def shape_golden(nodes, layers: dict, in_shape, num_classes: int):
    """A ``GoldenModel`` with the structure and shapes of a (dry-emitted) net and all-zero parameters: enough for
    shape-based analyses (MACs, the protection overhead model) without building or training the net."""
    import numpy as np

    from ..golden import GNode, GoldenModel
    g: dict = {}
    out = []
    for n in nodes:
        a = dict(n.attrs)
        a.pop("module", None)
        s = spec(n.op)
        if s.is_source:
            gn = GNode(n.name, n.op, [], 0, 8, True, a)
        elif s.has_weights:
            ly = layers[n.name]
            shape = ((ly["c_out"], ly["c_in"] // ly["groups"], ly["k"], ly["k"]) if s.spatial
                     else (ly["c_out"], ly["c_in"]))
            gn = GNode(n.name, n.op, list(n.inputs), 0, 32, True, a, weight=np.zeros(shape, np.int8),
                       bias=np.zeros(ly["c_out"], np.int32), e_w=0)
        elif s.requant:
            relu = bool(a.get("relu"))
            gn = GNode(n.name, n.op, list(n.inputs), 0, 8, not relu, a)
        else:
            src = [g[i] for i in n.inputs]
            gn = GNode(n.name, n.op, list(n.inputs), 0, s.out_bits([x.bits for x in src]),
                       any(x.signed for x in src), a)
        g[n.name] = gn
        out.append(gn)
    return GoldenModel(out, tuple(in_shape), num_classes)


def protect_overhead_fn(scheme: str = "sanity") -> tuple[Callable, str]:
    """The overhead model to use, as ``f(layers, nodes=None, in_shape=None, num_classes=None) -> extra MACs``:
    ``sanitas.protect.overhead`` (the protection issue's model: ``overhead(ProtectedModel(gm, scheme))``, on a
    shape-only golden model of the candidate) when it exists, else ``analytic_overhead``. Returns (f, source)."""
    try:
        from ..protect.model import ProtectedModel
        from ..protect.overhead import overhead
    except ImportError:
        return (lambda layers, **_: analytic_overhead(layers)), "analytic (sanity, eager: all M+1 neurons)"

    def f(layers, nodes=None, in_shape=None, num_classes=None):
        if nodes is None:
            return analytic_overhead(layers)
        gm = shape_golden(nodes, layers, in_shape, num_classes)
        return int(overhead(ProtectedModel(gm, scheme))["extra_macs_abs"])
    return f, f"sanitas.protect.overhead ({scheme})"


@dataclass
class Reward:
    """Reward terms (see module doc). ``overhead_fn(layers) -> extra MACs`` is pluggable (None: resolved)."""
    alpha: float = 0.5
    macs_weight: float = 0.0
    overhead_weight: float = 0.0
    macs_ref: float = 1e5            # MACs that cost ``macs_weight`` reward (normaliser)
    max_macs: int | None = None      # hard budget: above it R = 0
    overhead_fn: Callable | None = None   # f(layers, nodes=, in_shape=, num_classes=) -> extra MACs
    protect_scheme: str = "sanity"         # scheme of sanitas.protect priced by the default overhead_fn

    def __post_init__(self):
        self.overhead_source = "custom"
        if self.overhead_fn is None:
            self.overhead_fn, self.overhead_source = protect_overhead_fn(self.protect_scheme)

    def cost(self, layers: dict, nodes=None, in_shape=None, num_classes=None) -> dict:
        """{"macs", "overhead"} of a candidate from its per-layer dicts (and node list, for the protect model)."""
        macs = int(sum(ly["macs"] for ly in layers.values()))
        try:
            ovh = self.overhead_fn(layers, nodes=nodes, in_shape=in_shape, num_classes=num_classes)
        except TypeError:                  # a plain f(layers) callback
            ovh = self.overhead_fn(layers)
        return {"macs": macs, "overhead": int(ovh)}

    def __call__(self, clean: float, faulty: float, macs: int = 0, overhead: int = 0) -> float:
        if self.max_macs is not None and macs > self.max_macs:
            return 0.0
        r = (1.0 - self.alpha) * clean + self.alpha * faulty
        r -= self.macs_weight * macs / self.macs_ref
        r -= self.overhead_weight * overhead / self.macs_ref
        return float(r)

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "macs_weight": self.macs_weight, "overhead_weight": self.overhead_weight,
                "macs_ref": self.macs_ref, "max_macs": self.max_macs, "overhead_source": self.overhead_source}

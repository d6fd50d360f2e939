"""Graph passes over a node list (QNet ``Node``s or golden ``GNode``s): the fusions every lowering can read.

``fuse(nodes)`` finds, in graph order:

* ``FusedRequant(producer, requant)``: a conv, linear or add (not the output node) whose only consumer is a
  requantisation (``act``): the two are evaluated as one (the producer's accumulators are never materialised);
* ``FusedResidual(conv, mid, add, out, other)``: a residual block's ``conv -> requantise (mid) -> add ->
  requantise (out)``, where ``other`` is the add's second operand: one conv whose epilogue requantises to mid,
  adds ``other`` and requantises to out. One conv per add (the first in graph order claims it); ``residual_ok
  (conv)`` may veto a conv after the claim (the sparse engine: only where its 32-bit accumulator cannot wrap).

The sparse campaign engine (``sanitas.faults.sparse``) evaluates exactly these fused nodes; ``Fusions`` indexes
them for lookups (by producer, by add, by mid requantiser).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from .ops import spec


@dataclass(frozen=True)
class FusedRequant:
    """``producer`` (conv / linear / add) evaluated together with ``requant``, its only consumer."""
    producer: str
    requant: str


@dataclass(frozen=True)
class FusedResidual:
    """``conv -> mid (requant) -> add -> out (requant)``, ``other`` = the add's other operand."""
    conv: str
    mid: str
    add: str
    out: str
    other: str


FusedNode = Union[FusedRequant, FusedResidual]


def _consumers(nodes) -> dict:
    out: dict = {}
    for n in nodes:
        for i in n.inputs:
            out.setdefault(i, []).append(n)
    return out


def fuse(nodes, residual_ok: Callable | None = None) -> list[FusedNode]:
    """The fused nodes of ``nodes`` (topological order): every ``FusedRequant`` in graph order, then every
    ``FusedResidual`` in graph order (see the module doc)."""
    consumers = _consumers(nodes)
    last = nodes[-1].name
    req: dict[str, str] = {}
    for n in nodes:
        s = spec(n.op)
        cons = consumers.get(n.name, [])
        if (s.has_weights or s.sums_inputs) and n.name != last and len(cons) == 1 and spec(cons[0].op).requant:
            req[n.name] = cons[0].name
    claimed: dict[str, FusedResidual] = {}
    for n in nodes:
        mid = consumers.get(req.get(n.name, ""), [])
        if not (spec(n.op).spatial and len(mid) == 1 and spec(mid[0].op).sums_inputs and mid[0].name in req):
            continue
        a = mid[0]
        if a.inputs.count(req[n.name]) != 1 or any(r.add == a.name for r in claimed.values()):
            continue
        other = next(i for i in a.inputs if i != req[n.name])
        claimed[n.name] = FusedResidual(n.name, req[n.name], a.name, req[a.name], other)
    res = [r for r in claimed.values() if residual_ok is None or residual_ok(r.conv)]
    return [FusedRequant(p, q) for p, q in req.items()] + res


@dataclass(frozen=True)
class Fusions:
    """Lookups over the output of ``fuse``: ``requant[producer]``, ``residual[conv]``, ``at_add[add]``,
    ``at_mid[mid]`` (each residual under its conv, its add and its mid requantiser)."""
    nodes: tuple
    requant: dict
    residual: dict
    at_add: dict
    at_mid: dict

    @classmethod
    def of(cls, fused: list[FusedNode]) -> "Fusions":
        res = [f for f in fused if isinstance(f, FusedResidual)]
        return cls(tuple(fused), {f.producer: f.requant for f in fused if isinstance(f, FusedRequant)},
                   {r.conv: r for r in res}, {r.add: r for r in res}, {r.mid: r for r in res})


__all__ = ["FusedRequant", "FusedResidual", "FusedNode", "fuse", "Fusions"]

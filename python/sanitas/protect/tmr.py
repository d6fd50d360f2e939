"""TMR baseline: triple modular redundancy per node with an elementwise majority vote.

Every guarded node runs three times: replica 0 is the ordinary path (golden hook sites: weight, bias, input,
acc, output), replicas 1 and 2 have their own weight/bias memories (fault sites ``tmr_w``, ``tmr_b``), read the
stored inputs independently and their outputs are fault site ``tmr_out``. The vote takes, per element, the
value at least two replicas agree on; where all three differ the fault is uncorrectable (replica 0's value
is kept). Any single fault is outvoted at +200 % MACs, +200 % weight memory and +200 % elementwise work.
A persistent weight fault is outvoted at every inference but never repaired (no code to rebuild it from).
"""
from __future__ import annotations

import numpy as np

from ..models.ops import spec
from .base import Memory, PlainGuard, Scheme, base_macs, call_hook, cost, elementwise_ops, eval_plain, mac, numel


class TMRGuard:
    scheme = "tmr"

    def __init__(self, pm, node):
        self.gm, self.node = pm.gm, node
        self.is_mac = spec(node.op).has_weights
        self.inner = PlainGuard(pm, node)
        self.mem = self.inner.mem
        if self.is_mac:
            self.rmem = Memory(node, {"tmr_w": np.stack([node.weight, node.weight]),
                                      "tmr_b": np.stack([node.bias, node.bias])})

    def _replicas(self, raw, hook) -> np.ndarray:
        """Outputs of replicas 1 and 2: (N, 2, ...)."""
        node = self.node
        if spec(node.op).is_source:
            y = np.asarray(raw[0], dtype=np.int64)
            return np.stack([y, y], axis=1)
        if self.is_mac:
            w = self.rmem.read("tmr_w", hook)
            b = self.rmem.read("tmr_b", hook)
            return np.stack([mac(node, raw[0], w[r], b[r]) for r in (0, 1)], axis=1)
        y1, y2 = eval_plain(self.gm, node, raw), eval_plain(self.gm, node, raw)
        return np.stack([y1, y2], axis=1)

    def compute(self, ins, raw, hook, rep):
        y0, _ = self.inner.compute(ins, raw, hook, rep)
        yr = call_hook(hook, self.node, "tmr_out", self._replicas(raw, hook))   # (N, 2, ...)
        y1, y2 = yr[:, 0], yr[:, 1]
        d01, d02, d12 = y0 != y1, y0 != y2, y1 != y2
        if not (d01.any() or d02.any()):
            return y0, True
        rep.detected += 1
        vote = np.where(~d01 | ~d02, y0, np.where(~d12, y1, y0))
        split = d01 & d02 & d12
        if split.any():
            rep.note(self.node.name, self.scheme, "uncorrectable", elements=int(split.sum()))
            return vote, False
        fixed = int((vote != y0).sum())
        rep.corrected += fixed
        if fixed:
            rep.located += fixed
            rep.note(self.node.name, self.scheme, "corrected", elements=fixed)
        else:
            rep.protection_faults += 1
            rep.note(self.node.name, self.scheme, "replica fault outvoted")
        return vote, True

    def state(self, out_shape) -> list:
        st = [("tmr_out", (2,) + tuple(out_shape[1:]), self.node.bits, self.node.signed, True)]
        if self.is_mac:
            st += [("tmr_w", (2,) + tuple(self.node.weight.shape), 8, True, False),
                   ("tmr_b", (2,) + tuple(self.node.bias.shape), 32, True, False)]
        return st

    def cost(self, pm) -> dict:
        """Two more replicas (MACs or elementwise work), two replica memories, a 3-way compare per element."""
        n, out = self.node, pm.shapes[self.node.name]
        mem = 2 * (n.weight.size * 8 + n.bias.size * 32) if self.is_mac else 0
        return cost(macs=2 * base_macs(n, out), mem_bits=mem,
                    ops=2 * elementwise_ops(pm.gm, n, out, [pm.shapes[i] for i in n.inputs]) + 2 * numel(out))


class TMR(Scheme):
    """Scheme class: triple every node and vote."""
    name = "tmr"
    priority = 40

    def guard(self, pm, node):
        return TMRGuard(pm, node)


__all__ = ["TMR", "TMRGuard"]

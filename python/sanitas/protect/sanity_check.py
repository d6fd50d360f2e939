"""Sanity-Check baseline (ATS 2019, the detection-only predecessor of Maintaining Sanity; docs/architecture.md).

Per conv/linear layer, exactly in integers (modulo 2**32, like the accumulators):

* **Spatial checksum**: one sanity (check) neuron per group whose weights are ``-sum`` of the layer's rows and
  bias ``-sum`` of its biases; ``wrap32(sum_i y_i + s) == 0`` per output pixel. Detects weight, bias,
  accumulator and output faults (any single-bit flip, same argument as ``sanity.py``) but cannot locate them.
  On a depthwise conv one output per group means the check neuron duplicates the filter (+100 % MACs there).
* **Temporal checksum**: the layer also runs on the sanity input ``-x`` formed from the stored input before it
  is read (batch {x, -x}); ``wrap32(y(x) + y(-x) - 2 b) == 0`` per output element. A fault in the value the
  layer reads (``input`` site) breaks it wherever a weight touching that element is non-zero. It costs a
  second pass of the layer (+100 % MACs at batch 1; the original amortises it over a batch).

Detection only: a failed check is reported (detected, uncorrectable); nothing is corrected. Faults in
activations/pooling outputs are formed into both x and -x and are not seen — the limitation that Maintaining
Sanity's DMR removes.
"""
from __future__ import annotations

import numpy as np

from ..golden import wrap32
from ..models.ops import spec
from .base import Memory, Scheme, base_macs, call_hook, cost, mac, numel
from .sanity import _geometry, build_rows, storage_bits


class SanityCheckGuard:
    scheme = "sanity-check"

    def __init__(self, pm, node):
        self.node = node
        self.G, self.C, self.K = _geometry(node)
        rows, sb = build_rows(node.weight.reshape(self.G, self.C, self.K), node.bias.reshape(self.G, self.C))
        self.mem = Memory(node, {"weight": node.weight, "bias": node.bias,
                                 "sanity_w": rows[:, -1:], "sanity_b": sb[:, -1:]})
        self.bits = storage_bits(self.C)
        src = pm.gm.by_name[node.inputs[0]]
        self.in_shape = tuple(pm.shapes[src.name][1:])
        self.in_bits = src.bits + 1                 # -x of a uint8 / int8 input needs one more bit (signed)

    def compute(self, ins, raw, hook, rep):
        node = self.node
        w = self.mem.read("weight", hook)
        b = self.mem.read("bias", hook)
        t = self.mem.read("sanity_w", hook)
        tb = self.mem.read("sanity_b", hook)
        w3 = w.reshape(self.G, self.C, self.K)
        ext = np.concatenate([w3, t], axis=1).reshape((self.G * (self.C + 1),) + tuple(w.shape[1:]))
        bext = np.concatenate([b.reshape(self.G, self.C), tb], axis=1).reshape(-1)
        yext = mac(node, ins[0], ext, bext, groups=self.G)
        n, sp = yext.shape[0], yext.shape[2:]
        yg = yext.reshape((n, self.G, self.C + 1) + sp)
        y = np.ascontiguousarray(yg[:, :, :self.C]).reshape((n, self.G * self.C) + sp)
        s = np.ascontiguousarray(yg[:, :, self.C])                            # (N, G, *sp)
        y = call_hook(hook, node, "acc", y)
        y = call_hook(hook, node, "output", y)
        s = call_hook(hook, node, "sanity_acc", s)
        spatial = wrap32(y.reshape((n, self.G, self.C) + sp).sum(2) + s)
        xs = call_hook(hook, node, "temporal", -np.asarray(raw[0], dtype=np.int64))
        ys = mac(node, xs, w, b)
        bb = b.reshape((1, -1) + (1,) * len(sp))
        temporal = wrap32(y + ys - 2 * bb)
        if not spatial.any() and not temporal.any():
            return y, True
        rep.detected += 1
        rep.note(node.name, self.scheme, "detected", spatial=int((spatial != 0).sum()),
                 temporal=int((temporal != 0).sum()))
        return y, False

    def state(self, out_shape) -> list:
        return [("sanity_w", (self.G, 1, self.K), self.bits, True, False),
                ("sanity_b", (self.G, 1), 32, True, False),
                ("sanity_acc", (self.G,) + tuple(out_shape[2:]), 32, True, True),
                ("temporal", self.in_shape, self.in_bits, True, True)]

    def cost(self, pm) -> dict:
        """Check neuron (K MACs per pixel and group) + the layer on -x (+100 % MACs at batch 1); compares."""
        out = pm.shapes[self.node.name]
        p = int(np.prod(out[2:])) if len(out) > 2 else 1
        return cost(macs=self.G * self.K * p + base_macs(self.node, out),
                    adds=self.G * (self.C + 1) * p + 2 * numel(out),
                    mem_bits=self.G * (self.K * self.bits + 32) + int(np.prod(self.in_shape)) * self.in_bits)


class SanityCheck(Scheme):
    """Scheme class: spatial + temporal checksums on every conv/linear (detection only)."""
    name = "sanity-check"
    priority = 20

    def guard(self, pm, node):
        if not spec(node.op).has_weights:
            return None
        return SanityCheckGuard(pm, node)


__all__ = ["SanityCheck", "SanityCheckGuard"]

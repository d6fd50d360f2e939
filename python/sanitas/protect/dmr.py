"""DMR with checkpoint/rollback: the input-redundancy half of "Maintaining Sanity" (DAC 2024, seed 001), exact.

The reference duplicates the network input ([x, x] as a batch of two), compares the copies' channel sums after
each conv/FC segment and, on a mismatch, rolls back to the checkpointed output of the previous segment and
recomputes. sanitas does the same per node of the integer graph, with exact int64 checksums:

* **Checkpoints.** Every node's verified output is kept (the stored tensor) with its per-image weighted
  checksum ``[sum y_i, sum (i + 1) y_i]`` modulo 2**64 (``seal.checksums``; two adds per element in hardware,
  Fletcher's running sums). A single-bit flip of bit b anywhere in a tensor changes the sum by +-2**b, never 0;
  a cancelling pair (+e, -e in two elements, e.g. two checkpoint words or two activations) leaves the sum but
  changes the weighted sum by ``(i - j) e != 0`` mod 2**64: every single and double error in a checkpointed
  tensor, a layer input or a duplicated node's output is seen. Undetected: >= 3 errors that balance both sums.
* **Layer inputs** (the second copy "only needs what it takes to compare checksums"): each read of a
  checkpoint is summed and compared with the recorded checksum — no MACs, two adds per element. On a
  mismatch the reader rolls back: re-read (a fault in the read path is gone), then re-execute the producer
  from its own checkpoints (a fault in the stored tensor or in its checksum is gone); bounded retries, counted.
* **Elementwise nodes** (activation/requantisation, pooling, residual add, global sum, and — in the DMR-only
  baseline — the MAC layers too) are computed twice from the verified inputs and the two outputs' checksums
  compared (the duplicate is elementwise: no extra MACs except for duplicated MAC layers); on a mismatch the
  node is recomputed from its checkpointed inputs (rollback), at most ``retries`` times.
* With ``Sanity`` on the MAC layers (``sanity+dmr``) a MAC layer whose sanity check cannot correct a fault
  (e.g. two faults) is rolled back and recomputed too.

Without sanity (``dmr`` = the DMR-only baseline), MAC layers are duplicated in full (+100 % MACs) but both
copies read the same weight memory: a weight or bias fault is invisible to DMR — that is why sanity exists.
"""
from __future__ import annotations

import numpy as np

from .base import PlainGuard, Scheme, base_macs, call_hook, checksum, cost, elementwise_ops, numel


class DupGuard:
    """Compute a node twice (the second copy reads the same parameters, no golden hook) and compare checksums."""
    scheme = "dmr"

    def __init__(self, pm, node):
        self.node = node
        self.inner = PlainGuard(pm, node)
        self.mem = self.inner.mem

    def compute(self, ins, raw, hook, rep):
        a, _ = self.inner.compute(ins, raw, hook, rep, hooked=True)
        b, _ = self.inner.compute(ins, raw, hook, rep, hooked=False)
        b = call_hook(hook, self.node, "dmr", b)
        if a.shape == b.shape and np.array_equal(checksum(a), checksum(b)):
            return a, True
        rep.detected += 1
        rep.note(self.node.name, self.scheme, "detected", check="duplicate mismatch")
        return a, False

    def state(self, out_shape) -> list:
        return [("dmr", tuple(out_shape[1:]), self.node.bits, self.node.signed, True)]

    def cost(self, pm) -> dict:
        """Second copy: +100 % MACs for a MAC node, its elementwise work otherwise; two output checksums."""
        n, out = self.node, pm.shapes[self.node.name]
        return cost(macs=base_macs(n, out), adds=2 * numel(out),
                    ops=elementwise_ops(pm.gm, n, out, [pm.shapes[i] for i in n.inputs]))


class DMR(Scheme):
    """Scheme class: checksummed checkpoints, verified reads, duplicated elementwise nodes, rollback.

    ``retries``: how many times a node (or a read) is re-executed before the fault is declared uncorrectable."""
    name = "dmr"
    priority = 10
    verify_inputs = True
    rollback = True

    def __init__(self, retries: int = 2):
        self.retries = retries

    def guard(self, pm, node):
        return DupGuard(pm, node)

    @staticmethod
    def state(node, out_shape) -> list:
        """Sites of the checkpoint state kept for every node under DMR."""
        return [("checkpoint", tuple(out_shape[1:]), node.bits, node.signed, True),
                ("checksum", (2,), 64, True, True)]


__all__ = ["DMR", "DupGuard"]

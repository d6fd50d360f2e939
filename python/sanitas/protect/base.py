"""Shared pieces of the protection schemes: per-inference reports, parameter memory, exact node evaluation.

Every scheme of ``sanitas.protect`` (sanity, dmr, tmr, sanity_check, clip) runs on the golden integer model's
node list (``sanitas.golden``) and must reproduce it bit for bit when no fault occurs. This file holds what
they share:

* ``Report``   — what one protected inference saw: checks that fired, faults located, elements corrected,
                 memory words repaired, rollbacks, detected-but-uncorrectable faults, plus an event log;
* ``Memory``   — a mutable parameter store (weights, biases, the schemes' own code rows). Reads go through the
                 fault hook, and a fault delivered at a read is written back: it persists in memory until a
                 scheme scrubs it (that is what a memory fault is, and what makes "repaired and stays
                 repaired" testable);
* ``mac``      — the exact conv/linear accumulator (int64 holding int32 values after the 32-bit wrap, the
                 golden rule); ``eval_plain`` — the exact non-MAC ops (act, add, concat, maxpool, gsum,
                 flatten), identical to ``GoldenModel.run_int``.

Fault hooks have the golden signature ``hook(node, site, array) -> array``; schemes add their own sites for
their state (see ``STATE_SITES``) so a campaign can hit the protection itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..golden import conv2d_int, wrap32
from ..golden.model import GOLDEN, GoldenRun, mac_int
from ..models.ops import spec
from .seal import checksums

# Sites of the protection's own state (registered with the fault engine by ``sanitas.protect.campaign``):
STATE_SITES = {
    "sanity_w": "sanity rows (Hamming-indexed checksum weights) of a conv/linear layer, int16/int32 memory",
    "sanity_b": "sanity biases (checksums of the biases), int32 memory",
    "sanity_sum": "seals (weighted checksums, seal.py) of the sanity rows and sanity biases of a group (int64)",
    "sanity_acc": "sanity neuron accumulators (int32), or the spatial checksum of a depthwise conv",
    "sanity_spatial": "layer-wide (spatially summed) sanity neuron accumulators of a lazy conv (int32)",
    "param_sum": "seals of the filter and bias memory of a depthwise conv (int64)",
    "dmr": "the duplicate copy of a node's output (DMR)",
    "checkpoint": "a verified node output kept for rollback (stored tensor after its check)",
    "checksum": "the recorded weighted checksum (sum, position-weighted sum; int64) of a checkpoint",
    "tmr_w": "weights of TMR replicas 1 and 2 (int8 memory)",
    "tmr_b": "biases of TMR replicas 1 and 2 (int32 memory)",
    "tmr_out": "outputs of TMR replicas 1 and 2",
    "temporal": "the negated input copy (x, -x) of the sanity-check temporal checksum",
    "clip_bound": "the (lo, hi) clipping bounds of a node (int32 memory)",
}


@dataclass
class Report:
    """Per-inference protection report (counts; ``events`` lists (node, scheme, what, detail) tuples)."""
    detected: int = 0            # checks that failed (each failed check of each node counts once)
    located: int = 0             # faulty elements / rows / channels located
    corrected: int = 0           # output elements corrected in place or recomputed after location
    repaired: int = 0            # memory words scrubbed (weights, biases, sanity rows)
    protection_faults: int = 0   # faults recognised inside the protection's own state (no output touched)
    rolled_back: int = 0         # recomputations from a checkpoint (re-reads and node re-executions)
    uncorrectable: int = 0       # checks still failing after everything the scheme can do
    clipped: int = 0             # values clipped by range restriction
    escalations: int = 0         # layers reloaded from the trusted image (uncorrectable after scrub and retries)
    scrubbed: int = 0            # parameter memory words verified by the patrol scrubber (work, not an alarm)
    events: list = field(default_factory=list)

    def note(self, node: str, scheme: str, what: str, **detail) -> None:
        self.events.append((node, scheme, what, detail))

    def merge(self, other: "Report") -> None:
        for k in COUNTERS:
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.events += other.events

    @property
    def alarm(self) -> bool:
        """Any check fired (a fault-free inference must never raise one)."""
        return bool(self.detected or self.uncorrectable or self.clipped)

    def summary(self) -> dict:
        return {k: getattr(self, k) for k in COUNTERS}


COUNTERS = ("detected", "located", "corrected", "repaired", "protection_faults", "rolled_back", "uncorrectable",
            "clipped", "escalations", "scrubbed")


class Memory:
    """Mutable int64 parameter memory of one node: ``read`` applies the hook and keeps what it returns.

    ``reset()`` restores the pristine contents (campaigns reuse one protected model for many faults)."""

    def __init__(self, node, arrays: dict):
        self.node = node
        self.pristine = {k: np.array(v, dtype=np.int64, copy=True) for k, v in arrays.items()}
        self.arrays = {k: v.copy() for k, v in self.pristine.items()}
        self.dirty = False

    def read(self, site: str, hook=None) -> np.ndarray:
        a = self.arrays[site]
        if hook is None:
            return a
        b = np.asarray(hook(self.node, site, a.copy()), dtype=np.int64)
        if not np.array_equal(a, b):
            self.arrays[site] = b = b.copy()   # a memory fault stays until it is scrubbed
            self.dirty = True
        return b

    def __getitem__(self, site: str) -> np.ndarray:
        self.dirty = True                      # handed out for in-place scrubbing (fault path only)
        return self.arrays[site]

    def __setitem__(self, site: str, value) -> None:
        self.dirty = True
        self.arrays[site] = np.asarray(value, dtype=np.int64)

    def reset(self) -> None:
        if self.dirty:
            self.reload()

    def reload(self) -> None:
        """Rewrite every word from the trusted image (escalation; on hardware the driver rewrites the layer)."""
        self.arrays = {k: v.copy() for k, v in self.pristine.items()}
        self.dirty = False


def call_hook(hook, node, site, arr):
    """``hook(node, site, arr)`` on a copy (None: no hook): a hook may edit in place without side effects."""
    if hook is None:
        return arr
    return np.asarray(hook(node, site, np.array(arr, dtype=np.int64, copy=True)), dtype=np.int64)


def mac(node, x: np.ndarray, w: np.ndarray, b: np.ndarray, groups: int | None = None) -> np.ndarray:
    """Exact conv/linear accumulators of ``node``: (N, O, Ho, Wo) or (N, O) int64 holding int32 (wrapped).

    ``groups`` overrides the node's group count (sanity filters run as extra outputs of each group)."""
    return wrap32(mac_int(node, np.asarray(x, dtype=np.int64), np.asarray(w, dtype=np.int64),
                          np.asarray(b, dtype=np.int64), conv2d_int, groups))


def eval_plain(gm, node, ins: list) -> np.ndarray:
    """Exact output of a non-MAC node: the golden kernel of its op (``GoldenModel.run_int``'s rules)."""
    if spec(node.op).has_weights:
        raise ValueError(f"eval_plain: op {node.op!r} is not a plain (non-MAC) op")
    return GOLDEN[node.op](GoldenRun(gm, None, conv2d_int), node, ins)


def numel(shape) -> int:
    """Elements per image of a batch-1 shape (1, ...)."""
    return int(np.prod(shape[1:]))


def base_macs(node, out_shape) -> int:
    """MACs per image of a conv/linear node (0 for other ops): the op table's count."""
    s = spec(node.op)
    return s.macs(node.weight.shape, out_shape) if s.has_weights else 0


def cost(**kw) -> dict:
    """A per-image extra-cost record: MACs, adds (checksum arithmetic), elementwise ops (duplicated non-MAC
    work, compares, votes), memory bits, and MACs spent only on the fault path."""
    d = {"macs": 0, "adds": 0, "ops": 0, "mem_bits": 0, "fault_path_macs": 0}
    d.update(kw)
    return d


def checksum(a: np.ndarray) -> np.ndarray:
    """Per-image weighted checksum (N, ...) -> (N, 2) int64: [sum x_i, sum (i + 1) x_i] modulo 2**64.

    A single-bit flip of bit b in one element changes the sum by +-2**b != 0; a cancelling pair (+e, -e at
    i != j) changes the weighted sum by (i - j) e != 0 mod 2**64: every single and double error is detected
    (``seal.py`` says which patterns of three or more are not)."""
    return checksums(a)


def elementwise_ops(gm, node, shape_out, shapes_in) -> int:
    """Elementwise operations of one non-MAC node per image (the cost of duplicating it): requantise/add/
    compare per output element, k*k compares per max-pool output, one add per summed element."""
    return spec(node.op).ew_ops(node.attrs, int(np.prod(shape_out[1:])), [int(np.prod(s[1:])) for s in shapes_in])


class Scheme:
    """A protection scheme: a class whose instances say how they guard one node.

    ``guard(pm, node)`` returns the node's compute guard (an object with ``compute(ins, raw, hook, report) ->
    (y, ok)`` and ``state(out_shape) -> [(site, shape, bits, signed, batched)]``) or None when the scheme does
    not guard this op; when several schemes of a node offer a guard, the highest ``priority`` wins.
    ``verify_inputs`` / ``rollback``: the executor checks every read against the producer's checksum and
    re-executes failed nodes from their checkpoints (DMR). ``post(pm, node)`` returns a post-processor
    (range restriction) or None."""
    name = "none"
    priority = 0
    verify_inputs = False
    rollback = False

    def guard(self, pm, node):
        return None

    def post(self, pm, node):
        return None

    def __repr__(self) -> str:
        return self.name


class NoProtection(Scheme):
    """The unprotected baseline: plain golden computation."""
    name = "none"


class PlainGuard:
    """Unprotected computation of one node (golden semantics and golden hook sites)."""
    scheme = "none"

    def __init__(self, pm, node):
        self.gm, self.node = pm.gm, node
        self.mem = Memory(node, {"weight": node.weight, "bias": node.bias}) if spec(node.op).has_weights else None

    def compute(self, ins, raw, hook, rep, hooked: bool = True):
        """(y, True); ``hooked=False`` runs a duplicate: parameters read from memory as they are, no hook."""
        node, h = self.node, (hook if hooked else None)
        if spec(node.op).is_source:
            y = np.asarray(ins[0], dtype=np.int64)
        elif self.mem is not None:
            y = mac(node, ins[0], self.mem.read("weight", h), self.mem.read("bias", h))
            y = call_hook(h, node, "acc", y)
        else:
            y = eval_plain(self.gm, node, ins)
        return call_hook(h, node, "output", y), True

    def state(self, out_shape) -> list:
        return []

    def cost(self, pm) -> dict:
        return cost()


__all__ = ["Report", "COUNTERS", "Memory", "STATE_SITES", "Scheme", "NoProtection", "PlainGuard", "call_hook", "mac",
           "eval_plain", "checksum", "elementwise_ops", "numel", "base_macs", "cost"]

"""Sanity ABFT in exact integers: Hamming-indexed sanity neurons that detect, locate and correct faults in
conv/linear layers, repair persistent weight/bias faults, and spatial checksums for depthwise convolutions.

Implements "Maintaining Sanity" (DAC 2024; docs/architecture.md, "References") exactly in INT8, hardened for
faults that accumulate over time (patrol scrubbing, seals, escalation):

* **Sanity rows** (``code.py``): a layer with ``C`` outputs per group gets ``M = floor(log2 C) + 1`` partial
  sanity neurons and one total; a sanity neuron's weights are ``-sum`` of the covered weight rows and its bias
  ``-sum`` of the covered biases, so covered outputs + sanity output = 0. The rows and their biases carry seals
  (position-weighted checksums, ``seal.py``) verified before any repair reads them.
* **Exact checks, modulo 2**32.** Accumulators are int32 registers that wrap (the golden rule), so every check is
  ``wrap32(sum(covered outputs) + sanity) == 0``, an identity in Z/2**32 for every fault-free input. A single-bit
  flip of bit ``b < 32`` in one accumulator changes it by +-2**b, never 0 mod 2**32; a flipped weight bit changes
  one output by ``+-2**b * x_j`` with ``0 < |2**b x_j| < 2**31`` (unless ``x_j = 0``, when the output is
  untouched); a flipped bias bit by +-2**b. The failing partials spell ``i + 1`` in binary: located.
* **Correction.** The located output becomes ``y_i - r`` (``r`` = total residual); the weight and bias memory is
  then scrubbed with the same code (``code.scrub``), so a persistent memory fault is repaired and stays repaired.
  A residual pattern that no single fault explains is reported uncorrectable and nothing is changed; the
  executor retries and finally escalates (reloads the layer from its trusted image, ``patrol.py``).
* **Lazy location** (beyond the reference): the fault-free path computes two checks instead of all ``M + 1``
  neurons per pixel: the total sanity neuron per pixel (``G * K * P`` MACs) and a layer-wide check on the sums
  ``sum_p y[o, p]`` (``layerwide.py``: one position-weighted row checked exactly, ``G * K`` MACs on box sums of
  the input, or the ``M`` partial rows mod 2**32 where accumulators may wrap; fault site ``sanity_spatial``).
  The per-pixel total alone passed a cancelling pair +e / -e in two channels of one pixel (two accumulators, or
  two weights of one input column); the layer-wide check sees it. On an alarm all ``M + 1`` neurons are computed
  per pixel (the eager cost, fault path only). ``lazy=False`` (the reference's eager mode) computes all ``M + 1``
  per pixel every time; it sees every pair of faults in one pixel.
* **Faults in the sanity neurons** (their rows, biases, seals, accumulators) are recognised: on any alarm the
  rows are verified against their seals, the sanity accumulators recomputed; an alarm that disappears was the
  protection's own fault and no output is touched.
* **Depthwise / grouped convs with one output per group**: ``spatial.SpatialSanity``.
* **Patrol**: every guard here is ``patrol.Patrolled`` — ``ProtectedModel`` scrubs ``k`` codewords of the
  parameter memory between inferences.
"""
from __future__ import annotations

import numpy as np

from ..golden import wrap32
from ..models.ops import spec
from .base import Memory, Report, Scheme, call_hook, cost, mac
from .code import (DATA, OK, SANITY, UNCORRECTABLE, build_rows, hamming_cover, locate, n_partials, row_width,
                   sanity_seals, scrub, storage_bits)
from .layerwide import LayerCheck
from .patrol import Patrolled
from .spatial import SpatialSanity, box_sums


def _geometry(node):
    """(groups G, outputs per group C, weight words per output K) of a conv/linear GNode."""
    o = node.weight.shape[0]
    g = node.attrs.get("groups", 1) if spec(node.op).spatial else 1
    return g, o // g, int(np.prod(node.weight.shape[1:]))


class SanityLayer(Patrolled):
    """A conv (with > 1 output per group) or linear layer guarded by Hamming-indexed sanity neurons.

    Memory (``self.mem``): ``weight`` (O, C/g, kh, kw) | (O, F) int8, ``bias`` (O,) int32, ``sanity_w``
    (G, M+1, K) int16/int32, ``sanity_b`` (G, M+1) int32, ``sanity_sum`` (G, 2, 4) int64 seals, and in lazy
    weighted mode the layer-wide row ``sanity_wx`` (G, K) / ``sanity_bx`` (G,). ``run`` reads them through the
    fault hook (a fault delivered at a read stays in memory until scrubbed). ``xmax``: bound of |input|."""

    scheme = "sanity"

    def __init__(self, node, lazy: bool = True, xmax: int = 256):
        self.node = node
        self.lazy = lazy
        self.G, self.C, self.K = _geometry(node)
        self.M = n_partials(self.C)
        self.cover = hamming_cover(self.C)
        w3, b2 = node.weight.reshape(self.G, self.C, self.K), node.bias.reshape(self.G, self.C)
        self.check = LayerCheck(node, self.G, self.C, self.K, self.M, self.cover, xmax) if lazy else None
        rows, sb = build_rows(w3, b2)
        self.mem = Memory(node, {"weight": node.weight, "bias": node.bias, "sanity_w": rows, "sanity_b": sb,
                                 "sanity_sum": sanity_seals(rows, sb),
                                 **(self.check.derived(w3, b2) if self.check else {})})
        self.width = row_width(self.C)
        self.bits = storage_bits(self.C)

    # ------------------------------------------------------------------ geometry helpers
    def _filters(self, w3: np.ndarray, extra: np.ndarray) -> np.ndarray:
        """Per-group concatenation [W_g; extra_g] -> the weight tensor of one (grouped) MAC pass."""
        ext = np.concatenate([w3, extra], axis=1)                   # (G, C + e, K)
        return ext.reshape((self.G * ext.shape[1],) + tuple(self.node.weight.shape[1:]))

    def _split(self, yext: np.ndarray, e: int):
        """(N, G*(C+e), *sp) accumulators -> outputs (N, O, *sp) and sanity accumulators (N, G, e, *sp)."""
        n, sp = yext.shape[0], yext.shape[2:]
        yg = yext.reshape((n, self.G, self.C + e) + sp)
        y = np.ascontiguousarray(yg[:, :, :self.C]).reshape((n, self.G * self.C) + sp)
        return y, np.ascontiguousarray(yg[:, :, self.C:])

    def sanity_acc_shape(self, out_shape) -> tuple:
        """Per-image shape of the fast-path sanity accumulators (the ``sanity_acc`` fault site)."""
        e = 1 if self.check else self.M + 1
        return (self.G * e,) + tuple(out_shape[2:])

    def residuals(self, y: np.ndarray, s: np.ndarray, rows_sel=None) -> np.ndarray:
        """wrap32(cover @ y + s) -> (N, G, R, *sp); ``rows_sel`` picks cover rows (default: all M+1)."""
        n, sp = y.shape[0], y.shape[2:]
        cov = self.cover if rows_sel is None else self.cover[rows_sel]
        yg = y.reshape((n, self.G, self.C) + sp)
        return wrap32(np.einsum("rc,ngc...->ngr...", cov, yg) + s)

    # ------------------------------------------------------------------ guard interface (ProtectedModel)
    def compute(self, ins, raw, hook, rep):
        return self.run(ins[0], hook, rep)

    def state(self, out_shape) -> list:
        """Fault sites of this guard's own state: (site, per-image shape, bits, signed, batched)."""
        st = [("sanity_w", tuple(self.mem.arrays["sanity_w"].shape), self.bits, True, False),
              ("sanity_b", tuple(self.mem.arrays["sanity_b"].shape), 32, True, False),
              ("sanity_sum", tuple(self.mem.arrays["sanity_sum"].shape), 64, True, False),
              ("sanity_acc", self.sanity_acc_shape(out_shape), 32, True, True)]
        return st + (self.check.state() if self.check else [])

    def cost(self, pm) -> dict:
        """Per image: sanity MACs (lazy: the per-pixel total + the layer-wide check), check adds, row and seal
        memory; the eager per-pixel cost on an alarm."""
        out = pm.shapes[self.node.name]
        p = int(np.prod(out[2:])) if len(out) > 2 else 1
        rows = 1 if self.check else self.M + 1
        cover_adds = int(self.cover[-1:].sum() if self.check else self.cover.sum())
        lw = self.check.cost(pm) if self.check else {"macs": 0, "adds": 0, "mem_bits": 0}
        return cost(macs=self.G * rows * self.K * p + lw["macs"], adds=self.G * (cover_adds + rows) * p + lw["adds"],
                    mem_bits=self.G * ((self.M + 1) * (self.K * self.bits + 32) + 2 * 4 * 64) + lw["mem_bits"],
                    fault_path_macs=self.G * (self.M + 1) * self.K * p)

    # ------------------------------------------------------------------ execution
    def run(self, x: np.ndarray, hook=None, report: Report | None = None) -> tuple[np.ndarray, bool]:
        """Protected accumulators of the layer for input ``x``; returns (y (N, O, ...), ok). ``ok`` is False
        when a detected fault could not be corrected (the caller may roll back, recompute, escalate)."""
        node, rep = self.node, (report if report is not None else Report())
        w = self.mem.read("weight", hook)
        b = self.mem.read("bias", hook)
        rows = self.mem.read("sanity_w", hook)
        sb = self.mem.read("sanity_b", hook)
        self.mem.read("sanity_sum", hook)                   # resident in memory (read by scrubs only)
        w3, b2 = w.reshape(self.G, self.C, self.K), b.reshape(self.G, self.C)
        sel = [self.M] if self.check else list(range(self.M + 1))
        e = len(sel)
        yext = mac(node, x, self._filters(w3, rows[:, sel]), np.concatenate([b2, sb[:, sel]], 1).reshape(-1),
                   groups=self.G)
        y, s = self._split(yext, e)
        y = call_hook(hook, node, "acc", y)
        y = call_hook(hook, node, "output", y)
        n, sp = y.shape[0], y.shape[2:]
        s = call_hook(hook, node, "sanity_acc", s.reshape((n, self.G * e) + sp)).reshape(s.shape)
        r = self.residuals(y, s, sel)
        fired = bool(r.any())
        if self.check:
            for site in self.check.derived_sites:
                self.mem.read(site, hook)
            hs = call_hook(hook, node, "sanity_spatial", self.check.sums(x, self.mem.arrays, sp))
            fired |= bool(self.check.residual(y, hs).any())
        if not fired:
            return y, True
        # ---------------------------------------------------------------- fault path
        rep.detected += 1
        flagged = int(np.any(r != 0, axis=2).sum())
        rep.note(node.name, self.scheme, "detected", pixels=flagged)
        y = y.copy()
        return self._correct(x, y, rep)

    def _correct(self, x, y, rep: Report) -> tuple[np.ndarray, bool]:
        node, mem = self.node, self.mem
        nrep, unc, log = scrub(mem["weight"].reshape(self.G, self.C, self.K), mem["bias"].reshape(self.G, self.C),
                               mem["sanity_w"], mem["sanity_b"], mem["sanity_sum"])
        if nrep:
            rep.repaired += nrep
            rep.note(node.name, self.scheme, "repaired", words=log)
        if unc:
            rep.note(node.name, self.scheme, "uncorrectable", reason="parameter memory", columns=unc)
            return y, False
        if self.check:                  # the derived layer-wide row, rebuilt from the verified weights
            _, nd, dlog = self.check.rebuild(mem.arrays)
            if nd:
                rep.repaired += nd
                rep.note(node.name, self.scheme, "repaired", words=dlog)
        # recompute every sanity neuron (fresh accumulators from verified rows), then locate per pixel
        s = mac(node, x, self._filters(np.zeros((self.G, 0, self.K), np.int64), mem["sanity_w"]),
                mem["sanity_b"].reshape(-1), groups=self.G)
        s = s.reshape((y.shape[0], self.G, self.M + 1) + y.shape[2:])
        r = np.moveaxis(self.residuals(y, s), 2, -1)                   # (N, G, *sp, M+1)
        status, idx = locate(r, self.C)
        bad = (status == UNCORRECTABLE) | (status == SANITY)           # after the recompute: no sanity excuse
        if bad.any():
            rep.note(node.name, self.scheme, "uncorrectable", reason="residual pattern", pixels=int(bad.sum()))
            return y, False
        pos = np.nonzero(status == DATA)
        if len(pos[0]):
            ch = pos[1] * self.C + idx[pos]
            at = (pos[0], ch) + tuple(pos[2:])
            y[at] = wrap32(y[at] - r[pos][:, -1])
            rep.located += len(ch)
            rep.corrected += len(ch)
            rep.note(node.name, self.scheme, "corrected", elements=len(ch), channels=sorted(set(ch.tolist())))
        if self.check and self.check.residual(y, self.check.sums(x, mem.arrays, y.shape[2:])).any():
            rep.note(node.name, self.scheme, "uncorrectable", reason="layer-wide check still failing")
            return y, False
        if not len(pos[0]):             # the alarm came from the sanity neurons' own state: outputs untouched
            rep.protection_faults += 1
            rep.note(node.name, self.scheme, "sanity fault recognised")
        return y, True


class Sanity(Scheme):
    """Scheme class: sanity neurons on every conv/linear (spatial checksums on depthwise convs).

    ``lazy=True``: per-pixel total + layer-wide check on the fault-free path (partials after an alarm)."""
    name = "sanity"
    priority = 30

    def __init__(self, lazy: bool = True):
        self.lazy = lazy

    def guard(self, pm, node):
        if not spec(node.op).has_weights:
            return None
        return make_sanity(node, self.lazy, input_bound(pm.gm, pm.shapes, node.inputs[0]))

    def __repr__(self) -> str:
        return "sanity" if self.lazy else "sanity:eager"


def input_bound(gm, shapes, name: str) -> int:
    """A bound on |value| of node ``name``'s output (2**bits of an activation, a sum's count times its input's)."""
    n = gm.by_name[name]
    if spec(n.op).is_source or spec(n.op).requant:
        return 2 ** n.bits
    combine = {"maxpool": lambda u: u[0], "flatten": lambda u: u[0], "concat": max, "add": sum,
               "gsum": lambda u: u[0] * int(np.prod(shapes[n.inputs[0]][2:]))}
    if n.op not in combine:
        return 2 ** 31                  # e.g. raw accumulators: no useful bound
    return combine[n.op]([input_bound(gm, shapes, i) for i in n.inputs])


def make_sanity(node, lazy: bool = True, xmax: int = 256):
    """The sanity guard of a conv/linear node: Hamming sanity neurons, or spatial checksums for depthwise.
    ``xmax``: a bound on |input| (decides whether the lazy layer-wide check may run exactly in int64)."""
    g, c, _ = _geometry(node)
    if spec(node.op).spatial and c == 1 and g > 1:
        return SpatialSanity(node, lazy)
    return SanityLayer(node, lazy, xmax)


__all__ = ["OK", "DATA", "SANITY", "UNCORRECTABLE", "n_partials", "hamming_cover", "locate", "row_width",
           "storage_bits", "build_rows", "sanity_seals", "scrub", "box_sums", "SanityLayer", "SpatialSanity",
           "make_sanity", "input_bound", "Sanity"]

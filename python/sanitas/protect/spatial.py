"""Spatial sanity checksums: box sums of a conv's input, and the guard of depthwise convs (one output per group).

* **Box sums** (``box_sums``): ``B[n, c, i, j] = sum over output pixels of x_pad[n, c, ho*s + i*d, wo*s + j*d]``,
  computed with integral images (one per stride residue class of the padded input, 4 lookups per tap), exact.
  For any conv, ``sum_p y[o, p] = W_o . B_g(o) + P * b_o`` modulo 2**32 (``P`` output pixels): a layer-wide
  checksum of one output channel costs ``K`` MACs per image instead of ``K * P``. ``SanityLayer`` (lazy) uses it
  for its layer-wide Hamming check; ``SpatialSanity`` for its per-channel check.
* **Depthwise convs** (``SpatialSanity``): a cross-channel checksum would cost as much as the layer, so each
  channel is checked spatially, ``sum_p y[c, p] == w_c . B_c + P * b_c`` mod 2**32: ``O * (K + 1)`` MACs and
  ``~2 * C * Hp * Wp`` adds per image. A single flip of bit b < 32 in an accumulator changes its channel's sum by
  +-2**b != 0 mod 2**32: always detected; a failing channel is recomputed from its verified input (``P * K``
  MACs, fault path only). The spatial sum is computed from the same filter and bias, so it cannot see their
  faults: the filter and bias memories carry seals (``param_sum`` (2, 4), ``seal.py``) checked before every use
  (``3 * (O * K + O)`` adds, no MACs). The position-weighted seal sees every cancelling pair (two filter words
  +e / -e, anywhere), which the sum against the code's total row did not. On a mismatch the memory is scrubbed
  with the Hamming code over the channels' filters (``code.py``; sanity rows ``sanity_w`` (1, M+1, K), biases
  ``sanity_b`` (1, M+1), their own seals ``sanity_sum``); what the code cannot repair is escalated.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..golden import wrap32
from . import seal as sl
from .base import Memory, Report, call_hook, cost, mac
from .code import build_rows, n_partials, row_width, sanity_seals, scrub, storage_bits
from .patrol import Patrolled


def box_sums(x: np.ndarray, node, out_hw) -> np.ndarray:
    """B[n, c, i, j] = sum over output pixels (ho, wo) of x_pad[n, c, ho*s + i*d, wo*s + j*d]: (N, C, kh, kw).

    One integral image per stride residue class (a, b) of the padded input; each (i, j) is a rectangle of its
    class: 4 lookups. Exact int64."""
    a = node.attrs
    s, p, d = a["stride"], a["padding"], a["dilation"]
    kh, kw = node.weight.shape[2:]
    ho, wo = out_hw
    x = np.asarray(x, dtype=np.int64)
    if p:                                   # zero padding (np.pad is several times slower on these shapes)
        xp = np.zeros(x.shape[:2] + (x.shape[2] + 2 * p, x.shape[3] + 2 * p), dtype=np.int64)
        xp[:, :, p:p + x.shape[2], p:p + x.shape[3]] = x
        x = xp
    n, c = x.shape[:2]
    integral = {}
    out = np.empty((n, c, kh, kw), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            ra, r0 = divmod(i * d, s)[::-1]
            ca, c0 = divmod(j * d, s)[::-1]
            key = (ra, ca)
            if key not in integral:
                sub = x[:, :, ra::s, ca::s]
                ii = np.zeros((n, c, sub.shape[2] + 1, sub.shape[3] + 1), dtype=np.int64)
                ii[:, :, 1:, 1:] = sub.cumsum(2).cumsum(3)
                integral[key] = ii
            ii = integral[key]
            out[:, :, i, j] = (ii[:, :, r0 + ho, c0 + wo] - ii[:, :, r0, c0 + wo]
                               - ii[:, :, r0 + ho, c0] + ii[:, :, r0, c0])
    return out


def box_adds(node, in_shape) -> int:
    """Adds per image of ``box_sums``: 2 per padded input element (integral images) + 3 per (channel, tap)."""
    pad = node.attrs["padding"]
    kh, kw = node.weight.shape[2:]
    return 2 * in_shape[1] * (in_shape[2] + 2 * pad) * (in_shape[3] + 2 * pad) + 3 * in_shape[1] * kh * kw


class SpatialSanity(Patrolled):
    """A depthwise conv (one output per group) guarded by per-channel spatial checksums.

    Memory: ``weight`` (O, C/g, kh, kw), ``bias`` (O,), their seals ``param_sum`` (2, 4), and a Hamming code over
    the O channel filters (``sanity_w`` (1, M+1, K), ``sanity_b`` (1, M+1), seals ``sanity_sum`` (1, 2, 4)). Every
    inference first verifies the filter and bias memory against their seals, scrubs on a mismatch, then checks
    each channel spatially."""

    scheme = "sanity"
    extra_lines = 1                 # patrol: the seals of the filter and bias memory

    def __init__(self, node, lazy: bool = True):
        self.node = node
        self.lazy = lazy            # spatial checks have no eager/lazy split; kept for a uniform interface
        o = node.weight.shape[0]
        self.O = o
        self.K = int(np.prod(node.weight.shape[1:]))
        self.G, self.C = 1, o       # the memory code treats the O filters as one group of O outputs
        assert node.attrs.get("groups", 1) == o, "SpatialSanity protects convs with one output per group"
        rows, sb = build_rows(node.weight.reshape(1, o, self.K), node.bias.reshape(1, o))
        self.mem = Memory(node, {"weight": node.weight, "bias": node.bias, "sanity_w": rows, "sanity_b": sb,
                                 "sanity_sum": sanity_seals(rows, sb),
                                 "param_sum": np.stack([sl.seal(node.weight), sl.seal(node.bias)])})
        self.M = n_partials(o)
        self.bits = storage_bits(o)
        self.width = row_width(o)

    def sanity_acc_shape(self, out_shape) -> tuple:
        return (self.O,)

    def compute(self, ins, raw, hook, rep):
        return self.run(ins[0], hook, rep)

    def state(self, out_shape) -> list:
        """Fault sites of this guard's own state: (site, per-image shape, bits, signed, batched)."""
        return [("sanity_w", tuple(self.mem.arrays["sanity_w"].shape), self.bits, True, False),
                ("sanity_b", tuple(self.mem.arrays["sanity_b"].shape), 32, True, False),
                ("sanity_sum", tuple(self.mem.arrays["sanity_sum"].shape), 64, True, False),
                ("param_sum", tuple(self.mem.arrays["param_sum"].shape), 64, True, False),
                ("sanity_acc", self.sanity_acc_shape(out_shape), 32, True, True)]

    def cost(self, pm) -> dict:
        """Per image: O*(K+1) MACs for the spatial checksums; box sums, output sums, the sealed parameter check
        (3 adds per filter and bias word); a failing channel costs P*K MACs."""
        node = self.node
        out, src = pm.shapes[node.name], pm.shapes[node.inputs[0]]
        p = int(np.prod(out[2:]))
        adds = box_adds(node, src) + self.O * p + self.O * self.K + 3 * (self.O * self.K + self.O) + self.O
        return cost(macs=self.O * (self.K + 1), adds=adds,
                    mem_bits=(self.M + 1) * (self.K * self.bits + 32) + 3 * 4 * 64, fault_path_macs=p * self.K)

    def expected(self, x, w, b, out_hw) -> np.ndarray:
        """Spatial checksums wrap32(w_c . B_c + P * b_c): (N, O) — O * (K + 1) MACs per image."""
        bx = box_sums(x, self.node, out_hw)                               # (N, C_in, kh, kw)
        n = bx.shape[0]
        bg = bx.reshape(n, self.O, self.K)                                # (N, G = O, K)
        p = out_hw[0] * out_hw[1]
        return wrap32(np.einsum("ngk,gk->ng", bg, w.reshape(self.O, self.K)) + p * b[None, :])

    def _channel(self, x, w, b, c):
        """Recompute output channel c alone: (N, Ho, Wo)."""
        cg = w.shape[1]
        a = dict(self.node.attrs, groups=1)
        xs = x[:, c * cg:(c + 1) * cg]
        one = SimpleNamespace(op="conv", attrs=a)
        return mac(one, xs, w[c:c + 1], b[c:c + 1])[:, 0]

    def _params_ok(self) -> bool:
        ps = self.mem.arrays["param_sum"]
        return (sl.check(self.mem.arrays["weight"], ps[0]).status == sl.OK
                and sl.check(self.mem.arrays["bias"], ps[1]).status == sl.OK)

    def run(self, x: np.ndarray, hook=None, report: Report | None = None) -> tuple[np.ndarray, bool]:
        node, rep = self.node, (report if report is not None else Report())
        ok = True
        for site in ("weight", "bias", "sanity_w", "sanity_b", "sanity_sum", "param_sum"):
            self.mem.read(site, hook)
        if not self._params_ok():          # verified before use: the spatial sum cannot see w, b faults
            rep.detected += 1
            rep.note(node.name, self.scheme, "detected", params=True)
            ok = self._scrub(rep)
        w, b = self.mem.arrays["weight"], self.mem.arrays["bias"]
        y = mac(node, x, w, b)
        y = call_hook(hook, node, "acc", y)
        y = call_hook(hook, node, "output", y)
        hw = y.shape[2:]
        e = call_hook(hook, node, "sanity_acc", self.expected(x, w, b, hw))
        r = wrap32(y.sum(axis=(2, 3)) - e)                                 # (N, O)
        if not r.any():
            return y, ok
        rep.detected += 1
        bad = sorted({int(c) for _, c in np.argwhere(r != 0)})
        rep.note(node.name, self.scheme, "detected", channels=bad)
        y = y.copy()
        e2 = self.expected(x, w, b, hw)                                    # fresh checksums (fault path)
        changed = 0
        for c in bad:
            yc = self._channel(x, w, b, c)
            changed += int((yc != y[:, c]).sum())
            y[:, c] = yc
        r = wrap32(y.sum(axis=(2, 3)) - e2)
        if r.any():
            ok = False
            rep.note(node.name, self.scheme, "uncorrectable", reason="channel still failing after recompute")
        rep.located += len(bad)
        if changed:
            rep.corrected += changed
            rep.note(node.name, self.scheme, "corrected", elements=changed, channels=bad)
        elif ok:
            rep.protection_faults += 1
            rep.note(node.name, self.scheme, "sanity fault recognised")
        return y, ok

    def _repair_params(self) -> tuple[int, int, list]:
        """Scrub with the Hamming code (sanity memory verified first), then re-check the parameter seals and
        rebuild a faulty seal word. Returns (words repaired, uncorrectable, log)."""
        self.mem.dirty = True
        nrep, unc, log = scrub(*self._views())
        if unc:
            return nrep, unc, log
        ps = self.mem.arrays["param_sum"]
        for j, site in enumerate(("weight", "bias")):
            v = sl.check(self.mem.arrays[site], ps[j])
            if v.status == sl.SEAL:
                ps[j, v.pos] = v.err
                log.append(("param_sum", 0, j, v.pos))
                nrep += 1
            elif v.status != sl.OK:  # the code found nothing to repair but the seal disagrees: >= 2 faults
                unc += 1
        return nrep, unc, log

    def _scrub(self, rep: Report) -> bool:
        nrep, unc, log = self._repair_params()
        if nrep:
            rep.repaired += nrep
            rep.note(self.node.name, self.scheme, "repaired", words=log)
        if unc:
            rep.note(self.node.name, self.scheme, "uncorrectable", reason="parameter memory", columns=unc)
        return not unc

    def _patrol_extra(self, j: int, rep: Report) -> tuple[int, int, int, list]:
        """Patrol line: the parameter seals (O * K + O words + 8 seal words)."""
        words = self.O * self.K + self.O + 8
        if self._params_ok():
            return words, 0, 0, []
        return (words,) + self._repair_params()


__all__ = ["box_sums", "box_adds", "SpatialSanity"]

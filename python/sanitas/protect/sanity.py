"""Sanity ABFT in exact integers: Hamming-indexed sanity neurons that detect, locate and correct faults in
conv/linear layers, repair persistent weight/bias faults, and spatial checksums for depthwise convolutions.

Implements "Maintaining Sanity" (DAC 2024; docs/architecture.md, "References") exactly in INT8:

* **Sanity rows.** A layer with ``C`` outputs per group gets ``M = floor(log2 C) + 1`` partial sanity neurons and
  one total: partial ``m`` covers the outputs ``i`` (0-based) with bit ``m`` of ``i + 1`` set, the total covers
  all (``hamming_cover``). A sanity neuron's weights are ``-sum`` of the covered weight rows and its bias
  ``-sum`` of the covered biases, so covered outputs + sanity output = 0. Rows are exact integers of
  ``bitlen(127 * C) + 1`` bits (stored as int16 when that is <= 16, i.e. C <= 258, else int32); biases are kept
  modulo 2**32 (int32).
* **Exact checks, modulo 2**32.** Accumulators are int32 registers that wrap (the golden rule), so every check is
  ``wrap32(sum(covered outputs) + sanity) == 0``, an identity in the ring Z/2**32: it holds for every fault-free
  input, whatever the magnitudes (no overflow bound is needed), and a single-bit flip of bit ``b < 32`` in one
  accumulator changes it by +-2**b, never 0 mod 2**32. A flipped weight bit changes one output by
  ``+-2**b * x_j`` with ``0 < |2**b x_j| <= 128 * 255 < 2**31`` (non-zero mod 2**32 unless ``x_j = 0``, when the
  output is untouched); a flipped bias bit by +-2**b. So every single fault that changes an output is detected,
  and the failing partials spell ``i + 1`` in binary: located. Conv layers are checked per output pixel (the
  sanity rows are extra filters of the same conv), grouped convs per group.
* **Correction.** The located output becomes ``y_i - r`` (``r`` = total residual), i.e. ``-(sanity + sum of the
  other outputs)``. The weight rows and biases are then scrubbed with the same code (``scrub``: the
  rows' own Hamming residuals locate a faulty weight, bias or sanity-row word and rebuild it), so a persistent
  memory fault is repaired and stays repaired. A one-word checksum of the sanity rows (and one of the sanity
  biases) per group (``sanity_sum``) tells a faulty sanity word from two weight faults whose errors cancel in
  the same column — without it the scrub would rebuild the row from the corrupted weights.
* **Faults in the sanity neurons** (their rows, biases, accumulators) are recognised: on any alarm the rows are
  scrubbed and the sanity accumulators recomputed; an alarm that disappears was the protection's own fault and no
  output is touched. A residual pattern that no single output fault explains (double faults) is reported
  uncorrectable and nothing is changed — never a silent miscorrection where the code can tell.
* **Lazy location** (beyond the reference): the fault-free path computes only the total sanity neuron
  (``+1`` output per group); the partial neurons run only after the total fails. ``lazy=False`` computes all
  ``M + 1`` every time (the reference's eager mode). The price: two faults in one pixel whose errors cancel
  exactly in the total (e.g. +2**b in one channel, -2**b in another) pass the lazy check; eager location sees
  them in the partials and reports them uncorrectable. Single faults are handled identically by both modes.
* **Depthwise / grouped convs with one output per group** (``SpatialSanity``): a cross-channel checksum would cost
  as much as the layer, so each channel is checked spatially: ``sum_p y[c, p] = w_c . B_c + P * b_c`` where
  ``B_c[k]`` are box sums of the (padded) input over the output grid, computed with integral images (one per
  stride residue class): ``O * (C/g * kh * kw + 1)`` MACs and ``~2 * C * Hp * Wp`` adds per image. A failing
  channel is recomputed from its verified input (``P * K`` MACs, only on the fault path). The spatial sum is
  computed from the same filter and bias, so it cannot see their faults: the parameter memory is checked
  against the total row of a Hamming code over the channels' filters before every use (``O * K`` adds, no
  MACs) and scrubbed with that code on a mismatch. A single flip of bit b in an accumulator changes its
  channel's spatial sum by +-2**b != 0 mod 2**32: always detected.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..golden import wrap32
from ..models.ops import spec
from .base import Memory, Report, Scheme, call_hook, cost, mac

OK, DATA, SANITY, UNCORRECTABLE = 0, 1, 2, 3   # ``locate`` verdicts


def n_partials(c: int) -> int:
    """Number of partial sanity neurons for ``c`` outputs: floor(log2 c) + 1."""
    return int(c).bit_length()


def hamming_cover(c: int) -> np.ndarray:
    """(M + 1, c) int64 0/1: row m < M covers outputs i with bit m of (i + 1) set; row M (total) covers all."""
    m = n_partials(c)
    i = np.arange(1, c + 1)
    cov = ((i[None, :] >> np.arange(m)[:, None]) & 1).astype(np.int64)
    return np.vstack([cov, np.ones((1, c), dtype=np.int64)])


def locate(r: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Verdict per residual vector ``r`` (..., M + 1) (row M = total) for ``c`` protected outputs.

    Returns (status, idx): ``DATA`` with the faulty output index (every failing partial carries the total's
    residual and the failing set spells idx + 1), ``SANITY`` with the faulty sanity row (total alone failing ->
    M; exactly one partial failing with a zero total -> that partial), ``OK``, or ``UNCORRECTABLE``."""
    r = np.asarray(r, dtype=np.int64)
    m = r.shape[-1] - 1
    rt = r[..., m]
    part = r[..., :m]
    fail = part != 0
    nfail = fail.sum(-1)
    idx = (fail * (np.int64(1) << np.arange(m, dtype=np.int64))).sum(-1) - 1
    consistent = np.all(~fail | (part == rt[..., None]), axis=-1)
    status = np.full(rt.shape, UNCORRECTABLE, dtype=np.int64)
    status[(rt == 0) & (nfail == 0)] = OK
    data = (rt != 0) & consistent & (idx >= 0) & (idx < c)
    status[data] = DATA
    s_tot = (rt != 0) & (nfail == 0)
    s_part = (rt == 0) & (nfail == 1)
    status[s_tot | s_part] = SANITY
    idx = np.where(s_tot, m, np.where(s_part, np.argmax(fail, axis=-1) if m else 0, idx))
    return status, idx


def row_width(c: int) -> int:
    """Exact bit width of a sanity row word for ``c`` outputs (|value| <= 127 * c, signed)."""
    return (127 * c).bit_length() + 1


def storage_bits(c: int) -> int:
    """Bits of the memory word holding a sanity row value: int16 when the exact width fits, else int32."""
    return 16 if row_width(c) <= 16 else 32


def build_rows(w3: np.ndarray, b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sanity rows of weights (G, C, K) and biases (G, C): rows (G, M+1, K) exact, biases (G, M+1) mod 2**32."""
    cov = hamming_cover(w3.shape[1])
    rows = -np.einsum("rc,gck->grk", cov, np.asarray(w3, dtype=np.int64))
    bias = wrap32(-np.einsum("rc,gc->gr", cov, np.asarray(b2, dtype=np.int64)))
    return rows, bias


def row_sums(rows: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(G, 2) int64 checksums of the sanity memory itself: sum of each group's rows, sum of its sanity biases."""
    return np.stack([rows.reshape(rows.shape[0], -1).sum(1), bias.sum(1)], axis=1)


def scrub(w3: np.ndarray, b2: np.ndarray, rows: np.ndarray, bias: np.ndarray, sums: np.ndarray | None = None,
          wlo: int = -128, whi: int = 127) -> tuple[int, int, list]:
    """Check the parameter memory against its sanity rows and repair single faulty words in place.

    ``w3`` (G, C, K) weights, ``b2`` (G, C) biases, ``rows`` (G, M+1, K), ``bias`` (G, M+1) — views into the
    memory. Weight residuals are exact (``cover @ W + rows``), bias residuals mod 2**32. Per column, a
    ``DATA`` verdict rebuilds the weight/bias word, a ``SANITY`` verdict rebuilds the sanity-row word from the
    weights — but only if ``sums`` (``row_sums`` of the pristine sanity memory) confirm that the sanity memory
    changed: two weight faults in one column with cancelling errors produce the same residual pattern as one
    sanity-row fault, and rebuilding the row from corrupted weights would bless the corruption. Returns
    (words repaired, columns uncorrectable, [(kind, group, row, column)])."""
    c = w3.shape[1]
    cov = hamming_cover(c)
    rep, unc, log = 0, 0, []
    rw = np.einsum("rc,gck->gkr", cov, w3) + np.moveaxis(rows, 1, 2)        # (G, K, M+1)
    rb = wrap32(np.einsum("rc,gc->gr", cov, b2) + bias)                      # (G, M+1)
    cur = row_sums(rows, bias) if sums is not None else None
    for kind, res in (("weight", rw), ("bias", rb[:, None, :])):
        st, idx = locate(res, c)
        for g, k in zip(*np.nonzero(st != OK)):
            s, i, rt = int(st[g, k]), int(idx[g, k]), int(res[g, k, -1])
            if s == DATA:
                if kind == "weight":
                    v = int(w3[g, i, k]) - rt
                    if not wlo <= v <= whi:
                        unc += 1
                        continue
                    w3[g, i, k] = v
                else:
                    b2[g, i] = int(wrap32(np.int64(int(b2[g, i]) - rt)))
                log.append((kind, int(g), i, int(k)))
            elif s == SANITY:
                j = 0 if kind == "weight" else 1
                if cur is not None and cur[g, j] == sums[g, j]:
                    unc += 1            # the sanity memory is intact: the pattern comes from >= 2 data faults
                    continue
                if kind == "weight":
                    rows[g, i, k] = -int(cov[i] @ w3[g, :, k])
                else:
                    bias[g, i] = int(wrap32(np.int64(-int(cov[i] @ b2[g]))))
                log.append(("sanity_w" if kind == "weight" else "sanity_b", int(g), i, int(k)))
            else:
                unc += 1
                continue
            rep += 1
    if sums is not None and not unc and not np.array_equal(row_sums(rows, bias), sums):
        unc += 1                        # the sanity memory still differs from what it was built as
    return rep, unc, log


def _geometry(node):
    """(groups G, outputs per group C, weight words per output K) of a conv/linear GNode."""
    o = node.weight.shape[0]
    g = node.attrs.get("groups", 1) if spec(node.op).spatial else 1
    return g, o // g, int(np.prod(node.weight.shape[1:]))


class SanityLayer:
    """A conv (with > 1 output per group) or linear layer guarded by Hamming-indexed sanity neurons.

    Memory (``self.mem``): ``weight`` (O, C/g, kh, kw) | (O, F) int8, ``bias`` (O,) int32, ``sanity_w``
    (G, M+1, K) int16/int32, ``sanity_b`` (G, M+1) int32. ``run`` reads them through the fault hook (a fault
    delivered at a read stays in memory until scrubbed)."""

    scheme = "sanity"

    def __init__(self, node, lazy: bool = True):
        self.node = node
        self.lazy = lazy
        self.G, self.C, self.K = _geometry(node)
        self.M = n_partials(self.C)
        self.cover = hamming_cover(self.C)
        rows, sb = build_rows(node.weight.reshape(self.G, self.C, self.K), node.bias.reshape(self.G, self.C))
        self.mem = Memory(node, {"weight": node.weight, "bias": node.bias, "sanity_w": rows, "sanity_b": sb,
                                 "sanity_sum": row_sums(rows, sb)})
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
        e = 1 if self.lazy else self.M + 1
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
        return [("sanity_w", tuple(self.mem["sanity_w"].shape), self.bits, True, False),
                ("sanity_b", tuple(self.mem["sanity_b"].shape), 32, True, False),
                ("sanity_sum", tuple(self.mem["sanity_sum"].shape), 64, True, False),
                ("sanity_acc", self.sanity_acc_shape(out_shape), 32, True, True)]

    def cost(self, pm) -> dict:
        """Per image: sanity MACs (total row only when lazy), check adds, row memory; eager cost on alarm."""
        out = pm.shapes[self.node.name]
        p = int(np.prod(out[2:])) if len(out) > 2 else 1
        rows = 1 if self.lazy else self.M + 1
        cover_adds = int(self.cover[-1:].sum() if self.lazy else self.cover.sum())
        return cost(macs=self.G * rows * self.K * p,
                    adds=self.G * (cover_adds + rows) * p,
                    mem_bits=self.G * ((self.M + 1) * (self.K * self.bits + 32) + 128),
                    fault_path_macs=self.G * (self.M + 1) * self.K * p)

    # ------------------------------------------------------------------ execution
    def run(self, x: np.ndarray, hook=None, report: Report | None = None) -> tuple[np.ndarray, bool]:
        """Protected accumulators of the layer for input ``x``; returns (y (N, O, ...), ok). ``ok`` is False
        when a detected fault could not be corrected (the caller may roll back and recompute)."""
        node, rep = self.node, (report if report is not None else Report())
        w = self.mem.read("weight", hook)
        b = self.mem.read("bias", hook)
        rows = self.mem.read("sanity_w", hook)
        sb = self.mem.read("sanity_b", hook)
        w3, b2 = w.reshape(self.G, self.C, self.K), b.reshape(self.G, self.C)
        sel = [self.M] if self.lazy else list(range(self.M + 1))
        e = len(sel)
        yext = mac(node, x, self._filters(w3, rows[:, sel]), np.concatenate([b2, sb[:, sel]], 1).reshape(-1),
                   groups=self.G)
        y, s = self._split(yext, e)
        y = call_hook(hook, node, "acc", y)
        y = call_hook(hook, node, "output", y)
        n, sp = y.shape[0], y.shape[2:]
        s = call_hook(hook, node, "sanity_acc", s.reshape((n, self.G * e) + sp)).reshape(s.shape)
        r = self.residuals(y, s, sel)
        if not r.any():
            return y, True
        # ---------------------------------------------------------------- fault path
        rep.detected += 1
        flagged = int(np.any(r != 0, axis=2).sum())
        rep.note(node.name, self.scheme, "detected", pixels=flagged)
        y = y.copy()
        return self._correct(x, y, rep, flagged, hook)

    def _correct(self, x, y, rep: Report, flagged: int, hook=None) -> tuple[np.ndarray, bool]:
        node, mem = self.node, self.mem
        mem.read("sanity_sum", hook)
        w3 = mem["weight"].reshape(self.G, self.C, self.K)
        b2 = mem["bias"].reshape(self.G, self.C)
        nrep, unc, log = scrub(w3, b2, mem["sanity_w"], mem["sanity_b"], mem["sanity_sum"])
        if nrep:
            rep.repaired += nrep
            rep.note(node.name, self.scheme, "repaired", words=log)
        if unc:
            rep.note(node.name, self.scheme, "uncorrectable", reason="parameter memory", columns=unc)
            return y, False
        # recompute every sanity neuron (fresh accumulators from scrubbed rows), then locate per pixel
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
        if not len(pos[0]):             # the alarm came from the sanity neurons' own state: outputs untouched
            rep.protection_faults += 1
            rep.note(node.name, self.scheme, "sanity fault recognised")
        return y, True


# ====================================================================================== depthwise: spatial
def box_sums(x: np.ndarray, node, out_hw) -> np.ndarray:
    """B[n, c, i, j] = sum over output pixels (ho, wo) of x_pad[n, c, ho*s + i*d, wo*s + j*d]: (N, C, kh, kw).

    One integral image per stride residue class (a, b) of the padded input; each (i, j) is a rectangle of its
    class: 4 lookups. Exact int64."""
    a = node.attrs
    s, p, d = a["stride"], a["padding"], a["dilation"]
    kh, kw = node.weight.shape[2:]
    ho, wo = out_hw
    x = np.asarray(x, dtype=np.int64)
    if p:
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
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


class SpatialSanity:
    """A depthwise conv (one output per group) guarded by per-channel spatial checksums.

    Memory: ``weight`` (O, C/g, kh, kw), ``bias`` (O,), and a Hamming code over the O channel filters
    (``sanity_w`` (1, M+1, K), ``sanity_b`` (1, M+1)). Every inference first checks the parameter memory
    against the code's total row (O*K + K adds, no MACs: the spatial checksum uses the same w, b and is blind
    to their faults), scrubs on a mismatch, then checks each channel spatially."""

    scheme = "sanity"

    def __init__(self, node, lazy: bool = True):
        self.node = node
        self.lazy = lazy            # spatial checks have no eager/lazy split; kept for a uniform interface
        self.G, self.C, self.K = _geometry(node)
        assert self.C == 1, "SpatialSanity protects convs with one output per group"
        self.O = node.weight.shape[0]
        rows, sb = build_rows(node.weight.reshape(1, self.O, self.K), node.bias.reshape(1, self.O))
        self.mem = Memory(node, {"weight": node.weight, "bias": node.bias, "sanity_w": rows, "sanity_b": sb,
                                 "sanity_sum": row_sums(rows, sb)})
        self.M = n_partials(self.O)
        self.bits = storage_bits(self.O)
        self.width = row_width(self.O)

    def sanity_acc_shape(self, out_shape) -> tuple:
        return (self.O,)

    compute = SanityLayer.compute
    state = SanityLayer.state

    def cost(self, pm) -> dict:
        """Per image: O*(K+1) MACs for the spatial checksums; integral-image box sums (2 adds per padded input
        element + 3 per (channel, tap)), output sums, the parameter check; a failing channel costs P*K MACs."""
        node = self.node
        out, src = pm.shapes[node.name], pm.shapes[node.inputs[0]]
        cin, p = src[1], int(np.prod(out[2:]))
        pad = node.attrs["padding"]
        kh, kw = node.weight.shape[2:]
        hp, wp = src[2] + 2 * pad, src[3] + 2 * pad
        adds = 2 * cin * hp * wp + 3 * cin * kh * kw + self.O * p + self.O * self.K + self.K + self.O + 1
        return cost(macs=self.O * (self.K + 1), adds=adds, mem_bits=(self.M + 1) * (self.K * self.bits + 32) + 128,
                    fault_path_macs=p * self.K)

    def expected(self, x, w, b, out_hw) -> np.ndarray:
        """Spatial checksums wrap32(w_c . B_c + P * b_c): (N, O) — O * (K + 1) MACs per image."""
        bx = box_sums(x, self.node, out_hw)                               # (N, C_in, kh, kw)
        n, cin = bx.shape[:2]
        cg = cin // self.G
        bg = bx.reshape(n, self.G, cg * bx.shape[2] * bx.shape[3])        # (N, G, K)
        wg = w.reshape(self.G, self.K)                                    # one filter per group
        p = out_hw[0] * out_hw[1]
        return wrap32(np.einsum("ngk,gk->ng", bg, wg) + p * b[None, :])

    def _channel(self, x, w, b, c):
        """Recompute output channel c alone: (N, Ho, Wo)."""
        cg = w.shape[1]
        a = dict(self.node.attrs, groups=1)
        xs = x[:, c * cg:(c + 1) * cg]
        one = SimpleNamespace(op="conv", attrs=a)
        return mac(one, xs, w[c:c + 1], b[c:c + 1])[:, 0]

    def run(self, x: np.ndarray, hook=None, report: Report | None = None) -> tuple[np.ndarray, bool]:
        node, rep = self.node, (report if report is not None else Report())
        ok = True
        w = self.mem.read("weight", hook)
        b = self.mem.read("bias", hook)
        rows = self.mem.read("sanity_w", hook)
        sb = self.mem.read("sanity_b", hook)
        # parameter check before use (the spatial sum is computed from the same w, b and cannot see their
        # faults): sum of all filters + total sanity row == 0 (exact), sum of biases + its checksum == 0 mod 2**32
        pw = int(w.sum()) + int(rows[0, self.M].sum())
        pb = int(wrap32(np.int64(int(b.sum()) + int(sb[0, self.M]))))
        if pw or pb:
            rep.detected += 1
            rep.note(node.name, self.scheme, "detected", params=True)
            ok = self._scrub(rep, hook)
            w, b = self.mem["weight"], self.mem["bias"]
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

    def _scrub(self, rep: Report, hook=None) -> bool:
        self.mem.read("sanity_sum", hook)
        nrep, unc, log = scrub(self.mem["weight"].reshape(1, self.O, self.K), self.mem["bias"].reshape(1, self.O),
                               self.mem["sanity_w"], self.mem["sanity_b"], self.mem["sanity_sum"])
        if nrep:
            rep.repaired += nrep
            rep.note(self.node.name, self.scheme, "repaired", words=log)
        if unc:
            rep.note(self.node.name, self.scheme, "uncorrectable", reason="parameter memory", columns=unc)
        return not unc


class Sanity(Scheme):
    """Scheme class: sanity neurons on every conv/linear (spatial checksums on depthwise convs).

    ``lazy=True``: only the total sanity neuron on the fault-free path (partials after an alarm)."""
    name = "sanity"
    priority = 30

    def __init__(self, lazy: bool = True):
        self.lazy = lazy

    def guard(self, pm, node):
        return make_sanity(node, self.lazy) if spec(node.op).has_weights else None

    def __repr__(self) -> str:
        return "sanity" if self.lazy else "sanity:eager"


def make_sanity(node, lazy: bool = True):
    """The sanity guard of a conv/linear node: Hamming sanity neurons, or spatial checksums for depthwise."""
    g, c, _ = _geometry(node)
    return SpatialSanity(node, lazy) if (spec(node.op).spatial and c == 1 and g > 1) else SanityLayer(node, lazy)


__all__ = ["OK", "DATA", "SANITY", "UNCORRECTABLE", "n_partials", "hamming_cover", "locate", "row_width",
           "storage_bits", "build_rows", "scrub", "box_sums", "SanityLayer", "SpatialSanity", "make_sanity", "Sanity"]

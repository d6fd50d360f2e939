"""The sparse conv kernel: a conv (any stride / padding / dilation / groups) on the changed inputs only, fused
with the requantisation that consumes it and, for a residual block, with the add and its requantisation.

``acc_faulty = wrap32(acc_clean + W * (x_faulty - x_clean))`` over the changed inputs, scattered into the output
positions they reach through precomputed segment tables (``conv_tables``), channel-last so that each tap adds a
contiguous O-vector. The kernel takes bundled arguments: sparse tensors as (ptr, idx, val) tuples and the
NamedTuples below (numba passes them as tuples; their fields are read once, at the top of the kernel).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._jit import _emit, _like, _wrap32, njit, prange


class ConvTables(NamedTuple):
    """The sparse conv's weights and segments (``conv_tables``)."""
    wt: np.ndarray         # (C, n) float32/float64 weights, laid out per segment
    og: int                # output channels per group
    band: bool             # band layout (one segment per input position) rather than rows
    full: bool             # band, and every input position reaches every output position
    reach: int             # the most accumulators one changed input updates (output capacity bound)
    sptr: np.ndarray       # (H*W + 1,) int64: segments of input position p = sptr[p]:sptr[p + 1]
    sout: np.ndarray       # (n_seg,) first output position of each segment
    soff: np.ndarray       # (n_seg,) offset of the segment's weights in wt[c]
    slen: np.ndarray       # (n_seg,) output positions of each segment
    pos_of: np.ndarray     # (H*W*C,) input position of each channel-last input element
    grp_of: np.ndarray     # (C,) group of each input channel


class ConvKernel(NamedTuple):
    """Per-layer constants of ``k_conv`` (numba tuple): the tables, shapes and the wrap flag."""
    wt: np.ndarray
    sptr: np.ndarray
    sout: np.ndarray
    soff: np.ndarray
    slen: np.ndarray
    pos_of: np.ndarray
    grp_of: np.ndarray
    opos: np.ndarray       # (Ho*Wo*O,) output position of each channel-last output element
    C: int                 # input channels
    O: int                 # output channels
    og: int                # output channels per group
    wrap: bool             # the 32-bit accumulator may wrap (not provably in range)

    @classmethod
    def of(cls, t: ConvTables, C: int, O: int, n_out_pos: int, wrap: bool) -> "ConvKernel":
        return cls(t.wt, t.sptr, t.sout, t.soff, t.slen, t.pos_of, t.grp_of,
                   np.repeat(np.arange(n_out_pos, dtype=np.int64), O), int(C), int(O), int(t.og), bool(wrap))


class ConvFixed(NamedTuple):
    """Fault-free data of one call: rows' input index, input (I, S_in), accumulators and output (I, S_out) in
    the accumulator dtype, and the residual operand (I, S_out) (empty without one)."""
    inp: np.ndarray
    x: np.ndarray
    acc: np.ndarray
    out: np.ndarray
    res: np.ndarray


class Epilogue(NamedTuple):
    """The requantisation after the conv (``scale`` = 2**-s, 0: none, the accumulators are the output) and the
    residual add's requantisation (``scale2``, 0: no residual add)."""
    scale: float
    lo: int
    hi: int
    scale2: float
    lo2: int
    hi2: int


@njit(cache=True, nogil=True, fastmath={"contract"})
def _conv_rows(r0, r1, n, rows, res, fx, tb, ep, out):
    """Conv (any stride / padding / dilation / groups) on sparse faulty inputs, fused with the requantisation
    that consumes it when ``scale`` > 0 (else the accumulators themselves are the output).

    Arguments are bundles: ``rows`` / ``res`` / ``out`` (ptr, idx, val) sparse tensors (the conv's input, the
    residual operand, the output), ``fx`` a ``ConvFixed`` (fault-free data), ``tb`` a ``ConvKernel`` (tables),
    ``ep`` an ``Epilogue`` (requantisations).

    Tables (``conv_tables``): the segments of input position p are ``sptr[p]:sptr[p + 1]``; segment t covers
    ``slen[t]`` consecutive output positions from ``sout[t]`` and the weights of input channel c for it are
    ``wt[c, soff[t]:soff[t] + slen[t] * og]`` (output channel fastest), so a changed input updates one
    contiguous run of accumulators per segment with one vector loop.
    cacc: fault-free accumulators (I, S); cout: fault-free output (I, S) (= cacc if unfused), float32 when the
    layer's bound proves every accumulator below 2**24, else float64. Deltas accumulate in wt's dtype (float32
    when every partial sum of deltas is provably below 2**24); ``rint(v * 2**-s)`` is the golden shift with
    round half to even.

    A row's changed inputs are first bucketed by input position: with groups = 1 the changed channels of one
    position share its segments, and four of them update the accumulators in one pass (a quarter of the
    accumulator loads and stores). Outputs are emitted branch-free (an unpredictable branch per element
    cost more than the arithmetic).

    A residual add fused into the epilogue (``scale2`` > 0; a residual block's conv -> requantise -> add ->
    requantise): (xptr, xidx, xval) are the sparse faulty rows of the add's other operand (channel-last over
    the conv's output; xclean its fault-free values in cacc's dtype, opos the output position of each element),
    and the output is ``requant2(requant(acc) + operand)`` (shift 2**-scale2, saturate to [lo2, hi2]), compared
    with the fault-free ``cout`` of that last requantisation. Without one, xptr is all zeros.

    Rows r0..r1-1, written from output position n on (optr[r + 1] = end of row r). Returns (end, macs)."""
    ptr, idx, val = rows
    xptr, xidx, xval = res
    optr, oidx, oval = out
    inp, clean_in, cacc, cout, xclean = fx.inp, fx.x, fx.acc, fx.out, fx.res
    wt, sptr, sout, soff, slen, pos_of, grp_of = tb.wt, tb.sptr, tb.sout, tb.soff, tb.slen, tb.pos_of, tb.grp_of
    C, O, og, wrap, opos = tb.C, tb.O, tb.og, tb.wrap, tb.opos
    scale, lo, hi, scale2, lo2, hi2 = ep.scale, ep.lo, ep.hi, ep.scale2, ep.lo2, ep.hi2
    n_pos = cacc.shape[1] // O
    n_in = sptr.shape[0] - 1
    kk = np.uint64(wt.shape[1])
    wf = wt.reshape(-1)
    acc = np.zeros(n_pos * O, wt.dtype)
    tmp = np.empty(n_pos * O, cacc.dtype)
    sc, flo, fhi = _like(scale, cacc), _like(lo, cacc), _like(hi, cacc)
    bw = np.empty(C, np.uint64)             # the changed channels of one input position: weight row c * kk,
    bg = np.empty(C, np.uint64)             # accumulator offset of the group g * og,
    bd = np.empty(C, wt.dtype)              # delta (an element is listed at most once in a run)
    tout = np.zeros(n_pos, np.bool_)        # output positions reached
    xs = np.zeros(n_pos * O if scale2 > 0 else 0, cacc.dtype)   # the residual operand's changes
    sc2, flo2, fhi2 = _like(scale2, cacc), _like(lo2, cacc), _like(hi2, cacc)
    blocked = og == O
    # "full": one segment per input position covering every output position (a 3 x 3 conv on a 2 x 2 map):
    # the changed inputs need no bucketing, and wrow[e] is the weight offset of input element e
    full = blocked and n_in > 0
    for p in range(n_in):
        full = full and sptr[p + 1] - sptr[p] == 1 and sout[sptr[p]] == 0 and slen[sptr[p]] == n_pos
    wrow = np.empty(C * n_in if full else 0, np.uint64)
    if full:
        for e in range(C * n_in):
            p = e // C
            wrow[e] = np.uint64((e - p * C)) * kk + np.uint64(soff[sptr[p]])
    Lf = np.uint64(n_pos * O)
    uO = np.uint64(O)
    macs = 0
    for r in range(r0, r1):
        q0, q1 = ptr[r], ptr[r + 1]
        if q0 == q1 and xptr[r] == xptr[r + 1]:
            optr[r + 1] = n
            continue
        i0 = inp[r]
        if q0 == q1:
            pass
        elif full:                               # every input reaches every output: no bucketing needed
            q = q0
            while q + 4 <= q1:
                e0, e1, e2, e3 = idx[q], idx[q + 1], idx[q + 2], idx[q + 3]
                d0 = _like(val[q] - clean_in[i0, e0], wt)
                d1 = _like(val[q + 1] - clean_in[i0, e1], wt)
                d2 = _like(val[q + 2] - clean_in[i0, e2], wt)
                d3 = _like(val[q + 3] - clean_in[i0, e3], wt)
                u0, u1, u2, u3 = wrow[e0], wrow[e1], wrow[e2], wrow[e3]
                for o in range(Lf):
                    acc[o] += d0 * wf[u0 + o] + d1 * wf[u1 + o] + d2 * wf[u2 + o] + d3 * wf[u3 + o]
                q += 4
            while q < q1:
                e0 = idx[q]
                d0 = _like(val[q] - clean_in[i0, e0], wt)
                u0 = wrow[e0]
                for o in range(Lf):
                    acc[o] += d0 * wf[u0 + o]
                q += 1
            macs += (q1 - q0) * n_pos * O
            tout[:] = True
        else:
            q = q0
            while q < q1:                      # runs of entries at one input position (rows are mostly sorted)
                p = pos_of[idx[q]]             # table lookups: an integer division costs ~40 cycles
                m = 0
                if sptr[p] == sptr[p + 1]:     # reaches no output (e.g. a 1 x 1 stride-2 projection)
                    while q < q1 and pos_of[idx[q]] == p:
                        q += 1
                    continue
                while q < q1:
                    e = idx[q]
                    if pos_of[e] != p:
                        break
                    c = e - p * C
                    bw[m] = np.uint64(c) * kk
                    bg[m] = np.uint64(grp_of[c] * og)
                    bd[m] = _like(val[q] - clean_in[i0, e], wt)
                    m += 1
                    q += 1
                for t in range(sptr[p], sptr[p + 1]):
                    so = sout[t]
                    for u in range(slen[t]):
                        tout[so + u] = True
                    L = np.uint64(slen[t] * og)    # unsigned indices: no wrap-around test, so LLVM vectorises
                    ua = np.uint64(so) * uO
                    sw = np.uint64(soff[t])
                    j = 0
                    if blocked:
                        while j + 4 <= m:
                            d0, d1, d2, d3 = bd[j], bd[j + 1], bd[j + 2], bd[j + 3]
                            u0, u1, u2, u3 = bw[j] + sw, bw[j + 1] + sw, bw[j + 2] + sw, bw[j + 3] + sw
                            for o in range(L):
                                acc[ua + o] += d0 * wf[u0 + o] + d1 * wf[u1 + o] + d2 * wf[u2 + o] + d3 * wf[u3 + o]
                            j += 4
                        if j + 2 <= m:
                            d0, d1 = bd[j], bd[j + 1]
                            u0, u1 = bw[j] + sw, bw[j + 1] + sw
                            for o in range(L):
                                acc[ua + o] += d0 * wf[u0 + o] + d1 * wf[u1 + o]
                            j += 2
                    while j < m:
                        d0 = bd[j]
                        u0 = bw[j] + sw
                        ub = ua + bg[j]
                        for o in range(L):
                            acc[ub + o] += d0 * wf[u0 + o]
                        j += 1
                    macs += slen[t] * og * m
        for q in range(xptr[r], xptr[r + 1]):  # the residual operand's changes
            e = xidx[q]
            xs[e] = _like(xval[q], cacc) - xclean[i0, e]
            tout[opos[e]] = True
        ca, co = cacc[i0], cout[i0]
        xc = xclean[i0] if scale2 > 0 else ca
        op = 0
        while op < n_pos:                      # runs of reached positions, every channel: one vector loop each
            if not tout[op]:
                op += 1
                continue
            op1 = op
            while op1 < n_pos and tout[op1]:
                tout[op1] = False
                op1 += 1
            b0, b1 = np.uint64(op) * uO, np.uint64(op1) * uO
            op = op1
            ndiff = 0
            if scale2 > 0:                     # requantise, add the residual operand, requantise
                for o in range(b0, b1):
                    y = min(max(np.rint((ca[o] + _like(acc[o], cacc)) * sc), flo), fhi)
                    y = min(max(np.rint((y + xc[o] + xs[o]) * sc2), flo2), fhi2)
                    acc[o] = 0
                    xs[o] = 0
                    tmp[o] = y
                    ndiff += y != co[o]
            elif wrap:                         # 32-bit accumulator wrap (only when not provably in range)
                for o in range(b0, b1):
                    v = _like(_wrap32(np.int64(ca[o] + np.float64(acc[o]))), cacc)
                    acc[o] = 0
                    y = min(max(np.rint(v * sc), flo), fhi) if scale > 0 else v
                    tmp[o] = y
                    ndiff += y != co[o]
            elif scale > 0:
                for o in range(b0, b1):
                    y = min(max(np.rint((ca[o] + _like(acc[o], cacc)) * sc), flo), fhi)
                    acc[o] = 0
                    tmp[o] = y
                    ndiff += y != co[o]
            else:
                for o in range(b0, b1):
                    y = ca[o] + _like(acc[o], cacc)
                    acc[o] = 0
                    tmp[o] = y
                    ndiff += y != co[o]
            if ndiff:
                n = _emit(tmp, co, b0, b1, n, oidx, oval)
        optr[r + 1] = n
    return n, macs


@njit(cache=True, nogil=True)
def k_conv(rows, res, fx, tb, ep, out):
    """Conv on sparse faulty inputs, all rows in this thread (see ``_conv_rows``). Returns (nnz, macs)."""
    out[0][0] = 0
    return _conv_rows(0, rows[0].shape[0] - 1, 0, rows, res, fx, tb, ep, out)


@njit(cache=True, nogil=True, parallel=True)
def k_conv_par(rows, res, fx, tb, ep, bounds, starts, out):
    """``k_conv`` with the rows cut into blocks (``bounds``, balanced by entries) run on numba's threads; block b
    writes from ``starts[b]`` (its capacity prefix), then the blocks are packed. Returns (nnz, macs)."""
    optr, oidx, oval = out
    nb = bounds.shape[0] - 1
    ends = np.zeros(nb, np.int64)
    macs = np.zeros(nb, np.int64)
    optr[0] = 0
    for b in prange(nb):
        ends[b], macs[b] = _conv_rows(bounds[b], bounds[b + 1], starts[b], rows, res, fx, tb, ep, out)
    n = ends[0] - starts[0]
    for b in range(1, nb):
        src = starts[b]
        for k in range(ends[b] - src):          # dest <= src: a forward copy is safe
            oidx[n + k] = oidx[src + k]
            oval[n + k] = oval[src + k]
        for r in range(bounds[b], bounds[b + 1]):
            optr[r + 1] += n - src
        n += ends[b] - src
    return n, macs.sum()


def _taps(H, W, Ho, Wo, kh, kw, s, p, d):
    """For every input position (h * W + w), the (output position, kernel row i, kernel column j) it reaches."""
    reach = []
    for h in range(H):
        for w in range(W):
            taps = []
            for i in range(kh):
                t = h + p - i * d
                if t % s or not 0 <= t // s < Ho:
                    continue
                for j in range(kw):
                    u = w + p - j * d
                    if u % s == 0 and 0 <= u // s < Wo:
                        taps.append(((t // s) * Wo + u // s, i, j))
            reach.append(sorted(taps))
    return reach


def conv_tables(w: np.ndarray, groups: int, H, W, Ho, Wo, stride, pad, dil, dtype, band_limit: float = 1.5,
                band_bytes: int = 4 << 20) -> "ConvTables":
    """The sparse conv's weights and segments (see ``_conv_rows``) for int weights ``w`` (O, C/G, kh, kw).

    Two layouts:

    * *rows*: one segment per kernel row (groups = 1, stride 1, dilation 1: its taps reach consecutive output
      columns) or per tap; the weights of channel c are shared by every position, tap row by tap row with the
      columns reversed (index ``i * kw + (kw - 1 - j)``) so that a segment's weights are contiguous too;
    * *band* (groups = 1 on small maps): one segment per input position, spanning the output positions from the
      first to the last it reaches in flat (channel-last) order, with the weights of every (channel, position)
      stored for that span (zeros where a position in the span is not reached). On a 2 x 2 or 4 x 4 map the
      span holds at most ``band_limit`` times the reached positions and one long vector loop replaces three
      short ones. Used when it is within ``band_limit`` of the reached positions and ``band_bytes`` of memory.
      When every input position reaches every output position (a 3 x 3 conv onto a 2 x 2 map) the kernel takes
      its "full" path: no grouping of the changed inputs, one loop over all accumulators per four of them.

    Returns a ``ConvTables``."""
    O, cg, kh, kw = w.shape
    G = groups
    og, C = O // G, cg * G
    reach = _taps(H, W, Ho, Wo, kh, kw, stride, pad, dil)
    n_reached = sum(len({o for o, _, _ in t}) for t in reach)
    spans = [(t[0][0], t[-1][0]) if t else (0, -1) for t in reach]
    n_band = sum(b - a + 1 for a, b in spans)
    band = (G == 1 and n_reached > 0 and n_band <= band_limit * n_reached
            and C * n_band * O * np.dtype(dtype).itemsize <= band_bytes)
    sptr, sout, soff, slen = [0], [], [], []
    if band:
        wt = np.zeros((C, n_band * O), dtype)
        wT = w.transpose(1, 2, 3, 0)                                    # (C, kh, kw, O)
        at = 0
        for taps, (a, b) in zip(reach, spans):
            if b >= a:
                for o, i, j in taps:
                    wt[:, at + (o - a) * O: at + (o - a + 1) * O] = wT[:, i, j, :]
                sout.append(a)
                soff.append(at)
                slen.append(b - a + 1)
                at += (b - a + 1) * O
            sptr.append(len(sout))
        most = max((b - a + 1) * O for a, b in spans)
    else:
        wt = np.empty((C, kh * kw * og), dtype)
        for g in range(G):                   # wt[c, (i * kw + kw - 1 - j) * og + o] = w[g*og + o, c % cg, i, j]
            wt[g * cg:(g + 1) * cg] = w[g * og:(g + 1) * og, :, :, ::-1].transpose(1, 2, 3, 0).reshape(cg, -1)
        contiguous = G == 1 and stride == 1 and dil == 1
        for taps in reach:
            k = 0
            while k < len(taps):             # taps of one kernel row reach consecutive columns in this order
                o0, i, j = taps[k]
                m = 1
                while (contiguous and k + m < len(taps) and taps[k + m][1] == i
                       and taps[k + m][0] == o0 + m and taps[k + m][2] == j - m):
                    m += 1
                sout.append(o0)
                soff.append((i * kw + (kw - 1 - j)) * og)
                slen.append(m)
                k += m
            sptr.append(len(sout))
        most = max(len(t) for t in reach) * og
    a = lambda v: np.array(v, np.int64)  # noqa: E731
    full = band and all(sp_ == (0, Ho * Wo - 1) for sp_ in spans)   # the kernel detects it from the tables too
    return ConvTables(wt, og, band, full, int(most), a(sptr), a(sout), a(soff), a(slen),
                      np.repeat(np.arange(H * W, dtype=np.int64), C), np.arange(C, dtype=np.int64) // cg)

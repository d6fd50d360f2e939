"""Sparse kernels of the element-wise and reduction ops: linear (fused with its requantiser), act, add (fused
with its requantiser), max-pool and global sum; each evaluates only the touched elements of each row and emits
only the elements whose faulty value differs from the fault-free one.

Arguments are bundles: sparse tensors as (ptr, idx, val) tuples, a requantisation as ``Requant`` and the
max-pool's window tables as ``PoolTables`` (numba passes NamedTuples as tuples).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._jit import _like, _requant, _wrap32, njit


class PoolTables(NamedTuple):
    """CSR tables of a max-pool (``pool_tables``): input position -> output positions whose window holds it
    (mptr, mout); output position -> its window's input positions, padding left out (wptr, win)."""
    mptr: np.ndarray
    mout: np.ndarray
    wptr: np.ndarray
    win: np.ndarray


@njit(cache=True, nogil=True, fastmath={"contract"})
def k_linear(rows, inp, clean_in, clean_out, wt, rq, cact, out):
    """Linear on sparse faulty inputs; wt: (F, O) float32/float64 (the transposed weight, float32 when every
    partial sum of deltas provably stays below 2**24). With ``rq.on`` the accumulators are requantised (shift s,
    saturate to [lo, hi]) and compared with the fault-free ``cact``. Returns (nnz, macs)."""
    ptr, idx, val = rows
    optr, oidx, oval = out
    s, lo, hi, fuse = rq
    R = ptr.shape[0] - 1
    O = wt.shape[1]
    acc = np.zeros(O, wt.dtype)
    n = 0
    macs = 0
    optr[0] = 0
    for r in range(R):
        i0 = inp[r]
        any_d = False
        for q in range(ptr[r], ptr[r + 1]):
            e = idx[q]
            d = _like(val[q] - clean_in[i0, e], wt)
            any_d = True
            wrow = wt[e]
            a = acc[:O]
            for o in range(O):
                a[o] += d * wrow[o]
            macs += O
        if any_d:
            for o in range(O):
                dv = np.int64(acc[o])
                acc[o] = 0
                v = _wrap32(clean_out[i0, o] + dv)
                if fuse:
                    v = _requant(v, s, lo, hi)
                oidx[n] = o
                oval[n] = v
                n += v != cact[i0, o]
        optr[r + 1] = n
    return n, macs


@njit(cache=True, nogil=True)
def k_act(rows, inp, clean_out, rq, out):
    """Requantisation (shift s, round half to even, saturate to [lo, hi]) of the touched elements."""
    ptr, idx, val = rows
    optr, oidx, oval = out
    s, lo, hi = rq.s, rq.lo, rq.hi
    R = ptr.shape[0] - 1
    n = 0
    optr[0] = 0
    for r in range(R):
        i0 = inp[r]
        for q in range(ptr[r], ptr[r + 1]):
            e = idx[q]
            v = _requant(val[q], s, lo, hi)
            oidx[n] = e
            oval[n] = v
            n += v != clean_out[i0, e]
        optr[r + 1] = n
    return n


@njit(cache=True, nogil=True, inline="always")
def _gather_delta(ptr, idx, val, clean, r, i0, dl, mark, touched, nt):
    """Add row r's deltas (faulty - fault-free) into dl, listing first-touched elements; returns the count."""
    for q in range(ptr[r], ptr[r + 1]):
        e = idx[q]
        dl[e] += val[q] - clean[i0, e]
        touched[nt] = e                        # branch-free "first touch" bookkeeping
        nt += 1 - mark[e]
        mark[e] = True
    return nt


@njit(cache=True, nogil=True)
def k_add(a, ca, b, cb, inp, clean_out, rq, cact, out):
    """a + b where each input is sparse (an input that is fault-free has empty rows); with ``rq.on`` the sum is
    requantised (shift s, saturate to [lo, hi]) and compared with the fault-free ``cact`` instead."""
    pa, ia, va = a
    pb, ib, vb = b
    optr, oidx, oval = out
    s, lo, hi, fuse = rq
    R = pa.shape[0] - 1
    S = clean_out.shape[1]
    dl = np.zeros(S, np.int64)
    mark = np.zeros(S, np.bool_)
    touched = np.empty(S, np.int64)
    n = 0
    optr[0] = 0
    for r in range(R):
        i0 = inp[r]
        nt = _gather_delta(pa, ia, va, ca, r, i0, dl, mark, touched, 0)
        nt = _gather_delta(pb, ib, vb, cb, r, i0, dl, mark, touched, nt)
        for t in range(nt):
            e = touched[t]
            mark[e] = False
            v = clean_out[i0, e] + dl[e]
            dl[e] = 0
            if fuse:
                v = _requant(v, s, lo, hi)
                c = cact[i0, e]
            else:
                c = clean_out[i0, e]
            oidx[n] = e
            oval[n] = v
            n += v != c
        optr[r + 1] = n
    return n


@njit(cache=True, nogil=True)
def k_maxpool(rows, inp, clean_in, clean_out, C, pt, out):
    """Max-pool recomputed on the windows that hold a changed input. ``pt`` (a ``PoolTables``): (mptr, mout) for
    each input position the output positions whose window holds it; (wptr, win) each output window's input
    positions (padding, i.e. -inf, left out). Both CSR, from ``pool_tables``."""
    ptr, idx, val = rows
    optr, oidx, oval = out
    mptr, mout, wptr, win = pt.mptr, pt.mout, pt.wptr, pt.win
    R = ptr.shape[0] - 1
    S_in = clean_in.shape[1]
    S_out = clean_out.shape[1]
    fv = np.zeros(S_in, np.int64)                 # faulty input values where fm is set
    fm = np.zeros(S_in, np.bool_)
    mark = np.zeros(S_out, np.bool_)
    outs = np.empty(S_out, np.int64)
    n = 0
    optr[0] = 0
    for r in range(R):
        i0 = inp[r]
        no = 0
        for q in range(ptr[r], ptr[r + 1]):
            e = idx[q]
            fv[e] = val[q]
            fm[e] = True
            pin = e // C
            c = e - pin * C
            for t in range(mptr[pin], mptr[pin + 1]):
                o = mout[t] * C + c
                outs[no] = o                       # branch-free "first touch" bookkeeping
                no += 1 - mark[o]
                mark[o] = True
        for t in range(no):
            o = outs[t]
            mark[o] = False
            pout = o // C
            c = o - pout * C
            best = np.iinfo(np.int64).min
            for u in range(wptr[pout], wptr[pout + 1]):
                e = win[u] * C + c
                v = fv[e] if fm[e] else clean_in[i0, e]
                best = max(best, v)
            oidx[n] = o
            oval[n] = best
            n += best != clean_out[i0, o]
        for q in range(ptr[r], ptr[r + 1]):
            fm[idx[q]] = False
        optr[r + 1] = n
    return n


@njit(cache=True, nogil=True)
def k_gsum(rows, inp, clean_in, clean_out, C, out):
    """Global sum over H, W (channel-last input) of the changed elements."""
    ptr, idx, val = rows
    optr, oidx, oval = out
    R = ptr.shape[0] - 1
    dl = np.zeros(C, np.int64)
    mark = np.zeros(C, np.bool_)
    touched = np.empty(C, np.int64)
    n = 0
    optr[0] = 0
    for r in range(R):
        i0 = inp[r]
        nt = 0
        for q in range(ptr[r], ptr[r + 1]):
            e = idx[q]
            c = e % C
            dl[c] += val[q] - clean_in[i0, e]
            if not mark[c]:
                mark[c] = True
                touched[nt] = c
                nt += 1
        for t in range(nt):
            c = touched[t]
            mark[c] = False
            if dl[c] != 0:
                oidx[n] = c
                oval[n] = clean_out[i0, c] + dl[c]
                n += 1
                dl[c] = 0
        optr[r + 1] = n
    return n


def pool_tables(H, W, Ho, Wo, k, s, p) -> "PoolTables":
    """CSR tables of a k x k max-pool: input position -> output positions, output position -> window inputs."""
    win = [[(h * W + w) for h in range(oh * s - p, oh * s - p + k) for w in range(ow * s - p, ow * s - p + k)
            if 0 <= h < H and 0 <= w < W] for oh in range(Ho) for ow in range(Wo)]
    reach: list = [[] for _ in range(H * W)]
    for o, ins in enumerate(win):
        for i in ins:
            reach[i].append(o)
    csr = lambda lists: (np.cumsum([0] + [len(x) for x in lists]).astype(np.int64),  # noqa: E731
                         np.array([v for x in lists for v in x], np.int64))
    (mptr, mout), (wptr, win_) = csr(reach), csr(win)
    return PoolTables(mptr, mout, wptr, win_)

"""numba plumbing of the sparse kernels: the jit decorator (identity when numba is missing), thread budget,
element helpers (``_like``, ``_wrap32``, ``_requant``) and the list kernels every op shares (capacity, row
blocks, dense -> sparse, branch-free emission, merge).

A sparse tensor of R rows is the tuple ``(ptr, idx, val)``: CSR row pointers (R+1,), flat element indices and
faulty values. Kernels take such tuples (numba passes them as tuples) and write into an output tuple.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

# numba's OpenMP layer shares libgomp with torch and resets torch's intra-op thread count: use its own pool
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
try:                                                   # pragma: no branch
    from numba import njit, prange
    from numba.extending import overload
    _NUMBA = True
except Exception:                                      # pragma: no cover - numba is a declared dependency
    _NUMBA = False

    def njit(*a, **k):                                 # noqa: D103 - identity decorator (kernels never run)
        return (lambda f: f) if not a or not callable(a[0]) else a[0]
    prange = range

_I64 = np.int64
_P31 = 1 << 31
_P32 = 1 << 32


def available() -> bool:
    return _NUMBA


def use_threads(n: int) -> int:
    """Threads the kernels may use (bounded by numba's pool); returns the number granted."""
    if not _NUMBA:
        return 1
    import numba
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    if n > 1 and numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


def _like(x, arr):
    """``x`` converted to the element type of ``arr`` (jitted: lets one kernel run in float32 or float64)."""
    return arr.dtype.type(x)


if _NUMBA:
    @overload(_like)
    def _like_ol(x, arr):
        t = arr.dtype
        return lambda x, arr: t(x)


@njit(cache=True, inline="always")
def _wrap32(v):
    if v >= _P31 or v < -_P31:
        v = ((v + _P31) % _P32) - _P31
    return v


@njit(cache=True, inline="always")
def _requant(v, s, lo, hi):
    if s <= 0:
        q = v << (-s)
    else:                                            # branch-free: the rounding bit is data dependent
        q = v >> s
        r = v - (q << s)
        half = _I64(1) << (s - 1)
        q += _I64(r > half) | (_I64(r == half) & (q & 1))
    return min(max(q, lo), hi)


@njit(cache=True, nogil=True)
def k_cap(ptr, per, limit, xptr=None):
    """Output capacity: sum over rows of min(limit, per * entries of the row [+ entries of the row in xptr])."""
    t = 0
    for r in range(ptr.shape[0] - 1):
        x = 0 if xptr is None else xptr[r + 1] - xptr[r]
        t += min(limit, per * (ptr[r + 1] - ptr[r]) + x)
    return t


@njit(cache=True, nogil=True)
def k_blocks(ptr, xptr, per, limit, nb):
    """Row blocks for ``nb`` threads, balanced by work (a row costs ~ per * entries updates plus the outputs it
    reaches; xptr: the rows of a fused residual operand): (bounds (nb+1,), output capacity prefix
    min(limit, per * entries + residual entries) at each bound (nb,))."""
    R = ptr.shape[0] - 1
    caps = np.empty(R + 1, np.int64)
    work = np.empty(R + 1, np.int64)
    caps[0] = 0
    work[0] = 0
    for r in range(R):
        c = min(limit, per * (ptr[r + 1] - ptr[r]) + xptr[r + 1] - xptr[r])
        caps[r + 1] = caps[r] + c
        work[r + 1] = work[r] + c + per * (ptr[r + 1] - ptr[r])
    bounds = np.empty(nb + 1, np.int64)
    starts = np.zeros(nb, np.int64)
    bounds[0] = 0
    r = 0
    for b in range(1, nb):
        target = (work[R] * b) // nb
        while r < R and work[r] < target:
            r += 1
        bounds[b] = r
        starts[b] = caps[r]
    bounds[nb] = R
    return bounds, starts


@njit(cache=True, nogil=True)
def k_from_dense(y, clean, inp, out):
    """Dense faulty rows y (R, S) vs fault-free clean (I, S) -> sparse rows ``out`` of the differing elements."""
    ptr, idx, val = out
    R, S = y.shape
    n = 0
    ptr[0] = 0
    for r in range(R):
        i0 = inp[r]
        for e in range(S):
            v = y[r, e]
            idx[n] = e
            val[n] = v
            n += v != clean[i0, e]
        ptr[r + 1] = n
    return n


@njit(cache=True, nogil=True)
def _emit(y, clean, b0, b1, n, oidx, oval):
    """Append (o, y[o]) for the o in [b0, b1) where y differs from ``clean``; returns the new end n. Branch-free
    (store always, advance on a difference: a mispredicted branch per element cost more than the kernels'
    arithmetic), unsigned indices (no negative-index fix-up), and a function of its own so that the tight loop
    keeps its pointers in registers (measured: 25 % of the conv kernel's time when it was inline)."""
    un = np.uint64(n)
    for o in range(b0, b1):
        v = y[o]
        oidx[un] = o
        oval[un] = np.int64(v)
        un += np.uint64(v != clean[o])
    return np.int64(un)

class Requant(NamedTuple):
    """A requantisation as kernel argument: shift ``s`` (2**-s), saturate to [lo, hi]; ``on`` False = none."""
    s: int
    lo: int
    hi: int
    on: bool


NO_REQUANT = Requant(0, 0, 0, False)


@njit(cache=True, nogil=True)
def k_merge(a, b, out):
    """Row-wise union of two sparse tensors with disjoint index sets (concat)."""
    pa, ia, va = a
    pb, ib, vb = b
    optr, oidx, oval = out
    R = pa.shape[0] - 1
    n = 0
    optr[0] = 0
    for r in range(R):
        for q in range(pa[r], pa[r + 1]):
            oidx[n] = ia[q]
            oval[n] = va[q]
            n += 1
        for q in range(pb[r], pb[r + 1]):
            oidx[n] = ib[q]
            oval[n] = vb[q]
            n += 1
        optr[r + 1] = n
    return n

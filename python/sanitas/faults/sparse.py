"""Concurrent (event-driven) fault propagation: each faulty row carries only where it differs from the good run.

This is the idea of concurrent fault simulation in logic test (Ulrich & Baker, 1974) applied to an INT8 CNN:
the fault-free activations of every node are known (``FastGolden.run``), so a faulty experiment (fault f on
input i, a *row*) is fully described by the list of elements whose value differs from the fault-free one.
Measured on INT8 ResNet-20 (digits), a single activation bit flip leaves 2-16 % of the elements of each
downstream tensor different (``benchmarks/bench_campaign.py --ablation`` prints the work done), so a
convolution only needs ``nnz(delta_in) x O x taps`` multiply-adds instead of a dense ``C x O x taps x H x W``:

* conv / linear: ``acc_faulty = wrap32(acc_clean + W * (x_faulty - x_clean))`` over the changed inputs only,
  scattered into the output positions they reach (channel-last order, so each tap adds a contiguous O-vector);
* act (requantisation), add, concat, max-pool, global sum, flatten: evaluated on the touched elements only;
* every kernel emits only elements whose faulty value differs from the fault-free one, so a row whose lists
  all become empty is proven masked and costs nothing further (early stop falls out of the representation).

Fusions (``SparseNet``): a conv, add or linear whose only consumer is a requantisation is evaluated with it (its
accumulators are never listed), and a residual block's ``conv -> requantise -> add -> requantise`` is one conv
kernel whose epilogue adds the other operand (``conv_add``).

Arithmetic is exact with the golden model's semantics: integers in float32 where a per-layer bound proves every
partial sum below 2**24 (float64, exact below 2**53, otherwise; int64 in the element-wise kernels), accumulators
wrap to 32 bits where the bound says they can, requantisation is a shift with round half to even then
saturation (``golden.rounding``; ``rint(v * 2**-s)`` in floating point), max-pool pads with -inf.

A sparse tensor of R rows is ``(ptr, idx, val)``: CSR row pointers (R+1,), flat element indices and *faulty
values* (not deltas). Flat indices of 4-D tensors are channel-last, ``(h * W + w) * C + c``; 2-D tensors
(linear, gsum, flatten outputs) use their own index. Kernels are compiled by numba on first use (cached on
disk); ``available()`` is False when numba cannot be imported, and the engine then uses its dense torch path.
"""
from __future__ import annotations

import os

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


# ------------------------------------------------------------------------------------------------ kernels
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
def k_from_dense(y, clean, inp, ptr, idx, val):
    """Dense faulty rows y (R, S) vs fault-free clean (I, S) -> sparse rows of the differing elements."""
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


@njit(cache=True, nogil=True, fastmath={"contract"})
def _conv_rows(r0, r1, n, ptr, idx, val, inp, clean_in, cacc, cout, wt, sptr, sout, soff, slen, pos_of, grp_of, C,
               O, og, scale, lo, hi, wrap, xptr, xidx, xval, xclean, opos, scale2, lo2, hi2, optr, oidx, oval):
    """Conv (any stride / padding / dilation / groups) on sparse faulty inputs, fused with the requantisation
    that consumes it when ``scale`` > 0 (else the accumulators themselves are the output).

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
def k_conv(ptr, idx, val, inp, clean_in, cacc, cout, wt, sptr, sout, soff, slen, pos_of, grp_of, C, O, og, scale,
           lo, hi, wrap, xptr, xidx, xval, xclean, opos, scale2, lo2, hi2, optr, oidx, oval):
    """Conv on sparse faulty inputs, all rows in this thread (see ``_conv_rows``). Returns (nnz, macs)."""
    optr[0] = 0
    return _conv_rows(0, ptr.shape[0] - 1, 0, ptr, idx, val, inp, clean_in, cacc, cout, wt, sptr, sout, soff, slen,
                      pos_of, grp_of, C, O, og, scale, lo, hi, wrap, xptr, xidx, xval, xclean, opos, scale2, lo2,
                      hi2, optr, oidx, oval)


@njit(cache=True, nogil=True, parallel=True)
def k_conv_par(ptr, idx, val, inp, clean_in, cacc, cout, wt, sptr, sout, soff, slen, pos_of, grp_of, C, O, og,
               scale, lo, hi, wrap, xptr, xidx, xval, xclean, opos, scale2, lo2, hi2, bounds, starts, optr, oidx,
               oval):
    """``k_conv`` with the rows cut into blocks (``bounds``, balanced by entries) run on numba's threads; block b
    writes from ``starts[b]`` (its capacity prefix), then the blocks are packed. Returns (nnz, macs)."""
    nb = bounds.shape[0] - 1
    ends = np.zeros(nb, np.int64)
    macs = np.zeros(nb, np.int64)
    optr[0] = 0
    for b in prange(nb):
        ends[b], macs[b] = _conv_rows(bounds[b], bounds[b + 1], starts[b], ptr, idx, val, inp, clean_in, cacc,
                                      cout, wt, sptr, sout, soff, slen, pos_of, grp_of, C, O, og, scale, lo, hi, wrap,
                                      xptr, xidx, xval, xclean, opos, scale2, lo2, hi2, optr, oidx, oval)
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


@njit(cache=True, nogil=True, fastmath={"contract"})
def k_linear(ptr, idx, val, inp, clean_in, clean_out, wt, s, lo, hi, fuse, cact, optr, oidx, oval):
    """Linear on sparse faulty inputs; wt: (F, O) float32/float64 (the transposed weight, float32 when every
    partial sum of deltas provably stays below 2**24). With ``fuse`` the accumulators are requantised (shift s,
    saturate to [lo, hi]) and compared with the fault-free ``cact``. Returns (nnz, macs)."""
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
def k_act(ptr, idx, val, inp, clean_out, s, lo, hi, optr, oidx, oval):
    """Requantisation (shift s, round half to even, saturate to [lo, hi]) of the touched elements."""
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
def k_add(pa, ia, va, ca, pb, ib, vb, cb, inp, clean_out, s, lo, hi, fuse, cact, optr, oidx, oval):
    """a + b where each input is sparse (an input that is fault-free has empty rows); with ``fuse`` the sum is
    requantised (shift s, saturate to [lo, hi]) and compared with the fault-free ``cact`` instead."""
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
def k_maxpool(ptr, idx, val, inp, clean_in, clean_out, C, mptr, mout, wptr, win, optr, oidx, oval):
    """Max-pool recomputed on the windows that hold a changed input. (mptr, mout): for each input position the
    output positions whose window holds it; (wptr, win): each output window's input positions (padding, i.e.
    -inf, left out). Both CSR, from ``pool_tables``."""
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
def k_gsum(ptr, idx, val, inp, clean_in, clean_out, C, optr, oidx, oval):
    """Global sum over H, W (channel-last input) of the changed elements."""
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


@njit(cache=True, nogil=True)
def k_merge(pa, ia, va, pb, ib, vb, optr, oidx, oval):
    """Row-wise union of two sparse tensors with disjoint index sets (concat)."""
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


# ------------------------------------------------------------------------------------------------ driver
def hwc(t) -> np.ndarray:
    """Torch tensor of integer values (N, C, H, W) or (N, F) -> int64 numpy (N, S) in channel-last order."""
    if t.dim() == 4:
        t = t.permute(0, 2, 3, 1)
    return np.ascontiguousarray(t.reshape(t.shape[0], -1).cpu().numpy()).astype(np.int64)


def chw_to_hwc_index(flat: np.ndarray, shape) -> np.ndarray:
    """Flat NCHW element indices of a (C, H, W) tensor -> channel-last flat indices (identity for (F,))."""
    if len(shape) != 3:
        return flat
    C, H, W = shape
    c, rem = np.divmod(flat, H * W)
    return rem * C + c


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
                band_bytes: int = 4 << 20) -> dict:
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

    Returns wt (C, n) of ``dtype``, sptr/sout/soff/slen (int64), pos_of, grp_of, og, ``band``, ``full`` (band
    and every input position reaches every output position) and ``reach``: the most accumulators one changed
    input updates (output capacity bound)."""
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
    return {"wt": wt, "og": og, "band": band, "full": full, "reach": int(most), "sptr": a(sptr), "sout": a(sout),
            "soff": a(soff), "slen": a(slen), "pos_of": np.repeat(np.arange(H * W, dtype=np.int64), C),
            "grp_of": np.arange(C, dtype=np.int64) // cg}


def pool_tables(H, W, Ho, Wo, k, s, p) -> dict:
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
    return {"mptr": mptr, "mout": mout, "wptr": wptr, "win": win_}


def _apart(n: int, t1, t2) -> tuple:
    """Two arrays of n elements (types t1, t2) whose addresses differ by 2 KiB modulo 4 KiB.

    Kernels write element k of both (index and value lists) together; two large buffers fresh from the
    allocator are both page-aligned (+16 B), and a store stream whose address matches another's in the low
    12 bits stalls the loads behind it ("4K aliasing"): measured 1.6-2.5x on a whole conv kernel."""
    a, b = np.dtype(t1).itemsize * n, np.dtype(t2).itemsize * n
    raw = np.empty(a + b + 8192, np.uint8)
    base = raw.ctypes.data
    o1 = (-base) % 64
    o2 = o1 + a
    o2 += (base + o1 + 2048 - (base + o2)) % 4096
    return raw[o1:o1 + a].view(t1), raw[o2:o2 + b].view(t2)


class SparseNet:
    """Per-node parameters of the sparse kernels for one ``GoldenModel`` (built once per engine)."""

    def __init__(self, gm, shapes: dict, threads: int = 1):
        self.gm = gm
        self.threads = threads              # > 1: the convolutions split their rows over numba's threads
        self.shape = {k: tuple(int(d) for d in v[1:]) for k, v in shapes.items()}
        self.par = {}
        self._buf = {}
        self._f32c = {}
        consumers = {}
        for n in gm.nodes:
            for i in n.inputs:
                consumers.setdefault(i, []).append(n)
        # a conv whose only consumer is a requantisation is evaluated fused with it (its accumulators are
        # never listed): fused[conv] = act
        self.fused = {n.name: consumers[n.name][0].name for n in gm.nodes
                      if n.op in ("conv", "add", "linear") and n.name != gm.nodes[-1].name
                      and len(consumers.get(n.name, [])) == 1 and consumers[n.name][0].op == "act"}
        # a residual block's second conv -> requantisation (mid) -> add -> requantisation (out): the conv is
        # evaluated at the add, with the add's other operand; its epilogue requantises to mid, adds the other
        # operand and requantises to out, so neither mid's nor the add's rows are ever listed (``conv_add``).
        # conv_add[conv] = (add, out, other operand, mid); add_conv[add] = conv; mid_add[mid] = conv. Only
        # where the conv's 32-bit accumulator cannot wrap.
        self.conv_add = {}
        for n in gm.nodes:
            mid = consumers.get(self.fused.get(n.name, ""), [])
            if n.op == "conv" and len(mid) == 1 and mid[0].op == "add" and mid[0].name in self.fused \
                    and mid[0].inputs.count(self.fused[n.name]) == 1 \
                    and all(v[0] != mid[0].name for v in self.conv_add.values()):   # one conv per add
                a = mid[0]
                other = next(i for i in a.inputs if i != self.fused[n.name])
                self.conv_add[n.name] = (a.name, self.fused[a.name], other, self.fused[n.name])
        for n in gm.nodes:
            if n.op == "conv":
                w = n.weight.astype(np.int64)
                a = n.attrs
                O = w.shape[0]
                G = a["groups"]
                in_bits = gm.by_name[n.inputs[0]].bits
                # |sum of d * w| <= 2**(in_bits + 1) * max_o sum |w_o| (d: a difference of two inputs)
                f32 = np.abs(w).reshape(O, -1).sum(1).max(initial=0) * 2.0 ** (in_bits + 1) < 2 ** 24
                _, H, W = self.shape[n.inputs[0]]
                _, Ho, Wo = self.shape[n.name]
                bound = np.abs(w).reshape(O, -1).sum(1).max(initial=0) * 2.0 ** in_bits \
                    + float(np.abs(n.bias.astype(np.float64)).max(initial=0))
                if bound >= 2 ** 31:                 # (the add's other operand, if a conv, stays unfused)
                    self.conv_add.pop(n.name, None)
                self.par[n.name] = {"wrap": bool(bound >= 2 ** 31), "acc32": bool(bound < 2 ** 24),
                                    "opos": np.repeat(np.arange(Ho * Wo, dtype=np.int64), O),
                                    **conv_tables(w, G, H, W, Ho, Wo, a["stride"], a["padding"], a["dilation"],
                                                  np.float32 if f32 else np.float64)}
            elif n.op == "linear":
                w = n.weight.astype(np.int64)
                in_bits = gm.by_name[n.inputs[0]].bits
                f32 = np.abs(w).sum(1).max(initial=0) * 2.0 ** (in_bits + 1) < 2 ** 24
                self.par[n.name] = {"wt": np.ascontiguousarray(w.T.astype(np.float32 if f32 else np.float64))}
            elif n.op == "maxpool":
                a = n.attrs
                _, H, W = self.shape[n.inputs[0]]
                _, Ho, Wo = self.shape[n.name]
                self.par[n.name] = {"kk": a["k"] ** 2, **pool_tables(H, W, Ho, Wo, a["k"], a["stride"], a["padding"])}
            elif n.op == "act":
                from ..golden.rounding import int_range
                lo, hi = int_range(n.bits, n.signed, n.narrow)
                self.par[n.name] = {"s": int(n.e_out - gm.by_name[n.inputs[0]].e_out), "lo": lo, "hi": hi}

        self.add_conv = {v[0]: k for k, v in self.conv_add.items()}
        self.mid_add = {v[3]: k for k, v in self.conv_add.items()}

    def _f32(self, key, a: np.ndarray) -> np.ndarray:
        """float32 copy of a fault-free activation array (cached while the same array is passed)."""
        hit = self._f32c.get(key)
        if hit is None or hit[0] is not a:
            hit = (a, a.astype(np.float32))
            self._f32c[key] = hit
        return hit[1]

    def buffers(self, key, R: int, cap: int, wide: bool = False):
        """Output arrays (ptr (R+1,), idx (>= cap,), val (>= cap,)) owned by ``key`` and reused across chunks:
        fresh memory costs a page fault per 4 KiB on first touch, which dominated the kernels' time. Indices
        and values are int32 (halves the memory traffic: accumulators wrap to 32 bits, activations are
        narrower) except ``wide`` ones (a global sum is exact int64)."""
        b = self._buf.get(key)
        if b is None or b[0].shape[0] < R + 1 or b[1].shape[0] < cap or (b[2].dtype == np.int32) == wide:
            rc = max(R + 1, 0 if b is None else b[0].shape[0])
            cc = max(int(cap * 1.25) + 16, 0 if b is None else b[1].shape[0])
            b = (np.empty(rc, np.int64), *_apart(cc, np.int32, np.int64 if wide else np.int32))
            self._buf[key] = b
        return b[0][:R + 1], b[1], b[2]

    def from_dense(self, key, y: np.ndarray, clean: np.ndarray, inp: np.ndarray, wide: bool = False):
        """Sparse rows of the elements of dense faulty rows ``y`` (R, S) that differ from ``clean`` (I, S);
        ``wide``: int64 values (a global sum's output), else int32 (accumulators wrap to 32 bits)."""
        R = y.shape[0]
        p, i, v = self.buffers(key, R, y.size, wide=wide)
        n = k_from_dense(y, clean, inp, p, i, v)
        return p, i[:n], v[:n]

    def merge(self, a, b, key):
        """Row-wise union of two sparse tensors over the same rows (disjoint elements per row), into the reused
        arrays of ``key`` (which must not be one of the inputs' keys)."""
        R = a[0].shape[0] - 1
        p, i, v = self.buffers(key, R, len(a[1]) + len(b[1]))
        k = k_merge(*a, *b, p, i, v)
        return p, i[:k], v[:k]

    def add_inputs(self, add: str) -> tuple:
        """(input of the conv fused into ``add``, the add's other operand)."""
        conv = self.add_conv[add]
        return self.gm.by_name[conv].inputs[0], self.conv_add[conv][2]

    def conv(self, n, rows, inp: np.ndarray, clean: dict, cleanf: dict, R: int, key=None, with_add: bool = False,
             xrows=None):
        """Faulty sparse output of conv ``n`` from the sparse rows of its input (None = fault-free).

        ``with_add`` (n in ``conv_add``): the requantisation, the add and the add's requantisation that follow n
        are evaluated too, with ``xrows`` the rows of the add's other operand (None = fault-free); the result is
        the last requantisation's output. Otherwise it is the output of ``fused[n]`` if n is fused with a
        requantisation, else the accumulators. Returns ((ptr, idx, val), macs)."""
        bk = key or n.name
        pr = self.par[n.name]
        C = self.shape[n.inputs[0]][0]
        O, Ho, Wo = self.shape[n.name]
        zr = None
        if rows is None or xrows is None:
            zr = (np.zeros(R + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32))
        rows = zr if rows is None else rows
        act = self.fused.get(n.name)
        if act is not None:
            pa = self.par[act]
            scale, lo, hi = 2.0 ** -pa["s"], pa["lo"], pa["hi"]
        else:
            scale, lo, hi = 0.0, 0, 0
        ca = cleanf[n.name]                      # fault-free accumulators
        if with_add:
            _, out, other, _ = self.conv_add[n.name]
            xrows = zr if xrows is None else xrows
            po = self.par[out]
            scale2, lo2, hi2, cout = 2.0 ** -po["s"], po["lo"], po["hi"], cleanf[out]
            xclean, xkey = cleanf[other], other
        else:
            out = act
            scale2, lo2, hi2, cout = 0.0, 0, 0, cleanf[act or n.name]
            xrows, xclean, xkey = zr, ca[:0], None
        if pr["acc32"]:                          # every faulty accumulator < 2**24: float32 is exact
            ca, cout = self._f32(n.name, ca), self._f32(out or n.name, cout)
            xclean = self._f32(xkey, xclean) if xkey else ca[:0]
        kk = pr["reach"]                         # the most accumulators one changed input updates
        p, i, v = self.buffers(bk, R, k_cap(rows[0], kk, Ho * Wo * O, xrows[0]))
        args = (*rows, inp, clean[n.inputs[0]], ca, cout, pr["wt"], pr["sptr"], pr["sout"], pr["soff"],
                pr["slen"], pr["pos_of"], pr["grp_of"], C, O, pr["og"], scale, lo, hi, pr["wrap"], *xrows, xclean,
                pr["opos"], scale2, lo2, hi2)
        if self.threads > 1 and len(rows[1]) >= 4096:
            k, macs = k_conv_par(*args, *k_blocks(rows[0], xrows[0], kk, Ho * Wo * O, self.threads), p, i, v)
        else:
            k, macs = k_conv(*args, p, i, v)
        return (p, i[:k], v[:k]), int(macs)

    def node(self, n, ins: list, inp: np.ndarray, clean: dict, cleanf: dict, R: int, key=None):
        """Faulty sparse output of node ``n`` from its inputs' sparse rows (None = fault-free input); ``clean``
        and ``cleanf``: the fault-free activations as int64 / float64 channel-last arrays.

        Returns ((ptr, idx, val), macs): the output of ``n``, or of ``fused[n]`` for a fused conv / add. The
        output arrays are reused by the next call with the same ``key`` (default: the node's name)."""
        bk = key or n.name
        empty = None
        if any(i is None for i in ins):
            empty = (np.zeros(R + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        src = [self.shape[i] for i in n.inputs]
        first = next(x for x in ins if x is not None)[0]
        macs = 0
        if n.op == "conv":
            return self.conv(n, ins[0], inp, clean, cleanf, R, bk)
        elif n.op == "linear":
            wt = self.par[n.name]["wt"]
            act = self.fused.get(n.name)
            pa = self.par[act] if act else {"s": 0, "lo": 0, "hi": 0}
            p, i, v = self.buffers(bk, R, k_cap(first, wt.shape[1], wt.shape[1]))
            k, macs = k_linear(*ins[0], inp, clean[n.inputs[0]], clean[n.name], wt, pa["s"], pa["lo"], pa["hi"],
                               act is not None, clean[act or n.name], p, i, v)
        elif n.op == "act":
            pr = self.par[n.name]
            p, i, v = self.buffers(bk, R, len(ins[0][1]))
            k = k_act(*ins[0], inp, clean[n.name], pr["s"], pr["lo"], pr["hi"], p, i, v)
        elif n.op == "add":
            a, b = (x if x is not None else empty for x in ins)
            p, i, v = self.buffers(bk, R, len(a[1]) + len(b[1]))
            act = self.fused.get(n.name)
            pa = self.par[act] if act else {"s": 0, "lo": 0, "hi": 0}
            k = k_add(*a, clean[n.inputs[0]], *b, clean[n.inputs[1]], inp, clean[n.name], pa["s"], pa["lo"],
                      pa["hi"], act is not None, clean[act or n.name], p, i, v)
        elif n.op == "maxpool":
            pr = self.par[n.name]
            C = src[0][0]
            _, Ho, Wo = self.shape[n.name]
            p, i, v = self.buffers(bk, R, k_cap(first, pr["kk"], Ho * Wo * C))
            k = k_maxpool(*ins[0], inp, clean[n.inputs[0]], clean[n.name], C, pr["mptr"], pr["mout"], pr["wptr"],
                          pr["win"], p, i, v)
        elif n.op == "gsum":
            C = src[0][0]
            p, i, v = self.buffers(bk, R, k_cap(first, 1, C), wide=True)
            k = k_gsum(*ins[0], inp, clean[n.inputs[0]], clean[n.name], C, p, i, v)
        elif n.op == "concat":
            out_c = self.shape[n.name][0]
            off, acc = 0, None
            for x, shp in zip(ins, src):
                if x is not None:
                    xp, xi, xv = x
                    if len(shp) == 3:                          # channel-last: position * C_out + off + c
                        pos, c = np.divmod(xi, shp[0])
                        xi = pos * out_c + off + c
                    else:
                        xi = xi + off
                    acc = (xp, xi, xv) if acc is None else self.merge(acc, (xp, xi, xv), (bk, "cat", off))
                off += shp[0]
            return acc, 0
        elif n.op == "flatten":
            xp, xi, xv = ins[0]
            if len(src[0]) == 3:                               # channel-last -> the (C, H, W) order of flatten
                C, H, W = src[0]
                pos, c = np.divmod(xi, C)
                xi = c * (H * W) + pos
            return (xp, xi, xv), 0
        else:
            raise ValueError(f"sparse propagation: unsupported op {n.op!r}")
        return (p, i[:k], v[:k]), int(macs)


__all__ = ["available", "SparseNet", "hwc", "chw_to_hwc_index", "k_from_dense"]

"""``SparseNet``: the sparse kernels' per-node parameters for one ``GoldenModel`` and one kernel per graph op.

Built once per engine. The fusions are the graph pass ``sanitas.models.passes.fuse`` (a conv, add or linear
evaluated with the requantiser that consumes it; a residual block's conv evaluated at its add, with the add and
both requantisations in its epilogue, only where the conv's 32-bit accumulator cannot wrap). Per-node constants
are typed records (``ConvParams``, ``LinearParams``, ``PoolParams``, ``Requant``); every op's kernel is
registered in the ``sparse`` kernel table of ``sanitas.models.ops`` and called as ``SPARSE[op](net, n, call)``.

Output arrays are reused across chunks (``buffers``): fresh memory costs a page fault per 4 KiB on first
touch, which dominated the kernels' time; the index and value lists of one output are 2 KiB apart modulo 4 KiB
(``_apart``: 4K aliasing of their two store streams cost 1.6-2.5x in a conv kernel).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...golden.rounding import int_range
from ...models.ops import kernels, spec
from ...models.passes import Fusions, fuse
from ._jit import NO_REQUANT, Requant, k_blocks, k_cap, k_from_dense, k_merge
from .conv import ConvFixed, ConvKernel, Epilogue, conv_tables, k_conv, k_conv_par
from .kernels import PoolTables, k_act, k_add, k_gsum, k_linear, k_maxpool, pool_tables


class ConvParams(NamedTuple):
    """A conv's sparse constants: kernel tables, whether its accumulators fit float32 (< 2**24) and its reach."""
    kernel: ConvKernel
    acc32: bool            # every faulty accumulator < 2**24: the fault-free ones are passed as float32
    reach: int             # the most accumulators one changed input updates (output capacity bound)
    band: bool             # the band layout of ``conv_tables``


class LinearParams(NamedTuple):
    wt: np.ndarray         # (F, O) transposed weights, float32 when every partial sum of deltas < 2**24


class PoolParams(NamedTuple):
    kk: int                # window size k * k (output capacity per changed input)
    tables: PoolTables


class Call(NamedTuple):
    """One kernel call: the inputs' sparse rows (None = fault-free), the rows' input index, the fault-free
    activations (int64 ``clean`` / float64 ``cleanf``, channel-last (I, S)), the row count and buffer key."""
    ins: list
    inp: np.ndarray
    clean: dict
    cleanf: dict
    R: int
    key: object


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


def _conv_params(gm, n, shape) -> tuple[ConvParams, bool]:
    """(ConvParams, may wrap) of conv node ``n``."""
    w = n.weight.astype(np.int64)
    a = n.attrs
    O = w.shape[0]
    in_bits = gm.by_name[n.inputs[0]].bits
    wmax = np.abs(w).reshape(O, -1).sum(1).max(initial=0)
    # |sum of d * w| <= 2**(in_bits + 1) * max_o sum |w_o| (d: a difference of two inputs)
    f32 = wmax * 2.0 ** (in_bits + 1) < 2 ** 24
    C, H, W = shape[n.inputs[0]]
    _, Ho, Wo = shape[n.name]
    bound = wmax * 2.0 ** in_bits + float(np.abs(n.bias.astype(np.float64)).max(initial=0))
    t = conv_tables(w, a["groups"], H, W, Ho, Wo, a["stride"], a["padding"], a["dilation"],
                    np.float32 if f32 else np.float64)
    wrap = bool(bound >= 2 ** 31)
    return ConvParams(ConvKernel.of(t, C, O, Ho * Wo, wrap), bool(bound < 2 ** 24), t.reach, t.band), wrap


class SparseNet:
    """Per-node parameters of the sparse kernels for one ``GoldenModel`` (built once per engine)."""

    def __init__(self, gm, shapes: dict, threads: int = 1):
        self.gm = gm
        self.threads = threads              # > 1: the convolutions split their rows over numba's threads
        self.shape = {k: tuple(int(d) for d in v[1:]) for k, v in shapes.items()}
        self.par: dict = {}                 # node -> ConvParams / LinearParams / PoolParams / Requant
        self._buf = {}
        self._f32c = {}
        wraps = set()
        for n in gm.nodes:
            s = spec(n.op)
            if s.spatial:
                self.par[n.name], wrap = _conv_params(gm, n, self.shape)
                if wrap:
                    wraps.add(n.name)
            elif s.has_weights:
                w = n.weight.astype(np.int64)
                in_bits = gm.by_name[n.inputs[0]].bits
                f32 = np.abs(w).sum(1).max(initial=0) * 2.0 ** (in_bits + 1) < 2 ** 24
                self.par[n.name] = LinearParams(np.ascontiguousarray(w.T.astype(np.float32 if f32 else np.float64)))
            elif s.windowed:
                a = n.attrs
                _, H, W = self.shape[n.inputs[0]]
                _, Ho, Wo = self.shape[n.name]
                self.par[n.name] = PoolParams(a["k"] ** 2, pool_tables(H, W, Ho, Wo, a["k"], a["stride"],
                                                                        a["padding"]))
            elif s.requant:
                lo, hi = int_range(n.bits, n.signed, n.narrow)
                self.par[n.name] = Requant(int(n.e_out - gm.by_name[n.inputs[0]].e_out), lo, hi, True)
        # the fusions (models.passes): fused[producer] = requantiser; a residual block's conv only where its
        # accumulator cannot wrap (the add's other operand, if a conv, stays unfused)
        self.fusions = Fusions.of(fuse(gm.nodes, residual_ok=lambda conv: conv not in wraps))
        self.fused = self.fusions.requant

    def requant_of(self, name: str) -> Requant:
        """The requantisation fused after ``name`` (``NO_REQUANT`` when there is none)."""
        act = self.fused.get(name)
        return self.par[act] if act is not None else NO_REQUANT

    def _f32(self, key, a: np.ndarray) -> np.ndarray:
        """float32 copy of a fault-free activation array (cached while the same array is passed)."""
        hit = self._f32c.get(key)
        if hit is None or hit[0] is not a:
            hit = (a, a.astype(np.float32))
            self._f32c[key] = hit
        return hit[1]

    def buffers(self, key, R: int, cap: int, wide: bool = False):
        """Output arrays (ptr (R+1,), idx (>= cap,), val (>= cap,)) owned by ``key`` and reused across chunks.
        Indices and values are int32 (halves the memory traffic: accumulators wrap to 32 bits, activations are
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
        n = k_from_dense(y, clean, inp, (p, i, v))
        return p, i[:n], v[:n]

    def merge(self, a, b, key):
        """Row-wise union of two sparse tensors over the same rows (disjoint elements per row), into the reused
        arrays of ``key`` (which must not be one of the inputs' keys)."""
        R = a[0].shape[0] - 1
        p, i, v = self.buffers(key, R, len(a[1]) + len(b[1]))
        k = k_merge(a, b, (p, i, v))
        return p, i[:k], v[:k]

    def add_inputs(self, add: str) -> tuple:
        """(input of the conv fused into ``add``, the add's other operand)."""
        r = self.fusions.at_add[add]
        return self.gm.by_name[r.conv].inputs[0], r.other

    def conv(self, n, rows, inp: np.ndarray, clean: dict, cleanf: dict, R: int, key=None, with_add: bool = False,
             xrows=None):
        """Faulty sparse output of conv ``n`` from the sparse rows of its input (None = fault-free).

        ``with_add`` (n heads a ``FusedResidual``): the requantisation, the add and the add's requantisation
        that follow n are evaluated too, with ``xrows`` the rows of the add's other operand (None = fault-free);
        the result is the last requantisation's output. Otherwise it is the output of ``fused[n]`` if n is fused
        with a requantisation, else the accumulators. Returns ((ptr, idx, val), macs)."""
        bk = key or n.name
        pr = self.par[n.name]
        tb = pr.kernel
        O, Ho, Wo = self.shape[n.name]
        zr = None
        if rows is None or xrows is None:
            zr = (np.zeros(R + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32))
        rows = zr if rows is None else rows
        act = self.fused.get(n.name)
        if act is not None:
            pa = self.par[act]
            scale, lo, hi = 2.0 ** -pa.s, pa.lo, pa.hi
        else:
            scale, lo, hi = 0.0, 0, 0
        ca = cleanf[n.name]                      # fault-free accumulators
        if with_add:
            r = self.fusions.residual[n.name]
            out, other = r.out, r.other
            xrows = zr if xrows is None else xrows
            po = self.par[out]
            scale2, lo2, hi2, cout = 2.0 ** -po.s, po.lo, po.hi, cleanf[out]
            xclean, xkey = cleanf[other], other
        else:
            out = act
            scale2, lo2, hi2, cout = 0.0, 0, 0, cleanf[act or n.name]
            xrows, xclean, xkey = zr, ca[:0], None
        if pr.acc32:                             # every faulty accumulator < 2**24: float32 is exact
            ca, cout = self._f32(n.name, ca), self._f32(out or n.name, cout)
            xclean = self._f32(xkey, xclean) if xkey else ca[:0]
        kk = pr.reach                            # the most accumulators one changed input updates
        p, i, v = self.buffers(bk, R, k_cap(rows[0], kk, Ho * Wo * O, xrows[0]))
        fx = ConvFixed(inp, clean[n.inputs[0]], ca, cout, xclean)
        ep = Epilogue(scale, lo, hi, scale2, lo2, hi2)
        if self.threads > 1 and len(rows[1]) >= 4096:
            bounds, starts = k_blocks(rows[0], xrows[0], kk, Ho * Wo * O, self.threads)
            k, macs = k_conv_par(rows, xrows, fx, tb, ep, bounds, starts, (p, i, v))
        else:
            k, macs = k_conv(rows, xrows, fx, tb, ep, (p, i, v))
        return (p, i[:k], v[:k]), int(macs)

    def node(self, n, ins: list, inp: np.ndarray, clean: dict, cleanf: dict, R: int, key=None):
        """Faulty sparse output of node ``n`` from its inputs' sparse rows (None = fault-free input); ``clean``
        and ``cleanf``: the fault-free activations as int64 / float64 channel-last arrays.

        Returns ((ptr, idx, val), macs): the output of ``n``, or of ``fused[n]`` for a fused conv / add. The
        output arrays are reused by the next call with the same ``key`` (default: the node's name)."""
        return SPARSE[n.op](self, n, Call(ins, inp, clean, cleanf, R, key or n.name))


# ------------------------------------------------------------------------------------------------ op kernels
SPARSE = kernels("sparse")      # kernel(net, node, call) -> ((ptr, idx, val), macs)


def _empty(R: int):
    return (np.zeros(R + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))


def _first(c: Call):
    return next(x for x in c.ins if x is not None)[0]


@SPARSE.register("input")
def _s_input(net, n, c: Call):
    return c.ins[0], 0                    # rows enter at the input node as they are


@SPARSE.register("conv")
def _s_conv(net, n, c: Call):
    return net.conv(n, c.ins[0], c.inp, c.clean, c.cleanf, c.R, c.key)


@SPARSE.register("linear")
def _s_linear(net, n, c: Call):
    wt = net.par[n.name].wt
    act = net.fused.get(n.name)
    p, i, v = net.buffers(c.key, c.R, k_cap(_first(c), wt.shape[1], wt.shape[1]))
    k, macs = k_linear(c.ins[0], c.inp, c.clean[n.inputs[0]], c.clean[n.name], wt, net.requant_of(n.name),
                       c.clean[act or n.name], (p, i, v))
    return (p, i[:k], v[:k]), int(macs)


@SPARSE.register("act")
def _s_act(net, n, c: Call):
    p, i, v = net.buffers(c.key, c.R, len(c.ins[0][1]))
    k = k_act(c.ins[0], c.inp, c.clean[n.name], net.par[n.name], (p, i, v))
    return (p, i[:k], v[:k]), 0


@SPARSE.register("add")
def _s_add(net, n, c: Call):
    a, b = (x if x is not None else _empty(c.R) for x in c.ins)
    p, i, v = net.buffers(c.key, c.R, len(a[1]) + len(b[1]))
    act = net.fused.get(n.name)
    k = k_add(a, c.clean[n.inputs[0]], b, c.clean[n.inputs[1]], c.inp, c.clean[n.name], net.requant_of(n.name),
              c.clean[act or n.name], (p, i, v))
    return (p, i[:k], v[:k]), 0


@SPARSE.register("maxpool")
def _s_maxpool(net, n, c: Call):
    pr = net.par[n.name]
    C = net.shape[n.inputs[0]][0]
    _, Ho, Wo = net.shape[n.name]
    p, i, v = net.buffers(c.key, c.R, k_cap(_first(c), pr.kk, Ho * Wo * C))
    k = k_maxpool(c.ins[0], c.inp, c.clean[n.inputs[0]], c.clean[n.name], C, pr.tables, (p, i, v))
    return (p, i[:k], v[:k]), 0


@SPARSE.register("gsum")
def _s_gsum(net, n, c: Call):
    C = net.shape[n.inputs[0]][0]
    p, i, v = net.buffers(c.key, c.R, k_cap(_first(c), 1, C), wide=True)
    k = k_gsum(c.ins[0], c.inp, c.clean[n.inputs[0]], c.clean[n.name], C, (p, i, v))
    return (p, i[:k], v[:k]), 0


@SPARSE.register("concat")
def _s_concat(net, n, c: Call):
    out_c = net.shape[n.name][0]
    off, acc = 0, None
    for x, shp in zip(c.ins, (net.shape[i] for i in n.inputs)):
        if x is not None:
            xp, xi, xv = x
            if len(shp) == 3:                          # channel-last: position * C_out + off + c
                pos, ch = np.divmod(xi, shp[0])
                xi = pos * out_c + off + ch
            else:
                xi = xi + off
            acc = (xp, xi, xv) if acc is None else net.merge(acc, (xp, xi, xv), (c.key, "cat", off))
        off += shp[0]
    return acc, 0


@SPARSE.register("flatten")
def _s_flatten(net, n, c: Call):
    xp, xi, xv = c.ins[0]
    src = net.shape[n.inputs[0]]
    if len(src) == 3:                                  # channel-last -> the (C, H, W) order of flatten
        C, H, W = src
        pos, ch = np.divmod(xi, C)
        xi = ch * (H * W) + pos
    return (xp, xi, xv), 0


__all__ = ["SparseNet", "ConvParams", "LinearParams", "PoolParams", "Call", "SPARSE", "hwc", "chw_to_hwc_index"]

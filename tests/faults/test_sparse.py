"""Concurrent (sparse-delta) fault propagation: kernels against the golden integer ops, engine against replay.

* ``k_conv`` (fused or not with the requantisation) on random sparse faulty inputs equals the golden conv +
  requantise of the dense faulty tensor, element for element, for strides 1/2, dilation 1/2, padding 0-2 and
  groups 1/2/C (depthwise), in float32 and float64 accumulation;
* the engine's sparse path gives the same outcome and faulty top-1 as the golden replay of every record on a
  derived FTT-NAS net that holds every primitive (separable / dilated convs, padded max and sum pools, adds,
  concats) and on MobileNet-V2 (depthwise groups, residual adds), for every site and fault kind.
"""
import numpy as np
import pytest
import torch

from sanitas.faults import KINDS, sample_faults
from sanitas.faults import sparse as sp
from sanitas.faults.campaign import make_chunks
from sanitas.faults.engine import EngineStats, FastGolden, classify
from sanitas.faults.executors import run_golden
from sanitas.golden.model import conv2d_int, wrap32
from sanitas.golden.rounding import requantize

pytestmark = pytest.mark.skipif(not sp.available(), reason="numba is not installed")


def _dense_from_sparse(ptr, idx, val, clean, inp):
    out = clean[inp].copy()
    rows = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    out[rows, idx] = val
    return out


@pytest.mark.parametrize("stride,dil,pad,groups,f32,band,H", [
    (1, 1, 1, 1, True, False, 7), (1, 1, 1, 1, True, True, 7), (2, 1, 1, 1, False, False, 7),
    (2, 1, 1, 1, False, True, 7), (1, 2, 2, 1, True, False, 7), (1, 2, 2, 1, True, True, 7),
    (1, 1, 0, 2, True, False, 7), (2, 1, 1, 6, False, False, 7), (1, 1, 2, 6, True, False, 7),
    (1, 1, 1, 1, True, True, 2), (1, 1, 1, 1, False, True, 2), (2, 1, 1, 1, True, True, 4)])
def test_conv_kernel_matches_golden(stride, dil, pad, groups, f32, band, H):
    """H = 2 with a 3 x 3 kernel: every input reaches every output (the kernel's "full" path)."""
    rng = np.random.default_rng(stride * 100 + dil * 10 + pad + groups + H)
    I, R, C, O, k = 3, 40, 6, 12, 3
    w = rng.integers(-127, 128, (O, C // groups, k, k))
    b = rng.integers(-5000, 5000, O)
    x = rng.integers(0, 256, (I, C, H, H))                       # fault-free uint8 inputs
    inp = rng.integers(0, I, R)
    xf = x[inp].copy()                                            # faulty rows: a few random changed elements
    for r in range(R):
        for _ in range(rng.integers(0, 12 if H > 2 else 5)):
            xf[r, rng.integers(C), rng.integers(H), rng.integers(H)] = rng.integers(0, 256)
    acc_c = wrap32(conv2d_int(x, w, b, stride, pad, groups, dil))
    acc_f = wrap32(conv2d_int(xf, w, b, stride, pad, groups, dil))
    _, _, Ho, Wo = acc_c.shape
    hwc = lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1).reshape(len(a), -1))  # noqa: E731
    ptr, idx, val = (np.zeros(R + 1, np.int64), np.zeros(xf.size, np.int64), np.zeros(xf.size, np.int64))
    nnz = sp.k_from_dense(hwc(xf), hwc(x), inp, (ptr, idx, val))
    ridx, rval = np.zeros(nnz, np.int64), np.zeros(nnz, np.int64)
    for r in range(R):
        a0, a1 = ptr[r], ptr[r + 1]
        ridx[a0:a1], rval[a0:a1] = idx[a0:a1][::-1], val[a0:a1][::-1]
    og = O // groups
    tb = sp.conv_tables(w, groups, H, H, Ho, Wo, stride, pad, dil, np.float32 if f32 else np.float64,
                        band_limit=1e9 if band else 0.0)
    assert tb.band == band and tb.full == (H == 2) and tb.og == og
    tabs = sp.ConvKernel.of(tb, C, O, Ho * Wo, False)
    # the other operand of a residual add fused into the epilogue: changed on some rows (also rows whose conv
    # input is unchanged)
    z = rng.integers(0, 256, (I, O, Ho, Wo))
    zf = z[inp].copy()
    for r in range(0, R, 3):
        zf[r, rng.integers(O), rng.integers(Ho), rng.integers(Wo)] = rng.integers(0, 256)
    cdt = np.float32 if f32 else np.float64
    zptr, zidx, zval = (np.zeros(R + 1, np.int64), np.zeros(zf.size, np.int64), np.zeros(zf.size, np.int64))
    znz = sp.k_from_dense(hwc(zf), hwc(z), inp, (zptr, zidx, zval))
    assert znz > 0
    for scale, resid in ((0.0, False), (2.0 ** -9, False), (2.0 ** -9, True)):   # accumulators / requantised /
        if scale:                                    # requantised, added to the operand and requantised again
            ref_c, ref_f = (requantize(a, 0, 9, 8, False) for a in (acc_c, acc_f))
        else:
            ref_c, ref_f = acc_c, acc_f
        if resid:
            ref_c, ref_f = requantize(ref_c + z, 0, 1, 8, False), requantize(ref_f + zf, 0, 1, 8, False)
            xr, xc, ep = (zptr, zidx[:znz], zval[:znz]), hwc(z).astype(cdt), sp.Epilogue(scale, 0, 255, 0.5, 0, 255)
        else:
            xr, xc = (np.zeros(R + 1, np.int64), zidx[:0], zval[:0]), hwc(z)[:0].astype(cdt)
            ep = sp.Epilogue(scale, 0, 255, 0.0, 0, 0)
        fx = sp.ConvFixed(inp, hwc(x), hwc(acc_c).astype(cdt), hwc(ref_c).astype(cdt), xc)
        cap = sp.k_cap(ptr, tb.reach, Ho * Wo * O, xr[0]) + 1
        assert cap <= R * Ho * Wo * O + 1
        outs = []
        for rows in ((ptr, idx[:nnz], val[:nnz]), (ptr, ridx, rval)):
            op, oi, ov = np.zeros(R + 1, np.int64), np.zeros(cap, np.int32), np.zeros(cap, np.int32)
            n, macs = sp.k_conv(rows, xr, fx, tabs, ep, (op, oi, ov))
            got = _dense_from_sparse(op, oi[:n], ov[:n], hwc(ref_c), inp)
            assert np.array_equal(got, hwc(ref_f))
            assert np.all(ov[:n] != hwc(ref_c)[np.repeat(inp, np.diff(op)), oi[:n]])    # only real differences
            assert 0 < macs < R * O * (C // groups) * k * k * Ho * Wo / 2       # far below the dense cost
            outs.append((n, macs, op.copy(), oi[:n].copy(), ov[:n].copy()))
        assert outs[0][0] == outs[1][0] and all(np.array_equal(u, v) for u, v in zip(outs[0][2:], outs[1][2:]))
        n, macs, op, oi, ov = outs[0]
        # the threaded version (rows cut into blocks, then packed) gives the same arrays
        bounds, starts = sp.k_blocks(ptr, xr[0], tb.reach, Ho * Wo * O, 3)
        assert bounds[0] == 0 and bounds[-1] == R and np.all(np.diff(bounds) >= 0)
        pp, pi, pv = np.zeros(R + 1, np.int64), np.zeros(cap, np.int32), np.zeros(cap, np.int32)
        n2, macs2 = sp.k_conv_par((ptr, idx[:nnz], val[:nnz]), xr, fx, tabs, ep, bounds, starts, (pp, pi, pv))
        assert (n2, macs2) == (n, macs)
        assert np.array_equal(pp, op) and np.array_equal(pi[:n], oi) and np.array_equal(pv[:n], ov)


def test_requantisation_kernel_rounds_half_to_even():
    v = np.array([-9, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 2 ** 20 + 8, -(2 ** 20) - 8],
                 np.int64)
    ptr = np.array([0, len(v)], np.int64)
    for s, lo, hi in ((2, -128, 127), (4, 0, 255), (-1, -128, 127), (3, -127, 127)):
        clean = np.full((1, len(v)), 10 ** 9, np.int64)          # never equal: every element is emitted
        op, oi, ov = np.zeros(2, np.int64), np.zeros(len(v), np.int64), np.zeros(len(v), np.int64)
        n = sp.k_act((ptr, np.arange(len(v), dtype=np.int64), v), np.zeros(1, np.int64), clean,
                     sp.Requant(s, lo, hi, True), (op, oi, ov))
        assert n == len(v)
        assert np.array_equal(ov, requantize(v, 0, s, 8, lo < 0, lo == -127))


def _check_engine(gm, xq, faults):
    clean = gm.run_int(xq, backend="f64")
    ref = [classify(run_golden(gm, xq, f, backend="f64"), clean) for f in faults]
    ref_o, ref_p = np.stack([r[0] for r in ref]), np.stack([r[1] for r in ref])
    for prop in ("sparse", "dense"):
        fg = FastGolden(gm, propagate=prop)
        env = fg.run(xq)
        pos = {f.id: i for i, f in enumerate(faults)}
        got_o, got_p = np.zeros_like(ref_o), np.zeros_like(ref_p)
        st = EngineStats()
        for chunk in make_chunks(faults, len(xq), 48):
            o, p = fg.run_faults(env, chunk, len(xq), st)
            for f, oo, pp in zip(chunk, o, p):
                got_o[pos[f.id]], got_p[pos[f.id]] = oo, pp
        assert np.array_equal(got_o, ref_o), prop
        assert np.array_equal(got_p, ref_p), prop
        if prop == "sparse":
            assert st.macs_done < 0.2 * st.macs_naive
    return ref_o


def _faults(gm, n_per_site, seed):
    fs = []
    for site in ("weight", "bias", "acc", "output", "input"):
        fs += sample_faults(gm, n_per_site, sites=(site,), kinds=KINDS, seed=seed)
    return fs


def test_engine_sparse_on_derived_net_with_every_primitive(images):
    from sanitas.golden import export_golden
    from sanitas.nas.derive import build_derived
    from sanitas.nas.space import WEIGHT_PRIMITIVES, Genotype, SpaceConfig
    geno = Genotype(                 # every primitive, cell inputs and intermediate nodes, normal and reduce cells
        normal=(("dil_conv_3x3", 0), ("avg_pool_3x3", 1), ("max_pool_3x3", 2), ("sep_conv_5x5", 1),
                ("relu_conv_bn_3x3", 3), ("skip_connect", 2), ("sep_conv_3x3", 4), ("conv_1x1", 0)),
        reduce=(("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("dil_conv_5x5", 2),
                ("conv_1x1", 3), ("relu_conv_bn_5x5", 1), ("avg_pool_3x3", 4), ("none", 2)))
    space = SpaceConfig(primitives=WEIGHT_PRIMITIVES, cells=3, nodes=4, channels=2, stem_multiplier=2,
                        reductions=(1,))
    torch.manual_seed(0)
    gm = export_golden(build_derived(geno, space, (1, 8, 8), 10))
    assert {"concat", "maxpool", "add"} <= {n.op for n in gm.nodes}
    assert any(n.op == "conv" and n.attrs["groups"] > 1 for n in gm.nodes)
    assert any(n.op == "conv" and n.attrs["dilation"] > 1 for n in gm.nodes)
    xq = gm.quantize_input(images[:6])
    faults = _faults(gm, 12, 3) + sample_faults(gm, 20, sites=("output",), kinds=("bitflip",), seed=4,
                                                 layers=[n.name for n in gm.nodes if n.op in ("concat", "maxpool")])
    oc = _check_engine(gm, xq, faults)
    assert (oc > 0).sum() >= 20                       # not vacuous: many faults reach the logits


def test_engine_sparse_on_mobilenet(images):
    from sanitas.golden import export_golden
    from sanitas.models import build
    torch.manual_seed(0)
    gm = export_golden(build("mobilenetv2", (1, 8, 8), 10))
    xq = gm.quantize_input(images[:6])
    oc = _check_engine(gm, xq, _faults(gm, 10, 7))
    assert (oc > 0).sum() >= 10

"""Sanity ABFT layers, property-based: random FC / conv / grouped / depthwise shapes and random INT8 tensors.

Every single-bit fault in a weight, bias, accumulator or output is located and corrected bit-exactly (lazy and
eager location); persistent weight/bias faults are repaired and stay repaired; faults in the sanity neurons'
own state never change an output; fault-free runs never raise an alarm; double faults are reported
uncorrectable and never silently miscorrected where the code can tell.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanitas.faults import Fault, SiteInfo, apply_fault_value
from sanitas.golden import GNode, wrap32
from sanitas.protect.base import Report, mac
from sanitas.protect.sanity import (DATA, OK, SANITY, UNCORRECTABLE, SanityLayer, SpatialSanity, box_sums,
                                    hamming_cover, locate, make_sanity, n_partials)

N_EX = int(os.environ.get("SANITAS_HYPOTHESIS_EXAMPLES", "60"))     # raise for a soak run
SETTINGS = dict(max_examples=N_EX, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def layers(draw, kinds=("linear", "conv", "grouped", "depthwise")):
    """(GNode with int8 weights / int32 bias, int64 input batch) of a random small layer."""
    kind = draw(st.sampled_from(kinds))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    mode = draw(st.sampled_from(["uniform", "extreme", "sparse"]))
    n = draw(st.integers(1, 2))
    if kind == "linear":
        o, f = draw(st.integers(1, 40)), draw(st.integers(1, 48))
        wshape, attrs, xshape = (o, f), {}, (n, f)
    else:
        k = draw(st.sampled_from([1, 2, 3]))
        s, p = draw(st.integers(1, 2)), draw(st.integers(0, 1))
        if kind == "conv":
            g, og, cg = 1, draw(st.integers(1, 20)), draw(st.integers(1, 5))
        elif kind == "grouped":
            g, og, cg = draw(st.integers(2, 3)), draw(st.integers(2, 5)), draw(st.integers(1, 3))
        else:
            g, og, cg = draw(st.integers(2, 12)), 1, 1
        h, w = draw(st.integers(k, 7)), draw(st.integers(k, 7))
        wshape, attrs, xshape = (g * og, cg, k, k), dict(stride=s, padding=p, groups=g, dilation=1), (n, g * cg, h, w)
    if mode == "extreme":
        wt = rng.choice([-127, 127], size=wshape)
    elif mode == "sparse":
        wt = rng.integers(-127, 128, size=wshape) * (rng.random(wshape) < 0.3)
    else:
        wt = rng.integers(-127, 128, size=wshape)
    # full-range int32 biases (accumulators may wrap: the lazy layer-wide check runs mod 2**32) or small ones
    # (a static bound excludes wrapping: it runs exactly, one weighted row)
    b = rng.integers(-(2 ** 31), 2 ** 31, size=wshape[0]) if draw(st.booleans()) else \
        rng.integers(-(2 ** 20), 2 ** 20, size=wshape[0])
    signed = draw(st.booleans()) and kind != "depthwise"
    x = rng.integers(-128, 128, size=xshape) if signed else rng.integers(0, 256, size=xshape)
    if mode == "sparse":
        x = x * (rng.random(xshape) < 0.5)
    node = GNode("L", "conv" if kind != "linear" else "linear", ["x"], 0, 32, True, attrs,
                 wt.astype(np.int8), b.astype(np.int32), 0)
    return node, x.astype(np.int64)


def one_shot(site: str, index: tuple, bit: int, bits: int, batched: bool):
    """Hook flipping ``bit`` of element ``index`` at the first read of ``site`` (per image when batched)."""
    state = {"fired": False}
    info = SiteInfo((), bits, True, False)

    def hook(node, s, a):
        if s != site or state["fired"]:
            return a
        state["fired"] = True
        a = np.array(a, dtype=np.int64, copy=True)
        sl = ((slice(None),) + index) if batched else index
        if bits == 64:
            a[sl] = (np.array(a[sl], dtype=np.int64).view(np.uint64) ^ np.uint64(1 << bit)).view(np.int64)
        else:
            a[sl] = apply_fault_value(a[sl], Fault(site, "L", index, bit), info)
        return a
    hook.state = state
    return hook


def unprotected(node, x, site, index, bit):
    """Accumulators of the plain layer under the same fault (to know whether it had an effect)."""
    w, b = node.weight.astype(np.int64), node.bias.astype(np.int64)
    info8, info32 = SiteInfo((), 8, True, False), SiteInfo((), 32, True, False)
    if site == "weight":
        w = w.copy()
        w[index] = apply_fault_value(w[index], Fault(site, "L", index, bit), info8)
    if site == "bias":
        b = b.copy()
        b[index] = apply_fault_value(b[index], Fault(site, "L", index, bit), info32)
    y = mac(node, x, w, b)
    if site in ("acc", "output"):
        y = y.copy()
        y[(slice(None),) + index] = apply_fault_value(y[(slice(None),) + index], Fault(site, "L", index, bit), info32)
    return y


def draw_fault(data, node, ref, sites):
    site = data.draw(st.sampled_from(sites))
    if site == "weight":
        shape, bits = node.weight.shape, 8
    elif site == "bias":
        shape, bits = node.bias.shape, 32
    else:
        shape, bits = ref.shape[1:], 32
    index = tuple(data.draw(st.integers(0, d - 1)) for d in shape)
    return site, index, data.draw(st.integers(0, bits - 1)), bits


# ------------------------------------------------------------------------------------------------ the code
def test_hamming_cover_is_the_references_code():
    cov = hamming_cover(7)          # DAC'24 Fig. 2: 7 outputs, partials S0..S2 + total
    assert cov.tolist() == [[1, 0, 1, 0, 1, 0, 1], [0, 1, 1, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1, 1], [1] * 7]
    for c in (1, 2, 3, 8, 16, 17, 64, 100):
        assert n_partials(c) == int(np.floor(np.log2(c))) + 1
        codes = (hamming_cover(c)[:-1] * (1 << np.arange(n_partials(c)))[:, None]).sum(0)
        assert codes.tolist() == list(range(1, c + 1))        # column i spells i + 1


@given(c=st.integers(1, 300), e=st.integers(-(2 ** 31), 2 ** 31 - 1).filter(lambda v: v != 0), data=st.data())
@settings(max_examples=200, deadline=None)
def test_locate_single_errors(c, e, data):
    m = n_partials(c)
    i = data.draw(st.integers(0, c - 1))
    r = np.zeros(m + 1, np.int64)
    r[:m] = hamming_cover(c)[:m, i] * e
    r[m] = e
    st_, idx = locate(r, c)
    assert (int(st_), int(idx)) == (DATA, i)
    # a fault in a sanity neuron: only its residual fails
    j = data.draw(st.integers(0, m))
    r = np.zeros(m + 1, np.int64)
    r[j] = e
    st_, idx = locate(r, c)
    assert (int(st_), int(idx)) == (SANITY, j)
    assert int(locate(np.zeros(m + 1, np.int64), c)[0]) == OK


# ------------------------------------------------------------------------------------------------ single faults
@given(layer=layers(), lazy=st.booleans(), data=st.data())
@settings(**SETTINGS)
def test_any_single_fault_in_w_b_acc_output_is_corrected_bit_exactly(layer, lazy, data):
    node, x = layer
    ref = mac(node, x, node.weight, node.bias)
    site, index, bit, bits = draw_fault(data, node, ref, ["weight", "bias", "acc", "output"])
    g = make_sanity(node, lazy)
    rep = Report()
    y, ok = g.run(x, one_shot(site, index, bit, bits, site in ("acc", "output")), rep)
    assert ok and np.array_equal(y, ref)
    assert rep.uncorrectable == 0
    effective = not np.array_equal(unprotected(node, x, site, index, bit), ref)
    if effective:
        assert rep.detected >= 1
        assert rep.corrected + rep.repaired >= 1
        if site in ("acc", "output") and isinstance(g, SanityLayer):
            assert rep.located == rep.corrected == int((unprotected(node, x, site, index, bit) != ref).sum())
    if site in ("weight", "bias") and rep.detected:
        assert np.array_equal(g.mem["weight"], node.weight) and np.array_equal(g.mem["bias"], node.bias)
    # the repair (or a latent fault that cannot reach this input) stays: next inference is clean and quiet
    rep2 = Report()
    y2, ok2 = g.run(x, None, rep2)
    assert ok2 and np.array_equal(y2, ref) and not rep2.alarm


@given(layer=layers(), lazy=st.booleans(), data=st.data())
@settings(**SETTINGS)
def test_faults_in_the_sanity_neurons_never_touch_the_output(layer, lazy, data):
    node, x = layer
    ref = mac(node, x, node.weight, node.bias)
    g = make_sanity(node, lazy)
    sites = {s: (shape, bits, batched) for s, shape, bits, _, batched in g.state(ref.shape)}
    site = data.draw(st.sampled_from(sorted(sites)))
    shape, bits, batched = sites[site]
    index = tuple(data.draw(st.integers(0, d - 1)) for d in shape)
    bit = data.draw(st.integers(0, bits - 1))
    rep = Report()
    y, ok = g.run(x, one_shot(site, index, bit, bits, batched), rep)
    assert ok and np.array_equal(y, ref)
    assert rep.corrected == 0 and rep.uncorrectable == 0
    y2, ok2 = g.run(x)
    assert ok2 and np.array_equal(y2, ref)


@given(layer=layers(), lazy=st.booleans())
@settings(max_examples=2 * N_EX, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_zero_false_positives(layer, lazy):
    node, x = layer
    rep = Report()
    y, ok = make_sanity(node, lazy).run(x, None, rep)
    assert ok and np.array_equal(y, mac(node, x, node.weight, node.bias))
    assert not rep.alarm and rep.events == []


@given(layer=layers(kinds=("linear", "conv")), data=st.data())
@settings(**SETTINGS)
def test_persistent_weight_fault_is_repaired_and_stays_repaired(layer, data):
    node, x = layer
    ref = mac(node, x, node.weight, node.bias)
    g = make_sanity(node, True)
    i = data.draw(st.integers(0, node.weight.shape[0] - 1))
    rest = tuple(data.draw(st.integers(0, d - 1)) for d in node.weight.shape[1:])
    bit = data.draw(st.integers(0, 7))
    g.run(x, one_shot("weight", (i,) + rest, bit, 8, False))
    if not np.array_equal(g.mem["weight"], node.weight):
        # latent (no input reached it yet): a dense input exposes it, then it is repaired
        x = np.full_like(x, 3)
        ref = mac(node, x, node.weight, node.bias)
        if np.array_equal(mac(node, x, g.mem.arrays["weight"], node.bias), ref):
            return                  # a tap that only ever sees padding: no input can reach it, nothing to detect
        rep = Report()
        y, ok = g.run(x, None, rep)
        assert ok and np.array_equal(y, ref) and rep.repaired == 1
    assert np.array_equal(g.mem["weight"], node.weight)
    for _ in range(3):
        rep = Report()
        y, ok = g.run(x, None, rep)
        assert ok and np.array_equal(y, ref) and not rep.alarm


# ------------------------------------------------------------------------------------------------ double faults
@given(layer=layers(kinds=("linear", "conv")), lazy=st.booleans(), data=st.data())
@settings(**SETTINGS)
def test_double_fault_in_one_pixel_is_uncorrectable_never_miscorrected(layer, lazy, data):
    node, x = layer
    ref = mac(node, x, node.weight, node.bias)
    o = ref.shape[1]
    if o < 2:
        return
    i, k = data.draw(st.lists(st.integers(0, o - 1), min_size=2, max_size=2, unique=True))
    pix = tuple(data.draw(st.integers(0, d - 1)) for d in ref.shape[2:])
    ei, ek = (data.draw(st.integers(0, 31)) for _ in range(2))

    def hook(n, s, a):
        if s == "acc":
            a = a.copy()
            a[(0, i) + pix] = wrap32(np.int64(a[(0, i) + pix] ^ (1 << ei)))
            a[(0, k) + pix] = wrap32(np.int64(a[(0, k) + pix] ^ (1 << ek)))
        return a
    faulty = hook(None, "acc", ref)
    rep = Report()
    y, ok = make_sanity(node, lazy).run(x, hook, rep)
    # a cancelling pair (+e, -e) passes the per-pixel total; the lazy layer-wide code (or the eager partials)
    # separates the two channels: both modes detect every pair
    assert rep.detected >= 1 and not ok
    assert rep.corrected == 0 and np.array_equal(y, faulty)        # nothing was "corrected" into a wrong value


@given(layer=layers(kinds=("linear", "conv")), data=st.data())
@settings(**SETTINGS)
def test_two_weight_faults_in_one_column_are_reported(layer, data):
    node, x = layer
    o = node.weight.shape[0]
    if o < 2:
        return
    i, k = data.draw(st.lists(st.integers(0, o - 1), min_size=2, max_size=2, unique=True))
    col = tuple(data.draw(st.integers(0, d - 1)) for d in node.weight.shape[1:])
    bi, bk = data.draw(st.integers(0, 7)), data.draw(st.integers(0, 7))
    x = np.full_like(x, 1)                          # every weight reaches the output (unless it sees padding only)

    def hook(n, s, a):
        if s == "weight":
            a = a.copy()
            for r, bt in ((i, bi), (k, bk)):
                a[(r,) + col] = apply_fault_value(a[(r,) + col], Fault("weight", "L", (r,) + col, bt),
                                                  SiteInfo((), 8, True, False))
        return a
    rep = Report()
    g = make_sanity(node, False)
    y, ok = g.run(x, hook, rep)
    faulty = hook(None, "weight", node.weight.astype(np.int64))
    if np.array_equal(mac(node, x, faulty, node.bias), mac(node, x, node.weight, node.bias)):
        return                      # the taps only see padding
    # both errors are non-zero: no single fault explains the column (with the sanity-memory checksum this holds
    # even when the two errors cancel and mimic a sanity-row fault) -> reported, nothing rewritten
    assert rep.detected >= 1 and not ok and rep.repaired == 0
    assert np.array_equal(g.mem.arrays["weight"], faulty)
    assert np.array_equal(g.mem.arrays["sanity_w"], g.mem.pristine["sanity_w"])


# ------------------------------------------------------------------------------------------------ depthwise
@given(layer=layers(kinds=("depthwise",)))
@settings(max_examples=60, deadline=None)
def test_box_sums_are_exact(layer):
    node, x = layer
    y = mac(node, x, node.weight, node.bias)
    g = make_sanity(node)
    assert isinstance(g, SpatialSanity)
    e = g.expected(x, node.weight.astype(np.int64), node.bias.astype(np.int64), y.shape[2:])
    assert np.array_equal(e, wrap32(y.sum(axis=(2, 3))))
    bx = box_sums(x, node, y.shape[2:])
    assert bx.shape == (x.shape[0], x.shape[1]) + node.weight.shape[2:]


def test_locate_uncorrectable_pattern():
    r = np.array([5, 7, 0, 5], np.int64)        # partials disagree with the total
    assert int(locate(r, 7)[0]) == UNCORRECTABLE


@pytest.mark.parametrize("lazy", [True, False])
def test_reports_count_one_corrected_element(lazy):
    rng = np.random.default_rng(3)
    node = GNode("L", "conv", ["x"], 0, 32, True, dict(stride=1, padding=1, groups=1, dilation=1),
                 rng.integers(-127, 128, (16, 4, 3, 3)).astype(np.int8),
                 rng.integers(-999, 999, 16).astype(np.int32), 0)
    x = rng.integers(0, 256, (1, 4, 6, 6))
    ref = mac(node, x, node.weight, node.bias)
    rep = Report()
    y, ok = make_sanity(node, lazy).run(x, one_shot("acc", (9, 2, 3), 30, 32, True), rep)
    assert ok and np.array_equal(y, ref)
    assert (rep.detected, rep.located, rep.corrected, rep.repaired, rep.uncorrectable) == (1, 1, 1, 0, 0)
    ev = [e for e in rep.events if e[2] == "corrected"][0]
    assert ev[3]["channels"] == [9]

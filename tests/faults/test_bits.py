"""Bit-level correctness: every kind on every site changes exactly the addressed bits of the addressed element.

The array a site holds is captured from a fault-free golden run, the fault is applied through the golden hook
(the reference executor), and old/new are compared as two's-complement (signed) or plain (unsigned) patterns.
"""
import numpy as np
import pytest

from sanitas.faults import KINDS, SITES, Fault, sample_faults, validate
from sanitas.faults.executors import golden_hook


def _capture(gm, xq, site, layer):
    """The array the golden model hands the hook at (layer, site) in a fault-free run."""
    got = {}

    def hook(node, s, arr):
        if node.name == layer and s == site and "a" not in got:
            got["a"] = np.array(arr, dtype=np.int64, copy=True)
        return arr
    gm.run_int(xq, hook=hook, backend="f64")
    return got["a"]


def _pattern(v, bits):
    return np.asarray(v, dtype=np.int64) & ((1 << bits) - 1)


@pytest.mark.parametrize("site", ["weight", "bias", "input", "output", "acc"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_on_every_site(lenet, images, site, kind):
    gm = lenet[1]
    xq = gm.quantize_input(images[:4])
    for f in sample_faults(gm, 12, sites=(site,), kinds=(kind,), seed=7):
        info = validate(f, gm)
        node = gm.by_name[f.layer]
        arr = _capture(gm, xq, site, f.layer)
        new = golden_hook(gm, [f])(node, site, arr)
        idx = ((slice(None),) + f.index) if info.batched else f.index
        # nothing but the addressed element (of every image) changes
        mask = np.zeros(arr.shape, bool)
        mask[idx] = True
        assert np.array_equal(new[~mask], arr[~mask])
        old_p, new_p = _pattern(arr[idx], info.bits), _pattern(new[idx], info.bits)
        lo, hi = (-(1 << (info.bits - 1)), (1 << (info.bits - 1)) - 1) if info.signed else (0, (1 << info.bits) - 1)
        assert np.all((new[idx] >= lo) & (new[idx] <= hi))                 # read back in the site's type
        if kind == "bitflip":
            assert np.all(old_p ^ new_p == 1 << f.bit)
        elif kind == "multibit":
            assert np.all(old_p ^ new_p == f.bit) and bin(f.bit).count("1") == 2
        elif kind == "stuck0":
            assert np.all(new_p & (1 << f.bit) == 0) and np.all((old_p ^ new_p) & ~(1 << f.bit) == 0)
        elif kind == "stuck1":
            assert np.all(new_p & (1 << f.bit) != 0) and np.all((old_p ^ new_p) & ~(1 << f.bit) == 0)
        else:
            assert np.all(new[idx] == f.value)
        assert not np.shares_memory(new, arr)                               # the model's arrays are never mutated


def test_known_values(lenet):
    """Hand-checked patterns: int8 weight 5 = 0b00000101, flip bit 7 -> 0b10000101 = -123; uint8 200 stuck-at-0 on
    bit 7 -> 72; int32 -1 flip bit 31 -> 2**31 - 1."""
    from sanitas.faults import apply_fault_value
    from sanitas.faults.fault import SiteInfo
    s8, u8, s32 = SiteInfo((1,), 8, True, False), SiteInfo((1,), 8, False, False), SiteInfo((1,), 32, True, False)
    f = lambda kind, bit, value=None: Fault("weight", "conv1", (0,), bit, kind, value)  # noqa: E731
    assert apply_fault_value(np.int64(5), f("bitflip", 7), s8) == -123
    assert apply_fault_value(np.int64(-123), f("bitflip", 7), s8) == 5
    assert apply_fault_value(np.int64(200), f("stuck0", 7), u8) == 72
    assert apply_fault_value(np.int64(72), f("stuck1", 7), u8) == 200
    assert apply_fault_value(np.int64(-1), f("bitflip", 31), s32) == 2**31 - 1
    assert apply_fault_value(np.int64(0), f("multibit", 0b1000_0001), s8) == -127
    assert apply_fault_value(np.int64(17), f("random", 0, -3), s8) == -3


def test_sites_registered():
    assert {"weight", "bias", "input", "output", "acc"} <= set(SITES)

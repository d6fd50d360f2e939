"""The per-layer reload port of sanitas_top (regmap.RELOAD_REGISTERS) and persistent upsets (fi_enable bit1): an
upset written into a layer's parameter memory stays from run to run until the protection repairs it, the layer
escalates (reload from the trusted image), or the host rewrites the layer through the reload port."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from sanitas.errors import SanitasError
from sanitas.faults.executors import run_golden
from sanitas.faults.fault import Fault
from sanitas.golden import export_golden
from sanitas.hls import regmap
from sanitas.hls.faultport import fault_registers
from sanitas.hls.top import TopLibrary, build_top_library
from sanitas.protect.model import ProtectedModel
from sanitas.train import load_checkpoint
from ..conftest import trained_checkpoint

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

ZERO = dict.fromkeys(regmap.STATUS_COUNTERS, 0)


@pytest.fixture(scope="module")
def lenet(digits):
    model, _ = load_checkpoint(trained_checkpoint("lenet5"))
    gm = export_golden(model)
    return gm, gm.quantize_input(digits.test.tensors[0].numpy())[:6]


def test_persistent_upset_until_reload(lenet, tmp_path):
    """scheme none: a weight bit flip written once stays in every following run (the golden logits of that fault)
    until reload(layer) rewrites the layer (counted in escalations); then the runs are clean."""
    gm, x = lenet
    lib = TopLibrary(build_top_library(gm, "none", tmp_path, fault_port=True), gm)
    clean = gm.run_int(x)
    f = Fault("weight", "conv1", (0, 0, 1, 1), 6)
    assert fault_registers(f, gm, persistent=True)["fi_enable"] == 3
    empty = np.zeros((0,) + tuple(gm.input_shape), np.int8)
    y0, cnt0 = lib.run(empty, f, persistent=True)             # n = 0: the upset only
    assert y0.shape == (0, gm.num_classes) and cnt0 == ZERO
    faulty = run_golden(gm, x, [f])
    assert (faulty != clean).any()
    for _ in range(2):                                         # stays: no read-path replay, the memory holds it
        y, cnt = lib.run(x)
        np.testing.assert_array_equal(y, faulty)
        assert cnt == ZERO
    assert lib.reload("fc1") == ZERO | {"escalations": 1}     # another layer: conv1 keeps its upset
    np.testing.assert_array_equal(lib.run(x)[0], faulty)
    assert lib.reload("conv1") == ZERO | {"escalations": 1}
    assert lib.reload("relu1") == ZERO                         # no parameter memory: nothing rewritten
    y, cnt = lib.run(x)
    np.testing.assert_array_equal(y, clean)
    assert cnt == ZERO
    with pytest.raises(SanitasError, match="^layer 'fc9' does not exist$"):
        lib.reload("fc9")
    with pytest.raises(SanitasError, match=r"^a persistent upset needs a memory site \(weight, bias, "):
        lib.run(x, Fault("acc", "fc1", (3,), 6), persistent=True)


def test_double_upset_escalates_under_sanity(lenet, tmp_path):
    """Lazy sanity: two upsets in one weight column codeword are beyond the code: the first inference detects,
    finds the codeword uncorrectable, escalates (reloads conv2 from its trusted image) and recomputes: clean logits,
    the golden counters for the same memory state; the next run is clean (the patrol's work only)."""
    gm, x = lenet
    pm = ProtectedModel(gm, "sanity")
    lib = TopLibrary(build_top_library(gm, "sanity", tmp_path, fault_port=True), gm, pm)
    empty = np.zeros((0,) + tuple(gm.input_shape), np.int8)
    ups = [Fault("weight", "conv2", (1, 0, 1, 1), 6), Fault("weight", "conv2", (4, 0, 1, 1), 2)]
    for f in ups:
        lib.run(empty, f, persistent=True)
    y, cnt = lib.run(x)
    np.testing.assert_array_equal(y, gm.run_int(x))
    # the golden model with the same memory state, image after image (no reset: the memory persists)
    pm.reset()
    w = pm.memory("conv2")["weight"]
    for f in ups:                                              # the int8 bit flip
        u = (int(w[f.index]) & 0xFF) ^ (1 << f.bit)
        w[f.index] = u - 256 if u >= 128 else u
    want = dict.fromkeys(regmap.STATUS_COUNTERS, 0)
    for i in range(len(x)):
        yi, rep = pm.run(x[i:i + 1])
        np.testing.assert_array_equal(yi, y[i:i + 1])
        for k in want:
            want[k] += getattr(rep, k)
    assert cnt == want and cnt["escalations"] == 1 and cnt["detected"] >= 1 and cnt["uncorrectable"] == 0
    y2, cnt2 = lib.run(x)
    np.testing.assert_array_equal(y2, gm.run_int(x))
    assert cnt2 == ZERO | {"scrubbed": cnt2["scrubbed"]}

"""sanitas_top with the sanity unit (hls/include/sanitas/sanity_unit.h, emitted by firmware.py): bit-exact, the
fault-free counters, MACs and cycles against their golden / closed forms, and logits + counters equal to
``ProtectedModel``'s fault by fault for sampled records of every fault-port site (golden sites of every kind and the
protection's own state: sanity rows, seals, accumulators, layer-wide sums, checkpoints ...), per zoo net.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from sanitas.config import ArrayConfig
from sanitas.faults.fault import Fault
from sanitas.golden import export_golden
from sanitas.hls import regmap
from sanitas.hls.check import protected_per_image, sample_records
from sanitas.hls.faultport import state_hook
from sanitas.hls.cycles import cycle_model
from sanitas.hls.top import TopLibrary, build_top_library
from sanitas.protect.model import ProtectedModel
from sanitas.protect.overhead import overhead
from sanitas.train import load_checkpoint
from ..conftest import trained_checkpoint

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

ZERO = dict.fromkeys(regmap.STATUS_COUNTERS, 0)


def _setup(net, scheme, digits, tmp_path, images):
    model, _ = load_checkpoint(trained_checkpoint(net))
    gm = export_golden(model)
    pm = ProtectedModel(gm, scheme)
    lib = TopLibrary(build_top_library(gm, scheme, tmp_path, fault_port=True), gm, pm)
    return gm, pm, lib, gm.quantize_input(digits.test.tensors[0].numpy())[:images]


def _agree(gm, pm, lib, x, faults):
    alarms = 0
    for f in faults:
        got, cnt = lib.run(x, f)
        want, want_cnt = protected_per_image(pm, x, state_hook(gm, pm, [f]))
        np.testing.assert_array_equal(got, want, err_msg=str(f))
        assert cnt == want_cnt, str(f)
        alarms += cnt["detected"] > 0
    return alarms


@pytest.mark.parametrize("net,scheme,images,n_faults,fault_images", [
    ("lenet5", "sanity", 270, 60, 2), ("resnet20", "sanity+dmr", 8, 40, 1), ("mobilenetv2", "sanity+dmr", 10, 40, 1),
    ("vgg", "sanity+dmr", 10, 40, 1)])
def test_sanity_top(net, scheme, images, n_faults, fault_images, digits, tmp_path):
    gm, pm, lib, x = _setup(net, scheme, digits, tmp_path, images)
    y, counters = lib.run(x)
    np.testing.assert_array_equal(y, gm.run_int(x))
    _, want = protected_per_image(pm, x, None)
    assert counters == want and counters["scrubbed"] > 0       # only the patrol's work, no alarm
    assert counters == ZERO | {"scrubbed": counters["scrubbed"]}
    st = lib.stats()
    assert st["macs"] - images * gm.macs() == images * overhead(pm)["extra_macs_abs"] > 0
    assert st["cycles"] == images * cycle_model(gm, ArrayConfig(), scheme)
    faults = sample_records(gm, pm, n_faults, seed=11)
    assert {f.site for f in faults} >= {"weight", "bias", "acc", "output", "input", "sanity_w", "sanity_b",
                                        "sanity_sum", "sanity_acc"}
    assert _agree(gm, pm, lib, x[:fault_images], faults) >= n_faults // 4


def test_sanity_events_on_lenet(digits, tmp_path):
    """Single faults under lazy sanity, per image: an accumulator flip is located and corrected in place; a flip in
    the total sanity row raises the alarm, the seal repairs the row word and no output is touched (the protection's
    own fault); a flip in a partial row is never read by the lazy path (left to the patrol); a weight flip is
    detected, located at every pixel it reaches, corrected, and the word repaired (logits clean)."""
    gm, pm, lib, x = _setup("lenet5", "sanity", digits, tmp_path, 3)
    clean = gm.run_int(x)
    total = pm.plans["fc1"].guard.M                             # the lazy path multiplies the total row only
    for f, extra in ((Fault("acc", "fc3", (2,), 20), {"detected": 3, "located": 3, "corrected": 3}),
                     (Fault("sanity_w", "fc1", (0, total, 5), 3), {"detected": 3, "repaired": 3}),
                     (Fault("sanity_w", "fc1", (0, 2, 5), 3), {})):
        y, cnt = lib.run(x, f)
        np.testing.assert_array_equal(y, clean, err_msg=str(f))
        want = protected_per_image(pm, x, state_hook(gm, pm, [f]))[1]
        assert cnt == want == ZERO | {"scrubbed": cnt["scrubbed"]} | extra, str(f)
    f = Fault("weight", "conv2", (3, 1, 2, 2), 6)
    y, cnt = lib.run(x, f)
    np.testing.assert_array_equal(y, clean)
    assert cnt["detected"] == 3 and cnt["repaired"] == 3 and cnt["corrected"] == cnt["located"] > 3
    assert cnt == protected_per_image(pm, x, state_hook(gm, pm, [f]))[1]


def test_per_layer_sanity_map(digits, tmp_path):
    """A per-layer map mixing eager sanity (conv1, the fc layers: all M + 1 rows as GEMM columns, extra PE-column
    passes), lazy sanity + DMR (conv2) and plain DMR elsewhere: bit-exact, MACs and cycles equal to the golden
    figures, fault agreement."""
    spec = {"default": "dmr", "conv1": "sanity:eager", "conv2": "sanity+dmr", "fc*": "sanity:eager"}
    gm, pm, lib, x = _setup("lenet5", spec, digits, tmp_path, 20)
    y, counters = lib.run(x)
    np.testing.assert_array_equal(y, gm.run_int(x))
    assert counters == protected_per_image(pm, x, None)[1]
    st = lib.stats()
    assert st["macs"] - 20 * gm.macs() == 20 * overhead(pm)["extra_macs_abs"]
    assert st["cycles"] == 20 * cycle_model(gm, ArrayConfig(), spec)
    lazy = {"default": "dmr", "conv1": "sanity", "conv2": "sanity+dmr", "fc*": "sanity"}
    assert cycle_model(gm, ArrayConfig(), spec) > cycle_model(gm, ArrayConfig(), lazy)
    _agree(gm, pm, lib, x[:2], sample_records(gm, pm, 40, seed=4))


def test_protected_network_testbench(digits, tmp_path):
    """The network testbench (``make -C hls csim SCHEME=...``) of a protected net: bit-exact and the golden
    fault-free counters from counters.bin (the patrol's scrubbed words); a wrong expected counter fails it."""
    import subprocess

    from sanitas.hls.netcsim import run_net_csim
    rc, line = run_net_csim("lenet5", tmp_path, limit=20, scheme="sanity+dmr")
    assert rc == 0 and line.startswith("sanitas_net: 20/20 bit-exact, counters golden, cycles "), line
    cnt = np.fromfile(tmp_path / "counters.bin", dtype="<i4")
    assert len(cnt) == len(regmap.STATUS_COUNTERS) and cnt[-1] > 0 and not cnt[:-1].any()
    cnt[-1] += 1
    cnt.tofile(tmp_path / "counters.bin")
    r = subprocess.run([str(tmp_path / "csim"), str(tmp_path), "20"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout.startswith("sanitas_net: 20/20 bit-exact, counters MISMATCH")

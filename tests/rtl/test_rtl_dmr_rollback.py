"""The goldens of the RTL dmr_unit and rollback_ctrl (`sanitas.rtl.dmr`, `sanitas.rtl.rollback`) against the
algorithms they mirror: the Fletcher-form checksums map onto `protect.seal.checksums`; the two-lane output stage is
the golden act + maxpool of a real tensor; single faults in the unit's registers are detected or masked, never
silent, with exact numbers; the rollback sequence gives the exact op lists and counters of
`ProtectedModel._exec` / `_verify` for given check answers (pure Python). Last, the new tops and parameter variants
compile cleanly with Icarus and their parameter guards fire."""
from __future__ import annotations

import itertools
import shutil
import subprocess

import numpy as np
import pytest

from sanitas.config import ArrayConfig
from sanitas.errors import SanitasError
from sanitas.golden.model import maxpool_int
from sanitas.golden.rounding import requantize
from sanitas.protect.seal import checksums
from sanitas.rtl.dmr import DMR_REGS, DmrFault, classify, fletcher, out_stage, run_stream, to_golden
from sanitas.rtl.rollback import sequence


def test_fletcher_is_the_golden_code_counted_from_the_end():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 64, 1000):
        x = rng.integers(-128, 128, n)
        s0, f = fletcher(x)
        assert s0 == int(x.sum()) and f == int(((n - np.arange(n)) * x).sum())
        assert np.array_equal(to_golden(s0, f, n), checksums(x.reshape(1, -1))[0])
    big = np.full(3, (1 << 62), np.int64)                 # wraps modulo 2**64 like the int64 golden
    assert np.array_equal(to_golden(*fletcher(big), 3), checksums(big.reshape(1, -1))[0])


def test_out_stage_is_requant_relu_maxpool():
    rng = np.random.default_rng(1)
    acc = rng.integers(-(1 << 16), 1 << 16, (1, 3, 4, 4))
    for shift, (lo, hi) in itertools.product((-2, 0, 3, 7), ((-128, 127), (0, 255))):
        y = np.clip(requantize(acc, 0, shift, 64, True), lo, hi)
        want = maxpool_int(y, 2, 2, 0).ravel()
        windows = [acc[0, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].ravel() for c in range(3) for i in range(2)
                   for j in range(2)]
        assert np.array_equal(out_stage(windows, shift, lo, hi), want)
        assert np.array_equal(run_stream(windows, shift, lo, hi).words, want)
    # round half to even at the shift: 5/2 -> 2, 7/2 -> 4, -5/2 -> -2
    assert out_stage([[5], [7], [-5]], 1, -128, 127).tolist() == [2, 4, -2]


def test_dmr_register_faults():
    windows = [[100, -3, 40, 7], [9, 9, 9, 9], [-300, 0, 5, 1]]
    clean = run_stream(windows, 1, 0, 255)
    assert clean.words.tolist() == [50, 4, 2] and not clean.lane_bad and not clean.rd_bad
    # lane A max register flipped mid-window: the word is wrong and the lanes disagree -> detected
    f = run_stream(windows, 1, 0, 255, fault=DmrFault("lane_a_max", 7, "bitflip", 1))
    assert f.words.tolist() == [178, 4, 2] and f.lane_bad and classify(f, clean) == "detected"
    # the same flip on the last beat of a window is overwritten by the next window's first beat -> masked
    assert classify(run_stream(windows, 1, 0, 255, fault=DmrFault("lane_a_max", 7, "bitflip", 3)), clean) == "masked"
    # a bit beyond the 9-bit lane register is no fault; a read-sum fault raises rd_bad
    assert classify(run_stream(windows, 1, 0, 255, fault=DmrFault("lane_b_max", 20, "bitflip", 0)), clean) == "masked"
    r = run_stream(windows, 1, 0, 255, fault=DmrFault("rd_f", 63, "stuck1", 13))
    assert r.rd_bad and not r.lane_bad and classify(r, clean) == "detected"
    rng = np.random.default_rng(2)
    silent = 0
    for reg in DMR_REGS:
        for _ in range(25):
            fault = DmrFault(reg, int(rng.integers(9 if reg.endswith("max") else 64)), "bitflip",
                             int(rng.integers(15)))
            silent += classify(run_stream(windows, 1, 0, 255, fault=fault), clean) == "silent"
    assert silent == 0
    with pytest.raises(SanitasError, match="dmr fault must name a register of lane_a_max"):
        run_stream(windows, 1, 0, 255, fault=DmrFault("lane_c", 0, "bitflip", 0))


def _answers(*values):
    it = iter(values)
    return lambda op: next(it)


def test_rollback_sequences():
    ok = sequence(_answers(True, True))
    assert ok.ops == ("READ", "EXEC") and (ok.detected, ok.rolled_back, ok.uncorrectable, ok.flag) == (0, 0, 0, False)
    # read mismatch, re-read passes (a read-path fault)
    c = sequence(_answers(False, True, True))
    assert c.ops == ("READ", "REREAD", "EXEC") and (c.detected, c.rolled_back, c.flag) == (1, 1, False)
    # stored-checkpoint fault: re-read fails, re-executing the producer fixes it
    c = sequence(_answers(False, False, True, True))
    assert c.ops == ("READ", "REREAD", "REEXEC", "EXEC") and (c.detected, c.rolled_back) == (1, 2)
    # the layer's check fails once (lane mismatch): roll back, read again, execute again
    c = sequence(_answers(True, False, True, True))
    assert c.ops == ("READ", "EXEC", "READ", "EXEC") and (c.rolled_back, c.escalations, c.flag) == (1, 0, False)
    # always failing: retries = 2 -> three executions, escalation reload, one more execution, uncorrectable
    c = sequence(lambda op: op != "EXEC")
    assert c.ops == ("READ", "EXEC") * 3 + ("RELOAD", "EXEC")
    assert (c.detected, c.rolled_back, c.uncorrectable, c.escalations, c.flag) == (0, 2, 1, 1, True)
    c = sequence(lambda op: op != "EXEC", retries=0, escalate=False)
    assert c.ops == ("READ", "EXEC") and (c.rolled_back, c.uncorrectable, c.flag) == (0, 1, True)
    # a read that never passes: max(retries, 1) attempts, uncorrectable, the layer still runs (golden goes on)
    c = sequence(lambda op: op in ("EXEC", "RELOAD"), retries=0)
    assert c.ops == ("READ", "REREAD", "EXEC") and (c.detected, c.rolled_back, c.uncorrectable, c.flag) == \
        (1, 1, 1, True)
    with pytest.raises(ValueError, match=r"retries must be in \[0, 6\], got 7"):
        sequence(lambda op: True, retries=7)


# ---- the new tops compile cleanly with Icarus (every parameter variant the benches and bench_rtl use) ----
needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")


@needs_iverilog
@pytest.mark.parametrize("gen, top, params, error", [
    ("generate_dmr_unit", "dmr_unit", {}, None),
    ("generate_dmr_unit", "dmr_unit", {"DMR_EN": 0}, None),
    ("generate_dmr_unit", "dmr_unit", {"OUT_W": 32}, "dmr_unit: OUT_W must be in [2, ACC_W)"),
    ("generate_dmr_unit", "dmr_unit", {"RD_N": 32, "RD_W": 8}, None),
    ("generate_dmr_unit", "dmr_unit", {"RD_N": 12, "RD_W": 12, "DMR_EN": 0}, None),
    ("generate_dmr_unit", "dmr_unit", {"RD_N": 32, "RD_W": 5}, "dmr_unit: RD_W must divide RD_N"),
    ("generate_rollback_ctrl", "rollback_ctrl", {"RETRIES": 0, "ESC_EN": 0}, None),
    ("generate_rollback_ctrl", "rollback_ctrl", {"RETRIES": 7}, "rollback_ctrl: RETRIES must be in [0, 6]"),
    ("generate_sanity_tile", "sanity_tile", {"EAGER": 1}, None),
    ("generate_tmr_array", "tmr_array", {}, None),
    ("generate_systolic_array", "systolic_array", {"CHK_EN": 0}, None),
    ("generate_systolic_array", "systolic_array", {"CHK_EN": 2}, "systolic_array: CHK_EN must be 0 or 1"),
])
def test_new_tops_compile(tmp_path, gen, top, params, error):
    from sanitas.rtl import generate
    paths = getattr(generate, gen)(ArrayConfig(rows=3, cols=5), tmp_path / "rtl")
    extra = [f"-P{top}.{k}={v}" for k, v in params.items()]
    proc = subprocess.run(["iverilog", "-g2012", "-s", top, *extra, "-o", str(tmp_path / "a.vvp"), *map(str, paths)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "warning" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr
    run = subprocess.run(["vvp", "-n", str(tmp_path / "a.vvp")], capture_output=True, text=True, timeout=60)
    if error is None:
        assert "ERROR" not in run.stdout + run.stderr
    else:
        assert error in run.stdout + run.stderr

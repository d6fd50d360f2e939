"""Tests of the RTL sanity datapath without a simulator run of the flow: the golden model `sanitas.rtl.sanity`
(partial checksums, check_row verdicts and corrections, protected_gemm outcomes, pe_faults), the generated
sanity_unit / sanity_array text, their Icarus compilation, the EAGER guard and the part_acc fault port.

The cocotb benches (rtl_tests/sanity_unit, rtl_tests/systolic_array) compare the RTL against this golden.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter

import numpy as np
import pytest

from sanitas.config import ArrayConfig
from sanitas.errors import SanitasError
from sanitas.faults import Fault
from sanitas.golden.gemm import gemm_replay, wrap
from sanitas.protect.code import DATA, OK, SANITY, UNCORRECTABLE, hamming_cover
from sanitas.rtl.faults import FiPorts, fault_to_fi_ports
from sanitas.rtl.generate import generate_sanity_array, n_partials, verilog_parameters
from sanitas.rtl.sanity import a_path_alarm, check_row, partial_checksums, pe_faults, protected_gemm

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")
A = np.array([[1, -2, 3], [127, -128, 5]])                # (2, 3)
B = np.array([[1, 2, 3, 4, 5], [-1, 0, 7, -128, 127], [2, 2, -3, 0, 1]])   # (3, 5)


def test_partial_checksums_are_the_hamming_sums():
    arr = ArrayConfig(rows=2, cols=5)
    p = partial_checksums(A, B, arr)
    c = A @ B
    cov = hamming_cover(5)[:-1]                       # partial 0: j = 0, 2, 4; 1: j = 1, 2; 2: j = 3, 4
    assert cov.tolist() == [[1, 0, 1, 0, 1], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1]]
    assert np.array_equal(p, -(c @ cov.T))
    assert n_partials(arr) == 3 and n_partials(ArrayConfig(cols=4)) == 3 and n_partials(ArrayConfig(cols=8)) == 4


def test_partial_fault_acts_like_a_total_fault_of_the_covered_columns():
    arr = ArrayConfig(rows=2, cols=5)
    f = Fault("part_acc", "gemm", (1, 2), 4, "bitflip", cycle=None)       # read-out flip of P[1, 2]
    p = partial_checksums(A, B, arr, f)
    clean = partial_checksums(A, B, arr)
    assert (p - clean).tolist() == [[0, 0, 0], [0, 0, 16 if not clean[1, 2] & 16 else -16]]
    # in a lazy ordinary pass the PE holds 0: the fault acts on 0
    assert partial_checksums(A, B, arr, f, running=False).tolist() == [[0, 0, 0], [0, 0, 16]]
    with pytest.raises(SanitasError, match=r"part_acc index must be \(row, p\) with p in \[0, 3\), got \(1, 3\)"):
        partial_checksums(A, B, arr, Fault("part_acc", "gemm", (1, 3), 4))


def _row(c, n=5, w=32):
    sums = wrap(-(hamming_cover(n) @ np.asarray(c)), w)
    return np.asarray(c, np.int64), int(sums[-1]), sums[:-1]


def test_check_row_verdicts_and_correction():
    c, s, p = _row([10, -20, 30, 40, -50])
    assert check_row(c, s, p, part=True, fix=True, acc_width=32)[:3] == (False, OK, -1)
    bad = c.copy()
    bad[3] += 1 << 20                                  # output 3: pattern 0b100 = 3 + 1
    v = check_row(bad, s, p, part=True, fix=True, acc_width=32)
    assert (v.alarm, v.status, v.idx, v.resid) == (True, DATA, 3, 1 << 20) and v.c.tolist() == c.tolist()
    v = check_row(bad, s, p, part=True, fix=False, acc_width=32)       # detection beat: nothing changed
    assert v.status == DATA and v.c.tolist() == bad.tolist()
    v = check_row(bad, s, p, part=False, fix=False, acc_width=32)      # lazy detection: the total alone
    assert (v.alarm, v.status, v.idx) == (True, SANITY, 3)
    assert check_row(c, s + 1, p, part=True, fix=True, acc_width=32)[:3] == (True, SANITY, 3)   # the total
    p2 = p.copy()
    p2[1] += 7
    assert check_row(c, s, p2, part=True, fix=True, acc_width=32)[:3] == (True, SANITY, 1)     # partial 1
    two = c.copy()
    two[0] += 1
    two[1] += 2                                        # two outputs: inconsistent partials
    v = check_row(two, s, p, part=True, fix=True, acc_width=32)
    assert (v.status, v.idx) == (UNCORRECTABLE, -1) and v.c.tolist() == two.tolist()
    c6, s6, p6 = _row([1, 2, 3, 4, 5])
    p6 = p6 + np.array([9, 9, 9])                      # pattern 0b111 -> idx 6 >= cols, with the total
    assert check_row(c6, s6 + 9, p6, part=True, fix=True, acc_width=32).status == UNCORRECTABLE


def test_protected_gemm_outcomes():
    arr = ArrayConfig(rows=2, cols=5)
    gold = gemm_replay(A, B, None, arr)[0]
    o = protected_gemm(A, B, Fault("pe_acc", "gemm", (1, 3), 30, cycle=1), arr)
    assert (o.outcome, o.rerun, o.detected, o.corrected, o.uncorrectable) == ("corrected", True, 1, 1, 0)
    assert np.array_equal(o.c, gold) and not np.array_equal(o.c_pass1, gold)
    o = protected_gemm(A, B, Fault("chk_acc", "gemm", (0,), 3, cycle=None), arr)
    assert (o.outcome, o.rerun, o.detected, o.corrected, o.uncorrectable) == ("masked", True, 1, 0, 0)
    lazy = protected_gemm(A, B, Fault("part_acc", "gemm", (0, 1), 3), arr)                     # ignored when lazy
    assert (lazy.outcome, lazy.rerun, lazy.detected) == ("masked", False, 0)
    eager = protected_gemm(A, B, Fault("part_acc", "gemm", (0, 1), 3), ArrayConfig(rows=2, cols=5, checksums="eager"))
    assert (eager.outcome, eager.rerun, eager.detected, eager.corrected) == ("masked", True, 1, 0)
    none = protected_gemm(A, B, None, arr)
    assert (none.outcome, none.rerun) == ("masked", False)
    # operand registers: a faulty B[kk, 3] from PE row 0 down is located and corrected in every row it reaches
    ob = protected_gemm(A, B, Fault("pe_b", "gemm", (0, 3), 6, cycle=3), arr)
    assert ob.outcome == "corrected" and np.array_equal(ob.c, gold) and ob.corrected == ob.detected > 0
    # eager: a faulty A reaches the partial PEs too (they share the checksum PE's A register)
    e = ArrayConfig(rows=2, cols=5, checksums="eager")
    fa = Fault("pe_a", "gemm", (1, 2), 4, cycle=2)
    kk = 2 - 1 - 2                                    # cycle - pe_row - pe_col: a padding step, no effect
    assert kk < 0 and np.array_equal(partial_checksums(A, B, e, fa), partial_checksums(A, B, e))
    fa = Fault("pe_a", "gemm", (1, 2), 4, cycle=4)    # kk = 1
    delta = (int(A[1, 1]) ^ 16) - int(A[1, 1])
    want = partial_checksums(A, B, e).copy()
    want[1] += delta * -(hamming_cover(5)[:-1] @ B[1])
    assert np.array_equal(partial_checksums(A, B, e, fa), want)
    with pytest.raises(SanitasError, match="the sanity flow models the sites pe_acc, chk_acc, part_acc, pe_a, pe_b, "
                                           "got 'weight'"):
        protected_gemm(A, B, Fault("weight", "gemm", (0, 0), 1), arr)


def test_a_path_alarm_and_pass1_rerun():
    """An A operand fault between the column-0 and checksum-column folds sets a_err: pass 1 runs again fault-free
    (one detection, a_path 1, no re-run passes); the row checksums alone miss a column-0 fault (silent)."""
    arr = ArrayConfig(rows=2, cols=5)
    gold = gemm_replay(A, B, None, arr)[0]
    col0 = Fault("pe_a", "gemm", (1, 0), 4, cycle=2)                 # kk = 2 - 1 - 0 = 1: A[1, 1] ^= 16
    assert a_path_alarm(A, B, col0, arr)
    o = protected_gemm(A, B, col0, arr)
    assert (o.outcome, o.rerun, o.detected, o.corrected, o.uncorrectable, o.a_path) == ("corrected", False, 1, 0, 0, 1)
    assert np.array_equal(o.c, gold) and not np.array_equal(o.c_pass1, gold)
    o = protected_gemm(A, B, col0, arr, a_path=False)                 # sanity_array alone: every output of row 1
    assert (o.outcome, o.detected, o.a_path) == ("silent", 0, 0)      # wrong, residual 0
    mid = Fault("pe_a", "gemm", (0, 3), 6, cycle=4)                   # kk = 1: columns 3, 4 and the checksum
    assert protected_gemm(A, B, mid, arr, a_path=False).outcome == "uncorrectable"
    o = protected_gemm(A, B, mid, arr)
    assert (o.outcome, o.detected, o.uncorrectable, o.a_path) == ("corrected", 1, 0, 1)
    chk = Fault("pe_a", "gemm", (0, 5), 3, cycle=5)                   # the checksum PE's own A register: C right
    o = protected_gemm(A, B, chk, arr)
    assert (o.outcome, o.rerun, o.detected, o.a_path) == ("masked", False, 1, 1)
    # no alarm: a padding step (kk < 0), a stuck bit that already had the value, other sites, fault-free
    assert not a_path_alarm(A, B, Fault("pe_a", "gemm", (1, 2), 4, cycle=2), arr)
    assert not a_path_alarm(A, B, Fault("pe_a", "gemm", (0, 1), 0, "stuck1", cycle=1), arr)   # A[0, 0] = 1
    assert not a_path_alarm(A, B, Fault("pe_b", "gemm", (0, 3), 6, cycle=3), arr)
    assert not a_path_alarm(A, B, None, arr)


def test_pe_faults_cover_every_pe():
    arr = ArrayConfig(rows=3, cols=5)
    faults = pe_faults(arr, np.random.default_rng(0), 8, 2)
    sites = Counter((f.site, f.index) for f in faults)
    assert len(sites) == 3 * 5 + 3 and set(sites.values()) == {2}          # lazy: no partial registers
    eager_sites = Counter((f.site, f.index) for f in pe_faults(ArrayConfig(rows=3, cols=5, checksums="eager"),
                                                                np.random.default_rng(0), 8, 2))
    assert len(eager_sites) == 3 * 5 + 3 + 3 * 3 and set(eager_sites.values()) == {2}
    outcomes = Counter(protected_gemm(A[:1].repeat(3, 0), B, f, arr).outcome for f in faults)
    assert outcomes["silent"] == 0 and outcomes["uncorrectable"] == 0


def test_part_acc_fault_port():
    arr = ArrayConfig(rows=4, cols=4)
    # the partial PEs share the total PE's wavefront position: same edge as chk_acc (2,) at cycle 7 (= 9)
    f = Fault("part_acc", "gemm", (2, 1), 31, "stuck1", cycle=7)
    assert fault_to_fi_ports(f, arr, 10) == FiPorts(fi_row=2, fi_col=4, fi_bit=31, fi_kind=2, edge=9, fi_part=2)
    with pytest.raises(SanitasError, match=r"part_acc index must be \(row, p\) with p in \[0, 3\), got \(2, 3\)"):
        fault_to_fi_ports(Fault("part_acc", "gemm", (2, 3), 1), arr, 10)


def test_rendered_sanity_text(tmp_path):
    arr = ArrayConfig(rows=3, cols=5, checksums="eager")
    paths = generate_sanity_array(arr, tmp_path)
    assert [p.name for p in paths] == ["systolic_pe.v", "systolic_delay.v", "systolic_array.v", "sanity_unit.v",
                                       "sanity_array.v"]
    for p in paths:
        text = p.read_text()
        assert "`default_nettype none" in text and "{{" not in text and "{%" not in text
        for line in text.splitlines():
            if re.match(r"\s*(parameter|localparam)\b", line):
                assert "//" in line, f"{p.name}: uncommented parameter: {line.strip()}"
    top = paths[2].read_text()
    assert verilog_parameters(arr)["EAGER"] == 1 and re.search(r"parameter integer EAGER\s+= 1\s+//", top)
    for r in range(3):
        assert re.search(rf"output wire \[3\*ACC_W-1:0\]\s+p_row{r},", top)
    assert "assign p_row2 = {p_acc[8], p_acc[7], p_acc[6]};" in top
    assert re.search(r"input  wire \[1:0\]\s+fi_part", top)         # 0..3 -> 2 bits
    unit = paths[3].read_text()
    assert re.search(r"parameter integer COLS\s+= 5,", unit) and "NP = $clog2(COLS + 1) = 3" in unit


def _iverilog(paths, out, *extra):
    return subprocess.run(["iverilog", "-g2012", "-Wall", "-o", str(out), *extra, *map(str, paths)],
                          capture_output=True, text=True, timeout=60)


@needs_iverilog
@pytest.mark.parametrize("rows,cols,mode", [(1, 1, "lazy"), (2, 3, "eager"), (4, 4, "lazy"), (3, 8, "eager")])
def test_sanity_array_compiles_cleanly(tmp_path, rows, cols, mode):
    paths = generate_sanity_array(ArrayConfig(rows=rows, cols=cols, checksums=mode), tmp_path / "rtl")
    for top in ("sanity_array", "sanity_unit", "systolic_array"):
        proc = _iverilog(paths, tmp_path / f"{top}.vvp", "-s", top)
        assert proc.returncode == 0, proc.stderr
        assert "warning" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr
        run = subprocess.run(["vvp", "-n", str(tmp_path / f"{top}.vvp")], capture_output=True, text=True, timeout=60)
        assert "ERROR" not in run.stdout + run.stderr


@needs_iverilog
@pytest.mark.parametrize("top,param,value,message", [
    ("systolic_array", "EAGER", 2, "systolic_array: EAGER must be 0 or 1"),
    ("sanity_unit", "ACC_W", 1, "sanity_unit: ACC_W must be >= 2"),
    ("sanity_array", "CNT_W", 0, None),      # zero-width counters: Icarus refuses to elaborate
    ("sanity_unit", "COLS", 0, None),
])
def test_illegal_sanity_parameter_reports_error(tmp_path, top, param, value, message):
    paths = generate_sanity_array(ArrayConfig(rows=2, cols=3), tmp_path / "rtl")
    proc = _iverilog(paths, tmp_path / "a.vvp", "-s", top, f"-P{top}.{param}={value}")
    if message is None:
        assert proc.returncode != 0 and "error" in proc.stderr, proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run(["vvp", "-n", str(tmp_path / "a.vvp")], capture_output=True, text=True, timeout=60)
    assert "ERROR: " in run.stdout + run.stderr and message in run.stdout + run.stderr

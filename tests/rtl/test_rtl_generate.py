"""Tests of the systolic-array Verilog generator (sanitas.rtl.generate) and its fault-port adapter (sanitas.rtl.faults):
ArrayConfig validation, rendered text and Verilog parameters, Icarus compilation of several sizes, the Verilog
`$error` guards on illegal parameters, and the Fault -> fi_* port / edge mapping.

Simulation of the generated array against the golden GEMM lives in rtl_tests/systolic_array and
tests/rtl/test_array_levels.py.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from sanitas.config import ArrayConfig, clog2
from sanitas.errors import SanitasError
from sanitas.faults import Fault
from sanitas.rtl.faults import FiPorts, fault_to_fi_ports
from sanitas.rtl.generate import generate_systolic_array, render_systolic_array, verilog_parameters

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(rows=0, cols=2), "array: rows must be >= 1, got 0"),
        (dict(rows=2, cols=0), "array: cols must be >= 1, got 0"),
        (dict(rows=-3, cols=2), "array: rows must be >= 1, got -3"),
        (dict(rows=2.0, cols=2), "array: rows must be an int, got 2.0"),
        (dict(rows=True, cols=2), "array: rows must be an int, got True"),
        (dict(rows=2, cols=2, data_width=1), "array: data_width must be >= 2, got 1"),
        (dict(rows=2, cols=4, acc_width=18), "acc_width must be >= 2*data_width + clog2(cols) + 1 = 19"),
        (dict(rows=2, cols=5, data_width=4, acc_width=11), "= 12"),
        (dict(rows=2, cols=2, max_k=0), "array: max_k must be >= 1, got 0"),
        (dict(rows=2, cols=2, fault_injection=1), "array: fault_injection must be a bool, got 1"),
    ],
)
def test_bad_array_raises_one_line_error(kwargs, fragment):
    with pytest.raises(SanitasError) as info:
        ArrayConfig(**kwargs)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_generate_needs_an_array_config(tmp_path):
    with pytest.raises(SanitasError, match="generate_systolic_array needs an ArrayConfig, got int"):
        generate_systolic_array(4, tmp_path)
    assert not list(tmp_path.iterdir()), "nothing may be written for a bad argument"


def test_clog2_matches_verilog():
    assert [clog2(n) for n in (0, 1, 2, 3, 4, 5, 8, 9, 1024, 1025)] == [0, 0, 1, 2, 2, 3, 3, 4, 10, 11]


def test_minimal_legal_widths_accepted(tmp_path):
    # acc_width exactly 2*data_width + clog2(cols) + 1 is legal: 2*8 + 2 + 1 = 19 for cols = 4
    assert ArrayConfig(3, 4, 8, 19).chk_width == 11
    assert ArrayConfig(1, 1, 2, 5).chk_width == 3  # -(-2) = 2 needs 3 signed bits
    assert len(generate_systolic_array(ArrayConfig(1, 1, 2, 5), tmp_path)) == 3


def test_verilog_parameters_come_from_the_array():
    assert verilog_parameters(ArrayConfig()) == {"DATA_W": 8, "ACC_W": 32, "K_W": 11, "FI_EN": 1, "EAGER": 0}
    arr = ArrayConfig(rows=3, cols=5, data_width=6, acc_width=24, max_k=128, fault_injection=False,
                      checksums="eager")
    assert verilog_parameters(arr) == {"DATA_W": 6, "ACC_W": 24, "K_W": 8, "FI_EN": 0, "EAGER": 1}
    top = render_systolic_array(arr)["systolic_array.v"]
    for name, value in verilog_parameters(arr).items():
        assert re.search(rf"parameter integer {name}\s+= {value}, ", top) or \
            re.search(rf"parameter integer {name}\s+= {value}\s+//", top), name
    assert "input  wire [3*DATA_W-1:0]" in top and "input  wire [5*DATA_W-1:0]" in top
    assert "max_k=128" in top.splitlines()[1]


def test_rendered_text(tmp_path):
    paths = generate_systolic_array(ArrayConfig(rows=3, cols=5), tmp_path)
    assert [p.name for p in paths] == ["systolic_pe.v", "systolic_delay.v", "systolic_array.v"]
    for p in paths:
        text = p.read_text()
        assert "`default_nettype none" in text
        assert "{{" not in text and "{%" not in text, f"unrendered jinja in {p.name}"
        for line in text.splitlines():
            if re.match(r"\s*(parameter|localparam)\b", line):
                assert "//" in line, f"{p.name}: uncommented parameter: {line.strip()}"
        assert "$error" in text
    top = paths[-1].read_text()
    for r in range(3):
        assert re.search(rf"output wire \[5\*ACC_W-1:0\]\s+c_row{r},", top)
        assert re.search(rf"output wire \[ACC_W-1:0\]\s+s_row{r},", top)
    assert "c_row3" not in top
    assert "assign c_row2 = {c_acc[14], c_acc[13], c_acc[12], c_acc[11], c_acc[10]};" in top
    assert re.search(r"input  wire \[1:0\]\s+fi_row,", top)   # rows 0..2 -> 2 bits
    assert re.search(r"input  wire \[2:0\]\s+fi_col,", top)   # cols 0..5 (5 = checksum) -> 3 bits
    assert "localparam integer ROWS  = 3;" in top and "localparam integer COLS  = 5;" in top
    assert "0 bitflip, 1 stuck0, 2 stuck1" in top              # the KINDS names of sanitas.faults


def test_generate_is_idempotent(tmp_path):
    first = generate_systolic_array(ArrayConfig(rows=2, cols=2), tmp_path)
    stamps = [p.stat().st_mtime_ns for p in first]
    second = generate_systolic_array(ArrayConfig(rows=2, cols=2), tmp_path)
    assert first == second
    assert [p.stat().st_mtime_ns for p in second] == stamps, "unchanged files must not be rewritten"
    generate_systolic_array(ArrayConfig(rows=2, cols=2, acc_width=40), tmp_path)
    assert "ACC_W  = 40" in first[-1].read_text()


def test_fault_to_fi_ports():
    arr = ArrayConfig(rows=4, cols=4)
    k = 10
    # chk_acc of row 2 = PE (2, cols); cycle 7: kk = 7 - 2 - 4 = 1, beat 1 at edge 2 -> edge 2 + 1 + 2 + 4 = 9
    f = Fault("chk_acc", "gemm", (2,), 31, "stuck1", cycle=7)
    assert fault_to_fi_ports(f, arr, k) == FiPorts(fi_row=2, fi_col=4, fi_bit=31, fi_kind=2, edge=9)
    # the same wavefront cycle on a schedule with bubbles: beat 1 accepted at edge 5 -> edge 12
    assert fault_to_fi_ports(f, arr, k, [1, 5, 6, 7, 8, 9, 10, 11, 12, 13]).edge == 12
    g = Fault("pe_acc", "gemm", (0, 0), 0, "bitflip", cycle=3)          # kk = 3: beat 3 at edge 4 -> edge 5
    assert fault_to_fi_ports(g, arr, k) == FiPorts(0, 0, 0, 0, 5)
    assert fault_to_fi_ports(Fault("pe_acc", "gemm", (3, 1), 5, "stuck0", cycle=2), arr, k) == FiPorts(3, 1, 5, 1, 0)
    read_out = Fault("pe_acc", "gemm", (1, 2), 4)                       # cycle None: after the last MAC
    assert fault_to_fi_ports(read_out, arr, k).edge == k + arr.rows + arr.cols
    late = Fault("pe_acc", "gemm", (1, 2), 4, cycle=100)               # kk >= K - 1: same as read-out
    assert fault_to_fi_ports(late, arr, k).edge == k + arr.rows + arr.cols
    # operand registers: the edge that uses reduction step kk (the same as an accumulator fault of that step),
    # fi_reg 1 (A) / 2 (B); a cycle whose step is a padding operand has no effect (fi_kind 3)
    # pe_a (1, 2) at cycle 5: kk = 2, beat 2 at edge 3 -> edge 3 + 1 + 1 + 2
    assert fault_to_fi_ports(Fault("pe_a", "gemm", (1, 2), 7, cycle=5), arr, k) == FiPorts(1, 2, 7, 0, 7, 0, 1)
    assert fault_to_fi_ports(Fault("pe_b", "gemm", (2, 4), 10, "stuck1", cycle=9), arr, k, list(range(2, 12))) == \
        FiPorts(2, 4, 10, 2, 12, 0, 2)                                   # chk_width 11; kk = 3: edge 5 + 1 + 2 + 4
    assert fault_to_fi_ports(Fault("pe_a", "gemm", (3, 3), 1, cycle=2), arr, k) == FiPorts(3, 3, 1, 3, 0, 0, 1)
    bad = [
        (Fault("weight", "gemm", (0, 0), 1),
         "RTL replay supports the sites pe_acc, chk_acc, part_acc, pe_a, pe_b, got 'weight'"),
        (Fault("pe_a", "gemm", (0, 0), 8, cycle=2), "bit 8 out of range for the 8-bit pe_a register"),
        (Fault("pe_b", "gemm", (0, 0), 1), "pe_b faults need a cycle"),
        (Fault("pe_acc", "gemm", (0, 0), 3, "multibit"), "RTL replay supports the kinds bitflip, stuck0, stuck1"),
        (Fault("pe_acc", "gemm", (4, 0), 1), "pe_acc index must be (row, col) in [0, 4) x [0, 4), got (4, 0)"),
        (Fault("pe_acc", "gemm", (0, 4), 1), "pe_acc index must be (row, col)"),
        (Fault("chk_acc", "gemm", (0, 1), 1), "chk_acc index must be (row,)"),
        (Fault("pe_acc", "gemm", (0, 0), 32), "bit 32 out of range for the 32-bit pe_acc register"),
        (Fault("pe_acc", "gemm", (0, 0), 1, cycle=-1), "fault cycle must be a wavefront cycle >= 0 or None"),
    ]
    for fault, message in bad:
        with pytest.raises(SanitasError) as info:
            fault_to_fi_ports(fault, arr, k)
        assert message in str(info.value)
    with pytest.raises(SanitasError, match="beat_edges must be 10 increasing edges"):
        fault_to_fi_ports(g, arr, k, [1, 1, 2, 3, 4, 5, 6, 7, 8, 9])


def _iverilog(paths, out, *extra):
    return subprocess.run(["iverilog", "-g2012", "-Wall", "-o", str(out), *extra, *map(str, paths)],
                          capture_output=True, text=True, timeout=60)


@needs_iverilog
@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 3), (5, 2), (8, 8)])
def test_icarus_compiles_cleanly(tmp_path, rows, cols):
    paths = generate_systolic_array(ArrayConfig(rows=rows, cols=cols), tmp_path / "rtl")
    proc = _iverilog(paths, tmp_path / "a.vvp", "-s", "systolic_array")
    assert proc.returncode == 0, proc.stderr
    # no warnings from our own files (Icarus may warn about its own timescale defaults: none expected)
    assert "warning" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr
    run = subprocess.run(["vvp", "-n", str(tmp_path / "a.vvp")], capture_output=True, text=True, timeout=60)
    assert "ERROR" not in run.stdout + run.stderr, "legal parameters must not trigger $error"


@needs_iverilog
@pytest.mark.parametrize(
    "param, value, message",
    [
        ("ACC_W", 18, "ACC_W must be >= 2*DATA_W + clog2(COLS) + 1"),  # 2*8 + 2 + 1 = 19 for cols = 3
        ("DATA_W", 1, "DATA_W must be >= 2"),
        ("FI_EN", 2, "FI_EN must be 0 or 1"),
        ("K_W", 0, "K_W must be >= 1"),
    ],
)
def test_illegal_verilog_parameter_reports_error(tmp_path, param, value, message):
    paths = generate_systolic_array(ArrayConfig(rows=2, cols=3), tmp_path / "rtl")
    proc = _iverilog(paths, tmp_path / "a.vvp", "-s", "systolic_array", f"-Psystolic_array.{param}={value}")
    assert proc.returncode == 0, f"Icarus 11 must elaborate the guarded design: {proc.stderr}"
    run = subprocess.run(["vvp", "-n", str(tmp_path / "a.vvp")], capture_output=True, text=True, timeout=60)
    log = run.stdout + run.stderr
    assert "ERROR: " in log and f"systolic_array: {message}" in log, log

"""Tests of the systolic-array Verilog generator (sanitas.rtl.generate): parameter validation, rendered text,
Icarus compilation of several sizes, the Verilog `$error` guards on illegal parameters, fault-descriptor mapping.

Simulation of the generated array against the golden GEMM lives in rtl_tests/systolic_array.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from sanitas.rtl import generate as gen
from sanitas.rtl.generate import SystolicArrayParams, fault_to_fi_ports, generate_systolic_array

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(rows=0, cols=2), "rows must be >= 1"),
        (dict(rows=2, cols=0), "cols must be >= 1"),
        (dict(rows=-3, cols=2), "rows must be >= 1"),
        (dict(rows=2.0, cols=2), "rows must be an int"),
        (dict(rows=True, cols=2), "rows must be an int"),
        (dict(rows=2, cols=2, data_width=1), "data_width must be >= 2"),
        (dict(rows=2, cols=4, acc_width=18), "acc_width must be >= 2*data_width + clog2(cols) + 1 = 19"),
        (dict(rows=2, cols=5, data_width=4, acc_width=11), "= 12"),
    ],
)
def test_bad_arguments_raise_one_line_value_error(tmp_path, kwargs, fragment):
    with pytest.raises(ValueError) as info:
        generate_systolic_array(out_dir=tmp_path, **kwargs)
    msg = str(info.value)
    assert fragment in msg
    assert "\n" not in msg
    assert not list(tmp_path.iterdir()), "nothing may be written for illegal parameters"


def test_keyword_validation():
    with pytest.raises(ValueError, match="k_width must be >= 1"):
        SystolicArrayParams(2, 2, k_width=0)
    with pytest.raises(ValueError, match="fault_injection must be a bool"):
        SystolicArrayParams(2, 2, fault_injection=1)


def test_clog2_matches_verilog():
    assert [gen.clog2(n) for n in (0, 1, 2, 3, 4, 5, 8, 9, 1024, 1025)] == [0, 0, 1, 2, 2, 3, 3, 4, 10, 11]


def test_minimal_legal_widths_accepted(tmp_path):
    # acc_width exactly 2*data_width + clog2(cols) + 1 is legal: 2*8 + 2 + 1 = 19 for cols = 4
    assert SystolicArrayParams(3, 4, 8, 19).chk_width == 11
    assert SystolicArrayParams(1, 1, 2, 5).chk_width == 3  # -(-2) = 2 needs 3 signed bits
    assert len(generate_systolic_array(1, 1, tmp_path, data_width=2, acc_width=5)) == 3


def test_rendered_text(tmp_path):
    paths = generate_systolic_array(3, 5, tmp_path)
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


def test_generate_is_idempotent(tmp_path):
    first = generate_systolic_array(2, 2, tmp_path)
    stamps = [p.stat().st_mtime_ns for p in first]
    second = generate_systolic_array(2, 2, tmp_path)
    assert first == second
    assert [p.stat().st_mtime_ns for p in second] == stamps, "unchanged files must not be rewritten"
    generate_systolic_array(2, 2, tmp_path, acc_width=40)
    assert "ACC_W  = 40" in first[-1].read_text()


def test_fault_to_fi_ports():
    p = SystolicArrayParams(4, 4)
    fault = {"site": "pe_acc", "layer": 0, "index": 2 * 5 + 4, "bit": 31, "kind": "stuck_at_1", "cycle": 7}
    assert fault_to_fi_ports(fault, p) == {"fi_row": 2, "fi_col": 4, "fi_bit": 31, "fi_kind": 2, "cycle": 7}
    assert fault_to_fi_ports(dict(fault, index=0, kind="bitflip", bit=0), p)["fi_kind"] == 0
    for bad in (dict(site="weight"), dict(index=20), dict(bit=32), dict(kind="mibb"), dict(cycle=-1)):
        with pytest.raises(ValueError):
            fault_to_fi_ports(dict(fault, **bad), p)


def _iverilog(paths, out, *extra):
    return subprocess.run(["iverilog", "-g2012", "-Wall", "-o", str(out), *extra, *map(str, paths)],
                          capture_output=True, text=True, timeout=60)


@needs_iverilog
@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 3), (5, 2), (8, 8)])
def test_icarus_compiles_cleanly(tmp_path, rows, cols):
    paths = generate_systolic_array(rows, cols, tmp_path / "rtl")
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
    paths = generate_systolic_array(2, 3, tmp_path / "rtl")
    proc = _iverilog(paths, tmp_path / "a.vvp", "-s", "systolic_array", f"-Psystolic_array.{param}={value}")
    assert proc.returncode == 0, f"Icarus 11 must elaborate the guarded design: {proc.stderr}"
    run = subprocess.run(["vvp", "-n", str(tmp_path / "a.vvp")], capture_output=True, text=True, timeout=60)
    log = run.stdout + run.stderr
    assert "ERROR: " in log and f"systolic_array: {message}" in log, log

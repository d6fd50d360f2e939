"""Tests of the yosys area estimate (sanitas.rtl.area) on the generated systolic array.

Synthesis (synth_xilinx, 7-series) of the production configuration (FI_EN = 0): every PE multiplier maps to one
DSP48E1: lazy rows x (cols + 1) of them (the total-checksum column is the one extra DSP column: the partials are
computed serially on it), eager rows x (cols + 1 + NP) (one PE per partial checksum); a 4x4 array costs more than
a 2x2 one.
Skipped when yosys is absent; about 15 s.
"""
from __future__ import annotations

import shutil

import pytest

from sanitas.config import ArrayConfig
from sanitas.rtl import area as area_mod
from sanitas.rtl.area import estimate_area
from sanitas.rtl.generate import generate_systolic_array

needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not on PATH")


@needs_yosys
def test_area_grows_with_array_size(tmp_path):
    results = {}
    for rows, cols in ((2, 2), (4, 4)):
        files = generate_systolic_array(ArrayConfig(rows=rows, cols=cols), tmp_path / f"r{rows}c{cols}")
        res = estimate_area(files, "systolic_array", {"FI_EN": 0})
        assert res["params"] == {"FI_EN": 0} and res["top"] == "systolic_array"
        for cls in ("LUT", "FF", "DSP", "CARRY"):
            assert res[cls] > 0, f"{rows}x{cols}: no {cls} in {res['cells']}"
        assert res["DSP"] == rows * (cols + 1), f"lazy: one extra DSP column expected, got {res['DSP']}"
        assert res["total_cells"] == sum(res["cells"].values())
        results[rows, cols] = res
    small, big = results[2, 2], results[4, 4]
    assert sum(big[c] for c in ("LUT", "FF", "DSP")) > sum(small[c] for c in ("LUT", "FF", "DSP"))
    eager = estimate_area(generate_systolic_array(ArrayConfig(rows=2, cols=2, checksums="eager"), tmp_path / "e"),
                          "systolic_array", {"FI_EN": 0})
    assert eager["DSP"] == 2 * (2 + 1 + 2), f"eager: one DSP48 per data, total and partial PE, got {eager['DSP']}"


@needs_yosys
def test_illegal_parameter_stops_synthesis(tmp_path):
    files = generate_systolic_array(ArrayConfig(rows=2, cols=3), tmp_path)
    with pytest.raises(RuntimeError, match="ACC_W must be >= 2\\*DATA_W"):
        estimate_area(files, "systolic_array", {"ACC_W": 16})


def test_missing_yosys_is_a_clear_error(tmp_path, monkeypatch):
    files = generate_systolic_array(ArrayConfig(rows=1, cols=1), tmp_path)
    monkeypatch.setattr(area_mod.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="yosys not found"):
        estimate_area(files, "systolic_array")


def test_classify_primitives():
    counts = area_mod._classify({"LUT6": 3, "LUT1": 1, "FDRE": 5, "FDSE": 1, "DSP48E1": 2, "CARRY4": 4,
                                 "SRLC32E": 1, "MUXF7": 2, "RAMB36E1": 1, "RAM64X1D": 2, "IBUF": 9})
    assert counts == {"LUT": 4, "FF": 6, "DSP": 2, "CARRY": 4, "SRL": 1, "MUXF": 2, "BRAM": 1, "LUTRAM": 2}

"""Tests of the yosys area estimate (sanitas.rtl.area) on the generated systolic array.

Synthesis (synth_xilinx, 7-series) of the production configuration (FI_EN = 0): every PE multiplier maps to one
DSP48E1: lazy rows x (cols + 1) of them (the total-checksum column is the one extra DSP column: the partials are
computed serially on it), eager rows x (cols + 1 + NP) (one PE per partial checksum); a 4x4 array costs more than
a 2x2 one; the sanity_array variants of the area table have exact DSP counts and `module_breakdown` counts the PE
instances; `area_table`'s sums, ratios and targets are checked on fixed counts. Skipped when yosys is absent;
about 30 s.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sanitas.config import ArrayConfig
from sanitas.rtl import area as area_mod
from sanitas.rtl.area import VARIANTS, area_table, estimate_area, module_breakdown
from sanitas.rtl.engine_regs import ENGINE_READ_W
from sanitas.rtl.generate import generate_engine, generate_sanity_array, generate_systolic_array

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
def test_variant_dsp_and_breakdown(tmp_path):
    """The sanity_array variants of the table: unprotected (CHK_EN = 0) 2 x 2 DSPs, lazy one column more, eager
    NP = 2 partial columns more; the hierarchical breakdown counts the 6 PE instances of the lazy array."""
    files = generate_sanity_array(ArrayConfig(rows=2, cols=2, fault_injection=False), tmp_path)
    dsp = {name: estimate_area(files, "sanity_array", params)["DSP"]
           for name, params in (("unprotected", {"CHK_EN": 0}), ("lazy", {"EAGER": 0}), ("eager", {"EAGER": 1}))}
    assert dsp == {"unprotected": 4, "lazy": 6, "eager": 10}
    bd = module_breakdown(files, "sanity_array")
    assert bd["systolic_pe"]["instances"] == 6 and bd["systolic_pe"]["DSP"] == 6
    assert {"sanity_array", "sanity_unit", "systolic_array"} <= set(bd)


def test_area_table_ratios_and_targets(tmp_path, monkeypatch):
    """area_table sums the units of each variant and divides by the unprotected sum of the same run (yosys replaced
    by fixed counts per (top, params), so the arithmetic is checked exactly)."""
    counts = {("sanity_array", (("A_CHK", 0), ("CHK_EN", 0), ("FI_EN", 0))): (1000, 1000, 4),
              ("sanity_array", (("EAGER", 0), ("FI_EN", 0))): (1100, 1050, 6),
              ("sanity_array", (("EAGER", 1), ("FI_EN", 0))): (1300, 1200, 10),
              ("dmr_unit", (("DMR_EN", 0), ("FI_EN", 0), ("RD_N", 32), ("RD_W", 8))): (500, 0, 0),
              ("dmr_unit", (("DMR_EN", 1), ("FI_EN", 0), ("RD_N", 32), ("RD_W", 8))): (600, 100, 0),
              ("rollback_ctrl", (("FI_EN", 0),)): (10, 20, 0),
              ("tmr_array", (("FI_EN", 0),)): (6000, 3000, 12)}
    calls = []

    def fake(files, top, params, **kw):
        calls.append(top)
        lut, ff, dsp = counts[top, tuple(sorted(params.items()))]
        return {"LUT": lut, "FF": ff, "DSP": dsp, "BRAM": 0}
    monkeypatch.setattr(area_mod, "estimate_area", fake)
    tab = area_table(ArrayConfig(rows=2, cols=2), tmp_path)
    assert list(tab["variants"]) == list(VARIANTS) and len(calls) == len(counts)   # shared units synthesised once
    v = tab["variants"]
    assert (v["unprotected"]["LUT"], v["unprotected"]["FF"]) == (1500, 1000)
    assert (v["sanity+dmr"]["LUT"], v["sanity+dmr"]["FF"], v["sanity+dmr"]["DSP"]) == (1710, 1170, 6)
    r = tab["ratios"]
    assert r["sanity lazy"] == {"LUT+FF": 0.06, "LUT": 0.0667, "FF": 0.05, "extra_DSP": 2, "DSP_columns": 1.0}
    assert r["sanity+dmr"]["LUT+FF"] == 0.152 and r["tmr"]["LUT+FF"] == 2.8 and r["sanity eager"]["extra_DSP"] == 6
    assert tab["targets"] == {"sanity+dmr": False, "sanity lazy": True, "tmr": True}


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


def test_engine_area_ratio(tmp_path, monkeypatch):
    """engine_area synthesises the engine top with PROT = 0 and PROT = 1 (FI_EN = 0) and divides (yosys replaced by
    fixed counts); the dmr_unit of the unit table gets the engine's read widths (32 words a beat, 8 an edge)."""
    counts = {0: {"LUT": 4000, "FF": 6000, "DSP": 16, "BRAM": 0, "cells": {"LUT6": 4000}},
              1: {"LUT": 4400, "FF": 6300, "DSP": 20, "BRAM": 1, "LUTRAM": 25,
                  "cells": {"LUT6": 4400, "RAM32M": 24, "RAM32X1D": 1, "SRLC32E": 2}}}
    seen = []

    def fake(files, top, params, **kw):
        seen.append((top, params["PROT"], params["FI_EN"], Path(files[-1]).name))
        return counts[params["PROT"]]
    monkeypatch.setattr(area_mod, "estimate_area", fake)
    res = area_mod.engine_area(ArrayConfig(rows=4, cols=4), tmp_path)
    assert seen == [("engine", 0, 0, "engine.v"), ("engine", 1, 0, "engine.v")]
    assert (res["unprotected"]["LUT"], res["sanity+dmr"]["FF"], res["sanity+dmr"]["BRAM"]) == (4000, 6300, 1)
    assert (res["sanity+dmr"]["LUT_eq"], res["sanity+dmr"]["LUTRAM"]) == (4400 + 24 * 4 + 2 + 2, 25)
    assert res["ratio"] == {"LUT+FF": 0.08, "extra_DSP": 4}
    assert area_mod.engine_beat_words(ArrayConfig(rows=4, cols=4)) == 32
    assert area_mod.engine_read_words(ArrayConfig(rows=4, cols=4)) == ENGINE_READ_W == 8


def test_unit_table_uses_the_engine_read_widths(tmp_path):
    """The dmr_unit of the unit table is the engine's: RD_N = the words of a beat (KMAX bytes), RD_W = the engine's
    RD_W default as rendered into engine.v (and its instance of dmr_unit passes both)."""
    import re
    array = ArrayConfig(rows=4, cols=4)
    text = generate_engine(array, tmp_path / "eng")[-1].read_text()
    assert int(re.search(r"parameter integer RD_W\s*=\s*(\d+),", text).group(1)) == area_mod.engine_read_words(array)
    assert int(re.search(r"parameter integer KMAX\s*=\s*(\d+),", text).group(1)) == area_mod.engine_beat_words(array)
    assert ".RD_N(TB)," in text and ".RD_W(RD_W))" in text
    units = area_mod.variant_units(array, tmp_path / "units")
    dmr = [p for _, top, p in units["sanity+dmr"] if top == "dmr_unit"]
    assert dmr == [{"FI_EN": 0, "DMR_EN": 1, "RD_N": 32, "RD_W": 8}]

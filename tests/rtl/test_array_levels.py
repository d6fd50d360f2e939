"""One ArrayConfig, one fault vocabulary, three levels: the golden GEMM, the HLS kernel (csim, g++) and the RTL array
(cocotb, Icarus).

* test_non_default_array_end_to_end: a 3 x 5 array with 6-bit operands and 24-bit accumulators is generated,
  compiled and checked at the HLS kernel level (csim: every case bit-exact, every injected fault located) and at
  the RTL level (cocotb: random GEMMs bit-exact, every corrupting accumulator fault detected and located).
* test_same_faults_same_values: the same `Fault` records replay at golden (`gemm_replay`), in the HLS kernel
  (`run_replay`, through `fault_to_gemm_fault`) and in the RTL array (`run_cocotb_replay`, through
  `fault_to_fi_ports`) and give the same C, S and row alarms, on the non-default and the default array.
* test_operand_faults_golden_vs_hls: operand-register faults (pe_a, pe_b) and the multibit / random kinds, which
  the RTL port does not reach yet, agree between golden and HLS.
Skipped without g++/make (HLS) or iverilog (RTL); about 3 minutes on 2 cores.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from sanitas.config import ArrayConfig
from sanitas.faults import Fault
from sanitas.golden.gemm import gemm_replay
from sanitas.hls import csim
from sanitas.rtl.generate import generate_systolic_array, run_cocotb_replay, run_cocotb_smoke

needs_hls = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None,
                               reason="g++ and make are needed for the HLS C simulation")
needs_rtl = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")

ODD = ArrayConfig(rows=3, cols=5, data_width=6, acc_width=24, max_k=128)   # the non-default array
ARRAYS = {"odd": ODD, "default": ArrayConfig()}


@pytest.fixture(scope="module")
def hls_builds(tmp_path_factory) -> dict:
    """run_csim of each array once (vectors, g++ build, run): {name: result}."""
    return {name: csim.run_csim("systolic_gemm", build_dir=tmp_path_factory.mktemp(f"hls_{name}"), array=arr)
            for name, arr in ARRAYS.items()}


def _gemms(arr: ArrayConfig, rng) -> list[tuple[np.ndarray, np.ndarray]]:
    """Three (rows, K) @ (K, cols) GEMMs: random K = 9, operand extremes K = 4, random K = 20."""
    lo, hi = arr.data_min, arr.data_max
    return [(rng.integers(lo, hi + 1, (arr.rows, 9)), rng.integers(lo, hi + 1, (9, arr.cols))),
            (rng.choice([lo, hi], (arr.rows, 4)), rng.choice([lo, hi], (4, arr.cols))),
            (rng.integers(lo, hi + 1, (arr.rows, 20)), rng.integers(lo, hi + 1, (20, arr.cols)))]


def _acc_faults(arr: ArrayConfig, gemms, rng) -> list[tuple[int, Fault]]:
    """Per GEMM: pe_acc and chk_acc x bitflip / stuck0 / stuck1 x cycles (read-out, 0, a random one, past the end)."""
    out = []
    for g, (a, _) in enumerate(gemms):
        k = a.shape[1]
        for site in ("pe_acc", "chk_acc"):
            for kind in ("bitflip", "stuck0", "stuck1"):
                for cycle in (None, 0, int(rng.integers(1, k + arr.rows + arr.cols - 1)), k + arr.rows + arr.cols):
                    row, bit = int(rng.integers(arr.rows)), int(rng.integers(arr.acc_width))
                    index = (row,) if site == "chk_acc" else (row, int(rng.integers(arr.cols)))
                    out.append((g, Fault(site, "gemm", index, bit, kind, cycle=cycle)))
    return out


@needs_hls
@needs_rtl
def test_non_default_array_end_to_end(hls_builds, tmp_path):
    r = hls_builds["odd"]
    assert r["passed"] is True and r["array"] == ODD.to_dict()
    assert (r["cases"], r["mismatches"], r["faults"], r["faults_located"]) == (12, 0, 24, 24)
    assert "case_001.txt m=32 k=128 n=5: 0 mismatches" in r["log"]            # the full-size case

    top = generate_systolic_array(ODD, tmp_path / "rtl")[-1].read_text()
    assert "parameter integer DATA_W = 6," in top and "parameter integer ACC_W  = 24," in top
    assert "parameter integer K_W    = 8," in top and "localparam integer COLS  = 5;" in top
    s = run_cocotb_smoke(tmp_path / "sim", ODD, seed=35, n_random=30, n_faults=120)
    assert s["passed"], f"cocotb bench failed: {s} (log: {s['log']})"
    assert (s["tests"], s["failed"], s["gemms_checked"], s["faults_injected"]) == (2, 0, 37, 120)
    assert (s["rows"], s["cols"], s["data_width"], s["acc_width"]) == (3, 5, 6, 24)
    assert s["faults_detected"] == s["faults_corrupting"] == s["faults_located"] > 0
    assert s["false_alarms"] == 0


@needs_hls
@needs_rtl
@pytest.mark.parametrize("name", list(ARRAYS))
def test_same_faults_same_values(hls_builds, tmp_path, name):
    arr = ARRAYS[name]
    rng = np.random.default_rng(2024)
    gemms = _gemms(arr, rng)
    faults = _acc_faults(arr, gemms, rng)
    assert len(faults) == 72
    golden = [gemm_replay(*gemms[g], f, arr) for g, f in faults]
    hls = csim.run_replay(gemms, faults, hls_builds[name]["binary"], arr, tmp_path / "hls_replay")
    rtl = run_cocotb_replay(tmp_path / "rtl_replay", arr, gemms, faults)
    assert len(hls) == len(rtl) == len(faults)
    corrupting = 0
    for (g, f), (c, s), h, r in zip(faults, golden, hls, rtl, strict=True):
        assert np.array_equal(h.c, c) and np.array_equal(h.s, s), f"HLS differs from golden for {f}"
        assert np.array_equal(r.c, c) and np.array_equal(r.s, s), f"RTL differs from golden for {f}"
        c0, s0 = gemm_replay(*gemms[g], None, arr)
        bad = not (np.array_equal(c, c0) and np.array_equal(s, s0))
        corrupting += bad
        row_mask = (1 << f.index[0]) if bad else 0                # a corrupting fault alarms its row only
        assert r.row_err == row_mask and int(h.flags @ (1 << np.arange(arr.rows))) == row_mask, f
    assert corrupting >= 24                                        # every bit flip corrupts (3 GEMMs x 2 x 4)


@needs_hls
def test_operand_faults_golden_vs_hls(hls_builds, tmp_path):
    arr = ODD
    rng = np.random.default_rng(7)
    gemms = _gemms(arr, rng)
    faults = []
    for g, (a, b) in enumerate(gemms):
        k, n = a.shape[1], b.shape[1]
        for site in ("pe_a", "pe_b", "pe_acc"):
            for kind in ("bitflip", "multibit", "stuck1", "random"):
                for _ in range(3):
                    row, col = int(rng.integers(arr.rows)), int(rng.integers(n + (site != "pe_acc")))
                    width = arr.acc_width if site == "pe_acc" else (
                        arr.chk_width if site == "pe_b" and col == n else arr.data_width)
                    bit = int(rng.integers(1, 1 << width)) if kind == "multibit" else int(rng.integers(width))
                    value = int(rng.integers(-(1 << (width - 1)), 1 << (width - 1))) if kind == "random" else None
                    cycle = int(rng.integers(0, k + arr.rows + arr.cols - 1))
                    faults.append((g, Fault(site, "gemm", (row, col), bit, kind, value, cycle)))
    hls = csim.run_replay(gemms, faults, hls_builds["odd"]["binary"], arr, tmp_path / "replay")
    changed = 0
    for (g, f), h in zip(faults, hls, strict=True):
        c, s = gemm_replay(*gemms[g], f, arr)
        assert np.array_equal(h.c, c) and np.array_equal(h.s, s), f"HLS differs from golden for {f}"
        c0, s0 = gemm_replay(*gemms[g], None, arr)
        changed += not (np.array_equal(c, c0) and np.array_equal(s, s0))
    assert len(faults) == 108 and changed > 54

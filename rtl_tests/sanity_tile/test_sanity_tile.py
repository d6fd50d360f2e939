"""The ≥ 10,000-fault regression of the protected GEMM datapath: sanity_tile (sanity_array + the sanity-flow
sequencer in hardware, the A-path check included) under single faults, one Icarus simulation with a reset between
faults.

Every fault record (`sanitas.rtl.regress.regression_faults`: 60 % accumulator faults -- `pe_faults`: the data
columns, the total-checksum column and, eager, the Hamming partial checksum PEs --, 20 % A and 20 % B operand-register
faults -- `operand_faults`, every PE position of the row including the checksum column; random bit, kind, wavefront
cycle) runs on a fresh random GEMM (K in 1..K_MAX): the bench writes the operands and the fault debug register,
pulses go and waits for tile_done (one trigger), then compares C, the counters (detected, corrected, uncorrectable,
a_path) and the number of array passes with the golden `sanitas.rtl.sanity.protected_gemm` for the same Fault
record, and classifies the outcome (masked / corrected / uncorrectable / silent), overall and per kind. Required:
0 silent, 0 mismatches. Faults/s is printed and written to the summary.
The bound on the A-path re-runs: the same regression with A_RETRIES = 0 (bench config a_retries, golden
`protected_gemm(a_retries=0)`): every a_err is flagged (detected and uncorrectable), never done without a flag.
The pytest function at the bottom builds the top with Icarus and runs it (4x4, lazy: N_FAULTS faults).
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from sanitas.config import ArrayConfig
from sanitas.golden.gemm import wrap
from sanitas.rtl.faults import fault_to_fi_ports
from sanitas.rtl.generate import BENCH_ENV
from sanitas.rtl.regress import KINDS, kind_counts, kind_of, regression_faults, run_regression
from sanitas.rtl.sanity import OUTCOMES, protected_gemm, rerun_sels

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

ROOT = Path(__file__).resolve().parents[2]
KMAX = 16   # the sanity_tile's KMAX default


def _pack(values, width: int) -> int:
    mask = (1 << width) - 1
    return sum((int(v) & mask) << (i * width) for i, v in enumerate(values))


@cocotb.test()
async def test_regression(dut):
    """``n_faults`` single faults (acc / A / B) spread over every PE: RTL == golden (C, counters, passes), 0 silent."""
    cfg = json.loads(os.environ[BENCH_ENV])
    names = set(ArrayConfig.__dataclass_fields__)
    p = ArrayConfig(**{k: v for k, v in cfg.items() if k in names})
    rng = np.random.default_rng(cfg["seed"])
    faults = regression_faults(p, rng, cfg["k_max"], cfg["n_faults"])
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    for name in ("go", "k_len", "a_all", "b_all", "fi_arm", "fi_edge", "fi_row", "fi_col", "fi_bit", "fi_kind",
                 "fi_part", "fi_reg"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    w = p.acc_width
    outcomes, sites, bad = collections.Counter(), collections.Counter(), []
    kinds = {k: collections.Counter() for k in KINDS}
    records, alarmed, a_path = [], 0, 0
    rerun_passes = len(rerun_sels(p))   # eager 1, lazy 2 * NP + 1
    t0 = time.perf_counter()
    for f in faults:
        k = int(rng.integers(1, cfg["k_max"] + 1))
        a = rng.integers(p.data_min, p.data_max + 1, (p.rows, k), dtype=np.int64)
        b = rng.integers(p.data_min, p.data_max + 1, (k, p.cols), dtype=np.int64)
        fi = fault_to_fi_ports(f, p, k)
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        a_pad = np.zeros((p.rows, KMAX), np.int64)
        a_pad[:, :k] = a
        b_pad = np.zeros((KMAX, p.cols), np.int64)
        b_pad[:k] = b
        dut.a_all.value, dut.b_all.value = _pack(a_pad.ravel(), p.data_width), _pack(b_pad.ravel(), p.data_width)
        dut.k_len.value = k
        dut.fi_arm.value, dut.fi_edge.value = 1, fi.edge
        dut.fi_row.value, dut.fi_col.value, dut.fi_bit.value = fi.fi_row, fi.fi_col, fi.fi_bit
        dut.fi_kind.value, dut.fi_part.value, dut.fi_reg.value = fi.fi_kind, fi.fi_part, fi.fi_reg
        dut.go.value = 1
        await RisingEdge(dut.clk)
        dut.go.value = 0
        await RisingEdge(dut.tile_done)
        await ReadOnly()
        word = dut.c_out.value.to_unsigned()
        c = wrap(np.array([(word >> (i * w)) & ((1 << w) - 1) for i in range(p.rows * p.cols)], np.int64),
                 w).reshape(p.rows, p.cols)
        counters = (int(dut.cnt_detected.value), int(dut.cnt_corrected.value), int(dut.cnt_uncorrectable.value),
                    int(dut.cnt_a_path.value))
        passes = int(dut.n_passes.value)
        gold = protected_gemm(a, b, f, p, a_retries=cfg.get("a_retries", 2))
        want = (gold.detected, gold.corrected, gold.uncorrectable, gold.a_path)
        if counters != want or not np.array_equal(c, gold.c) or passes != 1 + gold.a_path + rerun_passes * gold.rerun:
            bad.append((f.to_dict(), counters, want, passes))
        outcomes[gold.outcome] += 1
        kinds[kind_of(f)][gold.outcome] += 1
        alarmed += gold.rerun
        a_path += gold.a_path
        sites[f.site] += 1
        records.append([f.to_json(), gold.outcome])
        await FallingEdge(dut.clk)
        dut.rst.value = 1                        # reset between faults (held across the next edge)
    wall = time.perf_counter() - t0
    rate = len(faults) / wall
    print(f"sanity_tile regression {p.rows}x{p.cols} {p.checksums.value}: {len(faults)} faults in {wall:.1f} s, "
          f"{rate:.1f} faults/s, {dict(outcomes)}, {len(bad)} mismatches")
    for k, got in kinds.items():
        print(f"  {k}: {sum(got.values())} faults, " + ", ".join(f"{got[o]} {o}" for o in OUTCOMES))
    Path(cfg["summary"]).write_text(json.dumps({
        "faults": len(faults), "outcomes": {o: outcomes[o] for o in OUTCOMES}, "sites": dict(sites),
        "kinds": {k: {"faults": sum(got.values()), **{o: got[o] for o in OUTCOMES}} for k, got in kinds.items()},
        "faults_per_s": rate, "mismatches": len(bad), "alarmed": alarmed, "a_path": a_path, "examples": bad[:3]}))
    assert not bad, f"{len(bad)} faults differ from the golden, e.g. {bad[:3]}"
    assert outcomes["silent"] == 0


# ------------------------------------------------------------------------------------------------ pytest side

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")
N_FAULTS = 10_000   # single faults per make test (4x4, lazy)


@needs_iverilog
@pytest.mark.slow
def test_sanity_tile_regression_10k():
    array = ArrayConfig(rows=4, cols=4)
    s = run_regression(ROOT / "build" / "rtl_tests" / "sanity_tile" / "lazy_4x4", array, N_FAULTS, seed=2026)
    assert s["passed"], f"cocotb regression failed (log: {s['log']}): {s.get('examples')}"
    assert s["faults"] == N_FAULTS and s["mismatches"] == 0
    assert s["outcomes"]["silent"] == 0 and s["outcomes"]["corrected"] > 0 and s["outcomes"]["masked"] > 0
    n = kind_counts(N_FAULTS)                               # 6000 acc, 2000 A, 2000 B
    assert {k: v["faults"] for k, v in s["kinds"].items()} == n == {"acc": 6000, "A": 2000, "B": 2000}
    # lazy: no partial registers; 300 faults each of the 20 accumulators, 100 each of the 20 A and 20 B registers
    assert s["sites"] == {"pe_acc": 300 * 16, "chk_acc": 300 * 4, "pe_a": 100 * 20, "pe_b": 100 * 20}
    for k, v in s["kinds"].items():
        assert v["silent"] == 0 and v["masked"] + v["corrected"] + v["uncorrectable"] == n[k], (k, v)
    assert s["kinds"]["A"]["corrected"] > 0 and s["a_path"] > 0     # A faults the row checksums alone miss, re-run


@needs_iverilog
def test_sanity_tile_a_path_bound():
    """A_RETRIES = 0: an A-path alarm cannot re-run pass 1, so it ends flagged (cnt_uncorrectable), never silent."""
    array = ArrayConfig(rows=4, cols=4)
    s = run_regression(ROOT / "build" / "rtl_tests" / "sanity_tile" / "lazy_4x4_a0", array, 500, seed=7, a_retries=0)
    assert s["passed"], f"cocotb regression failed (log: {s['log']}): {s.get('examples')}"
    assert s["faults"] == 500 and s["mismatches"] == 0 and s["a_path"] == 0 and s["outcomes"]["silent"] == 0
    assert {k: v["faults"] for k, v in s["kinds"].items()} == {"acc": 300, "A": 100, "B": 100}
    assert s["kinds"]["A"]["uncorrectable"] > 0 and s["kinds"]["A"]["corrected"] == 0   # every a_err flagged

"""cocotb bench of the generated systolic array with its ABFT total-checksum column (sanitas.rtl.generate).

One Icarus simulation per array configuration runs the cocotb tests against the exact integer reference
`sanitas.golden.gemm` (C = A @ B, S = A @ -sum_j B[:, j], acc_width-bit registers; DATA_W-bit operands):
  * test_gemm_random: operand extremes (INT8: -128 * -128), K = 1, K = 64, K = 0, then many random (A, B, K) with
    random input bubbles and ignored beats after the last one; C and S bit-exact, chk_err == 0, `done` exactly
    LAT + 1 = ROWS + COLS + 1 edges after the last beat; the Hamming partial checksums P bit-exact against
    `sanitas.rtl.sanity.partial_checksums` when eager, 0 in a lazy pass; every 4th GEMM also runs a re-run pass
    (C held, S and P recomputed).
  * test_fault_injection: many single accumulator faults, each a `sanitas.faults.Fault` record (site pe_acc or
    chk_acc, random element, random bit, random wavefront cycle or read-out; 85 % bitflip, 15 % one-cycle stuck0 /
    stuck1), driven through `sanitas.rtl.faults.fault_to_fi_ports` on the bench's beat schedule, a reset and a new
    GEMM before each. C and S must equal `gemm_replay` of the same record, chk_err must rise exactly when they
    differ from the fault-free golden values, row_err must name the faulty row, and a flip must move the faulty
    result by +-2**bit (mod 2**ACC_W) and nothing else.
  * test_fault_injection also drives ``n_operand`` operand-register faults (`sanitas.rtl.sanity.operand_faults`, the
    fi_reg port): C and S must equal `gemm_replay`, row_err exactly the rows whose extended product is not 0, and
    a_err (the A-path check, A_CHK) exactly when `sanitas.rtl.sanity.a_path_alarm` says the record changed an A
    byte between the column-0 and the checksum-column folds; a_err stays 0 fault-free and under accumulator faults.
  * test_fault_replay (run by `sanitas.rtl.generate.run_cocotb_replay` only): the given Fault records on the given
    GEMMs, back to back; writes the outputs for the caller to compare with the golden and HLS levels.
Each test writes its counts into the JSON summary (path in the bench config). The pytest function at the bottom
builds and runs the simulation through `sanitas.rtl.generate.run_cocotb_smoke` and asserts those counts.
The bench configuration (ArrayConfig fields + seed, counts, summary path) arrives as JSON in BENCH_ENV.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sanitas.config import ArrayConfig
from sanitas.faults import Fault
from sanitas.golden.gemm import gemm_replay, gemm_with_checksum, wrap
from sanitas.rtl.bench import ArrayBench
from sanitas.rtl.generate import BENCH_ENV, run_cocotb_smoke
from sanitas.rtl.sanity import a_path_alarm, column_set, eager, operand_faults, partial_checksums, rerun_sels

import cocotb

ROOT = Path(__file__).resolve().parents[2]
N_EDGE_CASES = 7  # fixed GEMMs of test_gemm_random (K = 1, int8 extremes, long K, K = 0)
FLIP_SHARE = 0.85  # share of bit flips among injected faults (rest: one-edge stuck-at-0 / stuck-at-1)


# ------------------------------------------------------------------------------------------------ cocotb side


def _bench_cfg() -> dict:
    return json.loads(os.environ[BENCH_ENV])


def _update_summary(cfg: dict, **counts) -> None:
    path = Path(cfg["summary"])
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(counts)
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def _operand(rng, shape, p: ArrayConfig) -> np.ndarray:
    """Uniform random DATA_W-bit signed values (INT8: -128..127)."""
    return rng.integers(p.data_min, p.data_max + 1, size=shape, dtype=np.int64)


def _golden(a: np.ndarray, b: np.ndarray, p: ArrayConfig, fault: Fault | None = None):
    """(C, S) of the golden model: gemm_with_checksum for the INT8/INT32 contract, gemm_replay otherwise / faulty."""
    if fault is None and (p.data_width, p.acc_width) == (8, 32):
        return gemm_with_checksum(a.astype(np.int8), b.astype(np.int8))
    return gemm_replay(a, b, fault, p)


@cocotb.test()
async def test_gemm_random(dut):
    """Random and extreme GEMMs: C and S bit-exact against gemm_with_checksum, chk_err == 0."""
    cfg = _bench_cfg()
    bench = ArrayBench(dut, cfg)
    await bench.init()
    p, rng = bench.p, bench.rng
    lo, hi = p.data_min, p.data_max
    cases: list[tuple[np.ndarray, np.ndarray, float, bool]] = [
        (_operand(rng, (p.rows, 1), p), _operand(rng, (1, p.cols), p), 0.0, False),         # K = 1
        (np.full((p.rows, 1), lo), np.full((1, p.cols), lo), 0.0, False),                    # K = 1, lo * lo
        (np.full((p.rows, 9), lo), np.full((9, p.cols), lo), 0.0, True),                     # extremes, K = 9
        (rng.choice([lo, hi], (p.rows, 7)), rng.choice([lo, hi], (7, p.cols)), 0.3, False),
        (np.full((p.rows, 5), hi), np.full((5, p.cols), lo), 0.0, False),
        (_operand(rng, (p.rows, 64), p), _operand(rng, (64, p.cols), p), 0.0, False),       # long K
        (np.zeros((p.rows, 0), np.int64), np.zeros((0, p.cols), np.int64), 0.0, True),      # K = 0: C = 0
    ]
    for _ in range(cfg["n_random"]):
        k = int(rng.integers(1, 25))
        cases.append((_operand(rng, (p.rows, k), p), _operand(rng, (k, p.cols), p), float(rng.choice([0.0, 0.3])),
                      bool(rng.random() < 0.3)))
    checked = reruns = 0
    for i, (a, b, gap, junk) in enumerate(cases):
        res = await bench.gemm(a, b, bench.schedule(a.shape[1], gap), junk_after=junk)
        c_gold, s_gold = _golden(a, b, p)
        p_gold = partial_checksums(a, b, p)
        assert np.array_equal(res.c, c_gold), f"case {i}: C mismatch\nhw={res.c}\ngolden={c_gold}"
        assert np.array_equal(res.s, s_gold), f"case {i}: S mismatch hw={res.s} golden={s_gold}"
        assert res.chk_err == 0 and res.row_err == 0, f"case {i}: false alarm row_err={res.row_err:#x}"
        assert res.a_err == 0, f"case {i}: false A-path alarm"
        # partial checksum PEs: computed in every pass when eager, held at 0 in a lazy ordinary pass
        assert res.part_valid == int(eager(p)), f"case {i}: part_valid {res.part_valid}"
        assert np.array_equal(res.p, p_gold if eager(p) else np.zeros_like(p_gold)), f"case {i}: P {res.p}"
        checked += 1
        if i % 4 == 0:   # the re-run passes on the same beats: C held, checksums recomputed (K = 0 included)
            for sel in rerun_sels(p):   # lazy: one column set per pass on the total PE column, the total last
                res2 = await bench.gemm(a, b, bench.schedule(a.shape[1], gap), rerun=True, chk_sel=sel)
                s_set = wrap(a @ -(b @ column_set(p, sel)), p.acc_width)
                assert np.array_equal(res2.c, c_gold), f"case {i}: the re-run pass {sel} changed C"
                assert np.array_equal(res2.s, s_set), f"case {i}: re-run pass {sel}: S {res2.s} != {s_set}"
                assert res2.row_err == 0, f"case {i}: re-run pass {sel}: row_err {res2.row_err:#x}"
            assert np.array_equal(res2.s, s_gold), f"case {i}: the last re-run pass must recompute the total"
            assert res2.part_valid == int(eager(p))
            assert np.array_equal(res2.p, p_gold if eager(p) else np.zeros_like(p_gold)), f"case {i}: re-run P"
            reruns += 1
    _update_summary(cfg, gemms_checked=checked, reruns_checked=reruns)
    dut._log.info("%d GEMMs bit-exact (rows=%d cols=%d)", checked, p.rows, p.cols)
    assert checked == len(cases) == cfg["n_random"] + N_EDGE_CASES


@cocotb.test()
async def test_fault_injection(dut):
    """Single accumulator faults mid-computation: detected iff the outputs differ from golden, row located."""
    cfg = _bench_cfg()
    bench = ArrayBench(dut, cfg)
    await bench.init()
    p, rng = bench.p, bench.rng
    injected = corrupting = detected = located = flips = 0
    misses, false_alarms, mislocated, wrong_effect = [], [], [], []
    replay_mismatch = []
    for _ in range(cfg["n_faults"]):
        k = int(rng.integers(1, 17))
        a, b = _operand(rng, (p.rows, k), p), _operand(rng, (k, p.cols), p)
        sched = bench.schedule(k, float(rng.choice([0.0, 0.25])))
        r, c = int(rng.integers(p.rows)), int(rng.integers(p.cols + 1))  # c == cols: checksum column
        u = rng.random()
        kind = "bitflip" if u < FLIP_SHARE else ("stuck0" if u < (1 + FLIP_SHARE) / 2 else "stuck1")
        bit = int(rng.integers(p.acc_width))
        t = int(rng.integers(-1, k + p.rows + p.cols - 1))     # wavefront cycle; -1: at read-out
        cycle = None if t < 0 else t
        fault = Fault("chk_acc", "gemm", (r,), bit, kind, cycle=cycle) if c == p.cols else \
            Fault("pe_acc", "gemm", (r, c), bit, kind, cycle=cycle)
        res = await bench.gemm(a, b, sched, fault=fault, reset_first=True)
        c_gold, s_gold = _golden(a, b, p)
        c_rep, s_rep = gemm_replay(a, b, fault, p)
        if not (np.array_equal(res.c, c_rep) and np.array_equal(res.s, s_rep)):
            replay_mismatch.append(fault)
        if res.a_err:                                             # accumulators never touch the A path
            false_alarms.append((fault, "a_err"))
        injected += 1
        flips += kind == "bitflip"
        got = np.concatenate([res.c, res.s[:, None]], axis=1)       # (ROWS, COLS + 1) extended product
        gold = np.concatenate([c_gold, s_gold[:, None]], axis=1).astype(np.int64)
        diff = np.argwhere(got != gold)
        corrupted = diff.size > 0
        corrupting += corrupted
        if corrupted:
            if not (len(diff) == 1 and tuple(diff[0]) == (r, c)):
                wrong_effect.append((fault, diff.tolist()))
            delta = int(got[r, c] - gold[r, c]) % bench.acc_mod
            if kind == "bitflip" and delta not in (1 << bit, bench.acc_mod - (1 << bit)):
                wrong_effect.append((fault, f"delta {delta:#x}"))
        elif kind == "bitflip":
            wrong_effect.append((fault, "flip left the outputs unchanged"))
        if res.chk_err:
            detected += corrupted
            if not corrupted:
                false_alarms.append(fault)
            if res.row_err == 1 << r:
                located += corrupted
            else:
                mislocated.append((fault, res.row_err))
        elif corrupted:
            misses.append(fault)
    _update_summary(cfg, faults_injected=injected, faults_corrupting=corrupting, faults_detected=detected,
                    faults_located=located, false_alarms=len(false_alarms), bitflips=flips)
    dut._log.info("faults: injected %d, corrupting %d, detected %d, located %d, false alarms %d",
                  injected, corrupting, detected, located, len(false_alarms))
    assert not misses, f"{len(misses)} undetected corrupting faults, e.g. {misses[:3]}"
    assert not false_alarms, f"{len(false_alarms)} false alarms, e.g. {false_alarms[:3]}"
    assert not mislocated, f"{len(mislocated)} faults flagged in the wrong row, e.g. {mislocated[:3]}"
    assert not wrong_effect, f"{len(wrong_effect)} faults with an unexpected effect, e.g. {wrong_effect[:3]}"
    assert not replay_mismatch, f"{len(replay_mismatch)} faults differ from gemm_replay, e.g. {replay_mismatch[:3]}"
    assert injected == cfg["n_faults"]
    assert corrupting >= flips > 0, "every bit flip must corrupt an output"
    assert detected == corrupting == located
    # operand registers (fi_reg): C and S equal gemm_replay, and the row check flags exactly the rows whose extended
    # product no longer sums to 0
    op_bad, op_flagged, op_a_err = [], 0, 0
    n_op = cfg.get("n_operand", 0)
    faults = operand_faults(p, rng, 16, -(-n_op // (2 * p.rows * (p.cols + 1))))   # every register, then a sample
    for fault in [faults[i] for i in rng.permutation(len(faults))[:n_op]]:
        k = int(rng.integers(1, 17))
        a, b = _operand(rng, (p.rows, k), p), _operand(rng, (k, p.cols), p)
        res = await bench.gemm(a, b, bench.schedule(k, float(rng.choice([0.0, 0.25]))), fault=fault, reset_first=True)
        c_rep, s_rep = gemm_replay(a, b, fault, p)
        rows_bad = wrap(c_rep.sum(axis=1) + s_rep, p.acc_width) != 0
        want = int(sum(1 << r for r in np.flatnonzero(rows_bad)))
        a_want = int(a_path_alarm(a, b, fault, p))     # A_CHK: a changed A byte between the two folds
        if not (np.array_equal(res.c, c_rep) and np.array_equal(res.s, s_rep) and res.row_err == want
                and res.a_err == a_want):
            op_bad.append((fault.to_dict(), res.row_err, want, res.a_err, a_want))
        op_flagged += res.row_err != 0
        op_a_err += res.a_err
    _update_summary(cfg, operand_faults=min(len(faults), n_op), operand_flagged=op_flagged, operand_a_err=op_a_err)
    assert not op_bad, f"{len(op_bad)} operand faults differ from gemm_replay, e.g. {op_bad[:3]}"


@cocotb.test()
async def test_fault_replay(dut):
    """Replay the configured Fault records (back-to-back beats, a reset before each); write the outputs."""
    cfg = _bench_cfg()
    assert "replay" in cfg, "test_fault_replay runs from sanitas.rtl.generate.run_cocotb_replay only"
    bench = ArrayBench(dut, cfg)
    await bench.init()
    out = []
    for item in cfg["replay"]:
        a, b = np.array(item["a"], np.int64).reshape(bench.p.rows, -1), np.array(item["b"], np.int64)
        b = b.reshape(a.shape[1], bench.p.cols)
        res = await bench.gemm(a, b, bench.schedule(a.shape[1], 0.0), fault=Fault.from_dict(item["fault"]),
                               reset_first=True)
        out.append({"c": res.c.tolist(), "s": res.s.tolist(), "row_err": res.row_err})
    Path(cfg["result"]).write_text(json.dumps(out))
    assert len(out) == len(cfg["replay"])


# ------------------------------------------------------------------------------------------------ pytest side

N_RANDOM = 100  # random GEMMs per size (plus N_EDGE_CASES fixed ones)
N_FAULTS = 400  # injected faults per size
N_OPERAND = 60  # injected operand-register faults per size (A / B registers, fi_reg)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")
@pytest.mark.parametrize("array", [ArrayConfig(rows=2, cols=3), ArrayConfig(rows=4, cols=4),
                                   ArrayConfig(rows=3, cols=5, checksums="eager")],
                         ids=lambda a: a.tag() + ("_eager" if eager(a) else ""))
def test_systolic_array(array):
    """Build the array with Icarus, run both smoke tests in one simulation, check the counts."""
    out = ROOT / "build" / "rtl_tests" / "systolic_array" / (array.tag() + ("_eager" if eager(array) else ""))
    summary = run_cocotb_smoke(out, array, seed=1000 * array.rows + array.cols, n_random=N_RANDOM,
                               n_faults=N_FAULTS, n_operand=N_OPERAND)
    assert summary["passed"], f"cocotb bench failed: {summary} (log: {summary['log']})"
    assert summary["tests"] == 2 and summary["failed"] == 0
    assert summary["gemms_checked"] == N_RANDOM + N_EDGE_CASES
    assert summary["reruns_checked"] == (N_RANDOM + N_EDGE_CASES + 3) // 4
    assert summary["faults_injected"] == N_FAULTS
    assert summary["faults_corrupting"] > 0
    assert summary["operand_faults"] == N_OPERAND and summary["operand_flagged"] > 0
    assert summary["operand_a_err"] > 0      # A-path alarms (each one equal to the golden a_path_alarm in the bench)
    assert summary["faults_detected"] == summary["faults_corrupting"] == summary["faults_located"]
    assert summary["false_alarms"] == 0

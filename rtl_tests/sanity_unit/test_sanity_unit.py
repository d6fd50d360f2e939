"""cocotb bench of the generated sanity_unit (check / locate / correct per output row) and of the sanity_array top
(systolic array with its total and Hamming partial checksum PEs + sanity_unit) under single accumulator faults.

Golden: `sanitas.rtl.sanity` (built on `sanitas.protect.sanity` and `sanitas.golden.gemm`).
  * test_unit_vectors (top sanity_unit, eager: the parallel form): random rows -- consistent ones, one error in an
    output, in the total or in a partial checksum, two errors, random junk -- on detection and location beats,
    with and without partials; out_c / out_status / out_idx / out_alarm and the three counters equal `check_row`
    beat by beat.
  * test_unit_serial (top sanity_unit, lazy: the serial form): the same kinds of row, ROWS rows at a time, through
    the lazy beat sequence -- a detection beat per row, then per column set of `rerun_sels` (partial m, its
    complement, the total last) one beat per row with that set's checksum word; the detection beats must equal
    `check_row(part=False)`, the beats after the total `check_row(part=True, fix=True)` (the serial pattern bits
    give the parallel verdict), pattern beats must pass C through and count nothing.
  * test_fault_regression (top sanity_array): ``per_pe`` single accumulator faults (`sanitas.rtl.sanity.pe_faults`:
    random bit, kind, wavefront cycle) in every PE -- data, total and partial checksum columns -- and ``per_reg`` in
    every A and B operand register (`operand_faults`; the fi_reg port), each on a fresh
    random GEMM with a reset before it, all in one simulation. Each runs the sanity flow (pass 1 with the fault,
    detection beats, on an alarm the re-run passes of `rerun_sels`, each followed by one beat per row); C, S, P of
    every pass must equal the golden values, the counters and the outcome (masked / corrected / uncorrectable /
    silent) `protected_gemm`'s, and no outcome may be silent but an A operand's (the row checksums' blind spot: a
    faulty A reaches every column right of its register, from column 0 on it is an input error; sanity_tile's A-path
    check closes it, so the golden here is `protected_gemm(..., a_path=False)`). Prints faults/s
    and writes the records and outcomes to the summary.
The pytest functions at the bottom build and run each top with Icarus and re-derive the outcome counts of the
written records from the golden model.
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
from sanitas.faults import Fault
from sanitas.golden.gemm import gemm_replay, wrap
from sanitas.protect.code import DATA, SANITY, hamming_cover, n_partials
from sanitas.rtl.bench import ArrayBench
from sanitas.rtl.generate import BENCH_ENV, generate_sanity_array, run_bench
from sanitas.rtl.sanity import (OUTCOMES, check_row, column_set, eager, n_fault_pes, operand_faults, partial_checksums,
                                pe_faults, protected_gemm, rerun_sels)

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

ROOT = Path(__file__).resolve().parents[2]
#: Kinds of row of test_unit_vectors (each must occur).
ROW_KINDS = ("clean", "one_c", "total", "partial", "two_c", "junk")


def _cfg() -> dict:
    return json.loads(os.environ[BENCH_ENV])


def _array(cfg: dict) -> ArrayConfig:
    names = set(ArrayConfig.__dataclass_fields__)
    return ArrayConfig(**{k: v for k, v in cfg.items() if k in names})


def _write_summary(cfg: dict, **data) -> None:
    Path(cfg["summary"]).write_text(json.dumps(data, sort_keys=True))


def _pack(values, width: int) -> int:
    mask = (1 << width) - 1
    return sum((int(v) & mask) << (i * width) for i, v in enumerate(values))


def _unpack(word: int, n: int, width: int) -> np.ndarray:
    return wrap(np.array([(word >> (i * width)) & ((1 << width) - 1) for i in range(n)], np.int64), width)


# ------------------------------------------------------------------------------------------------ sanity_unit


def _unit_row(rng, kind: str, n: int, w: int):
    """(C (n,), S, P (NP,)) of one row of ``kind``: a consistent row, then the kind's corruption."""
    lo, hi = -(1 << (w - 1)), (1 << (w - 1))
    c = rng.integers(lo, hi, n, dtype=np.int64)
    cov = hamming_cover(n)
    sums = wrap(-(cov @ c), w)
    p, s = sums[:-1].copy(), int(sums[-1])

    def err():
        return int(rng.choice([1 << int(rng.integers(w)), int(rng.integers(lo, hi)) or 1]))
    if kind == "one_c":
        j = int(rng.integers(n))
        c[j] = wrap(int(c[j]) + err(), w)
    elif kind == "total":
        s = int(wrap(s + err(), w))
    elif kind == "partial":
        q = int(rng.integers(len(p)))
        p[q] = wrap(int(p[q]) + err(), w)
    elif kind == "two_c" and n > 1:
        j1, j2 = rng.choice(n, 2, replace=False)
        c[j1] = wrap(int(c[j1]) + err(), w)
        c[j2] = wrap(int(c[j2]) + err(), w)
    elif kind == "junk":
        p = rng.integers(lo, hi, len(p), dtype=np.int64)
        s = int(rng.integers(lo, hi))
    return c, s, p


async def _unit_reset(dut) -> None:
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    for name in ("cnt_clr", "in_valid", "in_part", "in_fix", "in_sel", "in_row", "in_c", "in_s", "in_p"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def test_unit_vectors(dut):
    """Random rows on detection / location beats: outputs and counters equal sanitas.rtl.sanity.check_row."""
    cfg = _cfg()
    arr = _array(cfg)
    n, w = arr.cols, arr.acc_width
    rng = np.random.default_rng(cfg["seed"])
    await _unit_reset(dut)
    counts = collections.Counter()
    statuses = collections.Counter()
    kinds = collections.Counter()
    mismatches = []
    for i in range(cfg["n_vectors"]):
        kind = ROW_KINDS[i % len(ROW_KINDS)]
        c, s, p = _unit_row(rng, kind, n, w)
        part, fix = bool(rng.random() < 0.75), bool(rng.random() < 0.5)
        fix = fix and part
        want = check_row(c, s, p, part=part, fix=fix, acc_width=w)
        await FallingEdge(dut.clk)
        dut.in_valid.value, dut.in_part.value, dut.in_fix.value = 1, int(part), int(fix)
        dut.in_c.value, dut.in_s.value, dut.in_p.value = _pack(c, w), int(s) & ((1 << w) - 1), _pack(p, w)
        await RisingEdge(dut.clk)
        await ReadOnly()
        got_c = _unpack(dut.out_c.value.to_unsigned(), n, w)
        status, idx, alarm = int(dut.out_status.value), int(dut.out_idx.value), int(dut.out_alarm.value)
        ok = (int(dut.out_valid.value) == 1 and np.array_equal(got_c, want.c) and status == want.status
              and alarm == want.alarm and (status not in (DATA, SANITY) or idx == want.idx)
              and _unpack(dut.out_resid.value.to_unsigned(), 1, w)[0] == want.resid)
        if not ok:
            mismatches.append((i, kind, part, fix, status, want.status, idx, want.idx))
        counts["detected"] += (not fix) and want.alarm
        counts["corrected"] += fix and want.status == DATA
        counts["uncorrectable"] += fix and want.status in (SANITY, 3)
        statuses[want.status] += 1
        kinds[kind] += 1
    got = {k: int(getattr(dut, f"cnt_{k}").value) for k in ("detected", "corrected", "uncorrectable")}
    _write_summary(cfg, vectors=sum(kinds.values()), statuses={str(k): v for k, v in statuses.items()},
                   counters=got, golden_counters=dict(counts), mismatches=len(mismatches))
    assert not mismatches, f"{len(mismatches)} rows differ from check_row, e.g. {mismatches[:3]}"
    assert got == dict(counts), f"counters {got} != golden {dict(counts)}"
    assert set(statuses) == {0, 1, 2, 3}, f"every verdict must occur, got {statuses}"


@cocotb.test()
async def test_unit_serial(dut):
    """Lazy beat sequence on ROWS random rows at a time: the serial pattern bits give check_row's verdicts."""
    cfg = _cfg()
    arr = _array(cfg)
    n, w, rows = arr.cols, arr.acc_width, arr.rows
    n_part, mod = n_partials(n), 1 << w
    rng = np.random.default_rng(cfg["seed"])
    await _unit_reset(dut)
    counts, statuses, kinds = collections.Counter(), collections.Counter(), collections.Counter()
    mismatches = []

    async def beat(row: int, c, s: int, fix: bool, sel: int):
        await FallingEdge(dut.clk)
        dut.in_valid.value, dut.in_fix.value, dut.in_sel.value, dut.in_row.value = 1, int(fix), sel, row
        dut.in_c.value, dut.in_s.value = _pack(c, w), int(s) % mod
        await RisingEdge(dut.clk)
        await ReadOnly()
        return (_unpack(dut.out_c.value.to_unsigned(), n, w), int(dut.out_status.value), int(dut.out_idx.value),
                int(dut.out_alarm.value), _unpack(dut.out_resid.value.to_unsigned(), 1, w)[0])

    i = 0
    while i < cfg["n_vectors"]:
        group = []
        for _ in range(rows):
            kind = ROW_KINDS[i % len(ROW_KINDS)]
            group.append((kind, *_unit_row(rng, kind, n, w)))
            i += 1
        for r, (kind, c, s, _) in enumerate(group):           # detection beats (lazy: the total residual alone)
            want = check_row(c, s, np.zeros(n_part, np.int64), part=False, fix=False, acc_width=w)
            got_c, status, _, alarm, resid = await beat(r, c, s, False, 0)
            if not (np.array_equal(got_c, c) and status == want.status and alarm == want.alarm
                    and resid == want.resid):
                mismatches.append(("detect", kind, status, want.status))
            counts["detected"] += want.alarm
        for sel in rerun_sels(arr):                           # one beat per row and column set, the total last
            for r, (kind, c, s, p) in enumerate(group):
                word = s if sel == 0 else p[sel - 1] if sel <= n_part else s - p[sel - 1 - n_part]
                got_c, status, idx, alarm, resid = await beat(r, c, word, True, sel)
                if sel:
                    if not np.array_equal(got_c, c) or status != 0:
                        mismatches.append(("pattern", sel, kind))
                    continue
                want = check_row(c, s, p, part=True, fix=True, acc_width=w)
                if not (np.array_equal(got_c, want.c) and status == want.status and resid == want.resid
                        and (status not in (DATA, SANITY) or idx == want.idx)):
                    mismatches.append(("locate", kind, status, want.status, idx, want.idx))
                counts["corrected"] += want.status == DATA
                counts["uncorrectable"] += want.status in (SANITY, 3)
                statuses[want.status] += 1
                kinds[kind] += 1
    await FallingEdge(dut.clk)
    dut.in_valid.value = 0
    got = {k: int(getattr(dut, f"cnt_{k}").value) for k in ("detected", "corrected", "uncorrectable")}
    _write_summary(cfg, vectors=sum(kinds.values()), statuses={str(k): v for k, v in statuses.items()},
                   counters=got, golden_counters=dict(counts), mismatches=len(mismatches))
    assert not mismatches, f"{len(mismatches)} beats differ from check_row, e.g. {mismatches[:3]}"
    assert got == dict(counts), f"counters {got} != golden {dict(counts)}"
    assert set(statuses) == {0, 1, 2, 3}, f"every verdict must occur, got {statuses}"


# ------------------------------------------------------------------------------------------------ sanity_array


class SanityBench(ArrayBench):
    """ArrayBench on the sanity_array top, plus the check beats of its sanity_unit."""

    extra_inputs = ("chk_valid", "chk_row", "chk_fix")

    async def check_rows(self, fix: bool) -> list[tuple[int, int, np.ndarray]]:
        """One check beat per row; returns [(alarm, status, row C out)] in row order."""
        dut, p = self.dut, self.p
        out = []
        for r in range(p.rows):
            await FallingEdge(dut.clk)
            dut.chk_valid.value, dut.chk_row.value, dut.chk_fix.value = 1, r, int(fix)
            await RisingEdge(dut.clk)
            await ReadOnly()
            assert int(dut.s_valid.value) == 1
            out.append((int(dut.s_alarm.value), int(dut.s_status.value),
                        _unpack(dut.s_c.value.to_unsigned(), p.cols, p.acc_width)))
        await FallingEdge(dut.clk)
        dut.chk_valid.value = 0
        self._after_readonly = False
        return out

    def counters(self) -> tuple[int, int, int]:
        dut = self.dut
        return int(dut.cnt_detected.value), int(dut.cnt_corrected.value), int(dut.cnt_uncorrectable.value)


def _classify(final: np.ndarray, c1: np.ndarray, gold: np.ndarray, unc: int) -> str:
    if unc:
        return "uncorrectable"
    if np.array_equal(final, gold):
        return "masked" if np.array_equal(c1, gold) else "corrected"
    return "silent"


@cocotb.test()
async def test_fault_regression(dut):
    """Single accumulator faults in every PE, one simulation: RTL outcome == golden outcome, 0 silent."""
    cfg = _cfg()
    bench = SanityBench(dut, cfg)
    await bench.init()
    p, rng = bench.p, bench.rng
    faults = pe_faults(p, rng, cfg["k_max"], cfg["per_pe"]) + operand_faults(p, rng, cfg["k_max"], cfg["per_reg"])
    records, bad = [], []
    silent_a = 0     # silent A-operand records: every column right of the register sees the same faulty A
    outcomes = collections.Counter()
    t0 = time.perf_counter()
    for f in faults:
        k = int(rng.integers(1, cfg["k_max"] + 1))
        a = rng.integers(p.data_min, p.data_max + 1, (p.rows, k), dtype=np.int64)
        b = rng.integers(p.data_min, p.data_max + 1, (k, p.cols), dtype=np.int64)
        gold = protected_gemm(a, b, f, p, a_path=False)     # sanity_array alone: no A-path check
        acc_fault = f if f.site != "part_acc" else None
        c1, s1 = gemm_replay(a, b, acc_fault, p)
        p1 = partial_checksums(a, b, p, f, running=eager(p))
        c0, s0 = gemm_replay(a, b, None, p)
        res1 = await bench.gemm(a, b, bench.schedule(k, float(rng.choice([0.0, 0.25]))), fault=f, reset_first=True)
        if not (np.array_equal(res1.c, c1) and np.array_equal(res1.s, s1) and np.array_equal(res1.p, p1)
                and res1.part_valid == int(eager(p))):
            bad.append((f, "pass 1 C/S/P differ from the golden"))
        det = await bench.check_rows(fix=False)
        final = res1.c
        if any(alarm for alarm, _, _ in det):
            p_fresh = partial_checksums(a, b, p) if eager(p) else np.zeros_like(p1)
            for sel in rerun_sels(p):           # eager one pass; lazy one column set per pass, the total last
                res2 = await bench.gemm(a, b, bench.schedule(k, 0.0), rerun=True, chk_sel=sel)
                s_set = wrap(a @ -(b @ column_set(p, sel)), p.acc_width)
                if not (np.array_equal(res2.c, res1.c) and np.array_equal(res2.s, s_set)
                        and np.array_equal(res2.p, p_fresh) and res2.part_valid == int(eager(p))):
                    bad.append((f, (f"re-run pass {sel}: C held {np.array_equal(res2.c, res1.c)}, S {res2.s} != "
                                    f"{s_set} or P {res2.p.tolist()} != {p_fresh.tolist()}")))
                loc = await bench.check_rows(fix=True)
            final = np.stack([row for _, _, row in loc])
        detected, corrected, unc = bench.counters()
        outcome = _classify(final, res1.c, c0, unc)
        if (detected, corrected, unc, outcome) != (gold.detected, gold.corrected, gold.uncorrectable, gold.outcome) \
                or not np.array_equal(final, gold.c):
            bad.append((f, (f"rtl {(detected, corrected, unc, outcome)} golden "
                            f"{(gold.detected, gold.corrected, gold.uncorrectable, gold.outcome)}")))
        outcomes[outcome] += 1
        silent_a += outcome == "silent" and f.site == "pe_a"
        records.append({"fault": f.to_dict(), "a": a.tolist(), "b": b.tolist(), "outcome": outcome,
                        "counters": [detected, corrected, unc]})
    wall = time.perf_counter() - t0
    rate = len(faults) / wall
    dut._log.info("%d faults in %.1f s: %.1f faults/s; outcomes %s", len(faults), wall, rate, dict(outcomes))
    print(f"sanity regression {p.rows}x{p.cols} {p.checksums.value}: {len(faults)} faults, {rate:.1f} faults/s, "
          f"{dict(outcomes)}")
    _write_summary(cfg, faults=len(faults), outcomes={o: outcomes[o] for o in OUTCOMES}, faults_per_s=rate,
                   mismatches=len(bad), records=records, silent_operand_a=silent_a)
    assert not bad, f"{len(bad)} faults differ from the golden, e.g. {bad[:3]}"
    assert outcomes["silent"] == silent_a, "only an A operand register may end silent (the golden's blind spot)"
    assert len(faults) == cfg["per_pe"] * n_fault_pes(p) + cfg["per_reg"] * 2 * p.rows * (p.cols + 1)


# ------------------------------------------------------------------------------------------------ pytest side

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")
N_VECTORS = 600   # rows per sanity_unit simulation
PER_PE = 8        # faults per PE in the regression (the 10k regression is rtl_tests/sanity_tile)
PER_REG = 3       # faults per operand register (A and B of every PE position) in the regression
K_MAX = 10        # longest random reduction of a regression GEMM


def _run(array: ArrayConfig, top: str, test: str, seed: int, **cfg) -> dict:
    out = ROOT / "build" / "rtl_tests" / "sanity_unit" / f"{top}_{array.tag()}_{array.checksums.value}"
    summary = out / "summary.json"
    summary.unlink(missing_ok=True)
    sim_exit, n_tests, n_failed, _, log = run_bench(
        out, array, dict(cfg, seed=seed, summary=str(summary)), seed, (test,), toplevel=top, bench="sanity_unit",
        sources=generate_sanity_array(array, out / "rtl"))
    assert (sim_exit, n_tests, n_failed) == (0, 1, 0), f"cocotb {test} failed (log: {log})"
    return json.loads(summary.read_text())


@needs_iverilog
@pytest.mark.parametrize("array", [ArrayConfig(rows=1, cols=5, checksums="eager"),
                                   ArrayConfig(rows=1, cols=8, checksums="eager"), ArrayConfig(rows=3, cols=5),
                                   ArrayConfig(rows=2, cols=8)], ids=lambda a: f"{a.tag()}_{a.checksums.value}")
def test_sanity_unit(array):
    """The unit alone (eager: parallel, lazy: serial): every verdict occurs, outputs and counters == check_row."""
    test = "test_unit_vectors" if eager(array) else "test_unit_serial"
    s = _run(array, "sanity_unit", test, seed=7 * array.cols, n_vectors=N_VECTORS)
    assert s["vectors"] == N_VECTORS and s["mismatches"] == 0
    assert s["counters"] == s["golden_counters"]
    assert sorted(s["statuses"]) == ["0", "1", "2", "3"]


@needs_iverilog
@pytest.mark.parametrize("array", [ArrayConfig(rows=r, cols=c, checksums=m) for r, c in ((4, 4), (3, 5))
                                   for m in ("lazy", "eager")], ids=lambda a: f"{a.tag()}_{a.checksums.value}")
def test_sanity_regression(array):
    """Faults in every PE of the protected array: 0 silent; the outcome counts re-derived from the golden."""
    s = _run(array, "sanity_array", "test_fault_regression", seed=100 * array.rows + array.cols, per_pe=PER_PE,
             per_reg=PER_REG, k_max=K_MAX)
    n_reg = 2 * array.rows * (array.cols + 1)
    assert s["faults"] == PER_PE * n_fault_pes(array) + PER_REG * n_reg == len(s["records"]) and s["mismatches"] == 0
    golden = collections.Counter()
    for rec in s["records"]:
        o = protected_gemm(np.array(rec["a"]), np.array(rec["b"]), Fault.from_dict(rec["fault"]), array, a_path=False)
        golden[o.outcome] += 1
        assert rec["outcome"] == o.outcome and rec["counters"] == [o.detected, o.corrected, o.uncorrectable]
    assert s["outcomes"] == {o: golden[o] for o in OUTCOMES}
    # 0 silent except A operand records (a faulty A[m, kk] reaches every column right of its register; from column 0
    # on it is an input error the row checksums cannot see -- input DMR's domain)
    silent_a = sum(r["outcome"] == "silent" and r["fault"]["site"] == "pe_a" for r in s["records"])
    assert s["outcomes"]["silent"] == s["silent_operand_a"] == silent_a
    assert s["outcomes"]["corrected"] > 0 and s["outcomes"]["masked"] > 0
    assert any(r["outcome"] == "corrected" and r["fault"]["site"] == "pe_b" for r in s["records"])
    sites = collections.Counter(rec["fault"]["site"] for rec in s["records"])
    want = {"pe_acc": PER_PE * array.rows * array.cols, "chk_acc": PER_PE * array.rows, "pe_a": PER_REG * n_reg // 2,
            "pe_b": PER_REG * n_reg // 2}
    if eager(array):
        want["part_acc"] = PER_PE * array.rows * n_partials(array.cols)
    assert sites == want

"""cocotb bench of the generated dmr_unit: stream checksums of written and read tensors, the two-lane output stage
(requantisation with round half to even and saturation, ReLU, max-pool) and their compare, under single faults.

Golden: `sanitas.rtl.dmr` (built on `sanitas.golden.rounding.requantize` and `sanitas.protect.seal.checksums`).
  * test_streams: random tensors -- random shift (right with rounding, left, zero), bounds (int8, narrow int8,
    ReLU uint8), pooling windows of 1 or 4 -- each run after a clear: written words, write checkpoint (S0, F) and
    its golden form (`to_golden` == `seal.checksums`), then the words read back clean, with one word corrupted,
    or against a corrupted stored checkpoint word; rd_bad / lane_bad and the two counters equal the golden's.
  * test_fault_regression: ``per_reg`` single faults (random bit, kind, beat) in each of the unit's registers
    (`DMR_REGS`), each on a fresh tensor after a reset; the RTL verdicts and words equal `run_stream` with the same
    fault, the outcome (masked / detected / silent) is the golden's, and none is silent. Prints faults/s.
  * test_streams at the engine's read width (RD_N words a beat, RD_W summed an edge: `sanitas.rtl.engine_regs`):
    the words are read back in beats of RD_N (the last one partial, the unused tail words random), each held until
    rd_ready; every beat takes exactly ceil(rd_n / RD_W) edges, the read sums are the word-serial golden's, and
    most tensors' lengths are not a multiple of RD_W (nor of RD_N), the corrupted word in the last part.
The pytest functions at the bottom build and run each test with Icarus.
"""
from __future__ import annotations

import collections
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from sanitas.rtl.dmr import DMR_OUTCOMES, DMR_REGS, DmrFault, classify, golden_checksum, run_stream, to_golden
from sanitas.rtl.bench import UnitBench, bench_config, run_unit
from sanitas.rtl.engine_regs import ENGINE_KMAX, ENGINE_READ_W
from sanitas.rtl.generate import generate_dmr_unit

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("bitflip", "stuck0", "stuck1")
#: (lo, hi) of the three activation types: int8, narrow int8, ReLU uint8.
BOUNDS = ((-128, 127), (-127, 127), (0, 255))
MASK64 = (1 << 64) - 1


_cfg = bench_config


def _s64(v: int) -> int:
    v &= MASK64
    return v - (1 << 64) if v >> 63 else v


class DmrBench(UnitBench):
    """Drives one dmr_unit: reset, one tensor (accumulator beats, then read beats, then chk), read-back."""

    inputs = ("clr", "cnt_clr", "shift", "lo", "hi", "rd_signed", "in_valid", "in_first", "in_last", "in_acc",
              "rd_valid", "rd_data", "chk", "ref_s0", "ref_f", "fi_en", "fi_sel", "fi_bit", "fi_kind")

    def __init__(self, dut, cfg):
        super().__init__(dut, cfg)
        self.rd_n, self.rd_w = int(cfg.get("rd_n", 1)), int(cfg.get("rd_w", 1))   # the top's RD_N, RD_W
        self.read_edges = self.want_edges = self.non_multiple = 0

    def defaults(self):
        self.dut.rd_n.value = 1       # RD_N = 1: one word a read beat

    def tensor(self, i: int = 0):
        """(windows, shift, lo, hi): a random tensor of 1..24 windows of 1 or 4 accumulators (RD_N > 1: 1..99 windows,
        a multiple of RD_W only when i % 4 == 3)."""
        rng = self.rng
        pool = int(rng.choice([1, 4]))
        if self.rd_n == 1:
            n = int(rng.integers(1, 25))
        elif i % 4 == 3:
            n = self.rd_w * int(rng.integers(1, 100 // self.rd_w))
        else:
            n = int(rng.integers(1, 100))
            n += n % self.rd_w == 0
        self.non_multiple += n % self.rd_w != 0 and n % self.rd_n != 0
        mag = int(rng.choice([1 << 8, 1 << 14, 1 << 31]))
        windows = [rng.integers(-mag, mag, pool).clip(-(1 << 31), (1 << 31) - 1).tolist() for _ in range(n)]
        shift = int(rng.choice([0, -1, -3, int(rng.integers(1, 12))]))
        lo, hi = BOUNDS[int(rng.integers(len(BOUNDS)))]
        return windows, shift, lo, hi

    async def run(self, windows, shift, lo, hi, *, read=None, ref=None, fault: DmrFault | None = None):
        """One tensor: clr, the accumulator beats (words collected), the read beats, chk. Returns
        (words, wr, rd, lane_bad, rd_bad); ``read`` None: read back what was written."""
        dut = self.dut
        await FallingEdge(dut.clk)
        dut.shift.value, dut.lo.value, dut.hi.value = shift, lo, hi
        dut.rd_signed.value = int(lo < 0)
        dut.clr.value = 1
        await RisingEdge(dut.clk)
        dut.clr.value = 0
        beat, words = 0, []

        async def edge(sample: bool = False):
            nonlocal beat
            hit = fault is not None and fault.beat == beat
            dut.fi_en.value = int(hit)
            if hit:
                dut.fi_sel.value, dut.fi_bit.value = DMR_REGS.index(fault.reg), fault.bit
                dut.fi_kind.value = KINDS.index(fault.kind)
            ready = None
            if sample:                           # rd_ready before the edge (the inputs of this edge settled)
                await ReadOnly()
                ready = int(dut.rd_ready.value)
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(dut.out_valid.value):
                words.append(int(dut.out_data.value))
            await FallingEdge(dut.clk)
            beat += 1
            return ready

        await FallingEdge(dut.clk)
        for w in windows:
            for i, acc in enumerate(w):
                dut.in_valid.value, dut.in_first.value, dut.in_last.value = 1, int(i == 0), int(i == len(w) - 1)
                dut.in_acc.value = int(acc)
                await edge()
        dut.in_valid.value = 0
        vals = [(x - 256 if x >= 128 else x) if lo < 0 else x for x in words]
        read = vals if read is None else read
        if self.rd_n == 1:
            for x in read:
                dut.rd_valid.value, dut.rd_data.value = 1, int(x) & 0xFF
                await edge()
        for b0 in range(0, len(read) if self.rd_n > 1 else 0, self.rd_n):   # beats of RD_N words, RD_W an edge
            chunk = [int(x) & 0xFF for x in read[b0:b0 + self.rd_n]]
            dut.rd_valid.value = 0
            for _ in range(int(self.rng.integers(0, 3))):                    # idle edges between beats
                await edge()
            tail = [int(v) for v in self.rng.integers(0, 256, self.rd_n - len(chunk))]   # not part of the tensor
            dut.rd_valid.value, dut.rd_n.value = 1, len(chunk)
            dut.rd_data.value = sum(x << (8 * k) for k, x in enumerate(chunk + tail))
            edges = 1
            while not await edge(sample=True):
                edges += 1
            self.read_edges += edges
            self.want_edges += -(-len(chunk) // self.rd_w)
            assert edges == -(-len(chunk) // self.rd_w), f"beat of {len(chunk)} words took {edges} edges"
        dut.rd_valid.value = 0
        dut.fi_en.value = 0
        wr = (_s64(dut.wr_s0.value.to_unsigned()), _s64(dut.wr_f.value.to_unsigned()))
        ref = wr if ref is None else ref
        dut.ref_s0.value, dut.ref_f.value = ref[0] & MASK64, ref[1] & MASK64
        dut.chk.value = 1
        await RisingEdge(dut.clk)
        dut.chk.value = 0
        await ReadOnly()
        rd = (_s64(dut.rd_s0.value.to_unsigned()), _s64(dut.rd_f.value.to_unsigned()))
        out = (np.array(vals, np.int64), wr, rd, bool(int(dut.lane_bad.value)), bool(int(dut.rd_bad.value)))
        await FallingEdge(dut.clk)
        return out

    def counters(self):
        return int(self.dut.cnt_lane_bad.value), int(self.dut.cnt_rd_bad.value)


@cocotb.test()
async def test_streams(dut):
    """Random tensors: words and checkpoints bit-exact, reads clean / corrupted word / corrupted checkpoint."""
    cfg = _cfg()
    bench = DmrBench(dut, cfg)
    await bench.init()
    rng = bench.rng
    cases = collections.Counter()
    want_rd_bad = 0
    for i in range(cfg["n_tensors"]):
        windows, shift, lo, hi = bench.tensor(i)
        gold = run_stream(windows, shift, lo, hi)
        mode = ("clean", "word", "checkpoint")[i % 3]
        read, ref = None, None
        if mode == "word":           # a stored activation word corrupted (one bit of its 8-bit pattern)
            read = gold.words.copy()
            last = len(read) % bench.rd_w or bench.rd_w     # RD_N > 1: a word of the last part read
            j = int(rng.integers(len(read))) if bench.rd_n == 1 else len(read) - 1 - int(rng.integers(last))
            b = int(rng.integers(8))
            pattern = (int(read[j]) & 0xFF) ^ (1 << b)
            read[j] = pattern - 256 if lo < 0 and pattern >= 128 else pattern
        elif mode == "checkpoint":   # a stored checkpoint word corrupted (one bit of S0 or F)
            ref = list(gold.wr)
            ref[int(rng.integers(2))] ^= 1 << int(rng.integers(64))
            ref = tuple(_s64(v) for v in ref)
        want = run_stream(windows, shift, lo, hi, read=read, ref=ref)
        words, wr, rd, lane_bad, rd_bad = await bench.run(windows, shift, lo, hi, read=read, ref=ref)
        assert np.array_equal(words, gold.words), f"tensor {i}: words {words} != {gold.words}"
        assert wr == gold.wr and rd == want.rd, f"tensor {i}: checkpoint {wr} / {rd} != {gold.wr} / {want.rd}"
        assert np.array_equal(to_golden(*wr, len(words)), golden_checksum(gold.words))
        assert (lane_bad, rd_bad) == (False, mode != "clean") == (want.lane_bad, want.rd_bad), f"tensor {i} {mode}"
        want_rd_bad += mode != "clean"
        cases[mode] += 1
    assert bench.counters() == (0, want_rd_bad)
    Path(cfg["summary"]).write_text(json.dumps({"tensors": sum(cases.values()), "cases": dict(cases),
                                                "counters": list(bench.counters()), "read_edges": bench.read_edges,
                                                "want_edges": bench.want_edges,
                                                "non_multiple": bench.non_multiple}))


@cocotb.test()
async def test_fault_regression(dut):
    """Single faults in every dmr_unit register: verdicts and words equal the golden's, 0 silent."""
    cfg = _cfg()
    bench = DmrBench(dut, cfg)
    await bench.init()
    rng = bench.rng
    outcomes, per_reg, bad = collections.Counter(), collections.Counter(), []
    t0 = time.perf_counter()
    n = 0
    for reg in DMR_REGS:
        width = 9 if reg.endswith("max") else 64
        for _ in range(cfg["per_reg"]):
            windows, shift, lo, hi = bench.tensor()
            n_beats = sum(len(w) for w in windows) + len(windows)
            fault = DmrFault(reg, int(rng.integers(width)), KINDS[int(rng.choice(3, p=[0.8, 0.1, 0.1]))],
                             int(rng.integers(n_beats)))
            clean = run_stream(windows, shift, lo, hi)
            want = run_stream(windows, shift, lo, hi, fault=fault)
            await bench.reset()
            words, wr, rd, lane_bad, rd_bad = await bench.run(windows, shift, lo, hi, fault=fault)
            got = (words.tolist(), wr, rd, lane_bad, rd_bad)
            if got != (want.words.tolist(), want.wr, want.rd, want.lane_bad, want.rd_bad):
                bad.append((fault, got, want))
            o = classify(want, clean)
            outcomes[o] += 1
            per_reg[reg, o] += 1
            n += 1
    rate = n / (time.perf_counter() - t0)
    print(f"dmr_unit regression: {n} faults, {rate:.1f} faults/s, {dict(outcomes)}")
    Path(cfg["summary"]).write_text(json.dumps({
        "faults": n, "outcomes": {o: outcomes[o] for o in DMR_OUTCOMES}, "faults_per_s": rate,
        "mismatches": len(bad), "per_reg": {f"{r}:{o}": v for (r, o), v in per_reg.items()}}))
    assert not bad, f"{len(bad)} faults differ from the golden, e.g. {bad[:2]}"
    assert outcomes["silent"] == 0


# ------------------------------------------------------------------------------------------------ pytest side

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")
N_TENSORS = 60
PER_REG = 40


def _run(test: str, seed: int, name: str | None = None, parameters: dict | None = None, **cfg) -> dict:
    return run_unit(ROOT / "build" / "rtl_tests" / "dmr_unit" / (name or test), "dmr_unit", test, seed,
                    generate_dmr_unit, parameters=parameters, **cfg)


@needs_iverilog
def test_dmr_streams():
    s = _run("test_streams", seed=5, n_tensors=N_TENSORS)
    assert s["tensors"] == N_TENSORS and s["cases"] == {"clean": 20, "word": 20, "checkpoint": 20}
    assert s["counters"] == [0, 40]


@needs_iverilog
def test_dmr_streams_serial_read():
    """The engine's read width (RD_N = ENGINE_KMAX bytes a beat, RD_W = ENGINE_READ_W words summed an edge): reads
    exact at lengths that are no multiple of RD_W / RD_N, a corrupted word in the last part caught."""
    rd_n, rd_w = ENGINE_KMAX, ENGINE_READ_W
    s = _run("test_streams", seed=7, name="test_streams_serial", parameters={"RD_N": rd_n, "RD_W": rd_w},
             n_tensors=N_TENSORS, rd_n=rd_n, rd_w=rd_w)
    assert s["tensors"] == N_TENSORS and s["cases"] == {"clean": 20, "word": 20, "checkpoint": 20}
    assert s["counters"] == [0, 40]
    assert s["non_multiple"] == 45 and s["read_edges"] == s["want_edges"] > N_TENSORS


@needs_iverilog
def test_dmr_fault_regression():
    s = _run("test_fault_regression", seed=11, per_reg=PER_REG)
    assert s["faults"] == PER_REG * len(DMR_REGS) and s["mismatches"] == 0
    assert s["outcomes"]["silent"] == 0 and s["outcomes"]["detected"] > 0 and s["outcomes"]["masked"] > 0
    for reg in DMR_REGS:   # every register's faults are seen by a compare unless masked
        assert sum(v for k, v in s["per_reg"].items() if k.startswith(reg + ":")) == PER_REG

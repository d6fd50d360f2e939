"""cocotb drivers shared by the benches in rtl_tests/: the systolic array's (reset, GEMM passes with an optional
fault record, result read-back) and the unit benches' common loops (`UnitBench`: clock, inputs, reset;
`run_unit`: the pytest side that renders a unit, runs one cocotb test and returns its summary).

`ArrayBench` drives one `systolic_array` (or a wrapper top that instantiates it as ``u_array`` and passes its
inputs through, e.g. ``sanity_array``): it streams the beats of C = A @ B on a schedule with bubbles, applies a
`sanitas.faults.Fault` through `sanitas.rtl.faults.fault_to_fi_ports`, and reads C, S, P and the row alarms when
``done`` rises. Imported only inside cocotb simulations.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

import cocotb  # noqa: F401  (the simulator must be running)
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from ..config import ArrayConfig
from ..faults import Fault
from ..protect.code import n_partials
from .faults import fault_to_fi_ports


@dataclass
class GemmResult:
    """Outputs of one GEMM as read when `done` rose."""

    c: np.ndarray  # (ROWS, COLS) int64, C as signed ACC_W-bit values
    s: np.ndarray  # (ROWS,) int64, checksum column S
    row_err: int   # ROWS-bit mask
    chk_err: int   # 0/1
    p: np.ndarray  # (ROWS, NP) int64, partial checksums P (0 when they did not run)
    part_valid: int  # 0/1: P was computed in this pass
    a_err: int = 0   # 0/1: the A-path check fired (A_CHK; the A folds at column 0 and the checksum column differ)


class ArrayBench:
    """Drives one generated `systolic_array` instance: reset, GEMMs with optional fault, result read-back."""

    extra_inputs: tuple[str, ...] = ()   # inputs of a wrapper top driven to 0 by init (e.g. the sanity check)

    def __init__(self, dut, cfg: dict):
        names = {f.name for f in fields(ArrayConfig)}
        self.p = ArrayConfig(**{k: v for k, v in cfg.items() if k in names})
        self.cfg = cfg
        self.dut = dut
        self.rng = np.random.default_rng(cfg["seed"])
        self.acc_mod = 1 << self.p.acc_width
        self.lat = self.p.latency          # ROWS + COLS
        self._after_readonly = False       # True: must wait for an edge before writing inputs
        self._fi_on = False
        self.arr = dut.u_array if hasattr(dut, "u_array") else dut   # the array (a wrapper top names it u_array)
        self.n_part = n_partials(self.p.cols)

    async def init(self) -> None:
        """Start the clock, drive every input to 0, hold reset for 2 edges."""
        dut = self.dut
        Clock(dut.clk, 10, unit="ns", impl="gpi").start()
        for name in ("start", "k_len", "rerun", "chk_sel", "in_valid", "a_col", "b_row", "fi_en", "fi_row", "fi_col",
                     "fi_bit", "fi_kind", "fi_part", "fi_reg") + self.extra_inputs:
            getattr(dut, name).value = 0
        dut.rst.value = 1
        await RisingEdge(dut.clk)
        await RisingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    # ---- packing helpers: element i at bits [i*w +: w] ----
    @staticmethod
    def pack(values, width: int) -> int:
        mask = (1 << width) - 1
        return sum((int(v) & mask) << (i * width) for i, v in enumerate(values))

    def unpack(self, word: int, n: int) -> np.ndarray:
        w, half = self.p.acc_width, 1 << (self.p.acc_width - 1)
        raw = [(word >> (i * w)) & (self.acc_mod - 1) for i in range(n)]
        return np.array([v - self.acc_mod if v >= half else v for v in raw], dtype=np.int64)

    def random_word(self, bits: int) -> int:
        """Uniform random unsigned integer of ``bits`` bits (any width)."""
        return int.from_bytes(self.rng.bytes((bits + 7) // 8), "little") & ((1 << bits) - 1)

    def schedule(self, k: int, gap_prob: float) -> list[int | None]:
        """Beat index per edge 1, 2, ... (None = bubble); exactly k beats, the last entry is beat k-1."""
        sched: list[int | None] = []
        for beat in range(k):
            while gap_prob and self.rng.random() < gap_prob:
                sched.append(None)
            sched.append(beat)
        return sched

    def _set_fi(self, fi: Any, edge: int) -> None:
        dut = self.dut
        if fi is not None and fi.edge == edge:
            dut.fi_row.value, dut.fi_col.value = fi.fi_row, fi.fi_col
            dut.fi_bit.value, dut.fi_kind.value, dut.fi_part.value = fi.fi_bit, fi.fi_kind, fi.fi_part
            dut.fi_reg.value = fi.fi_reg
            dut.fi_en.value = 1
            self._fi_on = True
        elif self._fi_on:
            dut.fi_en.value = 0
            self._fi_on = False

    async def gemm(self, a: np.ndarray, b: np.ndarray, sched: list[int | None], *, fault: Fault | None = None,
                   reset_first: bool = False, junk_after: bool = False, rerun: bool = False,
                   chk_sel: int = 0) -> GemmResult:
        """Run C = A @ B: start, stream beats per ``sched``, wait for done; inject ``fault`` if given.

        a: (ROWS, K), b: (K, COLS), DATA_W-bit values. Bubbles carry random data with in_valid = 0; with
        ``junk_after`` in_valid stays 1 with random data after the last beat (in_ready = 0 must ignore it).
        The fault's wavefront cycle becomes an edge of this schedule (`fault_to_fi_ports`).
        """
        dut, p = self.dut, self.p
        k = a.shape[1]
        beat_edges = [e + 1 for e, beat in enumerate(sched) if beat is not None]
        fi = fault_to_fi_ports(fault, p, k, beat_edges) if fault is not None else None
        a_words = [self.pack(a[:, i], p.data_width) for i in range(k)]
        b_words = [self.pack(b[i, :], p.data_width) for i in range(k)]
        e_last = len(sched)                # edge of the last beat (0 when K == 0)
        final_edge = e_last + self.lat + 1  # edge that registers the check; done is high after it
        if fi is not None:
            assert 0 <= fi.edge <= e_last + self.lat, "fault outside the computation window"

        if self._after_readonly:
            await RisingEdge(dut.clk)
        if reset_first:
            dut.rst.value = 1
            await RisingEdge(dut.clk)
            dut.rst.value = 0
        dut.k_len.value = k
        dut.rerun.value = int(rerun)
        dut.chk_sel.value = int(chk_sel)
        dut.start.value = 1
        self._set_fi(fi, 0)
        await RisingEdge(dut.clk)           # edge 0: start accepted, accumulators cleared
        dut.start.value = 0
        for edge in range(1, final_edge + 1):
            beat = sched[edge - 1] if edge <= e_last else None
            if beat is not None:
                dut.in_valid.value = 1
                dut.a_col.value, dut.b_row.value = a_words[beat], b_words[beat]
            else:
                junk = edge > e_last and junk_after
                dut.in_valid.value = 1 if junk else 0
                if edge <= e_last or junk:  # random payload that must not be accumulated
                    dut.a_col.value = self.random_word(p.rows * p.data_width)
                    dut.b_row.value = self.random_word(p.cols * p.data_width)
            self._set_fi(fi, edge)
            if edge == final_edge:
                await ReadOnly()            # one edge before done: still busy
                assert int(dut.done.value) == 0 and int(dut.busy.value) == 1, "done rose early"
            await RisingEdge(dut.clk)
        await ReadOnly()
        self._after_readonly = True
        assert int(dut.done.value) == 1, f"done not high {self.lat + 1} edges after the last beat"
        assert int(dut.busy.value) == 0
        arr = self.arr
        c = np.stack([self.unpack(getattr(arr, f"c_row{r}").value.to_unsigned(), p.cols) for r in range(p.rows)])
        s = np.array([self.unpack(getattr(arr, f"s_row{r}").value.to_unsigned(), 1)[0] for r in range(p.rows)])
        part = np.stack([self.unpack(getattr(arr, f"p_row{r}").value.to_unsigned(), self.n_part)
                         for r in range(p.rows)])
        return GemmResult(c=c, s=s, row_err=arr.row_err.value.to_unsigned(), chk_err=int(arr.chk_err.value),
                          p=part, part_valid=int(arr.part_valid.value), a_err=int(arr.a_err.value))

    async def recheck(self, a: np.ndarray, b: np.ndarray, gap_prob: float = 0.0) -> tuple[GemmResult, int]:
        """The re-run passes after an alarm (`sanitas.rtl.sanity.rerun_sels`: eager one; lazy 2 * NP + 1, one
        column set each on the total-checksum column, the total last). Returns (the last pass's result, passes)."""
        from .sanity import rerun_sels
        sels = rerun_sels(self.p)
        for sel in sels:
            res = await self.gemm(a, b, self.schedule(a.shape[1], gap_prob), rerun=True, chk_sel=sel)
        return res, len(sels)


# ---- the shared loops of the unit benches (rtl_tests/dmr_unit, rtl_tests/rollback_ctrl) ----
def bench_config() -> dict:
    """The JSON bench configuration of the running simulation (`sanitas.rtl.generate.BENCH_ENV`)."""
    import json
    import os
    from .generate import BENCH_ENV
    return json.loads(os.environ[BENCH_ENV])


class UnitBench:
    """Clock, inputs and reset of one unit top: ``inputs`` are driven to 0 by `init` (then `defaults`), reset is
    held for two edges; `reset` pulses it for one edge (``settle``: then waits for the falling edge, so the caller
    drives the next inputs between edges). ``rng`` is seeded from the bench configuration."""

    inputs: tuple[str, ...] = ()
    settle: bool = False

    def __init__(self, dut, cfg: dict):
        self.dut, self.cfg = dut, cfg
        self.rng = np.random.default_rng(cfg["seed"])

    def defaults(self) -> None:
        """Non-zero idle values of inputs (after the zeros)."""

    async def init(self) -> None:
        dut = self.dut
        Clock(dut.clk, 10, unit="ns", impl="gpi").start()
        for name in self.inputs:
            getattr(dut, name).value = 0
        self.defaults()
        dut.rst.value = 1
        await RisingEdge(dut.clk)     # the first edge may come before the writes settle: hold reset for two
        await self.reset()

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        if self.settle:
            await FallingEdge(self.dut.clk)


def run_unit(out, module: str, test: str, seed: int, generate, parameters: dict | None = None, **cfg) -> dict:
    """pytest side of a unit bench: render ``module`` with ``generate(ArrayConfig(), out / "rtl")``, run the cocotb
    test ``test`` of rtl_tests/<module> with ``cfg`` (+ seed, summary path) and the Verilog ``parameters`` of the
    top (each parameter set its own ``out``), and return its JSON summary; an AssertionError names the log when the
    simulation fails."""
    import json
    from pathlib import Path
    from .generate import run_bench
    array = ArrayConfig()
    out = Path(out)
    summary = out / "summary.json"
    summary.unlink(missing_ok=True)
    sim_exit, n_tests, n_failed, _, log = run_bench(
        out, array, dict(cfg, seed=seed, summary=str(summary)), seed, (test,), toplevel=module, bench=module,
        sources=generate(array, out / "rtl"), parameters=parameters)
    assert (sim_exit, n_tests, n_failed) == (0, 1, 0), f"cocotb {test} failed (log: {log})"
    return json.loads(summary.read_text())

"""cocotb bench of the RTL ``engine`` top: a whole network (the digits LeNet-5) layer by layer through AXI4-Lite
control and AXI4-Stream data, driven with cocotbext-axi.

The host side is `sanitas.rtl.engine`: the bench turns each conv/linear of the golden model into one engine command
(`layer_commands`), does the im2col of conv inputs with the rows in pooling-window order (`layer_input`), packs the
s_axis stream (tiles, K chunks, zero padding: `pack_stream`), writes the layer registers (`sanitas.rtl.engine_regs`),
starts the command, sends the stream, receives the m_axis frame and turns it back into the next layer's input
(`unpack_output`, `layer_output`). Per layer it asserts the engine's bytes equal `engine_model` of the same stream,
STATUS done without alarm, GEMMS = tiles x chunks and no sanity alarm; at the end the logits of every image equal
`GoldenModel.run_int` (bit-exact count in the summary). ``test_registers`` checks the register map (GEOMETRY,
read-back of the rw registers, writes ignored while busy are not exercised).
The pytest entry is `sanitas.rtl.network.run_engine_network` (tests/rtl/test_rtl_engine.py).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Timer
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamSink, AxiStreamSource

from sanitas.config import ArrayConfig
from sanitas.golden.model import GoldenModel
from sanitas.rtl.engine import KMAX, engine_model, layer_commands, layer_input, layer_output, pack_stream, tiles, \
    unpack_output
from sanitas.rtl.engine_regs import ENGINE_REGS as R
from sanitas.rtl.generate import BENCH_ENV


def _cfg() -> tuple[ArrayConfig, dict]:
    cfg = json.loads(os.environ[BENCH_ENV])
    names = set(ArrayConfig.__dataclass_fields__)
    return ArrayConfig(**{k: v for k, v in cfg.items() if k in names}), cfg


class Engine:
    """The engine behind its three AXI ports."""

    def __init__(self, dut):
        self.dut = dut
        dut.rst.value = 1                   # in reset before the drivers sample (the outputs are X until an edge)
        for name in ("s_axil_awprot", "s_axil_arprot", "s_axis_tlast"):
            getattr(dut, name).value = 0
        Clock(dut.clk, 10, unit="ns", impl="gpi").start()
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)

    @classmethod
    async def start(cls, dut) -> "Engine":
        """Drive reset, let the simulator settle (power-up values), then attach the drivers and reset."""
        dut.rst.value = 1
        for name in ("s_axis_tvalid", "m_axis_tready", "s_axil_awvalid", "s_axil_wvalid", "s_axil_bready",
                     "s_axil_arvalid", "s_axil_rready"):
            getattr(dut, name).value = 0
        await Timer(1, "ns")
        eng = cls(dut)
        await eng.reset()
        return eng

    async def reset(self) -> None:
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def write(self, name: str, value: int) -> None:
        await self.axil.write_dword(R[name].offset, int(value) & 0xFFFFFFFF)

    async def read(self, name: str) -> int:
        return await self.axil.read_dword(R[name].offset)

    async def layer(self, cmd, a: np.ndarray, array: ArrayConfig) -> tuple[bytes, bytes, dict]:
        """Run one command on A; (engine bytes, stream sent, register figures)."""
        mt, nt, kc = tiles(cmd, a.shape[0], array, KMAX)
        for name, v in (("TILES", mt * nt), ("KCHUNKS", kc), ("SHIFT", cmd.shift), ("LO", cmd.lo),
                        ("HI", cmd.hi), ("MODE", cmd.mode())):
            await self.write(name, v)
        det0 = await self.read("CNT_DETECTED")
        await self.write("CTRL", 1)
        stream = pack_stream(cmd, a, array, KMAX)
        await self.src.send(stream)
        frame = await self.sink.recv()
        status = await self.read("STATUS")
        while status & 1:
            status = await self.read("STATUS")
        figs = dict(status=status, cycles=await self.read("CYCLES"), gemms=await self.read("GEMMS"),
                    detected=await self.read("CNT_DETECTED") - det0, lane_bad=await self.read("CNT_LANE_BAD"),
                    expected_gemms=mt * nt * kc)
        return bytes(frame.tdata), stream, figs


@cocotb.test()
async def test_registers(dut):
    """GEOMETRY reads ROWS | COLS << 8 | KMAX << 16; every rw register reads back what was written (its width)."""
    array, _ = _cfg()
    eng = await Engine.start(dut)
    assert await eng.read("GEOMETRY") == array.rows | array.cols << 8 | KMAX << 16
    for reg in R.values():
        if reg.access == "rw":
            await eng.write(reg.name, 0xFFFFFFFF)
            assert await eng.read(reg.name) == (1 << reg.bits) - 1, reg.name
            await eng.write(reg.name, 0)
    assert await eng.read("STATUS") == 0
    assert await eng.read("CTRL") == 0


#: Single faults through the FI_* registers in conv1: (name, GEMM, edge, row, col, part, kind, bit,
#: (detected, corrected, uncorrectable) deltas); col COLS = the total-checksum PE, part m + 1 = partial m.
def _faults(array: ArrayConfig) -> list[tuple]:
    lazy = array.checksums.value == "lazy"
    return [("data_pe_bitflip", 7, 5, 3, 2, 0, 0, 20, (1, 1, 0)),
            ("data_pe_stuck1", 2, 3, 0, 0, 0, 2, 30, (1, 1, 0)),
            ("data_pe_last_row_col", 11, 9, array.rows - 1, min(5, array.cols - 1), 0, 0, 7, (1, 1, 0)),
            ("total_checksum_pe", 3, 6, 1, array.cols, 0, 0, 12, (1, 0, 0)),
            ("partial_checksum", 5, 6, 2, 0, 1, 0, 9, (0, 0, 0) if lazy else (1, 0, 0))]


@cocotb.test()
async def test_faults(dut):
    """conv1 of the first 4 images with one fault per command: the engine's bytes stay fault-free (corrected or
    recognised) and the sanity counters move as expected; skipped (passes) without FI_EN."""
    array, cfg = _cfg()
    if not array.fault_injection:
        return
    gm = GoldenModel.load(cfg["golden"])
    xq = np.load(cfg["images"], allow_pickle=False)
    eng = await Engine.start(dut)
    cmd = layer_commands(gm)[0]
    a, _ = layer_input(cmd, np.asarray(xq[:4], np.int64))    # 4 images: 32 tile GEMMs a command
    results = {}
    for name, gemm, edge, row, col, part, kind, bit, want in _faults(array):
        await eng.write("FI_GEMM", gemm)
        await eng.write("FI_EDGE", edge)
        await eng.write("FI_PE", row | col << 8 | part << 16)
        await eng.write("FI_CTRL", 1 | kind << 1 | bit << 3)
        before = [await eng.read(r) for r in ("CNT_DETECTED", "CNT_CORRECTED", "CNT_UNCORR")]
        data, stream, figs = await eng.layer(cmd, a, array)
        after = [await eng.read(r) for r in ("CNT_DETECTED", "CNT_CORRECTED", "CNT_UNCORR")]
        got = tuple(x - y for x, y in zip(after, before))
        assert data == engine_model(stream, cmd, a.shape[0], array, KMAX), f"{name}: wrong output under the fault"
        assert got == want, f"{name}: counter deltas {got}, want {want}"
        assert figs["status"] == 2, f"{name}: STATUS {figs['status']:#x}"
        results[name] = list(got)
    await eng.write("FI_CTRL", 0)
    # output-stage faults (dmr_unit registers) in output tile 6 at step 8 (the first beat of its third pooling
    # window): (name, register, bit, every try, allowed (rolled back, escalated)). A lane sum fault always makes
    # the lanes disagree: one re-execution (or, on every try, RETRIES and an escalation with STATUS alarm); a window
    # max fault (bit 7: +-128) is masked when a later beat of the window is still the max, else rolled back --
    # the words sent unflagged are always the fault-free ones.
    for name, sel, bit, every, allowed in (("lane_a_s0", 2, 40, 0, {(1, 0)}), ("lane_b_f", 5, 2, 0, {(1, 0)}),
                                           ("lane_a_max", 0, 7, 0, {(0, 0), (1, 0)}),
                                           ("lane_b_max", 1, 7, 0, {(0, 0), (1, 0)}),
                                           ("lane_a_s0_every_try", 2, 40, 1, {(2, 1)})):
        await eng.write("FI_GEMM", 6)
        await eng.write("FI_EDGE", 8)
        await eng.write("FI_DMR", 1 | sel << 1 | bit << 4 | every << 12)
        before = [await eng.read(r) for r in ("CNT_ROLLBACK", "CNT_ESCALATED")]
        data, stream, figs = await eng.layer(cmd, a, array)
        got = tuple(x - y for x, y in zip([await eng.read(r) for r in ("CNT_ROLLBACK", "CNT_ESCALATED")], before))
        assert got in allowed, f"{name}: (rolled back, escalated) {got}, allowed {allowed}"
        assert figs["status"] == (6 if got[1] else 2), f"{name}: STATUS {figs['status']:#x}"
        assert data == engine_model(stream, cmd, a.shape[0], array, KMAX), f"{name}: wrong output"
        results[name] = list(got)
    await eng.write("FI_DMR", 0)
    with open(cfg["summary"] + ".faults.json", "w") as f:
        json.dump(results, f)


@cocotb.test()
async def test_network(dut):
    """The network layer by layer through the engine: bytes == engine_model per layer, logits == golden."""
    array, cfg = _cfg()
    gm = GoldenModel.load(cfg["golden"])
    xq = np.load(cfg["images"], allow_pickle=False)
    ref = np.load(cfg["reference"], allow_pickle=False)
    eng = await Engine.start(dut)
    t0 = time.time()
    x, layers = np.asarray(xq, np.int64), []
    for cmd in layer_commands(gm):
        a, geom = layer_input(cmd, x)
        data, stream, figs = await eng.layer(cmd, a, array)
        want = engine_model(stream, cmd, a.shape[0], array, KMAX)
        assert data == want, f"{cmd.name}: engine bytes differ from engine_model"
        assert figs["status"] == 2, f"{cmd.name}: STATUS {figs['status']:#x} (want done, no alarm)"
        assert figs["gemms"] == figs["expected_gemms"], f"{cmd.name}: GEMMS {figs['gemms']}"
        assert figs["detected"] == 0 and figs["lane_bad"] == 0, f"{cmd.name}: alarms fault-free {figs}"
        layers.append(dict(name=cmd.name, m=int(a.shape[0]), k=int(cmd.b.shape[0]), n=int(cmd.b.shape[1]),
                           cycles=figs["cycles"], gemms=figs["gemms"], in_beats=len(stream) // KMAX,
                           out_beats=len(data) // KMAX))
        x = layer_output(cmd, unpack_output(data, cmd, a.shape[0], array, KMAX), geom)
    wall = time.time() - t0
    exact = int((x == ref).all(axis=1).sum())
    with open(cfg["summary"], "w") as f:
        json.dump(dict(images=int(len(xq)), bit_exact=exact, layers=layers, wall_s=round(wall, 2),
                       cycles=int(sum(lay["cycles"] for lay in layers))), f)
    assert exact == len(xq), f"{exact} of {len(xq)} images bit-exact"

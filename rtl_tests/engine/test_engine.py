"""cocotb bench of the RTL ``engine`` top: a whole network (the digits LeNet-5, or a searched / residual graph)
command by command through AXI4-Lite control and AXI4-Stream data, driven with cocotbext-axi.

The host side is `sanitas.rtl.engine`: the bench walks the golden model's `network_steps` -- each conv/linear one
engine command; every other node (add, concat, padded pools, the global sum, host requantisers) computed by the
host with `host_node`, its output written to host memory with a host checkpoint, as the network input is. Per
command it does the im2col of conv inputs with the rows in pooling-window order (`layer_input`), packs the s_axis
stream (tiles, K chunks, zero padding: `pack_stream`), writes the layer registers (`sanitas.rtl.engine_regs`),
starts the command, sends the stream, receives the m_axis frame and turns it back into the tensor it wrote
(`unpack_output`, `layer_output`). Per command it asserts the engine's bytes equal `engine_model` of the same
stream, STATUS done without alarm, GEMMS = tiles x chunks and no sanity alarm; at the end the logits of every image
equal `GoldenModel.run_int` (bit-exact count in the summary). A command reads its input tensor (``src``) from the
memory its producer wrote: the engine's words and checkpoint, or a host-written tensor (int8; uint8 when unsigned).
``test_registers`` checks the register map (GEOMETRY, read-back of the rw registers, writes ignored while busy are
not exercised). The pytest entry is `sanitas.rtl.network.run_engine_network` (tests/rtl/test_rtl_engine.py).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Timer
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamSink, AxiStreamSource

from sanitas.config import ArrayConfig
from sanitas.golden.model import GoldenModel
from sanitas.rtl.engine import KMAX, EngineCmd, checkpoint, engine_model, host_node, layer_input, layer_output, \
    network_steps, output_tensor, pack_stream, read_stream, split_frame, stored_tensor, stored_words, tile_gemm, \
    tiles, unpack_output
from sanitas.rtl.engine_regs import ENGINE_REGS as R
from sanitas.rtl.faults import fault_to_fi_ports
from sanitas.rtl.rollback import CTRL_REGS as RB_REGS
from sanitas.rtl.generate import BENCH_ENV
from sanitas.rtl.sanity import operand_faults, pe_faults, protected_gemm


def _cfg() -> tuple[ArrayConfig, dict]:
    cfg = json.loads(os.environ[BENCH_ENV])
    names = set(ArrayConfig.__dataclass_fields__)
    return ArrayConfig(**{k: v for k, v in cfg.items() if k in names}), cfg


#: Counter registers a command's deltas are read from.
COUNTER_REGS = ("CNT_DETECTED", "CNT_CORRECTED", "CNT_UNCORR", "CNT_LANE_BAD", "CNT_ROLLBACK", "CNT_ESCALATED",
                "CNT_RD_BAD", "RB_DETECTED", "RB_ROLLED_BACK", "RB_UNCORR", "RB_ESCALATIONS")


class Memory:
    """The host memory the engine reads and writes: one stored tensor (the running layer's input: its words and the
    checkpoint stored beside them) and the faults a test puts on it -- a stored word or checkpoint bit (persistent
    until the producer rewrites the tensor) or a read-path bit (the next READ stream only)."""

    def __init__(self, words: bytes, ck: tuple[int, int], source: bytes | None = None, to_a=None,
                 signed: bool = True):
        self.words, self.ck, self.source, self.signed = bytearray(words), ck, source, signed
        self.read_fault: tuple[int, int] | None = None      # (byte, bit) of the next READ stream
        self.to_a = to_a      # stored words -> the consumer's A (the host's im2col reads memory); None: A given

    def store(self, words: bytes, ck: tuple[int, int]) -> None:
        self.words, self.ck = bytearray(words), ck

    def flip_word(self, byte: int, bit: int) -> None:
        self.words[byte] ^= 1 << bit

    def flip_checkpoint(self, which: int, bit: int) -> None:
        ck = list(self.ck)
        ck[which] ^= 1 << bit
        self.ck = tuple(ck)

    def read(self) -> bytes:
        data = bytearray(read_stream(bytes(self.words), self.ck, KMAX))
        if self.read_fault is not None:
            byte, bit = self.read_fault
            data[byte] ^= 1 << bit
            self.read_fault = None
        return bytes(data)


class Engine:
    """The engine behind its three AXI ports; `command` answers its REQ as the host memory does."""

    def __init__(self, dut):
        self.dut = dut
        dut.rst.value = 1                   # in reset before the drivers sample (the outputs are X until an edge)
        for name in ("s_axil_awprot", "s_axil_arprot", "s_axis_tlast"):
            getattr(dut, name).value = 0
        Clock(dut.clk, 10, unit="ns", impl="gpi").start()
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        for drv in (self.axil.write_if, self.axil.read_if, self.src, self.sink):   # no per-transfer log lines
            drv.log.setLevel(logging.WARNING)

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
        eng.prot = bool((await eng.read("STATUS")) >> 6 & 1)
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

    async def counters(self, names=COUNTER_REGS) -> dict:
        return {n: await self.read(n) for n in names}

    async def command(self, cmd, a: np.ndarray, array: ArrayConfig, mem: Memory, producer=None,
                      max_polls: int = 4000) -> dict:
        """Run one layer command on A; the engine's REQs are answered from ``mem`` (READ), the layer's stream
        (EXEC) and ``producer`` = (its cmd, its A) or None (REEXEC: the producer's stream; None: the host rewrites
        a host-written tensor, the network input or a host node's output). Returns {data, stream, ck, ok (the last
        EXEC frame), execs, status, cycles, gemms, polls, stalled, expected_gemms} and the counter deltas
        under "delta"."""
        mt, nt, kc = tiles(cmd, a.shape[0], array, KMAX)
        regs = [("TILES", mt * nt), ("KCHUNKS", kc), ("SHIFT", cmd.shift), ("LO", cmd.lo), ("HI", cmd.hi),
                ("MODE", cmd.mode()), ("IN_WORDS", len(mem.words))]
        if producer is not None:
            pc, pa = producer
            pmt, pnt, pkc = tiles(pc, pa.shape[0], array, KMAX)
            regs += [("P_TILES", pmt * pnt), ("P_KCHUNKS", pkc), ("P_SHIFT", pc.shift), ("P_LO", pc.lo),
                     ("P_HI", pc.hi), ("P_MODE", pc.mode())]
        else:
            regs += [("P_TILES", 0)]
        for name, v in regs:
            await self.write(name, v)
        before = await self.counters()
        stream = pack_stream(cmd, a, array, KMAX)
        await self.write("CTRL", 1)
        data, ck, ok, execs, polls = b"", None, False, 0, 0
        status = await self.read("STATUS")
        while not (status & 2) and polls < max_polls:
            req = status >> 3 & 7
            if req == 1:
                await self.src.send(mem.read())
                await self.src.wait()
            elif req == 2:
                if mem.to_a is not None:                 # the host reads A from memory now
                    stream = pack_stream(cmd, mem.to_a(bytes(mem.words)), array, KMAX)
                await self.src.send(stream)
                frame = bytes((await self.sink.recv()).tdata)
                execs += 1
                if self.prot:
                    data, ck, ok = split_frame(frame, KMAX)
                else:
                    data, ok = frame, True
            elif req == 3 and producer is not None:
                await self.src.send(pack_stream(pc, pa, array, KMAX))
                pdata, pck, _ = split_frame(bytes((await self.sink.recv()).tdata), KMAX)
                mem.store(stored_words(pdata, pc, pa.shape[0], array, KMAX), pck)
            elif req == 3:                      # a host-written tensor: the host writes it again
                mem.store(mem.source, checkpoint(mem.source, mem.signed))
                await self.write("CTRL", 2)
            polls += 1
            status = await self.read("STATUS")
        after = await self.counters()
        return dict(data=data, stream=stream, ck=ck, ok=ok, execs=execs, status=status, polls=polls,
                    stalled=not status & 2, cycles=await self.read("CYCLES"), gemms=await self.read("GEMMS"),
                    expected_gemms=mt * nt * kc, delta={k: after[k] - before[k] for k in after})


def host_memory(x: np.ndarray, signed: bool = True) -> Memory:
    """A host-written tensor (the network input, a host node's output) as a command's stored input: int8 (uint8 when
    not ``signed``) words in NCHW order, the host's checkpoint."""
    words = (np.asarray(x, np.int64).ravel() & 0xFF).astype(np.uint8).tobytes()
    return Memory(words, checkpoint(words, signed), source=words, signed=signed)


def input_memory(xq: np.ndarray) -> Memory:
    """The network input as the first layer's stored tensor: int8 images, NCHW order, the host's checkpoint."""
    return host_memory(xq, True)


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
    assert await eng.read("STATUS") == int(eng.prot) << 6      # idle, not done, no alarm; bit 6: PROT
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


def golden_faults(cmd, a: np.ndarray, array: ArrayConfig, rng: np.random.Generator, n: int) -> list[tuple]:
    """``n`` (Fault, tile GEMM, golden `GemmOutcome`) drawn at random, half accumulator faults (data and
    total-checksum PEs: `pe_faults`), half B operand-register faults (`operand_faults`; A operand faults are left to
    the array's own regression), each in a random tile GEMM of ``cmd`` on A; draws the golden sanity flow masks (a
    padding beat, a zero operand) are passed over, so every one moves the counters."""
    mt, nt, kc = tiles(cmd, a.shape[0], array, KMAX)
    array = dataclasses.replace(array, max_k=max(array.max_k, KMAX))    # the engine's K chunk is KMAX long
    pools = [pe_faults(array, rng, KMAX, 1), [f for f in operand_faults(array, rng, KMAX, 1) if f.site == "pe_b"]]
    out = []
    for want, pool in zip((n // 2, n - n // 2), pools):
        got = 0
        for i in rng.permutation(len(pool)):
            g = int(rng.integers(mt * nt * kc))
            gold = protected_gemm(*tile_gemm(cmd, a, array, g), pool[i], array)
            if gold.outcome != "masked":
                out.append((pool[i], g, gold))
                got += 1
            if got == want:
                break
    return out


def chain(gm, xq: np.ndarray, array: ArrayConfig) -> list[tuple]:
    """(cmd, A, the stored words it writes, their checkpoint, its geometry, its input tensor) of every engine command
    on ``xq``, by the host model, the host nodes between them computed with `host_node`; the input tensor is
    {"x": values, "producer": (cmd, A, geometry) of the command that wrote it, or None: host-written, "words",
    "ck"}."""
    tensors, out = {gm.input_node.name: dict(x=np.asarray(xq, np.int64), producer=None)}, []
    for st in network_steps(gm):
        if not isinstance(st, EngineCmd):
            tensors[st.dst] = dict(x=host_node(gm, st.node, [tensors[t]["x"] for t in st.src]), producer=None)
            continue
        a, geom = layer_input(st, tensors[st.src]["x"])
        data = engine_model(pack_stream(st, a, array, KMAX), st, a.shape[0], array, KMAX)
        words = stored_words(data, st, a.shape[0], array, KMAX)
        ck = checkpoint(words, st.lo < 0, st.raw)
        out.append((st, a, words, ck, geom, tensors[st.src]))
        tensors[st.dst] = dict(x=layer_output(st, unpack_output(data, st, a.shape[0], array, KMAX), geom),
                               producer=(st, a, geom), words=words, ck=ck)
    return out


def a_reader(cmd, array: ArrayConfig, shape, producer=None):
    """stored words -> the A of ``cmd``: the host's im2col of the tensor in memory (a host-written tensor of
    ``shape`` when ``producer`` is None -- int8, uint8 when ``cmd`` reads unsigned words --, else the output of
    producer = (its cmd, its A, its geometry))."""
    def to_a(words: bytes) -> np.ndarray:
        if producer is None:
            x = np.frombuffer(words, np.uint8 if cmd.in_unsigned else np.int8).astype(np.int64).reshape(shape)
        else:
            pc, pa, pgeom = producer
            x = stored_tensor(words, pc, pa.shape[0], pgeom, array, KMAX)
        return layer_input(cmd, x)[0]
    return to_a


def stored_input(cmd, t: dict, array: ArrayConfig) -> tuple[Memory, tuple | None]:
    """The stored input ``t`` (a `chain` tensor) of ``cmd`` as host memory (fault-free; A read from it) and its
    producer (its cmd, its A), None when host-written."""
    if t["producer"] is None:
        mem = host_memory(t["x"], not cmd.in_unsigned)
        mem.to_a = a_reader(cmd, array, np.shape(t["x"]))
        return mem, None
    pc, pa, pgeom = t["producer"]
    return Memory(t["words"], t["ck"], to_a=a_reader(cmd, array, None, (pc, pa, pgeom))), (pc, pa)


def layer_memory(layers, i: int, array: ArrayConfig) -> tuple[Memory, tuple | None]:
    """The stored input of `chain` command i (fault-free; A read from it) and its producer (None: host-written)."""
    return stored_input(layers[i][0], layers[i][5], array)


def _want(r, cmd, a, array) -> bytes:
    return engine_model(r["stream"], cmd, a.shape[0], array, KMAX)


#: Rollback counters of a command: (RB_DETECTED, RB_ROLLED_BACK, RB_UNCORR, RB_ESCALATIONS).
RB = ("RB_DETECTED", "RB_ROLLED_BACK", "RB_UNCORR", "RB_ESCALATIONS")
#: Sanity-unit counters of a command.
CNT = ("CNT_DETECTED", "CNT_CORRECTED", "CNT_UNCORR")


@cocotb.test()
async def test_faults(dut):
    """Single faults of every kind the engine handles, on the first 4 images: PE / checksum accumulators (conv1,
    FI_*), output-stage registers (FI_DMR), stored input words, read-path words and checkpoint words (the host
    memory, fc3 and conv1), READ lengths no multiple of RD_W (clean, and a word of the last part flipped), and a
    sample of rollback_ctrl state faults (FI_RB, fc3); each outcome checked
    against the counters it must move, the bytes against the fault-free model. Skipped without FI_EN / PROT."""
    array, cfg = _cfg()
    eng = await Engine.start(dut)
    if not array.fault_injection or not eng.prot:
        return
    gm = GoldenModel.load(cfg["golden"])
    xq = np.load(cfg["images"], allow_pickle=False)[:4]
    layers, layers2 = chain(gm, xq, array), chain(gm, xq[:2], array)    # 4 images; 2 for the long case
    results = {}
    t0 = time.time()
    cmd, a = layers[0][0], layers[0][1]          # conv1: 4 images, 32 tile GEMMs a command
    for name, gemm, edge, row, col, part, kind, bit, want in _faults(array):
        await eng.write("FI_GEMM", gemm)
        await eng.write("FI_EDGE", edge)
        await eng.write("FI_PE", row | col << 8 | part << 16)
        await eng.write("FI_CTRL", 1 | kind << 1 | bit << 3)
        mem, prod = layer_memory(layers, 0, array)
        r = await eng.command(cmd, a, array, mem, prod)
        got = tuple(r["delta"][k] for k in CNT)
        assert r["data"] == _want(r, cmd, a, array), f"{name}: wrong output under the fault"
        assert got == want, f"{name}: counter deltas {got}, want {want}"
        assert r["status"] & 7 == 2, f"{name}: STATUS {r['status']:#x}"
        results[name] = dict(zip(CNT, got))
    # accumulator and B operand-register faults (sanitas.faults.Fault records) in random conv1 tile GEMMs, each
    # against the golden sanity flow of that GEMM (`protected_gemm` on its operands, `tile_gemm`): the same
    # (detected, corrected, uncorrectable), never silent, the bytes exact (an uncorrectable GEMM fails the EXEC and
    # rollback_ctrl re-runs the layer, where the fault does not act again: RB_ROLLED_BACK 1)
    rng = np.random.default_rng(cfg.get("seed", 0) + 1)
    golden = dict.fromkeys(("faults", "agree", "masked", "corrected", "uncorrectable", "silent"), 0)
    for fault, g, gold in golden_faults(cmd, a, array, rng, cfg.get("golden_faults", 8)):
        fi = fault_to_fi_ports(fault, dataclasses.replace(array, max_k=max(array.max_k, KMAX)), KMAX)
        await eng.write("FI_GEMM", g)
        await eng.write("FI_EDGE", fi.edge)
        await eng.write("FI_PE", fi.fi_row | fi.fi_col << 8 | fi.fi_part << 16)
        await eng.write("FI_CTRL", 1 | fi.fi_kind << 1 | fi.fi_bit << 3 | fi.fi_reg << 8)
        mem, prod = layer_memory(layers, 0, array)
        r = await eng.command(cmd, a, array, mem, prod)
        got = tuple(r["delta"][k] for k in CNT)
        assert gold.outcome != "silent", f"{fault}: silent in the golden sanity flow"
        assert got == (gold.detected, gold.corrected, gold.uncorrectable), f"{fault} in GEMM {g}: {got}, golden {gold}"
        assert r["delta"]["RB_ROLLED_BACK"] == int(gold.uncorrectable > 0), f"{fault}: {r['delta']}"
        assert r["data"] == _want(r, cmd, a, array) and r["status"] & 7 == 2, f"{fault}: wrong output"
        golden["faults"] += 1
        golden["agree"] += 1
        golden[gold.outcome] += 1
    results["golden"] = golden
    await eng.write("FI_CTRL", 0)
    # output-stage faults (dmr_unit registers) in output tile 6 at step 8 (the first beat of its third pooling
    # window): (name, register, bit, every try, allowed (tile re-executions, tiles escalated)). A lane sum fault
    # always makes the lanes disagree: one re-execution of the tile's output stage; on every try the tile is
    # escalated in every EXEC, so rollback_ctrl re-runs the layer RETRIES times, reloads, runs it once more and
    # flags it (STATUS alarm). A window max fault (bit 7: +-128) is masked when a later beat of the window is still
    # the max, else re-executed -- the words sent unflagged are always the fault-free ones.
    for name, sel, bit, every, allowed in (("lane_a_s0", 2, 40, 0, {(1, 0)}), ("lane_b_f", 5, 2, 0, {(1, 0)}),
                                           ("lane_a_max", 0, 7, 0, {(0, 0), (1, 0)}),
                                           ("lane_b_max", 1, 7, 0, {(0, 0), (1, 0)}),
                                           ("lane_a_s0_every_try", 2, 40, 1, {(8, 4)})):
        await eng.write("FI_GEMM", 6)
        await eng.write("FI_EDGE", 8)
        await eng.write("FI_DMR", 1 | sel << 1 | bit << 4 | every << 12)
        lay = layers2 if every else layers                     # every try: 4 EXECs of conv1, on 2 images
        cmd, a = lay[0][0], lay[0][1]
        mem, prod = layer_memory(lay, 0, array)
        r = await eng.command(cmd, a, array, mem, prod)
        got = (r["delta"]["CNT_ROLLBACK"], r["delta"]["CNT_ESCALATED"])
        assert got in allowed, f"{name}: (re-executed, escalated) {got}, allowed {allowed}"
        rb = tuple(r["delta"][k] for k in RB)
        assert rb == ((0, 2, 1, 1) if every else (0, 0, 0, 0)), f"{name}: rollback_ctrl counters {rb}"
        assert r["status"] & 7 == (6 if every else 2), f"{name}: STATUS {r['status']:#x}"
        assert r["ok"] == (not every) and r["execs"] == (4 if every else 1), f"{name}: {r['execs']} EXECs"
        assert r["data"] == _want(r, cmd, a, array), f"{name}: wrong output"
        results[name] = {"CNT_ROLLBACK": got[0], "CNT_ESCALATED": got[1], **dict(zip(RB, rb))}
    await eng.write("FI_DMR", 0)
    # the stored input (host memory): a word or checkpoint bit in the stored tensor is still there on the re-read,
    # so the producer is re-executed (it rewrites the tensor): detected 1, rolled back 2; a read-path bit is gone on
    # the re-read: rolled back 1. The last command (LeNet-5: fc3, its producer fc2, re-run by the engine; a graph's
    # head: a host-written tensor, which the host writes again), the first one's the network input. Word offsets
    # wrap at the stored tensor's length.
    last = len(layers) - 1
    for name, layer, how, where, bit, want in (
            ("stored_word", last, "word", 17, 3, (1, 2)), ("stored_word_msb", last, "word", 95, 7, (1, 2)),
            ("read_path_word", last, "read", 40, 7, (1, 1)), ("checkpoint_s0", last, "ck", 0, 50, (1, 2)),
            ("checkpoint_f", last, "ck", 1, 0, (1, 2)), ("read_path_checkpoint", last, "readck", 3, 2, (1, 1)),
            ("input_word", 0, "word", 100, 6, (1, 2))):
        cmd, a = layers[layer][0], layers[layer][1]
        mem, prod = layer_memory(layers, layer, array)
        if how in ("word", "read"):
            where %= len(mem.words)
        if how == "word":
            mem.flip_word(where, bit)
        elif how == "ck":
            mem.flip_checkpoint(where, bit)
        elif how == "read":
            mem.read_fault = (where, bit)
        else:                                    # a byte of the checkpoint beat on the read path
            mem.read_fault = (len(mem.words) + (-len(mem.words) % KMAX) + where, bit)
        r = await eng.command(cmd, a, array, mem, prod)
        rb = tuple(r["delta"][k] for k in RB)
        assert rb == (*want, 0, 0), f"{name}: rollback_ctrl counters {rb}"
        assert r["status"] & 7 == 2 and r["ok"] and r["execs"] == 1, f"{name}: STATUS {r['status']:#x}"
        assert r["delta"]["CNT_RD_BAD"] == want[1], f"{name}: reads bad {r['delta']['CNT_RD_BAD']}"
        assert r["data"] == _want(r, cmd, a, array) and r["stream"] == pack_stream(cmd, a, array, KMAX), \
            f"{name}: wrong output"
        assert bytes(mem.words) == (layers[layer][5]["words"] if prod else mem.source), f"{name}: tensor not restored"
        results[name] = dict(zip(RB, rb))
    # READ lengths that are no multiple of the read check's RD_W words an edge (nor of a beat: the last beat and its
    # last part partial): the last command reading a host-written tensor of that length, exact (no false alarm),
    # and a flipped word in the last part caught (the host writes the tensor again: detected 1, rolled back 2)
    cmd, a = layers[last][0], layers[last][1]
    rng = np.random.default_rng(cfg.get("seed", 0) + 2)
    for name, n, flip, want in (("odd_read", 77, None, (0, 0)), ("odd_read_word", 45, (44, 5), (1, 2))):
        words = rng.integers(0, 256, n).astype(np.uint8).tobytes()
        mem = Memory(words, checkpoint(words, not cmd.in_unsigned), source=words, signed=not cmd.in_unsigned)
        if flip is not None:
            mem.flip_word(*flip)
        r = await eng.command(cmd, a, array, mem, None)
        rb = tuple(r["delta"][k] for k in RB)
        assert rb == (*want, 0, 0), f"{name}: rollback_ctrl counters {rb}"
        assert r["status"] & 7 == 2 and r["ok"] and r["execs"] == 1, f"{name}: STATUS {r['status']:#x}"
        assert r["delta"]["CNT_RD_BAD"] == want[1], f"{name}: reads bad {r['delta']['CNT_RD_BAD']}"
        assert r["data"] == _want(r, cmd, a, array) and bytes(mem.words) == words, f"{name}: wrong output / tensor"
        results[name] = dict(zip(RB, rb))
    # rollback_ctrl state faults (no golden equivalent): ok / flagged / stalled, never silent (done, no flag, a
    # wrong result)
    rng = np.random.default_rng(cfg.get("seed", 0))
    cmd, a = layers[last][0], layers[last][1]     # the last command (LeNet-5: fc3, 6 tile GEMMs, its producer fc2)
    regs = list(RB_REGS)
    ctrl = dict.fromkeys(("ok", "flagged", "stalled", "silent"), 0)
    for _ in range(cfg.get("ctrl_faults", 16)):
        reg = regs[int(rng.integers(len(regs)))]
        fbit, fkind, cyc = int(rng.integers(RB_REGS[reg])), int(rng.choice(3, p=[0.8, 0.1, 0.1])), \
            int(rng.integers(0, 400))
        await eng.write("FI_RB", 1 | regs.index(reg) << 1 | fbit << 4 | fkind << 7 | cyc << 16)
        mem, prod = layer_memory(layers, last, array)
        r = await eng.command(cmd, a, array, mem, prod, max_polls=120)
        if r["stalled"]:
            o = "stalled"
            await eng.reset()
        elif r["status"] & 4:
            o = "flagged"
        else:
            o = "ok" if r["data"] == _want(r, cmd, a, array) and r["ok"] else "silent"
        ctrl[o] += 1
        assert o != "silent", f"silent controller fault {reg} bit {fbit} kind {fkind} cycle {cyc}"
    await eng.write("FI_RB", 0)
    results["controller"] = ctrl
    n = len(results) - 2 + golden["faults"] + sum(ctrl.values())
    print(f"engine single faults: {n} in {time.time() - t0:.1f} s, {n / (time.time() - t0):.2f} faults/s "
          f"(controller: {ctrl})")
    with open(cfg["summary"] + ".faults.json", "w") as f:
        json.dump(results, f)


@cocotb.test()
async def test_network(dut):
    """The network layer by layer through the engine: bytes == engine_model per layer, the checkpoint each EXEC
    writes == that of its words, each layer's input read back and checked (PROT = 1), logits == golden."""
    array, cfg = _cfg()
    gm = GoldenModel.load(cfg["golden"])
    xq = np.load(cfg["images"], allow_pickle=False)
    ref = np.load(cfg["reference"], allow_pickle=False)
    eng = await Engine.start(dut)
    t0 = time.time()
    tensors, layers, host = {gm.input_node.name: dict(x=np.asarray(xq, np.int64), producer=None)}, [], 0
    for cmd in network_steps(gm):
        if not isinstance(cmd, EngineCmd):                # the host's node: golden kernel on the stored tensors
            tensors[cmd.dst] = dict(x=host_node(gm, cmd.node, [tensors[t]["x"] for t in cmd.src]), producer=None)
            host += 1
            continue
        mem, prod = stored_input(cmd, tensors[cmd.src], array)
        a, geom = layer_input(cmd, tensors[cmd.src]["x"])
        r = await eng.command(cmd, a, array, mem, prod)
        assert r["stream"] == pack_stream(cmd, a, array, KMAX), f"{cmd.name}: A read from memory differs"
        assert r["data"] == _want(r, cmd, a, array), f"{cmd.name}: engine bytes differ from engine_model"
        assert r["status"] & 7 == 2, f"{cmd.name}: STATUS {r['status']:#x} (want done, no alarm)"
        assert r["gemms"] == r["expected_gemms"] and r["execs"] == 1, f"{cmd.name}: GEMMS {r['gemms']}"
        assert not any(r["delta"].values()), f"{cmd.name}: alarms fault-free {r['delta']}"
        words = stored_words(r["data"], cmd, a.shape[0], array, KMAX)
        ck = checkpoint(words, cmd.lo < 0, cmd.raw)
        if eng.prot:
            assert r["ck"] == ck and r["ok"], f"{cmd.name}: written checkpoint {r['ck']} != {ck}"
        layers.append(dict(name=cmd.name, m=int(a.shape[0]), k=int(cmd.b.shape[0]), n=int(cmd.b.shape[1]),
                           cycles=r["cycles"], gemms=r["gemms"], in_beats=len(r["stream"]) // KMAX,
                           out_beats=len(r["data"]) // KMAX, read_words=len(mem.words)))
        tensors[cmd.dst] = dict(x=layer_output(cmd, unpack_output(r["data"], cmd, a.shape[0], array, KMAX), geom),
                                producer=(cmd, a, geom), words=words, ck=ck)
    x = tensors[output_tensor(gm)]["x"]
    wall = time.time() - t0
    exact = int((x == ref).all(axis=1).sum())
    with open(cfg["summary"], "w") as f:
        json.dump(dict(images=int(len(xq)), bit_exact=exact, layers=layers, host_nodes=host, wall_s=round(wall, 2),
                       prot=eng.prot,
                       cycles=int(sum(lay["cycles"] for lay in layers))), f)
    assert exact == len(xq), f"{exact} of {len(xq)} images bit-exact"


@cocotb.test()
async def test_cycles(dut):
    """Fault-free cycles of the commands of cfg["commands"] (`sanitas.rtl.cycles.save_cases`): each runs once on its
    A rows and a stored input of its READ size; CYCLES per command into the summary."""
    from sanitas.rtl.cycles import load_cases
    array, cfg = _cfg()
    cases = load_cases(cfg["commands"])
    eng = await Engine.start(dut)
    rng = np.random.default_rng(0)
    out = []
    for case in cases:
        words = rng.integers(0, 256, case.read_words).astype(np.uint8).tobytes()
        mem = Memory(words, checkpoint(words, not case.cmd.in_unsigned), source=words)
        r = await eng.command(case.cmd, case.a, array, mem, None)
        assert r["status"] & 7 == 2 and r["data"] == _want(r, case.cmd, case.a, array), f"{case.name}: wrong"
        out.append(dict(name=case.name, cycles=r["cycles"], gemms=r["gemms"]))
    with open(cfg["summary"], "w") as f:
        json.dump(dict(cycles=out, prot=eng.prot), f)


@cocotb.test()
async def test_levels(dut):
    """The same input-word Fault records as the golden ProtectedModel and the HLS csim (tests/rtl/test_rtl_levels.py):
    each flips one element of a layer's stored input (in every image: the golden hook is batched), then the
    network runs from that layer to the logits through the engine; logits and the summed counters per record."""
    array, cfg = _cfg()
    gm = GoldenModel.load(cfg["golden"])
    xq = np.load(cfg["images"], allow_pickle=False)
    layers = chain(gm, xq, array)
    eng = await Engine.start(dut)
    out = []
    for rec in cfg["level_faults"]:
        i = rec["layer"]
        mem, prod = layer_memory(layers, i, array)
        for off in rec["offsets"]:
            mem.flip_word(off, rec["bit"])
        total = dict.fromkeys(COUNTER_REGS, 0)
        for j in range(i, len(layers)):
            cmd, a, _, _, geom, _ = layers[j]
            r = await eng.command(cmd, a, array, mem, prod)
            assert r["status"] & 3 == 2, f"{cmd.name}: STATUS {r['status']:#x}"
            for k, v in r["delta"].items():
                total[k] += v
            words = stored_words(r["data"], cmd, a.shape[0], array, KMAX)
            mem = Memory(words, r["ck"], to_a=None if j + 1 == len(layers) else
                         a_reader(layers[j + 1][0], array, None, (cmd, a, geom)))
            prod = (cmd, a)
            logits = unpack_output(r["data"], cmd, a.shape[0], array, KMAX)
        out.append(dict(logits=np.asarray(logits).tolist(), alarm=bool(r["status"] & 4), **total))
    with open(cfg["summary"], "w") as f:
        json.dump(out, f)

"""Register map of the RTL ``engine`` top's AXI4-Lite control port: one Python table, rendered into the Verilog
(`templates/engine.v.j2` decodes writes and muxes reads from it) and read by the cocotb driver and the docs.

Every register is 32 bits at a word-aligned byte offset. ``access`` is ``rw`` (a control word the host writes
before a command; reads return it), ``w1`` (write-1 pulse: the bit acts for one edge, reads return 0) or ``ro``
(status / counters driven by the engine). ``signal`` names the Verilog expression a read returns (for ``ro``) or
the register the write lands in (for ``rw``); ``bits`` is its width. The HLS top has its own map
(`sanitas.hls.regmap`); this one describes only the RTL engine.
"""
from __future__ import annotations

from typing import NamedTuple


class EngineReg(NamedTuple):
    """One AXI4-Lite register of the engine."""
    name: str     # upper-case register name (ENGINE_REGS key)
    offset: int   # byte offset
    access: str   # rw | w1 | ro
    bits: int     # width of the value (low bits of the 32-bit word)
    signal: str   # Verilog register / expression behind it
    doc: str      # one line


#: The engine's registers, by offset.
ENGINE_REG_TABLE: tuple[EngineReg, ...] = (
    EngineReg("CTRL", 0x00, "w1", 2, "cmd_start",
              "bit 0: start the command (one layer) written below; bit 1: the network input was reloaded (the "
              "answer to REQ 3 when P_TILES = 0)"),
    EngineReg("STATUS", 0x04, "ro", 8, "{err_state, prot_bit, req, alarm, done_q, busy}",
              "bit 0 busy, bit 1 done (sticky until the next start), bit 2 alarm in the last command "
              "(rollback_ctrl flag: uncorrectable after its retries), bits 5:3 REQ (the stream the engine waits "
              "for: 0 none, 1 the stored input tensor + its checkpoint beat, 2 the layer's tile stream, 3 the "
              "producer's tile stream (P_* registers; P_TILES = 0: reload the network input, then CTRL bit 1)), "
              "bit 6 PROT, bit 7 rollback_ctrl state self-check fired"),
    EngineReg("TILES", 0x08, "rw", 24, "r_tiles", "output tiles (ROWS x COLS each) of the command"),
    EngineReg("KCHUNKS", 0x0C, "rw", 16, "r_kchunks", "K chunks (KMAX each, zero padded) per output tile"),
    EngineReg("SHIFT", 0x10, "rw", 7, "r_shift", "requantisation shift e_out - e_in (signed)"),
    EngineReg("LO", 0x14, "rw", 10, "r_lo", "saturation low bound (signed; ReLU: 0)"),
    EngineReg("HI", 0x18, "rw", 10, "r_hi", "saturation high bound (signed; uint8: 255)"),
    EngineReg("MODE", 0x1C, "rw", 6, "r_mode",
              "bit 0: A words are uint8 (the engine feeds a - 128; the host folds 128 * sum_k B into the bias), "
              "bit 1: raw output (int32 accumulator + bias, no output stage), bits 5:2: log2 of the pool "
              "window size (rows of a tile max-pooled together)"),
    EngineReg("CNT_DETECTED", 0x20, "ro", 32, "cnt_detected", "sanity checks that alarmed (since reset)"),
    EngineReg("CNT_CORRECTED", 0x24, "ro", 32, "cnt_corrected", "alarms located and corrected"),
    EngineReg("CNT_UNCORR", 0x28, "ro", 32, "cnt_uncorrectable", "alarms not correctable"),
    EngineReg("CNT_LANE_BAD", 0x2C, "ro", 32, "cnt_lane_bad", "output tiles whose two lanes disagreed"),
    EngineReg("CYCLES", 0x30, "ro", 32, "cyc_q", "edges the last command was busy"),
    EngineReg("GEMMS", 0x34, "ro", 32, "gemm_q", "tile GEMMs (K chunks) the last command ran"),
    EngineReg("GEOMETRY", 0x38, "ro", 32, "GEOM", "ROWS | COLS << 8 | KMAX << 16"),
    # fault debug register (FI_EN = 1 only; ArrayConfig.fault_injection): one single fault in one tile GEMM
    EngineReg("FI_GEMM", 0x40, "rw", 24, "r_fi_gemm", "the fault acts in this tile GEMM of the command (GEMMS order)"),
    EngineReg("FI_CTRL", 0x44, "rw", 10, "r_fi_ctrl",
              "bit 0 arm, bits 2:1 kind (0 bitflip, 1 stuck0, 2 stuck1, 3 none), bits 7:3 bit, bits 9:8 the PE "
              "register (sanitas.rtl.faults.FI_REGS: 0 accumulator, 1 A operand, 2 B operand)"),
    EngineReg("FI_EDGE", 0x48, "rw", 16, "r_fi_edge", "edge of the GEMM's first pass (start edge 0)"),
    EngineReg("FI_PE", 0x4C, "rw", 24, "r_fi_pe",
              "bits 7:0 PE row, 15:8 PE column (COLS: total checksum), 23:16 partial (0: the PE; m + 1: partial m)"),
    EngineReg("FI_DMR", 0x50, "rw", 13, "r_fi_dmr",
              "output-stage fault: bit 0 arm, bits 3:1 dmr_unit register (sanitas.rtl.dmr.DMR_REGS), bits 9:4 bit, "
              "bits 11:10 kind, bit 12 every try (else the first only); acts in output tile FI_GEMM (tile order) "
              "at output-stage step FI_EDGE"),
    EngineReg("CNT_ROLLBACK", 0x54, "ro", 32, "cnt_rollback",
              "output stages re-executed after a lane mismatch (bounded: RETRIES a tile)"),
    EngineReg("CNT_ESCALATED", 0x58, "ro", 32, "cnt_escalated",
              "tiles whose lanes still disagreed after RETRIES re-executions (their EXEC fails: rollback_ctrl)"),
    EngineReg("IN_WORDS", 0x5C, "rw", 24, "r_in_words",
              "words (bytes) of the stored input tensor the READ op reads (then one checkpoint beat)"),
    # the producer's command (the layer that wrote this layer's input): re-executed by REEXEC
    EngineReg("P_TILES", 0x60, "rw", 24, "r_p_tiles", "producer's TILES (0: the input is the network input)"),
    EngineReg("P_KCHUNKS", 0x64, "rw", 16, "r_p_kchunks", "producer's KCHUNKS"),
    EngineReg("P_SHIFT", 0x68, "rw", 7, "r_p_shift", "producer's SHIFT"),
    EngineReg("P_LO", 0x6C, "rw", 10, "r_p_lo", "producer's LO"),
    EngineReg("P_HI", 0x70, "rw", 10, "r_p_hi", "producer's HI"),
    EngineReg("P_MODE", 0x74, "rw", 6, "r_p_mode", "producer's MODE"),
    EngineReg("FI_RB", 0x78, "rw", 32, "r_fi_rb",
              "rollback_ctrl state fault: bit 0 arm, bits 3:1 register (sanitas.rtl.rollback.CTRL_REGS), bits 6:4 "
              "bit, bits 8:7 kind, bits 31:16 the command's cycle (CYCLES count) it acts at"),
    EngineReg("CNT_RD_BAD", 0x7C, "ro", 32, "cnt_rd_bad", "input reads whose sums differed from the checkpoint"),
    # rollback_ctrl counters (sanitas.protect.base.Report names), cumulative since reset
    EngineReg("RB_DETECTED", 0x80, "ro", 32, "rb_detected", "input checkpoint mismatches (first read of a READ)"),
    EngineReg("RB_ROLLED_BACK", 0x84, "ro", 32, "rb_rolled_back", "re-reads, producer re-executions, layer re-runs"),
    EngineReg("RB_UNCORR", 0x88, "ro", 32, "rb_uncorrectable", "reads / layers still bad after the retries (alarm)"),
    EngineReg("RB_ESCALATIONS", 0x8C, "ro", 32, "rb_escalations", "layers escalated (weights reloaded, run once more)"),
)

#: Registers by name.
ENGINE_REGS: dict[str, EngineReg] = {r.name: r for r in ENGINE_REG_TABLE}
#: K per chunk of the engine (its KMAX parameter default): the streams are KMAX bytes wide.
ENGINE_KMAX = 32
#: Words of a stream beat the engine's read check adds per edge (its RD_W parameter default, a divisor of the
#: KMAX * DATA_W / 8 words a beat): a READ beat takes ceil(words / ENGINE_READ_W) edges, s_axis_tready low meanwhile.
ENGINE_READ_W = 8
#: AXI4-Lite address width of the engine (bytes).
ENGINE_ADDR_W = 8

"""Golden model of the RTL dmr_unit: the hardware form of the DMR checksums, the two-lane output stage, and the
register-level effect of one fault in it.

The algorithm is `sanitas.protect.dmr` (checkpoints with position-weighted checksums, verified reads, duplicated
elementwise stages) with the code of `sanitas.protect.seal`; this module only adds what the hardware adds:

* `fletcher`: the checksum of a word stream as the RTL keeps it, (S0, F) = (sum x_i, sum (n - i) x_i) mod 2**64,
  two adds per word and no multiplier; `to_golden` turns it into the golden's [sum x_i, sum (i + 1) x_i]
  ((n + 1) S0 - F): the same code, positions counted from the end.
* `out_stage`: requantisation (`sanitas.golden.rounding.requantize`: round half to even, saturation; ReLU = lo 0)
  and max-pool over windows, the lane function.
* `DmrRun` / `run_stream`: one tensor through the unit beat by beat -- accumulators in (windows), words out, the
  words read back, the compare -- with an optional fault on one of the unit's registers (`DMR_REGS`) at one beat,
  mirroring the register semantics of templates/dmr_unit.v.j2 (the fault acts on the value written at that edge).
  Outcome (`DMR_OUTCOMES`): ``masked`` (words, checkpoint and verdicts as fault-free), ``detected`` (lane_bad or
  rd_bad raised: the rollback controller re-reads / re-executes), ``silent`` (a wrong word or checkpoint, no flag).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import SanitasError
from ..golden.rounding import requantize
from ..protect.seal import checksums

#: Registers of the dmr_unit the fault port reaches, by fi_sel code.
DMR_REGS = ("lane_a_max", "lane_b_max", "lane_a_s0", "lane_a_f", "lane_b_s0", "lane_b_f", "rd_s0", "rd_f")
#: Outcome classes of one dmr_unit fault, in report order.
DMR_OUTCOMES = ("masked", "detected", "silent")
SUM_W = 64
_MASKS = {"bitflip": lambda b: (-1, 0, 1 << b), "stuck0": lambda b: (~(1 << b), 0, 0),
          "stuck1": lambda b: (-1, 1 << b, 0)}


def _wrap64(v: int) -> int:
    v &= (1 << SUM_W) - 1
    return v - (1 << SUM_W) if v >> (SUM_W - 1) else v


def fletcher(words) -> tuple[int, int]:
    """(S0, F) of a word stream, signed 64-bit: S0 = sum x_i, F = sum (n - i) x_i (mod 2**64)."""
    s0 = f = 0
    for x in np.asarray(words, np.int64).ravel():
        s0 = _wrap64(s0 + int(x))
        f = _wrap64(f + s0)
    return s0, f


def to_golden(s0: int, f: int, n: int) -> np.ndarray:
    """The golden checksum [sum x_i, sum (i + 1) x_i] (`sanitas.protect.seal.checksums`) of an n-word stream."""
    return np.array([_wrap64(s0), _wrap64((n + 1) * s0 - f)], np.int64)


def golden_checksum(words) -> np.ndarray:
    """`sanitas.protect.seal.checksums` of one tensor (the reference `to_golden(*fletcher(w), n)` must equal)."""
    return checksums(np.asarray(words, np.int64).reshape(1, -1))[0]


def out_stage(windows, shift: int, lo: int, hi: int) -> np.ndarray:
    """One lane: each window (a 1-D sequence of int32 accumulators) -> max of its requantised values, (W,) int64.

    requantize(x, 0, shift, ...) shifts by ``shift`` (the exponent step e_out - e_in) and saturates to [lo, hi]."""
    out = []
    for w in windows:
        y = np.clip(requantize(np.asarray(w, np.int64), 0, shift, 64, True), lo, hi)
        out.append(int(y.max()))
    return np.array(out, np.int64)


class DmrFault(NamedTuple):
    """One fault in the dmr_unit: register (`DMR_REGS`), bit (>= the register's width: no effect), kind, the beat.

    Beats count the unit's edges of one tensor run: the accumulator beats 0..B-1, then the read beats B..B+W-1."""
    reg: str
    bit: int
    kind: str
    beat: int


class DmrRun(NamedTuple):
    """What the dmr_unit gives for one tensor: written words, write checkpoint, read sums, the two verdicts."""
    words: np.ndarray   # (W,) int64 values written (lane A)
    wr: tuple           # (S0, F) write checkpoint (lane A)
    lane_b: tuple       # (S0, F) of lane B
    rd: tuple           # (S0, F) of the words read back
    lane_bad: bool
    rd_bad: bool


def _apply(v: int, fault: DmrFault | None, reg: str, beat: int, bits: int) -> int:
    if fault is None or fault.reg != reg or fault.beat != beat or fault.bit >= bits:
        return v            # a bit outside the register is no fault (the RTL truncates the mask)
    a, o, x = _MASKS[fault.kind](fault.bit)
    full = (1 << bits) - 1
    u = ((int(v) & full & a) | o) ^ x          # exact Python ints (64-bit registers overflow numpy's masks)
    return u - (1 << bits) if u >> (bits - 1) else u


def run_stream(windows, shift: int, lo: int, hi: int, *, out_w: int = 8, read=None, ref=None,
               fault: DmrFault | None = None) -> DmrRun:
    """One tensor through the dmr_unit, beat by beat (one accumulator per beat, windows back to back).

    ``read``: the words read back (default: the written words, as the memory returns them); ``ref``: the stored
    checkpoint (S0, F) compared with the read sums (default: the write checkpoint). ``fault`` acts like the RTL
    fault port: on the named register's next value at its beat."""
    if fault is not None and (fault.reg not in DMR_REGS or fault.kind not in _MASKS):
        raise SanitasError(f"dmr fault must name a register of {', '.join(DMR_REGS)} and a kind of "
                           f"{', '.join(_MASKS)}, got {fault.reg!r} / {fault.kind!r}")
    v_w = out_w + 1
    beat = 0
    m = [0, 0]
    sums = [[0, 0], [0, 0]]
    rd = [0, 0]                     # read sums: held (but still fault sites) through the accumulator beats
    words = []
    for w in windows:
        for i, acc in enumerate(w):
            y = int(np.clip(requantize(np.array([acc], np.int64), 0, shift, 64, True)[0], lo, hi))
            for ln in (0, 1):
                mx = y if i == 0 or y > m[ln] else m[ln]
                if i == len(w) - 1:
                    if ln == 0:
                        words.append(mx)
                    s0 = _wrap64(sums[ln][0] + mx)
                    f = _wrap64(sums[ln][1] + s0)
                    sums[ln] = [s0, f]
                m[ln] = _apply(mx, fault, DMR_REGS[ln], beat, v_w)
                sums[ln][0] = _apply(sums[ln][0], fault, DMR_REGS[2 + 2 * ln], beat, SUM_W)
                sums[ln][1] = _apply(sums[ln][1], fault, DMR_REGS[3 + 2 * ln], beat, SUM_W)
            rd = [_apply(rd[0], fault, "rd_s0", beat, SUM_W), _apply(rd[1], fault, "rd_f", beat, SUM_W)]
            beat += 1
    # the stored words: the lane value's OUT_W-bit pattern, read as signed when the type is (lo < 0); a fault can
    # push the (OUT_W + 1)-bit lane value out of the type's range, and the stored word is then its truncation
    full, top = (1 << out_w) - 1, 1 << (out_w - 1)
    words = np.array([((v & full) - (1 << out_w)) if lo < 0 and (v & full) >= top else (v & full) for v in words],
                     np.int64)
    read = words if read is None else np.asarray(read, np.int64)
    for x in read:
        s0 = _wrap64(rd[0] + int(x))
        rd = [s0, _wrap64(rd[1] + s0)]
        rd[0] = _apply(rd[0], fault, "rd_s0", beat, SUM_W)
        rd[1] = _apply(rd[1], fault, "rd_f", beat, SUM_W)
        for ln in (0, 1):           # the lanes hold through the read beats; their registers are still sites
            m[ln] = _apply(m[ln], fault, DMR_REGS[ln], beat, v_w)
            sums[ln][0] = _apply(sums[ln][0], fault, DMR_REGS[2 + 2 * ln], beat, SUM_W)
            sums[ln][1] = _apply(sums[ln][1], fault, DMR_REGS[3 + 2 * ln], beat, SUM_W)
        beat += 1
    wr = tuple(sums[0])
    ref = wr if ref is None else tuple(int(v) for v in ref)
    return DmrRun(words, wr, tuple(sums[1]), tuple(rd), tuple(sums[0]) != tuple(sums[1]), tuple(rd) != ref)


def classify(run: DmrRun, clean: DmrRun) -> str:
    """``masked`` / ``detected`` / ``silent`` of a faulty run against the fault-free one (same inputs)."""
    if run.lane_bad or run.rd_bad:
        return "detected"
    same = np.array_equal(run.words, clean.words) and run.wr == clean.wr
    return "masked" if same else "silent"

"""Golden model of the RTL sanity datapath: the partial checksum PEs, the sanity_unit's row check, and the
lazy / eager flow of `sanity_array` under one accumulator fault record.

The algorithm is `sanitas.protect.sanity` (Hamming cover, verdicts, correction with the total residual); this
module only adds what the hardware adds to it: the GEMM-level partial checksums P (one per partial PE, wrapping
acc_width-bit registers, `partial_checksums`), the two kinds of check beat of the sanity_unit (`check_row`) and
the pass sequence of the protected GEMM (`protected_gemm`):

1. pass 1 with the fault: C, S (`sanitas.golden.gemm.gemm_replay`) and, eager only, P;
2. one detection beat per row: alarm when the total residual (lazy) or any residual (eager) is non-zero;
3. on any alarm, the re-run passes (`rerun_sels`): C held, S and P recomputed (fault-free: the record is a single
   transient); one location beat per row corrects the located output (DATA) or flags the row (SANITY /
   UNCORRECTABLE). Eager: one pass with every partial. Lazy: 2 * NP + 1 passes on the total-checksum column, one
   column set each (partial m, the complement of partial m, then the total), each followed by one beat per row;
   the sanity_unit keeps the pattern bits per row (rp_m != 0; rt - rp_m == 0, the complement residual) and the
   beats after the total pass locate with them -- the same verdict as one beat with every residual.

The A-path check of sanity_tile (``a_path=True``, `a_path_alarm`) comes before step 2: a pe_a record that changes
the A byte a valid beat carries (any PE column 0..cols: between the column-0 and the checksum-column folds of the
array) sets a_err at the end of pass 1; its C is dropped and pass 1 runs again, fault-free (the record is a single
transient), counted as one detection (`GemmOutcome.a_path`, in ``detected``); with ``a_retries = 0`` (sanity_tile
A_RETRIES = 0: no re-run left) the alarm is flagged instead (a detection and an uncorrectable, C left as it is).
A pe_a record the row checksums alone
cannot see (column 0: every output of the row wrong, residual 0) is silent without it (sanity_unit alone has no A
path: its benches pass ``a_path=False``).

Outcome of a record (`OUTCOMES`): ``uncorrectable`` when a row was flagged; else ``masked`` when the pass-1 C was
already right, ``corrected`` when it was wrong and the final C is right; ``silent`` when the final C is wrong and
nothing was flagged. Fault sites: ``pe_acc``, ``chk_acc``, the operand registers ``pe_a`` / ``pe_b``
(`sanitas.faults.fault`; `operand_faults`) and ``part_acc`` (m, p), the
partial checksum p of row m: eager, its PE; lazy has no partial register (the partials are recomputed on the
total-checksum column in the re-run and checked serially), so a lazy record acts on nothing that is ever read:
the model lets it act on a 0 that the check ignores (masked), and `pe_faults` draws none for lazy.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from ..config import ArrayConfig
from ..errors import SanitasError
from ..faults import Fault
from ..faults.fault import apply_masks
from ..golden.gemm import gemm_replay, locate, wrap
from ..protect.code import DATA, OK, SANITY, UNCORRECTABLE, hamming_cover, locate as sanity_locate, n_partials

#: Outcome classes of one fault record, in report order.
OUTCOMES = ("masked", "corrected", "uncorrectable", "silent")
#: Verdict codes of the sanity_unit (out_status), the `sanitas.protect.code.locate` codes.
VERDICTS = {"ok": OK, "data": DATA, "sanity": SANITY, "uncorrectable": UNCORRECTABLE}
#: Array sites the sanity flow models: the accumulators and the operand registers.
SANITY_SITES = ("pe_acc", "chk_acc", "part_acc", "pe_a", "pe_b")


def eager(array: ArrayConfig) -> bool:
    """True when the partial checksum PEs run in every pass (``checksums = eager``)."""
    return array.checksums.value == "eager"


def rerun_sels(array: ArrayConfig) -> list[int]:
    """chk_sel of each re-run pass after an alarm, in order: eager [0]; lazy [1 .. 2 * NP, 0] -- m + 1 partial m,
    NP + 1 + m its complement, 0 the total last (its beats locate and correct)."""
    return [0] if eager(array) else [*range(1, 2 * n_partials(array.cols) + 1), 0]


def column_set(array: ArrayConfig, sel: int) -> np.ndarray:
    """(cols,) 0/1: the outputs whose weight columns the checksum column sums in a pass with chk_sel ``sel``."""
    n_part = n_partials(array.cols)
    if not 0 <= sel <= 2 * n_part:
        raise SanitasError(f"chk_sel must be in [0, {2 * n_part}], got {sel}")
    cover = hamming_cover(array.cols)
    return cover[-1] if sel == 0 else cover[sel - 1] if sel <= n_part else 1 - cover[sel - 1 - n_part]


def _as_chk(fault: Fault, array: ArrayConfig) -> Fault:
    """A part_acc (m, p) record as the chk_acc (m,) record of the covered sub-GEMM (same PE position, width)."""
    n_part = n_partials(array.cols)
    if len(fault.index) != 2 or not 0 <= fault.index[1] < n_part:
        raise SanitasError(f"part_acc index must be (row, p) with p in [0, {n_part}), got {fault.index}")
    return dataclasses.replace(fault, site="chk_acc", index=(fault.index[0],))


def partial_checksums(a, b, array: ArrayConfig, fault: Fault | None = None, *, running: bool = True) -> np.ndarray:
    """P (m, NP) int64 of A (m, k) @ B (k, n): P[r, p] = sum_k A[r, k] * -sum_{covered j} B[k, j], acc_width wrap.

    ``fault`` (site part_acc) acts on its PE like a chk_acc fault acts on the total PE (the partial PEs share its
    wavefront position); a pe_a fault reaches every partial of its row (they share the total PE's A register,
    right of every data column); other sites leave P alone. ``running=False`` (a lazy pass 1): the PEs hold 0 and the
    fault acts on that 0.
    """
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    cover = hamming_cover(b.shape[1])[:-1]                       # (NP, n): the partial rows
    p = np.zeros((a.shape[0], len(cover)), np.int64) if not running else \
        wrap(a @ (-(b @ cover.T)), array.acc_width)
    if fault is not None and fault.site == "pe_a" and running:
        # the partial PEs share the checksum PE's A register: a faulty A[m, kk] at any PE column <= cols reaches them
        t = locate(fault, array, a.shape[0], a.shape[1], b.shape[1])
        if t.kk is not None and 0 <= t.kk < a.shape[1]:
            old = int(a[t.row, t.kk])
            delta = int(apply_masks(np.int64(old), *t.masks, t.width, True)) - old
            p[t.row] = wrap(p[t.row] + delta * -(cover @ b[t.kk]), array.acc_width)
    if fault is not None and fault.site == "part_acc":
        chk = _as_chk(fault, array)
        row, q = fault.index
        sub = b[:, cover[q] == 1]
        if running:
            p[row, q] = gemm_replay(a, sub, chk, array)[1][row]
        else:
            masks = locate(chk, array, a.shape[0], a.shape[1], sub.shape[1]).masks
            p[row, q] = int(apply_masks(np.int64(0), *masks, array.acc_width, True))
    return p


class RowVerdict(NamedTuple):
    """The sanity_unit's answer to one check beat."""
    alarm: bool       # some residual != 0
    status: int       # OK / DATA / SANITY / UNCORRECTABLE (protect.code codes)
    idx: int          # DATA: the output; SANITY: the checksum (NP = total); else -1
    c: np.ndarray     # (n,) the row, corrected on a location beat with status DATA
    resid: int        # the total residual (signed acc_width-bit)


def check_row(c, s: int, p, *, part: bool, fix: bool, acc_width: int) -> RowVerdict:
    """One check beat of the sanity_unit: residuals of row ``c`` (n,) against S and P (NP,), verdict, correction.

    ``part``: P holds computed partials (else its residuals are taken as 0); ``fix``: a location beat.
    """
    c = np.asarray(c, np.int64)
    n = len(c)
    cover = hamming_cover(n)
    sums = np.concatenate([np.asarray(p, np.int64) if part else np.zeros(len(cover) - 1, np.int64), [s]])
    r = wrap(cover @ c + sums, acc_width)
    if not part:
        r[:-1] = 0
    status, idx = (int(v) for v in sanity_locate(r, n))
    out = c.copy()
    if fix and status == DATA:
        out[idx] = wrap(int(c[idx]) - int(r[-1]), acc_width)
    if status not in (DATA, SANITY):
        idx = -1
    return RowVerdict(bool(r.any()), status, idx, out, int(r[-1]))


class GemmOutcome(NamedTuple):
    """The protected GEMM under one fault record (the golden of one sanity_array run)."""
    c: np.ndarray          # (m, n) final C (corrected where located)
    c_pass1: np.ndarray    # (m, n) C of pass 1 (the faulty pass)
    rerun: bool            # an alarm caused a re-run pass
    detected: int          # rows alarmed in the detection beats
    corrected: int         # rows corrected in the location beats
    uncorrectable: int     # rows flagged in the location beats
    outcome: str           # one of OUTCOMES
    a_path: int = 0        # A-path re-runs of pass 1 (a_err; also counted in detected)


def a_path_alarm(a, b, fault: Fault | None, array: ArrayConfig) -> bool:
    """True when ``fault`` in pass 1 of A (m, k) @ B (k, n) sets the array's a_err (A_CHK = 1): a pe_a record (any PE
    column 0..cols) whose cycle meets a valid beat (kk in [0, k)) and whose masks change that A byte -- the column-0
    fold (the clean A) and the checksum-column fold (the A after the register) then differ in its row."""
    if fault is None or fault.site != "pe_a":
        return False
    a = np.asarray(a, np.int64)
    t = locate(fault, array, a.shape[0], a.shape[1], np.shape(b)[1])
    if t.kk is None or not 0 <= t.kk < a.shape[1]:
        return False
    old = int(a[t.row, t.kk])
    return int(apply_masks(np.int64(old), *t.masks, t.width, True)) != old


def protected_gemm(a, b, fault: Fault | None, array: ArrayConfig, *, a_path: bool = True,
                   a_retries: int = 2) -> GemmOutcome:
    """Run the sanity flow of `sanity_tile` on A @ B with ``fault`` in pass 1 (None: fault-free); ``a_path``: with
    the A-path check (pass 1 re-run on a_err, `a_path_alarm`; at most ``a_retries`` re-runs, the tile's A_RETRIES,
    then flagged), False: `sanity_array` alone (no A path)."""
    if fault is not None and fault.site not in SANITY_SITES:
        raise SanitasError(f"the sanity flow models the sites {', '.join(SANITY_SITES)}, got '{fault.site}'")
    if fault is not None and fault.site == "part_acc":
        _as_chk(fault, array)
    acc_fault = fault if fault is not None and fault.site != "part_acc" else None
    c1, s1 = gemm_replay(a, b, acc_fault, array)
    gold, s0 = gemm_replay(a, b, None, array)
    alarm_a = a_path and a_path_alarm(a, b, fault, array)
    n_a, flag_a = int(alarm_a and a_retries > 0), int(alarm_a and a_retries <= 0)   # a re-run is fault-free
    if n_a:                       # pass 1 dropped and run again, fault-free: the flow below sees the clean pass
        c_faulty, fault = c1, None
        c1, s1 = gold, s0
    p1 = partial_checksums(a, b, array, fault, running=eager(array))
    p0 = partial_checksums(a, b, array)
    w = array.acc_width
    alarms = [check_row(c1[r], int(s1[r]), p1[r], part=eager(array), fix=False, acc_width=w).alarm
              for r in range(c1.shape[0])]
    final, corrected, unc = c1.copy(), 0, flag_a
    if any(alarms):
        for r in range(c1.shape[0]):
            v = check_row(c1[r], int(s0[r]), p0[r], part=True, fix=True, acc_width=w)
            final[r] = v.c
            corrected += v.status == DATA
            unc += v.status in (SANITY, UNCORRECTABLE)
    c_first = c_faulty if n_a else c1
    if unc:
        outcome = "uncorrectable"
    elif np.array_equal(final, gold):
        outcome = "masked" if np.array_equal(c_first, gold) else "corrected"
    else:
        outcome = "silent"
    return GemmOutcome(final, c_first, any(alarms), n_a + flag_a + sum(alarms), corrected, unc, outcome, n_a)


def operand_faults(array: ArrayConfig, rng: np.random.Generator, k: int, per_reg: int) -> list[Fault]:
    """``per_reg`` random single faults in every operand register of ``array`` on a (rows, k) @ (k, cols) GEMM: the
    A and B registers of every PE position (rows x (cols + 1); column cols: the checksum PE, its B register
    chk_width bits), random bit of the register, kind (80 % bitflip, else stuck0 / stuck1 for one cycle) and
    wavefront cycle in [0, k + rows + cols) (operand sites need one). Order: site (pe_a, pe_b), then PE row-major."""
    out = []
    for site in ("pe_a", "pe_b"):
        for r in range(array.rows):
            for j in range(array.cols + 1):
                width = array.data_width if site == "pe_a" or j < array.cols else array.chk_width
                for _ in range(per_reg):
                    u = rng.random()
                    kind = "bitflip" if u < 0.8 else ("stuck0" if u < 0.9 else "stuck1")
                    out.append(Fault(site, "gemm", (r, j), int(rng.integers(width)), kind,
                                     cycle=int(rng.integers(0, k + array.rows + array.cols))))
    return out


def n_fault_pes(array: ArrayConfig) -> int:
    """Accumulator registers `pe_faults` draws from: rows x (cols + 1), plus rows x NP partial PEs when eager."""
    return array.rows * (array.cols + 1 + (n_partials(array.cols) if eager(array) else 0))


def pe_faults(array: ArrayConfig, rng: np.random.Generator, k: int, per_pe: int) -> list[Fault]:
    """``per_pe`` random single accumulator faults in every PE of ``array`` (data, total and partial columns) on a
    (rows, k) @ (k, cols) GEMM: random bit, kind (80 % bitflip, else stuck0 / stuck1 for one cycle) and
    wavefront cycle (or read-out). Order: PE by PE, data PEs row-major, then the total PEs, then (eager) the
    partial PEs; lazy has no partial registers (`n_fault_pes`)."""
    pes = [("pe_acc", (r, j)) for r in range(array.rows) for j in range(array.cols)]
    pes += [("chk_acc", (r,)) for r in range(array.rows)]
    if eager(array):
        pes += [("part_acc", (r, q)) for r in range(array.rows) for q in range(n_partials(array.cols))]
    out = []
    for site, index in pes:
        for _ in range(per_pe):
            u = rng.random()
            kind = "bitflip" if u < 0.8 else ("stuck0" if u < 0.9 else "stuck1")
            t = int(rng.integers(-1, k + array.rows + array.cols))
            out.append(Fault(site, "gemm", index, int(rng.integers(array.acc_width)), kind,
                             cycle=None if t < 0 else t))
    return out

"""Golden integer GEMM with the ABFT checksum column: the reference of the systolic array at every level.

Used by the HLS kernel test (hls/tests/systolic_gemm) and the RTL systolic-array bench (rtl_tests/systolic_array).
A total-checksum column is Huang & Abraham's ABFT ("Algorithm-Based Fault Tolerance for Matrix Operations",
IEEE TC 1984): for C = A @ B, append column ``-sum_j B[:, j]`` to B so every row of the extended product sums to 0;
a non-zero row sum flags a fault in that row.  INT8 overflow bound: |sum| <= K * 128 * 128 * (N + 1) < 2**31 for
K * (N + 1) < 2**17.

`gemm_replay` is the golden level of the array's fault sites (``pe_acc``, ``chk_acc``, ``pe_a``, ``pe_b``; their
meaning, and the one meaning of ``Fault.cycle``, are in `sanitas.faults.fault`): it computes the faulty C and S of
one GEMM on an `ArrayConfig` exactly, wrapping like the hardware's acc_width-bit registers.  `locate` resolves a
fault record to the PE and register it hits (`ArrayFaultTarget`), shared by the HLS and RTL adapters.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..config import ArrayConfig
from ..errors import SanitasError
from ..faults.fault import ARRAY_ACC_SITES, ARRAY_OPERAND_SITES, KINDS, Fault, apply_masks, fault_masks


def gemm_int8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) int8 @ (K, N) int8 -> (M, N) int32, exact (int64 accumulation, checked to fit int32)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    c = a @ b
    if c.size and (c.max() > np.iinfo(np.int32).max or c.min() < np.iinfo(np.int32).min):
        raise OverflowError("GEMM result does not fit int32")
    return c.astype(np.int32)


def checksum_column(b: np.ndarray) -> np.ndarray:
    """(K, N) int8 weights -> (K,) int32 column ``-sum_j B[:, j]`` (the total-checksum 'sanity' column)."""
    return -np.asarray(b, dtype=np.int64).sum(axis=1).astype(np.int32)


def gemm_with_checksum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (C, s): C = A @ B (int32) and s = A @ checksum_column(B) (int32).

    Fault-free, ``C.sum(axis=1) + s == 0`` for every row (exact integers).
    """
    c = gemm_int8(a, b)
    s = (np.asarray(a, dtype=np.int64) @ checksum_column(b).astype(np.int64)).astype(np.int32)
    return c, s


def wrap(x, bits: int):
    """Two's-complement wrap of integers (Python int or int64 array) to ``bits`` bits: what a register holds."""
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


class ArrayFaultTarget(NamedTuple):
    """Where one array-site fault lands in a GEMM (m, k, n) on an array (see `sanitas.faults.fault`)."""
    site: str       # pe_acc | chk_acc | pe_a | pe_b
    row: int        # GEMM row m (output row)
    col: int        # GEMM column j; col == n: the checksum PE column
    pe_row: int     # PE row i = m % rows (m's row tile starts at m - i)
    pe_col: int     # PE column: j, or array.cols for the checksum PE
    width: int      # register width, bits
    kk: int | None  # reduction step the PE runs in ``cycle`` (t - i - pe_col); None: at read-out
    masks: tuple[int, int, int]  # (AND, OR, XOR) on the register's width-bit pattern (fault_masks)


def locate(fault: Fault, array: ArrayConfig, m: int, k: int, n: int) -> ArrayFaultTarget:
    """Resolve an array-site fault on GEMM (m, k, n) to its PE, register width and reduction step.

    Raises a one-line ``SanitasError`` for a site, index, bit, kind or cycle that does not fit.
    """
    if fault.site not in ARRAY_ACC_SITES + ARRAY_OPERAND_SITES:
        raise SanitasError(f"fault site '{fault.site}' is not an array site (choose from "
                           f"{', '.join(ARRAY_ACC_SITES + ARRAY_OPERAND_SITES)})")
    if fault.kind not in KINDS:
        raise SanitasError(f"unknown fault kind '{fault.kind}' (choose from {', '.join(KINDS)})")
    if not (1 <= m and 0 <= k <= array.max_k and 1 <= n <= array.cols):
        raise SanitasError(f"GEMM ({m}, {k}, {n}) does not fit the array (k <= {array.max_k}, n <= {array.cols})")
    if fault.site == "chk_acc":
        if len(fault.index) != 1 or not 0 <= fault.index[0] < m:
            raise SanitasError(f"chk_acc index must be (row,) with row in [0, {m}), got {fault.index}")
        row, col = fault.index[0], n
    else:
        hi = n if fault.site == "pe_acc" else n + 1
        if len(fault.index) != 2 or not (0 <= fault.index[0] < m and 0 <= fault.index[1] < hi):
            raise SanitasError(f"{fault.site} index must be (row, col) in [0, {m}) x [0, {hi}), got {fault.index}")
        row, col = fault.index
    width = {"pe_acc": array.acc_width, "chk_acc": array.acc_width,
             "pe_a": array.data_width, "pe_b": array.chk_width if col == n else array.data_width}[fault.site]
    if fault.kind == "multibit":
        if not 0 < fault.bit < (1 << width):
            raise SanitasError(f"bit mask {fault.bit:#x} out of range for the {width}-bit {fault.site} register")
    elif fault.kind == "random":
        if fault.value is None or not -(1 << (width - 1)) <= fault.value < (1 << (width - 1)):
            raise SanitasError(f"random fault needs a value of {width} signed bits for {fault.site}")
    elif not 0 <= fault.bit < width:
        raise SanitasError(f"bit {fault.bit} out of range for the {width}-bit {fault.site} register")
    pe_row, pe_col = row % array.rows, (array.cols if col == n else col)
    if fault.cycle is None:
        if fault.site in ARRAY_OPERAND_SITES:
            raise SanitasError(f"{fault.site} faults need a cycle (the wavefront cycle whose operand they hit)")
        kk = None
    elif fault.cycle < 0:
        raise SanitasError(f"fault cycle must be a wavefront cycle >= 0 or None (read-out), got {fault.cycle}")
    else:
        kk = fault.cycle - pe_row - pe_col
    return ArrayFaultTarget(fault.site, row, col, pe_row, pe_col, width, kk,
                            fault_masks(fault.kind, fault.bit, fault.value, width))


def gemm_replay(a: np.ndarray, b: np.ndarray, fault: Fault | None, array: ArrayConfig) -> tuple[np.ndarray, np.ndarray]:
    """Faulty (C, S) of A (m, k) @ B (k, n) on ``array`` under one array-site ``fault`` (None: fault-free).

    C is (m, n) and S (m,), int64 holding acc_width-bit signed values (the registers wrap).  Operand values must
    fit data_width signed bits.  Accumulator faults act on the wrapped partial sum of the products kk' <= kk (all
    of them at read-out), then the remaining products are added; operand faults replace A[m, kk] for the PE
    columns >= pe_col of row m (pe_a) or B[kk, j] for rows m .. end of m's row tile (pe_b).
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    (m, k), n = a.shape, b.shape[1]
    if b.shape[0] != k:
        raise SanitasError(f"GEMM shapes do not match: A {a.shape}, B {b.shape}")
    for name, x in (("A", a), ("B", b)):
        if x.size and (x.min() < array.data_min or x.max() > array.data_max):
            raise SanitasError(f"{name} values must fit {array.data_width} signed bits")
    w_s = -b.sum(axis=1)                                     # (k,) checksum weights, exact
    c, s = a @ b, a @ w_s                                     # exact (m, n), (m,)
    if fault is not None:
        t = locate(fault, array, m, k, n)
        if t.site in ARRAY_ACC_SITES:
            c, s = _acc_fault(a, b, w_s, c, s, t, array)
        elif t.kk is not None and 0 <= t.kk < k:           # a padding operand (kk outside [0, k)) meets zeros
            _operand_fault(a, b, w_s, c, s, t, array)
    return wrap(c, array.acc_width), wrap(s, array.acc_width)


def _acc_fault(a, b, w_s, c, s, t: ArrayFaultTarget, array: ArrayConfig):
    w = w_s if t.col == b.shape[1] else b[:, t.col]
    terms = a[t.row] * w                                      # (k,) products this PE accumulates
    done = len(terms) if t.kk is None else min(max(t.kk + 1, 0), len(terms))
    partial = wrap(int(terms[:done].sum()), array.acc_width)
    value = int(apply_masks(np.int64(partial), *t.masks, array.acc_width, True)) + int(terms[done:].sum())
    c, s = c.copy(), s.copy()
    if t.col == b.shape[1]:
        s[t.row] = value
    else:
        c[t.row, t.col] = value
    return c, s


def _operand_fault(a, b, w_s, c, s, t: ArrayFaultTarget, array: ArrayConfig) -> None:
    n, kk = b.shape[1], t.kk
    if t.site == "pe_a":                                      # A[row, kk] faulty from PE column pe_col rightwards
        old = int(a[t.row, kk])
        delta = int(apply_masks(np.int64(old), *t.masks, t.width, True)) - old
        cols = np.arange(n) >= t.pe_col
        c[t.row, cols] += delta * b[kk, cols]
        s[t.row] += delta * w_s[kk]                           # the checksum PE is right of every column
    else:                                                     # B[kk, col] faulty from PE row pe_row downwards
        old = int(w_s[kk] if t.col == n else b[kk, t.col])
        delta = int(apply_masks(np.int64(old), *t.masks, t.width, True)) - old
        rows = slice(t.row, min(t.row - t.pe_row + array.rows, a.shape[0]))
        if t.col == n:
            s[rows] += delta * a[rows, kk]
        else:
            c[rows, t.col] += delta * a[rows, kk]

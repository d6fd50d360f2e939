"""Golden INT8 x INT8 -> INT32 GEMM with ABFT checksum column (the reference of the systolic array).

Used by the HLS kernel test (hls/tests/systolic_gemm) and the RTL systolic-array test (rtl_tests/systolic_array).
A total-checksum column is Huang & Abraham's ABFT: for C = A @ B, append column ``-sum_j B[:, j]`` to B so
every row of the extended product sums to 0; a non-zero row sum flags a fault in that row.
Overflow bound: |sum| <= K * 128 * 128 * (N + 1) < 2**31 for K * (N + 1) < 2**17.
"""
from __future__ import annotations

import numpy as np


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

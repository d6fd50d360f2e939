"""Position-weighted checksums, exact modulo 2**64, and self-checking seals of protection memory.

The weighted-checksum ABFT of Jou & Abraham (1986) keeps two sums of a vector ``x`` of ``n`` words:
``S0 = sum x_i`` and ``S1 = sum (i + 1) x_i``, both modulo 2**64 (int64 registers that wrap). In hardware
``S1`` needs no multiplier: Fletcher's running sums (``a += x_i; b += a``) give ``sum (n - i) x_i``, the same
code with the positions counted from the end, at one extra add per word.

* **Detection.** One error ``e != 0`` at position ``j`` changes ``S0`` by ``e``. Two errors ``e1, e2`` at
  ``i != j`` pass ``S0`` only when ``e1 = -e2`` (a cancelling pair), and then change ``S1`` by ``(i - j) e1``,
  non-zero modulo 2**64 because ``0 < |i - j| < 2**32`` and ``0 < |e1| <= 2**32``: every single error and every
  pair of errors is detected. Undetectable are only patterns with ``sum e_i = 0`` and ``sum i e_i = 0``, which
  need at least three errors (e.g. ``+e, -2e, +e`` at three equally spaced positions, or two cancelling pairs
  with equal position gaps) — for single-bit upsets, three or more flips whose signed values and positions
  balance exactly.
* **Location.** For a single error ``Delta S1 / Delta S0 = j + 1``: the faulty word and its error are known, so a
  sealed memory repairs one faulty word by itself (``check`` -> ``WORD``). Two errors ``e1, e2`` can mimic a
  single one in (S0, S1) (e.g. two equal errors at positions of equal parity point at their midpoint), so the
  seal of a memory that repairs itself keeps a third, quadratic sum ``S2 = sum (i + 1)**2 x_i`` and a location
  is accepted only when ``Delta S2 = (j + 1) Delta S1``: for two errors at ``a = i + 1 != b = j + 1`` that would
  need ``e1 e2 (a - b)**2 = 0`` (over the integers; modulo 2**64 it needs ``2**64 | e1 e2 (a - b)**2``, e.g. two
  bit-31 errors, which stays far outside int16 sanity words): a double fault is reported (``BAD``), never
  "repaired" into a third error.
* **Seal.** ``seal(x) = [S0, S1, S2, C]`` with ``C = -(S0 + S1 + S2)`` mod 2**64: the four stored words sum to 0,
  so a fault in the seal itself is told from a fault in the memory it covers (``SEAL``: exactly one seal word
  differs from the freshly computed one and the stored words no longer sum to 0), and rebuilt.

Cost: two adds per covered word for (S0, S1) — the DMR tensor checksums, which only detect — and three for a
seal (S0, S1, S2: Fletcher's third running sum), four 64-bit words per sealed block.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

OK, WORD, SEAL, BAD = "ok", "word", "seal", "bad"     # ``check`` verdicts
_TOP, _MOD = 1 << 63, 1 << 64


def signed64(v: int) -> int:
    """``v`` modulo 2**64 as a signed 64-bit value."""
    v %= _MOD
    return v - _MOD if v >= _TOP else v


def weighted(a) -> tuple[int, int, int]:
    """(sum x_i, sum (i + 1) x_i, sum (i + 1)**2 x_i) modulo 2**64 (signed) over the flat int64 words of ``a``."""
    a = np.asarray(a, dtype=np.int64).reshape(-1)
    pos = np.arange(1, a.size + 1, dtype=np.int64)
    with np.errstate(over="ignore"):                       # numpy int64 sums wrap: exact modulo 2**64
        ax = a * pos
        return int(a.sum()), int(ax.sum()), int((ax * pos).sum())


@functools.lru_cache(maxsize=256)
def _positions(n: int) -> np.ndarray:
    p = np.arange(1, n + 1, dtype=np.int64)
    p.flags.writeable = False
    return p


def checksums(a) -> np.ndarray:
    """Per-image weighted checksums of a batch (N, ...) -> (N, 2) int64: [sum, position-weighted sum]."""
    a = np.asarray(a, dtype=np.int64)
    flat = a.reshape(a.shape[0], -1)
    out = np.empty((flat.shape[0], 2), dtype=np.int64)
    # int64 array arithmetic wraps silently: exact modulo 2**64
    flat.sum(axis=1, out=out[:, 0])
    out[:, 1] = flat @ _positions(flat.shape[1])
    return out


def seal(a) -> np.ndarray:
    """(4,) int64 seal [S0, S1, S2, -(S0 + S1 + S2)] of the words of ``a``."""
    s = weighted(a)
    return np.array(s + (signed64(-sum(s)),), dtype=np.int64)


class Verdict(NamedTuple):
    """What ``check`` found: ``status`` (OK, WORD, SEAL, BAD); for WORD the flat position of the faulty word and
    its error (stored - true); for SEAL the index (0..3) of the faulty seal word and its true value."""
    status: str
    pos: int = -1
    err: int = 0


def check(a, stored) -> Verdict:
    """Verify the words of ``a`` against their stored seal (4,) and say what single fault explains a mismatch."""
    f = weighted(a)
    s = tuple(int(v) for v in stored)
    fresh = f + (signed64(-sum(f)),)
    if signed64(sum(s)) == 0:                               # the seal is intact
        if f == s[:3]:
            return Verdict(OK)
        d0, d1, d2 = (signed64(u - v) for u, v in zip(f, s))
        n = int(np.asarray(a).size)
        if d0 != 0 and d1 % d0 == 0 and 1 <= d1 // d0 <= n and d2 == signed64((d1 // d0) * d1):
            return Verdict(WORD, d1 // d0 - 1, d0)
        return Verdict(BAD)
    diff = [j for j, (u, v) in enumerate(zip(s, fresh)) if u != v]
    if len(diff) == 1:
        return Verdict(SEAL, diff[0], fresh[diff[0]])
    return Verdict(BAD)


__all__ = ["OK", "WORD", "SEAL", "BAD", "Verdict", "signed64", "weighted", "checksums", "seal", "check"]

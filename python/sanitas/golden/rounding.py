"""The one rounding rule of sanitas (integer contract, docs/architecture.md "The integer contract").

Every scale in sanitas is a power of two, so requantising an integer tensor from exponent ``e_in``
to exponent ``e_out`` (value = int * 2**e) is a shift.  The rule, written once here and used by
every level (golden, HLS, RTL, board sim):

* right shift by ``s = e_out - e_in > 0`` with **round half to even** (Brevitas' default ``ROUND``
  quantiser, ``torch.round``; hls4ml maps QONNX ``rounding_mode="ROUND"`` to ``AP_RND_CONV``, the same rule),
* left shift (exact) when ``s <= 0``,
* then saturation to ``[lo, hi]`` of the target integer type (narrow range: ``lo = -hi``).

Round-half-to-even rather than half-up: it is what Brevitas trains with and what hls4ml lowers to, it is
unbiased, and in hardware it costs one extra AND gate over half-up (look at the LSB of the quotient).
"""
from __future__ import annotations

import numpy as np


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """Representable integer range of a ``bits``-wide type: e.g. (8, True) -> (-128, 127)."""
    if signed:
        hi = (1 << (bits - 1)) - 1
        lo = -hi if narrow else -hi - 1
    else:
        lo, hi = 0, (1 << bits) - 1
    return lo, hi


def shift_round_half_even(x: np.ndarray, s: int) -> np.ndarray:
    """``round_half_even(x / 2**s)`` for an int64 array ``x`` and an integer shift ``s`` (exact)."""
    x = np.asarray(x, dtype=np.int64)
    if s <= 0:
        return x << (-s)
    q = x >> s                       # floor division by 2**s (arithmetic shift)
    r = x - (q << s)                 # remainder in [0, 2**s)
    half = np.int64(1) << (s - 1)
    up = (r > half) | ((r == half) & ((q & 1) == 1))
    return q + up.astype(np.int64)


def requantize(x: np.ndarray, e_in: int, e_out: int, bits: int, signed: bool,
               narrow: bool = False) -> np.ndarray:
    """Requantise integers at exponent ``e_in`` to a ``bits``-wide type at exponent ``e_out`` (saturating)."""
    lo, hi = int_range(bits, signed, narrow)
    return np.clip(shift_round_half_even(x, e_out - e_in), lo, hi)


def quantize_float(x: np.ndarray, e: int, bits: int, signed: bool, narrow: bool = False) -> np.ndarray:
    """Quantise a float array to integers at exponent ``e`` (round half to even, saturate).

    ``x / 2**e`` is exact in binary floating point, so this matches Brevitas' input quantiser exactly.
    """
    lo, hi = int_range(bits, signed, narrow)
    v = np.asarray(x, dtype=np.float64) * (2.0 ** -e)
    return np.clip(np.rint(v), lo, hi).astype(np.int64)   # np.rint rounds half to even

"""The layer-wide check of lazy sanity: one checksum over all pixels of a conv/linear layer that sees the cancelling
pairs the per-pixel total sanity neuron cannot (the "equivalent" of a position-weighted checksum for int32
accumulators that wrap).

The per-pixel total check ``wrap32(sum_c y[c, p] + s_p) == 0`` detects every single fault but passes a pair of
errors ``+e, -e`` in two channels of one pixel (two accumulators, or two weights of one input column, which add
``+-e x_k(p)`` to two channels at every pixel). Summing over the ``P`` output pixels turns the layer's MACs
into one dot product per checked row: ``sum_p y[c, p] = W_c . B + P b_c`` with ``B`` the box sums of the input
(``spatial.box_sums``; ``B = x`` for a linear layer), so a layer-wide check row costs ``K`` MACs per image, not
``K P``. Two modes, chosen per layer offline:

* ``weighted`` — when a static bound proves the fault-free accumulators never wrap (``max_o |b_o| + xmax
  sum_k |W_ok| + 128 xmax < 2**31`` for inputs ``|x| <= xmax``, ``sanity.input_bound``: then accumulators, and a
  weight or accumulator fault in them, are exact integers), one position-weighted row ``wx = -sum_c (c + 1) W_c``
  and bias ``bx = -sum_c (c + 1) b_c`` (memory ``sanity_wx`` (G, K), ``sanity_bx`` (G,)), checked exactly in
  int64: ``sum_c (c + 1) sum_p y[c, p] + wx . B + P bx == 0``. A pair ``+e`` (channel i) / ``-e`` (channel j)
  of one pixel changes it by ``(i - j) e != 0``; a cancelling weight pair of column ``k`` by ``(i - j) e B_k``,
  non-zero unless ``B_k = 0``. ``G * K`` MACs.
* ``hamming`` — otherwise (e.g. int32 biases near the range limit), modulo 2**32 like the accumulators, the ``M``
  partial rows of the layer's Hamming code on the layer-wide sums: the row that separates ``i`` and ``j`` sees
  ``+-e != 0`` mod 2**32. ``G * M * K`` MACs. (A single weighted row modulo 2**32 would miss pairs of bit-31 flips
  — ``2**31 = -2**31`` — and in general needs ``log2 C`` rows to separate every pair; exactness in Z is what
  lets the weighted mode use one.)

Together with the per-pixel total, errors ``E[c, p]`` pass only if every pixel's errors cancel and the layer-wide
check cancels: every error confined to one output channel, every pair of errors and every cancelling weight pair
of a column with ``B_k != 0`` are detected. Undetected remain: >= 4 accumulator errors arranged ``+e/-e``
crosswise over two pixels and two channels (each pixel and each channel's layer sum cancel), >= 3 errors in one
pixel balancing both the sum and the weighted sum (weighted mode), and a cancelling weight pair of a column whose
signed-input box sum is exactly 0 — a persistent fault the patrol finds. ``wx``/``bx`` are derived from the
weights: they are rebuilt from the verified weights (``rebuild``) and never used to repair anything, so a fault
in them can only raise an alarm that the fault path recognises.
"""
from __future__ import annotations

import numpy as np

from ..golden import wrap32
from ..models.ops import spec
from .spatial import box_adds, box_sums

LIMIT = 2 ** 31


def no_wrap(w3: np.ndarray, b2: np.ndarray, xmax: int = 256) -> bool:
    """Static bound: fault-free accumulators (inputs |x| <= xmax) and a weight fault in them never reach 2**31."""
    w = np.abs(np.asarray(w3, dtype=np.int64)).sum(axis=2)                       # (G, C)
    return int((np.abs(np.asarray(b2, dtype=np.int64)) + xmax * w).max()) + 128 * xmax < LIMIT


class LayerCheck:
    """The layer-wide check of one lazy ``SanityLayer`` (geometry ``G, C, K, M``, Hamming ``cover``)."""

    def __init__(self, node, G: int, C: int, K: int, M: int, cover: np.ndarray, xmax: int = 256):
        self.node, self.G, self.C, self.K, self.M, self.cover = node, G, C, K, M, cover
        w3, b2 = node.weight.reshape(G, C, K), node.bias.reshape(G, C)
        self.mode = "weighted" if no_wrap(w3, b2, xmax) else "hamming"
        self.derived_sites = ("sanity_wx", "sanity_bx") if self.mode == "weighted" else ()
        self.pos = np.arange(1, C + 1, dtype=np.int64)

    # ------------------------------------------------------------------ memory
    def derived(self, w3, b2) -> dict:
        """The weighted row and bias of the current weights (weighted mode; empty dict otherwise)."""
        if self.mode != "weighted":
            return {}
        return {"sanity_wx": -np.einsum("c,gck->gk", self.pos, np.asarray(w3, dtype=np.int64)),
                "sanity_bx": -(np.asarray(b2, dtype=np.int64) * self.pos).sum(axis=1)}

    def state(self) -> list:
        if self.mode == "weighted":
            return [("sanity_wx", (self.G, self.K), 32, True, False), ("sanity_bx", (self.G,), 64, True, False),
                    ("sanity_spatial", (self.G,), 64, True, True)]
        return [("sanity_spatial", (self.G, self.M), 32, True, True)]

    # ------------------------------------------------------------------ the check
    def _box(self, x, out_hw) -> np.ndarray:
        """(N, G, K) box sums of the input (a linear layer: the input itself)."""
        if not spec(self.node.op).spatial:
            return np.asarray(x, dtype=np.int64).reshape(x.shape[0], self.G, self.K)
        bx = box_sums(x, self.node, out_hw)
        return bx.reshape(bx.shape[0], self.G, self.K)

    def sums(self, x, arrays: dict, out_hw) -> np.ndarray:
        """Layer-wide check neurons from memory ``arrays``: (N, G) int64 exact, or (N, G, M) mod 2**32."""
        b = self._box(x, out_hw)
        p = int(np.prod(out_hw)) if len(out_hw) else 1
        if self.mode == "weighted":
            return np.einsum("ngk,gk->ng", b, arrays["sanity_wx"]) + p * arrays["sanity_bx"][None]
        rows, sb = arrays["sanity_w"][:, :self.M], arrays["sanity_b"][:, :self.M]
        return wrap32(np.einsum("ngk,grk->ngr", b, rows) + p * sb[None])

    def residual(self, y, hs) -> np.ndarray:
        """0 everywhere when the check holds: (N, G) or (N, G, M)."""
        ys = y.sum(axis=tuple(range(2, y.ndim))) if y.ndim > 2 else y
        ys = ys.reshape(y.shape[0], self.G, self.C)
        if self.mode == "weighted":
            return (ys * self.pos).sum(axis=2) + hs
        return wrap32(np.einsum("rc,ngc->ngr", self.cover[:self.M], wrap32(ys)) + hs)

    # ------------------------------------------------------------------ repair and cost
    def rebuild(self, arrays: dict, cols: slice = slice(None), with_bias: bool = True) -> tuple[int, int, list]:
        """Rebuild the derived words of columns ``cols`` (and the bias) from the verified weights.

        Returns (words verified, words rewritten, log)."""
        if self.mode != "weighted":
            return 0, 0, []
        w3, b2 = arrays["weight"].reshape(self.G, self.C, self.K), arrays["bias"].reshape(self.G, self.C)
        want = self.derived(w3[:, :, cols], b2)
        wx, bx = arrays["sanity_wx"], arrays["sanity_bx"]
        k0 = cols.start or 0
        log = [("sanity_wx", int(g), 0, int(k0 + k)) for g, k in zip(*np.nonzero(wx[:, cols] != want["sanity_wx"]))]
        wx[:, cols] = want["sanity_wx"]
        words = self.G * (want["sanity_wx"].shape[1] + (1 if with_bias else 0))
        if with_bias:
            log += [("sanity_bx", int(g), 0, 0) for g in np.nonzero(bx != want["sanity_bx"])[0]]
            bx[:] = want["sanity_bx"]
        return words, len(log), log

    def cost(self, pm) -> dict:
        """MACs, adds (box sums, channel sums, the check) and memory bits of the check per image."""
        out = pm.shapes[self.node.name]
        p = int(np.prod(out[2:])) if len(out) > 2 else 1
        rows = 1 if self.mode == "weighted" else self.M
        adds = self.G * self.C * (p - 1 if p > 1 else 0) + self.G * rows * (self.C + 2)
        if spec(self.node.op).spatial:
            adds += box_adds(self.node, pm.shapes[self.node.inputs[0]])
        mem = self.G * (self.K * 32 + 64) if self.mode == "weighted" else 0
        return {"macs": self.G * rows * self.K, "adds": adds, "mem_bits": mem}


__all__ = ["LayerCheck", "no_wrap"]

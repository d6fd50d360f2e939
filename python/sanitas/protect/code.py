"""The sanity code of a conv/linear layer's parameter memory: Hamming-indexed sanity rows, their seals, and the
scrub that verifies and repairs the memory with them ("Maintaining Sanity", DAC 2024; docs/architecture.md,
"References"), exact in integers.

* **Sanity rows.** A layer with ``C`` outputs per group gets ``M = floor(log2 C) + 1`` partial rows and one total
  (``hamming_cover``): partial ``m`` covers the outputs ``i`` (0-based) with bit ``m`` of ``i + 1`` set. A row is
  ``-sum`` of the covered weight rows (exact, ``bitlen(127 C) + 1`` bits, stored as int16 or int32), its bias
  ``-sum`` of the covered biases modulo 2**32. Column ``k`` of the weights plus column ``k`` of the rows is one
  codeword (``C + M + 1`` words): its residuals ``cover @ W[:, k] + rows[:, k]`` are 0, and a single faulty word
  spells its position (``locate``). The biases and sanity biases are one more codeword (mod 2**32).
* **Seals.** Each group's sanity rows and sanity biases carry a seal (``seal.py``: sum, position-weighted and
  quadratic sums, a check word; memory ``sanity_sum`` (G, 2, 4) int64). Before any repair reads the rows,
  ``verify_sanity`` checks them against their seals and repairs a single faulty sanity word (or seal word) by
  itself, so a latent fault in a row can never steer a repair: a faulty sanity word plus a faulty weight in its
  column would otherwise spell the position of a third, healthy weight, and the scrub would rewrite it.
* **Scrub** (``scrub``), on an alarm over all codewords or, patrolling, over a range of columns: codewords that
  pass are left alone; otherwise the sanity memory is verified (repaired) first, then each failing codeword with
  a single-word verdict (``DATA``) has its weight or bias rebuilt; any other pattern is at least two faults in
  one codeword — reported uncorrectable, nothing rewritten (the caller escalates: reload from the trusted image).

The column code is an extended Hamming code (minimum distance 4 over the integers). Undetectable in the parameter
memory: errors of one codeword that form another codeword, >= 4 faulty words (e.g. +e at the outputs whose codes
``i + 1`` are 1 and 6, -e at those with 2 and 5); misrepaired: >= 3 faulty words of one codeword at distance 1
from another codeword. Faults in the sanity words themselves are caught by the seals first. Two faults in one
codeword are always detected and reported, never repaired into a third error.
"""
from __future__ import annotations

import numpy as np

from ..golden import wrap32
from . import seal as sl

OK, DATA, SANITY, UNCORRECTABLE = 0, 1, 2, 3   # ``locate`` verdicts


def n_partials(c: int) -> int:
    """Number of partial sanity neurons for ``c`` outputs: floor(log2 c) + 1."""
    return int(c).bit_length()


def hamming_cover(c: int) -> np.ndarray:
    """(M + 1, c) int64 0/1: row m < M covers outputs i with bit m of (i + 1) set; row M (total) covers all."""
    m = n_partials(c)
    i = np.arange(1, c + 1)
    cov = ((i[None, :] >> np.arange(m)[:, None]) & 1).astype(np.int64)
    return np.vstack([cov, np.ones((1, c), dtype=np.int64)])


def locate(r: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Verdict per residual vector ``r`` (..., M + 1) (row M = total) for ``c`` protected outputs.

    Returns (status, idx): ``DATA`` with the faulty output index (every failing partial carries the total's
    residual and the failing set spells idx + 1), ``SANITY`` with the faulty sanity row (total alone failing ->
    M; exactly one partial failing with a zero total -> that partial), ``OK``, or ``UNCORRECTABLE``."""
    r = np.asarray(r, dtype=np.int64)
    m = r.shape[-1] - 1
    rt = r[..., m]
    part = r[..., :m]
    fail = part != 0
    nfail = fail.sum(-1)
    idx = (fail * (np.int64(1) << np.arange(m, dtype=np.int64))).sum(-1) - 1
    consistent = np.all(~fail | (part == rt[..., None]), axis=-1)
    status = np.full(rt.shape, UNCORRECTABLE, dtype=np.int64)
    status[(rt == 0) & (nfail == 0)] = OK
    data = (rt != 0) & consistent & (idx >= 0) & (idx < c)
    status[data] = DATA
    s_tot = (rt != 0) & (nfail == 0)
    s_part = (rt == 0) & (nfail == 1)
    status[s_tot | s_part] = SANITY
    idx = np.where(s_tot, m, np.where(s_part, np.argmax(fail, axis=-1) if m else 0, idx))
    return status, idx


def row_width(c: int) -> int:
    """Exact bit width of a sanity row word for ``c`` outputs (|value| <= 127 * c, signed)."""
    return (127 * c).bit_length() + 1


def storage_bits(c: int) -> int:
    """Bits of the memory word holding a sanity row value: int16 when the exact width fits, else int32."""
    return 16 if row_width(c) <= 16 else 32


def build_rows(w3: np.ndarray, b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sanity rows of weights (G, C, K) and biases (G, C): rows (G, M+1, K) exact, biases (G, M+1) mod 2**32."""
    cov = hamming_cover(w3.shape[1])
    rows = -np.einsum("rc,gck->grk", cov, np.asarray(w3, dtype=np.int64))
    bias = wrap32(-np.einsum("rc,gc->gr", cov, np.asarray(b2, dtype=np.int64)))
    return rows, bias


def sanity_seals(rows: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(G, 2, 4) int64 seals of the sanity memory: per group, of its rows and of its sanity biases."""
    return np.stack([np.stack([sl.seal(rows[g]), sl.seal(bias[g])]) for g in range(rows.shape[0])])


def seal_words_broken(seals: np.ndarray) -> bool:
    """Whether any stored seal fails its own check word (the 4 words of a seal sum to 0 mod 2**64)."""
    with np.errstate(over="ignore"):
        return bool(np.any(seals.sum(axis=-1) != 0))


def verify_sanity(rows: np.ndarray, bias: np.ndarray, seals: np.ndarray) -> tuple[int, int, list]:
    """Check the sanity memory (views, repaired in place) against its seals: a single faulty sanity word or seal
    word per block is rebuilt. Returns (words repaired, blocks unverifiable, [(kind, group, row, column)])."""
    nrep, unc, log = 0, 0, []
    k = rows.shape[2]
    for g in range(rows.shape[0]):
        for j, (kind, arr) in enumerate((("sanity_w", rows[g]), ("sanity_b", bias[g]))):
            v = sl.check(arr, seals[g, j])
            if v.status == sl.OK:
                continue
            if v.status == sl.WORD:
                flat = arr.reshape(-1)                       # a view: the memory itself
                flat[v.pos] -= v.err
                log.append((kind, g) + (divmod(v.pos, k) if kind == "sanity_w" else (v.pos, 0)))
            elif v.status == sl.SEAL:
                seals[g, j, v.pos] = v.err
                log.append(("sanity_sum", g, j, v.pos))
            else:
                unc += 1
                continue
            nrep += 1
    return nrep, unc, log


def _residuals(w3, b2, rows, bias, cov, cols, with_bias):
    """Weight codeword residuals (G, k, M+1) of columns ``cols`` (exact) and bias ones (G, 1, M+1) mod 2**32."""
    rw = np.einsum("rc,gck->gkr", cov, w3[:, :, cols]) + np.moveaxis(rows[:, :, cols], 1, 2)
    rb = wrap32(np.einsum("rc,gc->gr", cov, b2) + bias)[:, None, :] if with_bias else None
    return rw, rb


def scrub(w3: np.ndarray, b2: np.ndarray, rows: np.ndarray, bias: np.ndarray, seals: np.ndarray,
          cols: slice = slice(None), with_bias: bool = True, with_seals: bool = True,
          wlo: int = -128, whi: int = 127) -> tuple[int, int, list]:
    """Verify the codewords of columns ``cols`` (+ the bias codeword, + the seals' check words) and repair.

    ``w3`` (G, C, K) weights, ``b2`` (G, C) biases, ``rows`` (G, M+1, K), ``bias`` (G, M+1), ``seals``
    (G, 2, 4) — views into the memory, repaired in place. When anything fails, the sanity memory is verified
    against its seals first (``verify_sanity``); then a ``DATA`` verdict rebuilds its weight (if the rebuilt value
    is an int8) or bias, every other failing pattern is uncorrectable. Returns (words repaired, codewords /
    blocks uncorrectable, [(kind, group, row, column)])."""
    c = w3.shape[1]
    cov = hamming_cover(c)
    k0 = cols.start or 0
    rw, rb = _residuals(w3, b2, rows, bias, cov, cols, with_bias)
    if not rw.any() and (rb is None or not rb.any()) and not (with_seals and seal_words_broken(seals)):
        return 0, 0, []
    nrep, unc, log = verify_sanity(rows, bias, seals)       # before any repair reads the sanity rows
    if unc:
        return nrep, unc, log
    rw, rb = _residuals(w3, b2, rows, bias, cov, cols, with_bias)
    for kind, res in (("weight", rw), ("bias", rb)):
        if res is None or not res.any():
            continue
        st, idx = locate(res, c)
        for g, k in zip(*np.nonzero(st != OK)):
            if int(st[g, k]) != DATA:   # the sanity memory is verified: >= 2 faults in this codeword
                unc += 1
                continue
            i, rt = int(idx[g, k]), int(res[g, k, -1])
            if kind == "weight":
                v = int(w3[g, i, k0 + k]) - rt
                if not wlo <= v <= whi:
                    unc += 1
                    continue
                w3[g, i, k0 + k] = v
                log.append((kind, int(g), i, int(k0 + k)))
            else:
                b2[g, i] = int(wrap32(np.int64(int(b2[g, i]) - rt)))
                log.append((kind, int(g), i, 0))
            nrep += 1
    return nrep, unc, log


__all__ = ["OK", "DATA", "SANITY", "UNCORRECTABLE", "n_partials", "hamming_cover", "locate", "row_width",
           "storage_bits", "build_rows", "sanity_seals", "seal_words_broken", "verify_sanity", "scrub"]

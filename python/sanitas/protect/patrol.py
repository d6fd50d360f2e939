"""Patrol scrubbing and escalation of the sanity-protected parameter memory, the way ECC memory controllers patrol.

A fault in memory that no inference reads (a weight whose input is always 0, a partial sanity row the lazy path
never multiplies, a seal word) changes no output and raises no alarm, so the inference path never repairs it:
it waits for a second fault in the same codeword, and two faults in one codeword are beyond a single-error code.
The patrol walks all protected parameter memory in a fixed cyclic order and verifies (and repairs) ``k`` lines
per inference, between inferences — the memory is read directly (no datapath hook), as a memory controller's
scrub engine does in idle cycles:

* the lines of a sanity guard (``Patrolled``) are its ``K`` weight columns (each ``C`` weights + ``M + 1``
  sanity-row words, ``code.scrub``), its bias codeword (``C`` biases + ``M + 1`` sanity biases), its seal words
  (``G * 2 * 4``), and for a depthwise conv the seals of its filters and biases (``spatial.py``);
* a line that fails is repaired with the code after the sanity memory is verified against its seals; a line
  that cannot be repaired (two faults in one codeword) is **escalated**: the layer's memory is rewritten from the
  trusted image (``Memory.reload``; on hardware the driver rewrites that layer's memory), counted in
  ``Report.escalations``. The inference path escalates the same way when a layer stays uncorrectable after its
  scrub and its retries (``ProtectedModel``), so an uncorrectable state never persists into the next inference.
  The trusted image (``Memory.pristine``) is assumed intact: on hardware it is the host's copy of the model,
  behind the host memory's own ECC.

``Patrol(guards, k)`` schedules the lines of every guard of a model: ``step(report)`` verifies the next ``k``
lines, ``sweep(report)`` all of them (``ProtectedModel.scrub_all``); counters ``scrubbed`` (words verified) and
``repaired``. Cost per inference: about ``k * (C + M + 1)`` adds (one residual per word), no MACs.
"""
from __future__ import annotations

from .base import Report
from .code import scrub


class Patrolled:
    """Mixin of the sanity guards (``self.node, self.mem, self.G, self.C, self.K, self.M, self.scheme``): patrol
    lines, escalation. ``extra_lines`` / ``_patrol_extra(j, rep)`` add guard-specific lines after the seals."""

    extra_lines = 0

    def patrol_lines(self) -> int:
        return self.K + 2 + self.extra_lines

    def patrol_words(self) -> int:
        """Memory words one full sweep of this guard verifies."""
        extra = (self.O * self.K + self.O + 8) * self.extra_lines if self.extra_lines else 0
        check = getattr(self, "check", None)
        derived = self.G * (self.K + 1) if check is not None and check.derived_sites else 0
        return self.G * ((self.K + 1) * (self.C + self.M + 1) + 8) + extra + derived

    def reload(self) -> None:
        self.mem.reload()

    def escalate(self, rep: Report, why: str) -> None:
        """Rewrite the layer's memory from the trusted image (counted)."""
        self.reload()
        rep.escalations += 1
        rep.note(self.node.name, self.scheme, "escalation", reason=why)

    def _views(self):
        a = self.mem.arrays
        return (a["weight"].reshape(self.G, self.C, self.K), a["bias"].reshape(self.G, self.C), a["sanity_w"],
                a["sanity_b"], a["sanity_sum"])

    def patrol(self, lo: int, hi: int, rep: Report) -> None:
        """Verify and repair patrol lines ``lo <= j < hi`` of this guard (memory read directly, no hook)."""
        k = self.K
        cols = slice(min(lo, k), min(hi, k))
        with_bias, with_seals = lo <= k < hi, lo <= k + 1 < hi
        code = self.C + self.M + 1
        words = self.G * ((cols.stop - cols.start) * code + with_bias * code + with_seals * 8)
        nrep, unc, log = scrub(*self._views(), cols, with_bias, with_seals)
        check = getattr(self, "check", None)
        if check is not None and not unc:     # derived layer-wide row: rebuilt from the verified weights
            w, r, lg = check.rebuild(self.mem.arrays, cols, with_bias)
            words, nrep, log = words + w, nrep + r, log + lg
        for j in range(max(lo, k + 2), min(hi, k + 2 + self.extra_lines)):
            w, r, u, lg = self._patrol_extra(j - k - 2, rep)
            words, nrep, unc, log = words + w, nrep + r, unc + u, log + lg
        rep.scrubbed += words
        if nrep:
            self.mem.dirty = True
            rep.repaired += nrep
            rep.note(self.node.name, self.scheme, "patrol repaired", words=log)
        if unc:
            self.escalate(rep, "patrol: uncorrectable parameter memory")

    def _patrol_extra(self, j: int, rep: Report) -> tuple[int, int, int, list]:
        raise IndexError(j)


class Patrol:
    """Cyclic patrol over the lines of ``guards`` (objects with ``patrol_lines()`` and ``patrol(lo, hi, rep)``),
    ``k`` lines per ``step``."""

    def __init__(self, guards, k: int = 4):
        self.guards = [(g, g.patrol_lines()) for g in guards]
        self.total = sum(n for _, n in self.guards)
        self.k = int(k)
        self.ptr = 0                     # global line index of the next line to verify

    def _run(self, start: int, count: int, rep: Report) -> None:
        off = 0
        for g, n in self.guards:
            lo, hi = max(start, off), min(start + count, off + n)
            if lo < hi:
                g.patrol(lo - off, hi - off, rep)
            off += n

    def step(self, rep: Report, k: int | None = None) -> None:
        """Verify the next ``k`` lines (wrapping around)."""
        k = min(self.k if k is None else int(k), self.total)
        if k <= 0:
            return
        first = min(k, self.total - self.ptr)
        self._run(self.ptr, first, rep)
        if k > first:
            self._run(0, k - first, rep)
        self.ptr = (self.ptr + k) % self.total

    def words_per_step(self) -> float:
        """Average memory words verified (~ adds) per inference over a full cycle."""
        return min(self.k, self.total) * sum(g.patrol_words() for g, _ in self.guards) / self.total \
            if self.total else 0.0

    def sweep(self, rep: Report) -> None:
        """Verify every line once (on demand)."""
        self._run(0, self.total, rep)

    def reset(self) -> None:
        self.ptr = 0


__all__ = ["Patrolled", "Patrol"]

"""Soak campaigns: a protected model runs for many inferences while single-bit upsets accumulate in its memory and
transient faults strike its datapath — what a device sees over months, compressed.

Per inference ``i`` (all randomness from ``numpy.random.default_rng([seed, i])``, so a run is a pure function of
its configuration and the memory state it reached):

* **memory upsets**: ``Poisson(seu)`` single-bit flips, uniform over every bit of the scheme's memory — weights,
  biases, the protection's own words (sanity rows, their biases, seals, layer-wide rows, TMR replicas, clip
  bounds) and, under DMR, the checkpoint tensors and their checksums. Parameter words are flipped in place and
  stay flipped until the protection repairs or reloads them (they accumulate); a checkpoint lives for one
  inference, so its upset is delivered at its write in this inference;
* **transients**: ``Poisson(transients)`` single-bit flips drawn from a fixed pool (seeded, the same for every
  scheme) over the datapath sites — layer inputs, accumulators, activations and pool/add/gsum outputs, layer
  outputs — delivered once, at their read;
* one test image (drawn) is run and its logits compared with the fault-free golden ``run_int``: **silent**
  (wrong, no alarm), **wrong_flagged** (wrong, alarm raised), **detected** (alarm), **corrected** (alarm and
  bit-exact), plus the protection's counters summed (repaired, scrubbed, rolled back, uncorrectable,
  escalations).

``Soak`` keeps the state (memory contents, patrol position, counters, the inferences with wrong logits) and
``save``/``load`` it as one ``.npz`` (no pickles), so an interrupted soak resumes where its last save left it
and ends with exactly the counts of an uninterrupted one.
"""
from __future__ import annotations

import numpy as np

from ..faults import Fault, SiteInfo, apply_fault_value
from .campaign import OnceInjector, sample_primary, site_infos
from .model import ProtectedModel

TRANSIENT_CLASSES = ("input", "acc", "activation", "output")
COUNTS = ("inferences", "memory_faults", "transient_faults", "silent", "detected", "corrected", "escalations",
          "wrong_flagged", "top1_wrong", "repaired", "scrubbed", "rolled_back", "uncorrectable")
EVENT_SILENT, EVENT_FLAGGED = 1, 2


class Soak:
    """A soak of ``spec`` (scheme string or per-layer map) on golden model ``gm`` over int8 test images ``xq``.

    ``seu``: expected memory upsets per inference; ``transients``: expected transient faults per inference;
    ``patrol``: codewords scrubbed per inference (``ProtectedModel``); ``pool``: size of the transient pool."""

    def __init__(self, gm, xq, spec, seu: float = 0.01, transients: float = 1.0, seed: int = 0,
                 patrol: int = 4, pool: int = 4096):
        self.gm, self.spec, self.seed = gm, spec, int(seed)
        self.seu, self.transients = float(seu), float(transients)
        self.xq = np.asarray(xq, dtype=np.int64)
        self.clean = gm.run_int(self.xq)
        self.pm = ProtectedModel(gm, spec, patrol=patrol)
        self.info = site_infos(gm, self.pm)
        self.pool = [f for _, f in sample_primary(gm, pool, seed=self.seed, classes=TRANSIENT_CLASSES)]
        self._memory_table()
        self.counts = dict.fromkeys(COUNTS, 0)
        self.events: list[tuple[int, int]] = []            # (inference, EVENT_*) of every wrong output

    # ------------------------------------------------------------------ the memory under upsets
    def _memory_table(self) -> None:
        """Every memory word array as (memory or None, layer, site, shape, bits, signed) and its bit count."""
        bits = {(layer, site): (b, sg) for site, layer, _, b, sg, _ in self.pm.state_sites()}
        rows = []
        for m in self.pm.memories():
            for site, a in m.arrays.items():
                b, sg = {"weight": (8, True), "bias": (32, True)}.get(site) or bits[(m.node.name, site)]
                rows.append((m, m.node.name, site, tuple(a.shape), b, sg))
        for site, layer, shape, b, sg, batched in self.pm.state_sites():
            if site in ("checkpoint", "checksum") and batched:       # lives one inference: delivered by hook
                rows.append((None, layer, site, tuple(shape), b, sg))
        self.table = rows
        self.sizes = np.array([int(np.prod(s)) * b for _, _, _, s, b, _ in rows], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])

    def memory_bits(self) -> int:
        return int(self.sizes.sum())

    def _upset(self, rng) -> Fault | None:
        """Flip one uniformly drawn memory bit: in place for parameter memory (returns None), or a Fault to
        deliver at its write for a checkpoint / checksum."""
        p = int(rng.integers(self.memory_bits()))
        g = int(np.searchsorted(self.starts, p, side="right") - 1)
        mem, layer, site, shape, bits, signed = self.table[g]
        off = p - int(self.starts[g])
        idx = tuple(int(i) for i in np.unravel_index(off // bits, shape)) if shape else ()
        f = Fault(site, layer, idx, off % bits)
        if mem is None:
            return f
        a = mem.arrays[site]
        if bits >= 64:
            a[idx] = int((np.array(a[idx], dtype=np.int64).view(np.uint64) ^ np.uint64(1 << f.bit)).view(np.int64))
        else:
            a[idx] = int(apply_fault_value(np.array(a[idx], dtype=np.int64), f, SiteInfo(shape, bits, signed, False)))
        mem.dirty = True
        return None

    # ------------------------------------------------------------------ running
    def step(self) -> None:
        """Run the next inference."""
        i = self.counts["inferences"]
        rng = np.random.default_rng([self.seed, i])
        faults = []
        k_mem = int(rng.poisson(self.seu))
        for _ in range(k_mem):
            f = self._upset(rng)
            if f is not None:
                faults.append(f)
        k_tr = int(rng.poisson(self.transients))
        faults += [self.pool[int(j)] for j in rng.integers(len(self.pool), size=k_tr)]
        img = int(rng.integers(len(self.xq)))
        y, rep = self.pm.run(self.xq[img:img + 1], hook=OnceInjector(faults, self.info) if faults else None)
        ok = bool(np.array_equal(y[0], self.clean[img]))
        c = self.counts
        c["inferences"] += 1
        c["memory_faults"] += k_mem
        c["transient_faults"] += k_tr
        c["detected"] += bool(rep.alarm)
        c["corrected"] += bool(rep.alarm) and ok
        c["silent"] += (not ok) and not rep.alarm
        c["wrong_flagged"] += (not ok) and bool(rep.alarm)
        c["top1_wrong"] += int(np.argmax(y[0])) != int(np.argmax(self.clean[img]))
        for k in ("escalations", "repaired", "scrubbed", "rolled_back", "uncorrectable"):
            c[k] += getattr(rep, k)
        if not ok:
            self.events.append((i, EVENT_FLAGGED if rep.alarm else EVENT_SILENT))

    def run(self, n: int, progress: bool = False, every: int = 0, on_save=None) -> dict:
        """Run until ``n`` inferences in total; ``on_save(self)`` every ``every`` inferences and at the end."""
        from tqdm.auto import tqdm
        bar = tqdm(total=n, initial=self.counts["inferences"], desc="soak", disable=not progress, leave=False)
        while self.counts["inferences"] < n:
            self.step()
            bar.update(1)
            if on_save is not None and every and self.counts["inferences"] % every == 0:
                on_save(self)
        bar.close()
        if on_save is not None:
            on_save(self)
        return dict(self.counts)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the whole state to ``path`` (.npz, arrays only) atomically."""
        import os
        arrays = {f"mem{j}/{site}": a for j, m in enumerate(self.pm.memories()) for site, a in m.arrays.items()}
        arrays["counts"] = np.array([self.counts[k] for k in COUNTS], dtype=np.int64)
        arrays["events"] = np.array(self.events, dtype=np.int64).reshape(-1, 2)
        arrays["patrol"] = np.array([self.pm.patrol.ptr], dtype=np.int64)
        tmp = f"{path}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def load(self, path) -> None:
        """Restore a state written by ``save`` (memory contents, patrol position, counters, events)."""
        with np.load(path, allow_pickle=False) as z:
            for j, m in enumerate(self.pm.memories()):
                for site in m.arrays:
                    m.arrays[site] = np.array(z[f"mem{j}/{site}"], dtype=np.int64)
                m.dirty = True
            self.counts = {k: int(v) for k, v in zip(COUNTS, z["counts"])}
            self.events = [(int(a), int(b)) for a, b in z["events"]]
            self.pm.patrol.ptr = int(z["patrol"][0])


__all__ = ["Soak", "COUNTS", "TRANSIENT_CLASSES", "EVENT_SILENT", "EVENT_FLAGGED"]

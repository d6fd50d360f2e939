"""Overhead of the protection schemes: extra MACs, adds, elementwise work and memory per layer (analytic, per
image, fault-free), the fault-path cost of lazy location, and the CPU time ratio measured in the same run.

Counting rules (per image, batch 1; each guard's ``cost(pm)`` in its scheme file):

* **MACs** — multiplies of the sanity neurons / spatial checksums / duplicate or replica layers. Lazy sanity
  on a conv: one total neuron per group and pixel (``G * K * P``) + the layer-wide code on box sums
  (``G * (M + 1) * K``); on a linear layer and eager: ``G * (M + 1) * K * P``; depthwise spatial:
  ``O * (K + 1)``; DMR-only: the layer again; TMR: twice again; Sanity-Check: check neuron + the layer on -x.
* **adds** — checksum arithmetic (sums of outputs per pixel, weighted read/checkpoint checksums, box sums,
  parameter seals of depthwise convs).
* **ops** — elementwise work: duplicated requantise/add/pool, compares, votes, clipping compares.
* **memory** — sanity rows + biases (at their storage width), TMR replica weights, checksum words, clip bounds,
  seals (4 int64 words per sealed block), the -x buffer of Sanity-Check; DMR additionally keeps one extra
  checkpoint alive (``checkpoint_bits`` = the largest node output, at its width) so a consumer can roll back to
  its producer's inputs.
* **patrol** — the scrubber's adds between inferences (``k`` codewords, ~ one add per word verified),
  included in ``extra_adds``.
* **fault path** — MACs spent only after an alarm (lazy location recomputes all sanity neurons of the layer;
  spatial: the failing channel).

``measure_time`` runs every scheme fault-free on the same batch in interleaved rounds and reports the best
time and the ratio to the unprotected executor (``none``) and to ``GoldenModel.run_int``.
"""
from __future__ import annotations

import time

import numpy as np

from ..models.ops import spec
from .base import base_macs, elementwise_ops, numel
from .model import ProtectedModel, named_specs


def layer_costs(pm: ProtectedModel) -> list[dict]:
    """Per node: op, scheme, guard, base MACs and the extra cost record (MACs, adds, ops, memory bits)."""
    rows = []
    for n in pm.gm.nodes:
        plan = pm.plans[n.name]
        out = pm.shapes[n.name]
        c = dict(plan.guard.cost(pm))
        if plan.post is not None:
            for k, v in plan.post.cost(pm).items():
                c[k] += v
        if plan.verify_inputs:
            c["adds"] += 2 * sum(numel(pm.shapes[i]) for i in n.inputs)    # weighted checksum of every read
        if plan.rollback:
            c["adds"] += 2 * numel(out)                                     # checkpoint weighted checksum
            c["mem_bits"] += 128                                            # its two words
        rows.append({"node": n.name, "op": n.op, "scheme": plan.name, "guard": type(plan.guard).__name__,
                     "base_macs": base_macs(n, out),
                     "base_ops": 0 if spec(n.op).has_weights else
                     elementwise_ops(pm.gm, n, out, [pm.shapes[i] for i in n.inputs]),
                     **{f"extra_{k}": v for k, v in c.items()}})
    return rows


def param_bits(gm) -> int:
    """Parameter memory of the unprotected model: int8 weights + int32 biases."""
    return sum(n.weight.size * 8 + n.bias.size * 32 for n in gm.layers())


def overhead(pm: ProtectedModel) -> dict:
    """Totals of ``layer_costs``: extra MACs as a fraction of the model's MACs, fault-path MACs, memory."""
    rows = layer_costs(pm)
    macs = sum(r["base_macs"] for r in rows)
    ops = sum(r["base_ops"] for r in rows)
    tot = {k: sum(r[f"extra_{k}"] for r in rows) for k in ("macs", "adds", "ops", "mem_bits", "fault_path_macs")}
    ckpt = 0
    if any(p.rollback for p in pm.plans.values()):
        ckpt = max(numel(pm.shapes[n.name]) * n.bits for n in pm.gm.nodes)
    pb = param_bits(pm.gm)
    tot["adds"] += round(pm.patrol.words_per_step())                   # patrol: one residual add per word
    return {"macs": macs, "extra_macs": tot["macs"] / macs, "extra_macs_abs": tot["macs"],
            "fault_path_macs": tot["fault_path_macs"], "extra_adds": tot["adds"],
            "extra_adds_per_mac": tot["adds"] / macs, "base_ops": ops, "extra_ops": tot["ops"],
            "extra_ops_frac": tot["ops"] / ops if ops else 0.0,
            "param_bits": pb, "extra_mem_bits": tot["mem_bits"] + ckpt, "checkpoint_bits": ckpt,
            "extra_mem": (tot["mem_bits"] + ckpt) / pb, "layers": rows}


def measure_time(gm, schemes, xq, repeats: int = 3, calib=None) -> dict:
    """Fault-free wall time per scheme on batch ``xq`` (best of ``repeats`` interleaved rounds) and its ratio to
    the unprotected executor (scheme ``none``) and to ``GoldenModel.run_int``."""
    xq = np.asarray(xq, dtype=np.int64)
    pms = {"none": ProtectedModel(gm, "none")}
    for name, s in named_specs(schemes):
        pms[name] = ProtectedModel(gm, s, calib=calib)
    best = {k: float("inf") for k in list(pms) + ["golden"]}
    ref = gm.run_int(xq)
    for _ in range(repeats):
        t = time.perf_counter()
        gm.run_int(xq)
        best["golden"] = min(best["golden"], time.perf_counter() - t)
        for k, pm in pms.items():
            t = time.perf_counter()
            y, rep = pm.run(xq)
            best[k] = min(best[k], time.perf_counter() - t)
            if k != "none" and not np.array_equal(y, ref) and "clip" not in k:
                raise AssertionError(f"scheme {k} changed a fault-free output")
    base = best["none"]
    return {k: {"seconds": v, "ratio": v / base, "ratio_golden": v / best["golden"]} for k, v in best.items()}


__all__ = ["layer_costs", "overhead", "measure_time", "param_bits"]

"""The accelerator's cycle estimate per image, fault-free, in closed form (the count ``net_stats.cycles`` of the
generated ``sanitas_net.cpp`` accumulates; ``hls/include/sanitas/layers.h`` and ``sanity_unit.h`` count the same).

``cycle_model(gm, array, spec)``: per GEMM tile the PE-column passes, + what the sanity unit does not hide behind
the GEMM (``_check_cycles``), a duplicated conv/linear run twice; ``cycle_breakdown`` says where the protected
cycles exceed the unprotected accelerator's; ``_node_cycles`` is the per-node table both read.
"""
from __future__ import annotations

import math

import numpy as np

from ..config import ArrayConfig
from .firmware import gemm_geometry, node_plans
from .sanity_emit import SanityPlan, conv_geom, sanity_plans


def _check_cycles(g: tuple, sp: SanityPlan, gemm: int) -> int:
    """sanity_unit.h ``check_cycles``: what the sanity unit adds to a layer whose GEMM takes ``gemm`` cycles. Its
    check unit (box sums, check MACs: input and stored rows only) runs concurrently with the GEMM, so only what
    exceeds the GEMM shows, + a depthwise conv's parameter seals (checked before use) + one compare per check
    word after the GEMM."""
    cin, h, w, o, kh, kw, _, pad, _, _, _, _ = g
    if not sp.lazy and not sp.spatial:
        return 0
    conv = kh * kw > 1 or h > 1 or w > 1
    box = cin * (h + 2 * pad) * (w + 2 * pad) + cin * kh * kw if conv else 0
    if sp.spatial:
        overlap, serial, tail = box + o * (sp.K + 1), o * sp.K + o, o
    else:
        words = sp.G * (1 if sp.lw_mode == 1 else sp.M)
        overlap, serial, tail = box + words * sp.K, 0, words
    return max(overlap - gemm, 0) + serial + tail


def _node_cycles(gm, array: ArrayConfig, spec="none") -> list[tuple]:
    """Per node (graph order): (op, duplicated, its engine cycles without the sanity unit, the sanity unit's)."""
    geo = gemm_geometry(gm, array)
    shapes = {k: tuple(v[1:]) for k, v in gm.shapes().items()}
    plans = node_plans(gm, spec)
    sps = sanity_plans(gm, spec)
    r, c = array.rows, array.cols
    out = []
    for i, (n, pl) in enumerate(zip(gm.nodes, plans)):
        sz = int(np.prod(shapes[n.name]))
        cyc = unit = 0
        if n.op in ("conv", "linear"):
            m, k, og = geo["gemms"][n.name]
            groups = int(n.attrs.get("groups", 1))
            sp = sps.get(i)
            e = 0 if sp is None or sp.spatial else (1 if sp.lazy else sp.M + 1)
            passes = math.ceil((og + max(e - 1, 0)) / c)
            for m0 in range(0, m, geo["max_m"]):
                mt = min(geo["max_m"], m - m0)
                for k0 in range(0, k, geo["max_k"]):
                    kt = min(geo["max_k"], k - k0)
                    cyc += groups * passes * (kt + math.ceil(mt / r) * (kt + r + c - 1 + r))
            cyc += int(n.weight.shape[0])
            if sp is not None:
                unit = _check_cycles(conv_geom(n, shapes), sp, cyc)
        elif n.op == "maxpool":
            cyc += sz * n.attrs["k"] ** 2
        elif n.op == "gsum":
            cyc += int(np.prod(shapes[n.inputs[0]]))
        elif n.op in ("act", "add", "concat", "flatten"):
            cyc += sz
        out.append((n.op, pl.dup, cyc, unit))
    return out


def cycle_model(gm, array: ArrayConfig, spec="none", duplicate: bool = True) -> int:
    """The engine's cycle estimate per image, fault-free (the count ``net_stats.cycles`` accumulates, in closed
    form): per GEMM tile the PE-column passes (the data columns; lazy sanity's total row rides the checksum PE
    column, eager's other M rows take PE columns), + what the sanity unit does not hide behind the GEMM
    (``_check_cycles``: its check unit runs concurrently with the GEMM); a duplicated conv/linear (DMR) runs twice
    on the array, a duplicated elementwise node's second lane runs in the same pass (no cycles of its own). The
    patrol runs in the idle cycles between inferences (not counted). ``duplicate=False``: without the duplicated
    conv/linear nodes' second run."""
    total = 0
    for op, dup, cyc, unit in _node_cycles(gm, array, spec):
        total += (cyc + unit) * (2 if dup and duplicate and op in ("conv", "linear") else 1)
    return total


def cycle_breakdown(gm, array: ArrayConfig, spec="none") -> dict:
    """Where ``cycle_model(gm, array, spec)`` exceeds the unprotected accelerator's, per image: the extra PE-column
    passes of the GEMM tiles (eager sanity's partial rows), the sanity unit's cycles not hidden behind the GEMM
    (box sums / check MACs beyond the GEMM's, depthwise parameter seals, the compares after the GEMM), and the
    duplicate lanes of DMR (a duplicated conv/linear's second run on the array; elementwise duplicates run in the
    same pass: 0)."""
    base = cycle_model(gm, array)
    unit = sum(u for *_, u in _node_cycles(gm, array, spec))
    dup_free = cycle_model(gm, array, spec, duplicate=False)
    total = cycle_model(gm, array, spec)
    return {"none": base, "total": total, "gemm_passes": dup_free - base - unit, "sanity_unit": unit,
            "duplicate_lane": total - dup_free}

"""Clip baseline: activation range restriction (Ranger-style) on the integer model.

Each activation-like node (requantising ``act``, residual ``add``, ``maxpool``, ``gsum``) gets bounds
``[lo, hi]`` measured on fault-free calibration images (``calibrate``); at run time every value outside is
clamped to the bound and counted (``Report.clipped``). It costs one compare per element and no MACs. It can
only bound the damage of large (high-bit) faults — it never restores a value bit-exactly, cannot see faults
that stay in range, and any calibration gap shows up as clipping on fault-free test images (counted as false
alarms by the campaign, not hidden). The bounds are protection state (fault site ``clip_bound``, int32).
"""
from __future__ import annotations

import numpy as np

from .base import Memory, Scheme, cost, numel

CLIP_OPS = ("act", "add", "maxpool", "gsum")


def calibrate(gm, xq, batch: int = 256) -> dict:
    """Fault-free (lo, hi) of every clippable node over int8 calibration inputs ``xq`` (N, C, H, W)."""
    lo, hi = {}, {}
    for i in range(0, len(xq), batch):
        env = gm.run_int(xq[i:i + batch], return_all=True)
        for n in gm.nodes:
            if n.op in CLIP_OPS:
                v = env[n.name]
                lo[n.name] = min(lo.get(n.name, np.iinfo(np.int64).max), int(v.min()))
                hi[n.name] = max(hi.get(n.name, np.iinfo(np.int64).min), int(v.max()))
    return {k: (lo[k], hi[k]) for k in lo}


class ClipPost:
    """Clamp a node's output to its bounds (memory site ``clip_bound`` (2,) int32)."""
    scheme = "clip"

    def __init__(self, node, lo: int, hi: int):
        self.node = node
        self.mem = Memory(node, {"clip_bound": np.array([lo, hi])})

    def apply(self, y, hook, rep):
        lo, hi = (int(v) for v in self.mem.read("clip_bound", hook))
        out = (y < lo) | (y > hi)
        if not out.any():
            return y
        k = int(out.sum())
        rep.clipped += k
        rep.note(self.node.name, self.scheme, "clipped", elements=k)
        return np.clip(y, lo, hi)

    def state(self, out_shape) -> list:
        return [("clip_bound", (2,), 32, True, False)]

    def cost(self, pm) -> dict:
        return cost(ops=2 * numel(pm.shapes[self.node.name]), mem_bits=64)


class Clip(Scheme):
    """Scheme class: range restriction with calibrated bounds (``bounds`` from ``calibrate``)."""
    name = "clip"
    priority = 0

    def __init__(self, bounds: dict | None = None):
        self.bounds = bounds

    def post(self, pm, node):
        if node.op not in CLIP_OPS:
            return None
        bounds = self.bounds if self.bounds is not None else pm.clip_bounds
        if bounds is None or node.name not in bounds:
            from ..errors import SanitasError
            raise SanitasError("clip needs calibrated bounds: ProtectedModel(..., calib=int8 images)")
        return ClipPost(node, *bounds[node.name])


__all__ = ["Clip", "ClipPost", "calibrate", "CLIP_OPS"]

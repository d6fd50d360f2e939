"""Checks of the generated accelerator against the golden model: bit-exactness, fault agreement, costs, speed.

``check_top(gm, xq, spec, out_dir, faults=N)`` builds ``sanitas_top`` (``top.build_top``, fault port compiled in when
N > 0), runs it on the int8 images ``xq`` and compares every image's logits with ``GoldenModel.run_int``; the csim
throughput is measured beside the golden numpy executor's in the same run. With N faults it samples N records of
the fault port's sites (``sample_records``: the golden sites, every kind, and the protection's own state) and, per
record, compares the csim logits and counters on the first ``fault_images`` images with ``ProtectedModel(gm, spec)``
under the same record (``faultport.state_hook``, ``protected_per_image``: image by image from the fault-free
memory, counters summed, as the top runs a batch). Fault-free, the counters equal the golden ones (the patrol's
``scrubbed`` words are work, not alarms: ``counters_zero`` looks at the others).
The extra MACs are the ones the kernels issue beyond the unprotected data MACs (``net_stats.macs`` -
``gm.macs()``), reported beside ``sanitas.protect.overhead``'s analytic figure; ``cycles_equal``: the kernels'
cycle count (``net_stats.cycles``) equals ``cycles.cycle_model`` per image. Used by ``sanitas hls``,
``python -m sanitas.hls.netcsim`` (``make -C hls csim``) and ``benchmarks/bench_hls.py``.
"""
from __future__ import annotations

import time

import numpy as np

from ..config import ArrayConfig
from ..faults.fault import KINDS, sample_faults
from . import regmap
from .faultport import SITE_CODES, state_hook
from .cycles import cycle_model
from .top import TopLibrary, build_top


def sample_records(gm, pm, n: int, seed: int = 0) -> list:
    """``n`` fault records over every site the fault port supports: an equal share per golden site (every kind,
    ``faults.sample_faults``) and, where the scheme keeps state (sanity rows, seals, checkpoints, ...), one third
    single-bit flips in it (``protect.campaign.sample_state``: equal per state site name)."""
    from ..protect.campaign import sample_state
    n_state = n // 3 if pm.state_sites() else 0
    out = [f for _, f in sample_state(pm, n_state, seed=seed)]
    sites = tuple(SITE_CODES)
    n_gold = n - len(out)
    for k, site in enumerate(sites):
        q = n_gold // len(sites) + (1 if k < n_gold % len(sites) else 0)
        out += sample_faults(gm, q, sites=(site,), kinds=KINDS, seed=seed * 1000 + k)
    return out


def check_top(gm, xq, spec="none", out_dir=None, *, faults: int = 0, seed: int = 0, fault_images: int = 4,
              array: ArrayConfig | None = None, fresh: bool = False, model_graph=None) -> dict:
    """The record of one accelerator check (module doc); every count is an int, every time in seconds.
    ``model_graph``: the C++ is written from this hls4ml ModelGraph (``top.build_top``); ``gm`` stays the
    reference."""
    from ..protect.model import ProtectedModel
    from ..protect.overhead import overhead
    array = array or ArrayConfig()
    path, compile_s = build_top(gm, spec, out_dir, array=array, fault_port=faults > 0, fresh=fresh,
                                model_graph=model_graph)
    pm = ProtectedModel(gm, spec)
    lib = TopLibrary(path, gm, pm)
    x = np.asarray(xq, dtype=np.int64)
    t0 = time.perf_counter()
    y, counters = lib.run(x)
    csim_s = time.perf_counter() - t0
    st = lib.stats()
    t0 = time.perf_counter()
    want = gm.run_int(x)
    golden_s = time.perf_counter() - t0
    exact = int((y == want).all(axis=1).sum())
    _, want_cnt = protected_per_image(pm, x, None)
    rec = {"bit_exact": exact, "total": int(len(x)),
           "counters_zero": not any(v for k, v in counters.items() if k != "scrubbed"),
           "counters_equal": counters == want_cnt, "scrubbed": counters["scrubbed"],
           "flagged": st["flagged"], "extra_macs": st["macs"] - len(x) * gm.macs(),
           "extra_macs_golden": int(overhead(pm)["extra_macs_abs"]) * len(x),
           "cycles_per_image": cycle_model(gm, array, spec),
           "cycles_equal": st["cycles"] == len(x) * cycle_model(gm, array, spec), "compile_s": round(compile_s, 2),
           "images_per_s": round(len(x) / csim_s, 2), "golden_images_per_s": round(len(x) / golden_s, 2),
           "compile_cached": compile_s == 0.0, "library": str(path)}
    agree, changed, n_f = 0, 0, 0
    if faults:
        xf = x[:fault_images]
        clean = gm.run_int(xf)
        for f in sample_records(gm, pm, faults, seed):
            n_f += 1
            got, cnt = lib.run(xf, f)
            ref, want_cnt = protected_per_image(pm, xf, state_hook(gm, pm, [f]))
            agree += bool(np.array_equal(got, ref) and cnt == want_cnt)
            changed += not np.array_equal(ref, clean)
    rec.update({"faults": n_f, "fault_agreement": agree,
                "faults_changing_logits": changed})
    return rec


def protected_per_image(pm, xq, hook) -> tuple[np.ndarray, dict]:
    """``ProtectedModel`` the way the accelerator runs a batch: image by image, each from the fault-free memory
    (the record replays on every image), the patrol going on from image to image (from line 0 at the call),
    counters summed over the images."""
    ys, total = [], dict.fromkeys(regmap.STATUS_COUNTERS, 0)
    pm.reset()
    for i in range(len(xq)):
        for m in pm.memories():
            m.reset()
        y, rep = pm.run(xq[i:i + 1], hook)
        ys.append(y)
        for k in total:
            total[k] += getattr(rep, k)
    pm.reset()
    return np.concatenate(ys), total

"""Coverage campaigns of the protection schemes: single-bit flips over every site, replayed on every scheme.

One campaign = one golden model, a list of schemes and a fault pool:

* **Primary faults** (the same list replayed on every scheme, so schemes compare on one footing), drawn with
  ``sanitas.faults.sample_faults`` (uniform over element x bit within a class), an equal share per class:
  ``weight`` (int8 weight memory), ``bias`` (int32), ``input`` (the value a layer reads), ``acc`` (int32
  accumulators), ``activation`` (outputs of input/act/add/maxpool/gsum nodes), ``output`` (conv/linear outputs,
  incl. the logits). Each fault hits one test image (drawn with the same seed).
* **Protection-state faults**, per scheme: uniform over the scheme's own state (``ProtectedModel.state_sites``:
  sanity rows/biases/accumulators, checkpoints, checksums, duplicates, TMR replicas, clip bounds), an equal
  share per state site. For these there is nothing to correct: the output must stay bit-exact.

A fault is delivered once, at its first read (``OnceInjector``): data faults are transient (a rollback re-reads
clean data), memory faults (weights, biases, sanity rows, ...) are written back by the protected model's memory
and persist until scrubbed. The unprotected effect of a primary fault comes from ``GoldenModel.run_int`` with
the same injector (one read per site per inference, so once == always there): **masked** (logits identical),
**SDC** (logits differ, same top-1) or **critical** (top-1 changed).

Per scheme: ``detected`` (alarm among effective = non-masked faults), ``corrected`` (bit-exact logits among
effective), ``critical_corrected`` (top-1 restored among critical, with a Wilson 95 % lower bound),
``silent`` (wrong output, no alarm), ``miscorrected`` (alarm, declared fixed, output wrong), ``uncorrectable``
(declared), rollbacks, and **false alarms** on fault-free runs (must be 0).

Resumable (``sanitas protect --resume``): the fault list is a plan (``make_plan``) fixed before any run, and
every finished unit (golden effects, each protected run, false alarms, times, hunt) goes to a journal as it
completes (``sanitas.runfolder.Journal``), so kill + resume gives the uninterrupted results.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import SanitasError
from ..faults import Fault, SiteInfo, apply_fault_value, sample_faults, site_info
from ..faults.executors import golden_hook
from ..faults.stats import wilson
from ..runfolder import atomic_write, crash_point
from .model import ProtectedModel, named_specs
from .overhead import measure_time, overhead

SITE_CLASSES = ("weight", "bias", "input", "acc", "activation", "output")
ACT_OPS = ("input", "act", "add", "maxpool", "gsum")


def class_site(gm, cls: str) -> tuple[str, list | None]:
    """(golden site, layer list or None = the site's default layers) of a primary site class."""
    if cls == "activation":
        return "output", [n.name for n in gm.nodes if n.op in ACT_OPS]
    if cls == "output":
        return "output", [n.name for n in gm.layers()]
    if cls in ("weight", "bias", "input", "acc"):
        return cls, None
    raise SanitasError(f"unknown site class '{cls}' (choose from {', '.join(SITE_CLASSES)})")


def sample_primary(gm, n: int, seed: int = 0, classes=SITE_CLASSES) -> list[tuple[str, Fault]]:
    """``n`` single-bit flips, an equal share per site class (remainder to the first classes)."""
    out = []
    for k, cls in enumerate(classes):
        q = n // len(classes) + (1 if k < n % len(classes) else 0)
        site, layers = class_site(gm, cls)
        out += [(cls, f) for f in sample_faults(gm, q, sites=(site,), seed=seed * 1000 + k, layers=layers)]
    return out


def sample_state(pm: ProtectedModel, n: int, seed: int = 0) -> list[tuple[str, Fault]]:
    """``n`` single-bit flips in the protection's own state, an equal share per state site name."""
    groups: dict = {}
    for site, layer, shape, bits, _signed, _batched in pm.state_sites():
        groups.setdefault(site, []).append((layer, tuple(shape), bits))
    if not groups or n <= 0:
        return []
    rng = np.random.default_rng(seed + 7919)
    out = []
    names = sorted(groups)
    for k, site in enumerate(names):
        q = n // len(names) + (1 if k < n % len(names) else 0)
        ents = groups[site]
        sizes = np.array([int(np.prod(s)) * b if s else b for _, s, b in ents], dtype=np.int64)
        picks = rng.choice(int(sizes.sum()), size=min(q, int(sizes.sum())), replace=False)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        for p in picks:
            g = int(np.searchsorted(starts, p, side="right") - 1)
            layer, shape, bits = ents[g]
            off = int(p - starts[g])
            idx = tuple(int(i) for i in np.unravel_index(off // bits, shape)) if shape else ()
            out.append((f"state:{site}", Fault(site, layer, idx, off % bits)))
    return out


def site_infos(gm, pm: ProtectedModel | None = None):
    """``info(site, layer) -> SiteInfo`` for golden sites (``sanitas.faults``) and the protection's state."""
    state = {}
    if pm is not None:
        for site, layer, shape, bits, signed, batched in pm.state_sites():
            state[(site, layer)] = SiteInfo(tuple(shape), bits, signed, batched)

    def info(site: str, layer: str) -> SiteInfo:
        if (site, layer) in state:
            return state[(site, layer)]
        return site_info(gm, site, layer)
    return info


class OnceInjector:
    """Hook ``(node, site, array) -> array`` that applies each ``Fault`` at its first matching read only."""

    def __init__(self, faults, info):
        self.todo: dict = {}
        self.info = {}
        for f in faults:
            self.todo.setdefault((f.layer, f.site), []).append(f)
            self.info[(f.layer, f.site)] = info(f.site, f.layer)
        self.fired: list = []

    def __call__(self, node, site, arr):
        fs = self.todo.pop((node.name, site), None)
        if not fs:
            return arr
        arr = np.array(arr, dtype=np.int64, copy=True)
        for f in fs:
            inf = self.info[(f.layer, f.site)]
            sl = ((slice(None),) + f.index) if inf.batched else f.index
            if inf.bits >= 64:        # int64 checksum words: flip on the raw 64-bit pattern (bitflip only)
                if f.kind != "bitflip":
                    raise SanitasError(f"only bitflip faults apply to 64-bit site {f.site}")
                v = np.array(arr[sl], dtype=np.int64)
                arr[sl] = (v.view(np.uint64) ^ np.uint64(1 << f.bit)).view(np.int64)
            else:
                arr[sl] = apply_fault_value(arr[sl], f, inf)
            self.fired.append(f)
        return arr


def effect_of(clean: np.ndarray, faulty: np.ndarray) -> str:
    """masked | sdc | critical for one image's logits."""
    if np.array_equal(clean, faulty):
        return "masked"
    return "sdc" if int(np.argmax(clean)) == int(np.argmax(faulty)) else "critical"


def wilson_lower(k: int, n: int) -> float:
    """Wilson score 95 % lower bound of a proportion k/n (0 for n = 0)."""
    return wilson(k, n)[0] if n else 0.0


@dataclass
class Row:
    """One protected run of one fault."""
    scheme: str
    kind: str            # primary | state
    cls: str
    fault: str           # canonical JSON of the Fault
    image: int
    effect: str          # unprotected effect (primary) or "-" (state)
    alarm: bool
    bit_exact: bool
    top1_ok: bool
    uncorrectable: int
    rolled_back: int
    corrected: int
    repaired: int
    fired: bool          # the fault was actually delivered (a lazy sanity row may never be read)
    net: str = ""        # network name (set by ``study``)


def _frac(a, b):
    return a / b if b else None


def _claimed(r: Row) -> bool:
    """The scheme acted and declared the fault handled (corrected / repaired / rolled back, not uncorrectable)."""
    return bool(r.corrected or r.repaired or r.rolled_back) and not r.uncorrectable


def summarize(rows: list, scheme: str) -> dict:
    """Coverage metrics of one scheme from its rows (see the module doc)."""
    pr = [r for r in rows if r.scheme == scheme and r.kind == "primary"]
    eff = [r for r in pr if r.effect != "masked"]
    crit = [r for r in pr if r.effect == "critical"]
    masked = [r for r in pr if r.effect == "masked"]
    st = [r for r in rows if r.scheme == scheme and r.kind == "state"]
    k_crit = sum(r.top1_ok for r in crit)
    out = {
        "faults": len(pr), "effective": len(eff), "critical": len(crit),
        "detected": _frac(sum(r.alarm for r in eff), len(eff)),
        "corrected": _frac(sum(r.bit_exact for r in eff), len(eff)),
        "critical_corrected": _frac(k_crit, len(crit)),
        "critical_corrected_lower95": wilson_lower(k_crit, len(crit)),
        "silent": sum((not r.alarm) and not r.bit_exact for r in eff),
        "miscorrected": sum(_claimed(r) and not r.bit_exact for r in pr),
        "uncorrectable": sum(bool(r.uncorrectable) for r in pr),
        "masked_runs": len(masked), "masked_bit_exact": _frac(sum(r.bit_exact for r in masked), len(masked)),
        "rollbacks": sum(r.rolled_back for r in pr), "runs_with_rollback": sum(r.rolled_back > 0 for r in pr),
        "state_faults": len(st), "state_delivered": sum(r.fired for r in st),
        "state_bit_exact": _frac(sum(r.bit_exact for r in st), len(st)),
        "state_alarm": _frac(sum(r.alarm for r in st), len(st)),
        "state_miscorrected": sum(_claimed(r) and not r.bit_exact for r in st),
        "state_silent": sum((not r.alarm) and not r.bit_exact for r in st),
    }
    per = {}
    for cls in sorted({r.cls for r in pr}):
        e = [r for r in eff if r.cls == cls]
        c = [r for r in crit if r.cls == cls]
        per[cls] = {"faults": sum(r.cls == cls for r in pr), "effective": len(e), "critical": len(c),
                    "detected": _frac(sum(r.alarm for r in e), len(e)),
                    "corrected": _frac(sum(r.bit_exact for r in e), len(e)),
                    "critical_corrected": _frac(sum(r.top1_ok for r in c), len(c))}
    out["per_class"] = per
    return out


def false_alarms(pm: ProtectedModel, gm, xq: np.ndarray, clean: np.ndarray) -> dict:
    """Fault-free runs image by image: alarms raised (must be 0) and outputs that differ from golden."""
    alarms = wrong = 0
    for i in range(len(xq)):
        pm.reset()
        y, rep = pm.run(xq[i:i + 1])
        alarms += bool(rep.alarm)
        wrong += not np.array_equal(y[0], clean[i])
    return {"clean_runs": len(xq), "false_alarms": alarms, "clean_wrong": wrong}


def make_plan(gm, n_images: int, schemes, n_faults: int = 600, seed: int = 0, n_state: int | None = None,
              calib=None, masked_fraction: float = 0.25, classes=SITE_CLASSES) -> dict:
    """The fault list of a campaign (JSON-able, reproducible from its arguments): what ``run_campaign`` runs.

    {"primary": [[cls, fault JSON, image, run even if masked]], "state": {scheme: [[cls, fault JSON, image]]}}."""
    rng = np.random.default_rng(seed)
    faults = sample_primary(gm, n_faults, seed, classes)
    images = rng.integers(0, n_images, size=len(faults))
    run_masked = rng.random(len(faults)) < masked_fraction
    n_state = n_faults // 6 if n_state is None else n_state
    state = {}
    for name, spec in named_specs(schemes):
        st = sample_state(ProtectedModel(gm, spec, calib=calib), n_state, seed)
        st_images = rng.integers(0, n_images, size=len(st))
        state[name] = [[cls, f.to_json(), int(i)] for (cls, f), i in zip(st, st_images)]
    return {"primary": [[cls, f.to_json(), int(i), bool(m)] for (cls, f), i, m in zip(faults, images, run_masked)],
            "state": state}


def run_campaign(gm, xq: np.ndarray, schemes, n_faults: int = 600, seed: int = 0, n_state: int | None = None,
                 n_clean: int = 50, calib=None, masked_fraction: float = 0.25, progress: bool = True,
                 classes=SITE_CLASSES, plan: dict | None = None, journal=None) -> dict:
    """Campaign on golden model ``gm`` with int8 test images ``xq`` (N, C, H, W) for scheme specs ``schemes``
    (a list of specs, or {name: spec} — a spec may be a per-layer map).

    ``n_faults`` primary faults (equal share per class) are replayed on every scheme — all effective ones and
    a ``masked_fraction`` sample of the masked ones; ``n_state`` (default n_faults // 6) protection-state
    faults per scheme; ``n_clean`` fault-free images for false alarms; ``calib``: int8 images for clip bounds.
    ``plan``: the fault list (``make_plan`` of the same arguments, computed when None). ``journal``
    (``runfolder.Journal`` or a scope of it): every finished unit (golden effects, one protected run, false
    alarms) is recorded there as it completes and taken from there when present, so a killed campaign resumes.
    Returns {"schemes": {name: metrics}, "rows": [Row], "primary": {...}, "seconds": ...}."""
    from tqdm.auto import tqdm
    t0 = time.time()
    xq = np.asarray(xq, dtype=np.int64)
    clean = gm.run_int(xq)
    if plan is None:
        plan = make_plan(gm, len(xq), schemes, n_faults, seed, n_state, calib, masked_fraction, classes)
    faults = [(cls, Fault.from_json(f)) for cls, f, _, _ in plan["primary"]]
    images = [i for _, _, i, _ in plan["primary"]]
    run_masked = [m for _, _, _, m in plan["primary"]]
    effects = journal.get("golden") if journal is not None else None
    if effects is None:
        effects = []
        for (_cls, f), i in zip(tqdm(faults, desc="golden", disable=not progress, leave=False), images):
            y = gm.run_int(xq[i:i + 1], hook=golden_hook(gm, [f]))
            effects.append(effect_of(clean[i], y[0]))
        if journal is not None:
            journal.put("golden", effects)
    rows: list[Row] = []
    result = {"schemes": {}, "false_alarms": {}}
    cnt = {e: effects.count(e) for e in ("masked", "sdc", "critical")}
    result["primary"] = {"faults": len(faults), **cnt,
                         "per_class": {c: {e: sum(1 for (cc, _), ee in zip(faults, effects) if cc == c and ee == e)
                                           for e in ("masked", "sdc", "critical")} for c in classes}}
    primary_todo = [("primary", cls, f, int(i), e) for (cls, f), i, e, m in zip(faults, images, effects, run_masked)
                    if e != "masked" or m]
    specs = named_specs(schemes)
    total = sum(len(primary_todo) + len(plan["state"][name]) for name, _ in specs)
    n_done = 0
    for name, spec in specs:
        pm = ProtectedModel(gm, spec, calib=calib)
        pinfo = site_infos(gm, pm)
        todo = primary_todo + [("state", cls, Fault.from_json(f), int(i), "-") for cls, f, i in plan["state"][name]]
        for q, (kind, cls, f, i, e) in enumerate(tqdm(todo, desc=name, disable=not progress, leave=False)):
            key = f"{name}\trow\t{q}"
            d = journal.get(key) if journal is not None else None
            n_done += 1
            if d is not None:
                rows.append(Row(**d))
                continue
            pm.reset()
            inj = OnceInjector([f], pinfo)
            y, rep = pm.run(xq[i:i + 1], hook=inj)
            rows.append(Row(name, kind, cls, f.to_json(), i, e, bool(rep.alarm), bool(np.array_equal(y[0], clean[i])),
                            int(np.argmax(y[0])) == int(np.argmax(clean[i])), rep.uncorrectable, rep.rolled_back,
                            rep.corrected, rep.repaired, bool(inj.fired)))
            if journal is not None:
                journal.put(key, asdict(rows[-1]))
                if n_done == 1:
                    crash_point("first_chunk")
                if n_done == max(2, total // 2):
                    crash_point("mid")
        fa = journal.get(f"{name}\tfalse_alarms") if journal is not None else None
        if fa is None:
            pm.reset()
            fa = false_alarms(pm, gm, xq[:n_clean], clean[:n_clean])
            if journal is not None:
                journal.put(f"{name}\tfalse_alarms", fa)
        result["false_alarms"][name] = fa
        result["schemes"][name] = {**summarize(rows, name), **fa}
    result["rows"] = rows
    result["seconds"] = time.time() - t0
    return result


def critical_hunt(gm, xq: np.ndarray, spec, n_critical: int = 1000, seed: int = 0, screen_images: int = 8,
                  max_faults: int = 200_000, progress: bool = True, name: str | None = None) -> dict:
    """Fraction of critical single-bit faults whose top-1 a scheme restores, on a sample large enough to bound it.

    Critical faults are a few % of all faults, so a uniform campaign sees too few of them to bound a 99.9 %
    rate (a Wilson lower bound >= 99.9 % needs >= 3840 critical experiments without a failure). This screens
    primary faults (``sample_primary``, same classes and shares) on ``screen_images`` test images at once —
    the golden hook applies a fault to every image of a batch — keeps every (fault, image) experiment whose
    top-1 changed until ``n_critical`` are found, and replays each on the protected model (batch 1).
    Critical experiments are therefore uniform over critical (fault, image) pairs of the primary pool."""
    from tqdm.auto import tqdm
    t0 = time.time()
    xq = np.asarray(xq, dtype=np.int64)
    rng = np.random.default_rng(seed + 104729)
    k = min(screen_images, len(xq))
    pm = ProtectedModel(gm, spec)
    info = site_infos(gm, pm)
    found, screened, rnd = [], 0, 0
    bar = tqdm(total=n_critical, desc=f"hunt {name or spec}", disable=not progress, leave=False)
    while len(found) < n_critical and screened < max_faults:
        imgs = rng.choice(len(xq), size=k, replace=False)
        clean = gm.run_int(xq[imgs])
        pool = sample_primary(gm, 600, seed=seed * 7919 + 31 * rnd + 1)
        for q in rng.permutation(len(pool)):               # classes interleaved: an early stop stays unbiased
            cls, f = pool[q]
            screened += 1
            y = gm.run_int(xq[imgs], hook=golden_hook(gm, [f]))
            for j in np.nonzero(y.argmax(1) != clean.argmax(1))[0]:
                if len(found) < n_critical:
                    found.append((cls, f, int(imgs[j])))
                    bar.update(1)
            if len(found) >= n_critical or screened >= max_faults:
                break
        rnd += 1
    bar.close()
    restored = exact = 0
    failures = []
    per = {}
    ref = gm.run_int(xq)
    for cls, f, i in found:
        pm.reset()
        y, rep = pm.run(xq[i:i + 1], hook=OnceInjector([f], info))
        ok = int(np.argmax(y[0])) == int(np.argmax(ref[i]))
        restored += ok
        exact += bool(np.array_equal(y[0], ref[i]))
        d = per.setdefault(cls, [0, 0])
        d[0] += 1
        d[1] += ok
        if not ok:
            failures.append({"fault": f.to_json(), "image": i, "events": [e[:3] for e in rep.events][:8]})
    n = len(found)
    lo, hi = wilson(restored, n) if n else (0.0, 1.0)
    return {"scheme": name or (spec if isinstance(spec, str) else "custom"), "critical": n,
            "screened_faults": screened, "screened_experiments": screened * k, "restored": restored,
            "critical_corrected": restored / n if n else None, "bit_exact": exact / n if n else None,
            "lower95": lo, "upper95": hi, "per_class": {c: {"critical": a, "restored": b} for c, (a, b) in per.items()},
            "failures": failures[:20], "seconds": time.time() - t0}


def study(nets: dict, schemes, n_faults: int = 600, n_state: int | None = None, n_clean: int = 50,
          seed: int = 0, timing_batch: int = 128, progress: bool = True, hunt: int = 0,
          hunt_scheme: str | None = None, plans: dict | None = None, journal=None) -> tuple[dict, list]:
    """Coverage (``run_campaign``), analytic overhead and measured time of every scheme on every network.

    ``nets``: {name: (gm, xq_test, xq_calib, labels or None)} with int8 test / calibration images.
    Returns (results, rows):
    results["networks"][net] = {"macs", "accuracy", "primary", "coverage": {scheme: metrics},
    "overhead": {scheme: totals (+ per-layer rows)}, "time": {scheme: {seconds, ratio, ratio_golden}},
    "hunt": ``critical_hunt`` of ``hunt_scheme`` (default: the first scheme) when ``hunt`` > 0}.
    ``plans``: {net: ``make_plan``} (computed when None); ``journal``: see ``run_campaign`` (the measured times
    and the hunt are journaled too, so a resumed study reports the first measurement)."""
    specs = named_specs(schemes)
    res = {"schemes": [n for n, _ in specs], "networks": {}}
    rows = []
    for net, (gm, xq, cal, labels) in nets.items():
        t0 = time.time()
        clean = gm.run_int(xq)
        entry = {"macs": gm.macs(), "nodes": len(gm.nodes),
                 "accuracy": float((clean.argmax(1) == np.asarray(labels)).mean()) if labels is not None else None}
        j = journal.scope(f"{net}\t") if journal is not None else None
        if n_faults:
            c = run_campaign(gm, xq, dict(specs), n_faults, seed, n_state, n_clean, cal, progress=progress,
                             plan=(plans or {}).get(net), journal=j)
            entry["primary"] = c["primary"]
            entry["coverage"] = c["schemes"]
            for r in c["rows"]:
                r.net = net
            rows += c["rows"]
        entry["overhead"] = {n: overhead(ProtectedModel(gm, s, calib=cal)) for n, s in specs}
        entry["time"] = _journaled(j, "time", measure_time, gm, dict(specs), xq[:timing_batch], calib=cal)
        if hunt:
            hn = hunt_scheme or specs[0][0]
            entry["hunt"] = _journaled(j, "hunt", critical_hunt, gm, xq, dict(specs)[hn], hunt, seed,
                                       progress=progress, name=hn)
        entry["seconds"] = time.time() - t0
        res["networks"][net] = entry
    return res, rows


def _journaled(journal, key: str, fn, *args, **kw):
    """``journal[key]``, computed as ``fn(*args, **kw)`` (and recorded) when absent."""
    v = journal.get(key) if journal is not None else None
    if v is None:
        v = fn(*args, **kw)
        if journal is not None:
            journal.put(key, v)
    return v


def rows_to_jsonl(rows, path) -> None:
    atomic_write(path, "".join(json.dumps(asdict(r)) + "\n" for r in rows))


def save_study(out, res: dict, rows, main: str, networks, schemes) -> Path:
    """Write a study folder (faults.jsonl, protect.json, manifest.json) as ``sanitas report`` reads it.

    Each file is written atomically and in that order, the manifest (what marks the folder complete) last: a
    kill during the final write leaves the previous files or none, never a cut one beside a finished summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows_to_jsonl(rows, out / "faults.jsonl")
    crash_point("final_write")
    atomic_write(out / "protect.json", json.dumps(res, indent=1, default=str))
    atomic_write(out / "manifest.json", json.dumps({"kind": "protect", "version": 1, "main": main,
                                                    "networks": list(networks), "schemes": list(schemes),
                                                    "results": "protect.json", "rows": "faults.jsonl"}, indent=1))
    return out


__all__ = [
    "SITE_CLASSES",
    "OnceInjector",
    "Row",
    "critical_hunt",
    "effect_of",
    "false_alarms",
    "make_plan",
    "rows_to_jsonl",
    "run_campaign",
    "sample_primary",
    "sample_state",
    "save_study",
    "site_infos",
    "study",
    "summarize",
    "wilson_lower",
]

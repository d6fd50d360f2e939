"""Automatic per-layer protection planner: from a fault campaign and the overhead model, the cheapest per-layer
scheme map (``ProtectedModel``'s ``{node: spec}``) that corrects the critical single faults and leaves none silent.

Inputs. **Experiments**: (fault, test image) pairs whose unprotected effect is known — *critical* (top-1 changed)
and *SDC* (logits changed, same top-1). They come from a ``sanitas inject`` campaign store
(``experiments_from_campaign``: uniform samples of its critical and SDC rows) or from a golden screen
(``screen_experiments``). **Costs**: ``overhead.layer_costs`` gives every node's extra MACs, adds and elementwise
ops under each candidate scheme; a node's cost does not depend on its neighbours' schemes, so the cost of a map is
the sum of its nodes' costs, in MAC-equivalents ``macs + add_weight * adds + op_weight * ops``.

An experiment is **ok** under a map when the protected output is bit-exact, or the protection raised an alarm and
the top-1 class is the fault-free one (a flagged, corrected decision; never silent). The target is every
experiment ok: the point estimate of critical faults corrected is then 100 % of the sample (>= 99.9 %) and no
SDC is silent.

Search method (feasible start, greedy repair, reverse delete; every decision measured by replay):

1. **start**: the cheapest *uniform* candidate map under which every experiment is ok (replays stop at the first
   failure, so the infeasible ones cost little); when none is, ``none`` everywhere;
2. **greedy repair** of the experiments still failing: every move (one node to another candidate scheme; with
   DMR also the node's consumers, which must verify its checkpoint to catch a fault in its output) is scored by
   the failing experiments it fixes per added cost — estimated on a uniform sample of ``probe`` of the failing
   experiments whose fault lies in the move's neighbourhood (the moved nodes, their producers and consumers: no
   other protection can see that fault); the best move is applied and its whole neighbourhood replayed, repeat;
3. **reverse delete**: nodes in order of falling cost try each cheaper candidate; a downgrade is kept when every
   experiment of its neighbourhood stays ok; passes repeat until one changes nothing (a locally minimal map).
   Only nodes the campaign injected at least ``min_support`` distinct faults into are tried: where it saw
   (almost) nothing, no failure is no evidence, and the protection stays;
4. a full replay of all experiments; failures (a move that helped one fault but broke another) send the search
   back to 2 (at most ``rounds`` times).

``verify_plan`` then checks the chosen map on faults it never saw: a critical hunt (``campaign.critical_hunt``,
a fresh seed, with Wilson bounds), a coverage campaign including the protection's own state and false alarms
(``campaign.run_campaign``), and a short soak with accumulating memory upsets and transients (``soak.Soak``):
the plan meets the target when critical corrected >= 99.9 %, and silent = 0 in both the campaign and the soak.
``plan_and_verify`` feeds the faults the verification found unhandled back as experiments and searches again
(counterexample-guided refinement, ``refine`` rounds); a soak failure with no replayable fault makes every
downgrade need 4x the evidence instead.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..config import PlanConfig
from ..errors import SanitasError
from ..faults import Fault
from ..faults.executors import golden_hook
from ..models.ops import spec as op_spec
from .campaign import OnceInjector, critical_hunt, effect_of, run_campaign, sample_primary, site_infos
from .model import ProtectedModel
from .overhead import layer_costs, overhead

WEIGHTED_CANDIDATES = ("none", "sanity", "dmr", "sanity+dmr", "tmr")   # conv / linear nodes
ELEMENTWISE_CANDIDATES = ("none", "dmr", "tmr")                        # every other node (sanity has no guard there)
TARGET_CRITICAL = 0.999      # critical single faults corrected (issue 16)


class Experiment(NamedTuple):
    """One (fault, image) pair and its unprotected effect."""
    fault: Fault
    image: int        # index into the int8 images the planner is given
    effect: str       # critical | sdc


def candidates(gm, node) -> tuple[str, ...]:
    """The candidate scheme strings of one node."""
    return WEIGHTED_CANDIDATES if op_spec(node.op).has_weights else ELEMENTWISE_CANDIDATES


def _uniform(gm, scheme: str) -> dict:
    return {"default": "none", **{n.name: scheme for n in gm.nodes}}


def cost_table(gm, add_weight: float = 0.25, op_weight: float = 0.25) -> dict[tuple[str, str], float]:
    """(node, scheme) -> extra MAC-equivalents per image of that node under that scheme (``layer_costs``)."""
    out = {}
    for s in sorted(set(WEIGHTED_CANDIDATES) | set(ELEMENTWISE_CANDIDATES)):
        for r in layer_costs(ProtectedModel(gm, _uniform(gm, s))):
            out[(r["node"], s)] = r["extra_macs"] + add_weight * r["extra_adds"] + op_weight * r["extra_ops"]
    return out


# ------------------------------------------------------------------------------------------------ experiments
def experiments_from_campaign(folder, n_critical: int, n_sdc: int, seed: int = 0) -> list[Experiment]:
    """Critical and SDC experiments sampled uniformly from a ``sanitas inject`` campaign (single faults); the
    image index is the campaign's input id (the first K test images)."""
    from ..faults.store import Store
    db = Path(folder) / "results.sqlite"
    if not db.is_file():
        raise SanitasError(f"{folder}: no campaign database (results.sqlite)")
    with Store(db, readonly=True) as st:
        rows = st.con.execute("SELECT f.record, r.input_id, r.outcome FROM results r JOIN faults f USING(fault_id) "
                              "WHERE r.outcome > 0 ORDER BY f.seq, r.input_id").fetchall()
    rng = np.random.default_rng(seed)
    out = []
    for outcome, n, eff in ((2, n_critical, "critical"), (1, n_sdc, "sdc")):
        sel = [r for r in rows if r[2] == outcome]
        rec = json.loads(sel[0][0]) if sel else {}
        if sel and "site" not in rec:
            raise SanitasError(f"{folder}: not a single-fault campaign (rate trials cannot be planned on)")
        for j in sorted(rng.choice(len(sel), size=min(n, len(sel)), replace=False)) if sel else []:
            out.append(Experiment(Fault.from_json(sel[j][0]), int(sel[j][1]), eff))
    return out


def campaign_support(folder) -> dict[str, int]:
    """Distinct faults a campaign injected per node (every outcome): the evidence behind a downgrade."""
    from ..faults.store import Store
    with Store(Path(folder) / "results.sqlite", readonly=True) as st:
        return {lay: int(n) for lay, n in st.con.execute("SELECT layer, COUNT(*) FROM faults GROUP BY layer")}


def screen_experiments(gm, xq, n_faults: int, seed: int = 0, n_critical: int | None = None,
                       n_sdc: int | None = None) -> list[Experiment]:
    """Critical and SDC experiments of ``n_faults`` primary single-bit faults (``campaign.sample_primary``), each
    run on every image of ``xq`` (golden)."""
    xq = np.asarray(xq, dtype=np.int64)
    clean = gm.run_int(xq)
    crit, sdc = [], []
    for _cls, f in sample_primary(gm, n_faults, seed):
        y = gm.run_int(xq, hook=golden_hook(gm, [f]))
        for i in range(len(xq)):
            e = effect_of(clean[i], y[i])
            if e != "masked":
                (crit if e == "critical" else sdc).append(Experiment(f, i, e))
    rng = np.random.default_rng(seed)          # uniform over the experiments (the pool is ordered by class)
    pick = lambda xs, n: [xs[j] for j in sorted(rng.permutation(len(xs))[:len(xs) if n is None else n])]  # noqa: E731
    return pick(crit, n_critical) + pick(sdc, n_sdc)


# ------------------------------------------------------------------------------------------------ the search
class _Replayer:
    """Replays experiments on maps, one ``ProtectedModel`` per distinct map (cached)."""

    def __init__(self, gm, xq):
        self.gm, self.xq = gm, np.asarray(xq, dtype=np.int64)
        self.clean = gm.run_int(self.xq)
        self._pms: dict = {}
        self.runs = 0

    def model(self, m: dict) -> ProtectedModel:
        key = tuple(sorted(m.items()))
        if key not in self._pms:
            if len(self._pms) > 64:
                self._pms.clear()
            pm = ProtectedModel(self.gm, {"default": "none", **m})
            self._pms[key] = (pm, site_infos(self.gm, pm))
        return self._pms[key]

    def ok(self, m: dict, exps, stop_at_failure: bool = False) -> list[bool]:
        """Per experiment: ok under map ``m`` (module doc); ``stop_at_failure``: return at the first failure."""
        pm, info = self.model(m)
        out = []
        for e in exps:
            pm.reset()
            y, rep = pm.run(self.xq[e.image:e.image + 1], hook=OnceInjector([e.fault], info))
            self.runs += 1
            exact = bool(np.array_equal(y[0], self.clean[e.image]))
            top1 = int(np.argmax(y[0])) == int(np.argmax(self.clean[e.image]))
            out.append(exact or (bool(rep.alarm) and top1))
            if stop_at_failure and not out[-1]:
                break
        return out


@dataclass
class PlanResult:
    """The chosen map, its cost and how the search got there."""
    scheme_map: dict                     # node -> scheme string (every node)
    cost: float                          # extra MAC-equivalents per image (the planner's cost)
    reached: bool                        # every experiment ok
    experiments: dict                    # {"critical": n, "sdc": n, "failing": n}
    steps: list = field(default_factory=list)    # [{"round", "phase", "move", "fixed", "cost"}]
    uniform: dict = field(default_factory=dict)  # scheme -> cost of the uniform map, for comparison
    runs: int = 0                        # protected inferences the search replayed
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"scheme_map": self.scheme_map, "cost": self.cost, "reached": self.reached,
                "experiments": self.experiments, "steps": self.steps, "uniform": self.uniform, "runs": self.runs,
                "seconds": round(self.seconds, 2)}


class Planner:
    """The search of the module doc on golden model ``gm``, int8 images ``xq`` and ``experiments``."""

    def __init__(self, gm, xq, experiments, cfg: PlanConfig | None = None, support: dict | None = None):
        if not experiments:
            raise SanitasError("protection planner: the campaign has no critical or SDC experiment to plan on")
        cfg = cfg or PlanConfig()
        self.gm, self.cfg, self.exps = gm, cfg, list(experiments)
        self.rep = _Replayer(gm, xq)
        self.costs = cost_table(gm, cfg.add_weight, cfg.op_weight)
        self.cands = {n.name: candidates(gm, n) for n in gm.nodes}
        self.consumers: dict[str, list[str]] = {n.name: [] for n in gm.nodes}
        for n in gm.nodes:
            for i in n.inputs:
                self.consumers[i].append(n.name)
        self.by_layer: dict[str, list[int]] = {}
        for k, e in enumerate(self.exps):
            self.by_layer.setdefault(e.fault.layer, []).append(k)
        if support is None:                      # faults behind the experiments (a screen: every fault)
            support = {lay: len({self.exps[k].fault for k in ks}) for lay, ks in self.by_layer.items()}
        self.support = support

    def cost(self, m: dict) -> float:
        return sum(self.costs[(n, s)] for n, s in m.items())

    def _hood(self, nodes) -> list[int]:
        """Experiments whose fault lies on one of ``nodes``, their producers or their consumers."""
        near = set()
        for n in nodes:
            near |= {n, *self.gm.by_name[n].inputs, *self.consumers[n]}
        return sorted(k for lay in near for k in self.by_layer.get(lay, ()))

    def _moves(self, m: dict, failing_layers: set):
        """Candidate changes {node: scheme} near the failing faults."""
        near = set()
        for lay in failing_layers:
            near |= {lay, *self.gm.by_name[lay].inputs, *self.consumers[lay]}
        for n in sorted(near):
            for s in self.cands[n]:
                if s == m[n]:
                    continue
                yield {n: s}
                if "dmr" in s:
                    mv = {n: s}
                    for c in self.consumers[n]:
                        cur = m[c]
                        if "dmr" not in cur and cur != "tmr":
                            mv[c] = "dmr" if cur == "none" else f"{cur}+dmr"
                    if len(mv) > 1:
                        yield mv

    def _greedy(self, m: dict, ok: list[bool], rnd: int, steps: list) -> None:
        rng = np.random.default_rng([self.cfg.seed, rnd])
        while not all(ok):
            fail = [k for k, v in enumerate(ok) if not v]
            best = None
            for mv in self._moves(m, {self.exps[k].fault.layer for k in fail}):
                new = {**m, **mv}
                dc = self.cost(new) - self.cost(m)
                hood = set(self._hood(mv))
                todo = [k for k in fail if k in hood]
                if not todo:
                    continue
                probe = [todo[j] for j in sorted(rng.permutation(len(todo))[:self.cfg.probe])]
                fixed = sum(self.rep.ok(new, [self.exps[k] for k in probe])) * len(todo) / len(probe)
                if not fixed:
                    continue
                score = fixed / max(dc, 1e-9)                # a free move that fixes is taken first
                if best is None or score > best[0]:
                    best = (score, mv, fixed)
            if best is None:
                return                                       # no move fixes a failing experiment
            _, mv, _ = best
            m.update(mv)
            hood = self._hood(mv)                            # the fixed ones, and any the move broke
            before = sum(ok)
            for k, v in zip(hood, self.rep.ok(m, [self.exps[k] for k in hood])):
                ok[k] = v
            steps.append({"round": rnd, "phase": "greedy", "move": mv, "fixed": sum(ok) - before,
                          "failing": len(ok) - sum(ok), "cost": self.cost(m)})

    def _reverse_delete(self, m: dict, ok: list[bool], rnd: int, steps: list) -> None:
        """Passes until none changes anything (a downgrade can make an earlier-tried one possible)."""
        changed = True
        while changed:
            changed = False
            for n in sorted(m, key=lambda n: -self.costs[(n, m[n])]):
                if self.support.get(n, 0) < self.cfg.min_support:
                    continue                                 # too few faults seen there to drop its protection
                for s in sorted(self.cands[n], key=lambda s: self.costs[(n, s)]):
                    if self.costs[(n, s)] >= self.costs[(n, m[n])]:
                        break
                    new = {**m, n: s}
                    hood = self._hood([n])
                    if all(self.rep.ok(new, [self.exps[k] for k in hood], stop_at_failure=True)):
                        steps.append({"round": rnd, "phase": "reverse-delete", "move": {n: s}, "from": m[n],
                                      "cost": self.cost(new)})
                        m[n] = s
                        changed = True
                        break

    def _uniform(self, scheme: str) -> dict:
        """The uniform map of ``scheme`` (on nodes without a guard for it: its DMR part, else none)."""
        return {n: (scheme if scheme in c else ("dmr" if "dmr" in scheme else "none")) for n, c in self.cands.items()}

    def plan(self) -> PlanResult:
        t0 = time.time()
        steps: list = []
        uniform = {s: self._uniform(s) for s in WEIGHTED_CANDIDATES}
        # 1. the cheapest uniform map that passes every experiment (a failure stops its replay early)
        m = None
        for s in sorted(uniform, key=lambda s: self.cost(uniform[s])):
            r = self.rep.ok(uniform[s], self.exps, stop_at_failure=True)
            if len(r) == len(self.exps) and all(r):
                m = dict(uniform[s])
                steps.append({"round": 0, "phase": "start", "move": {"*": s}, "cost": self.cost(m)})
                break
        if m is None:                                        # none does: greedy from nothing
            m = {n: "none" for n in self.cands}
        ok = self.rep.ok(m, self.exps)
        for rnd in range(self.cfg.rounds):
            self._greedy(m, ok, rnd, steps)                  # 2. repair what fails
            if not all(ok):
                break                                        # unreachable with these candidates
            self._reverse_delete(m, ok, rnd, steps)          # 3. drop what is not needed
            ok = self.rep.ok(m, self.exps)                   # 4. full replay: nothing broke elsewhere
            if all(ok):
                break
        n_fail = int(len(ok) - sum(ok))
        return PlanResult(dict(m), self.cost(m), n_fail == 0,
                          {"critical": sum(e.effect == "critical" for e in self.exps),
                           "sdc": sum(e.effect == "sdc" for e in self.exps), "failing": n_fail},
                          steps, {s: self.cost(u) for s, u in uniform.items()}, self.rep.runs, time.time() - t0)


def plan_protection(gm, xq, experiments, cfg: PlanConfig | None = None, support: dict | None = None) -> PlanResult:
    """The cheapest per-layer scheme map for ``experiments`` (see the module doc); ``support``: faults injected
    per node by the campaign (``campaign_support``)."""
    return Planner(gm, xq, experiments, cfg, support).plan()


# ------------------------------------------------------------------------------------------------ verification
def verify_plan(gm, xq, scheme_map: dict, cfg: PlanConfig | None = None, compare=("sanity+dmr",),
                progress: bool = False) -> dict:
    """Check ``scheme_map`` on faults the planner never saw (module doc): held-out critical hunt, a coverage
    campaign (own-state faults, false alarms) of the plan beside the uniform ``compare`` schemes, a short soak;
    and the analytic overhead of each. ``met`` is the target: critical corrected >= 99.9 %, silent 0 in the
    campaign and in the soak, no false alarm."""
    from .soak import Soak
    cfg = cfg or PlanConfig()
    xq = np.asarray(xq, dtype=np.int64)
    spec = {"default": "none", **scheme_map}
    seed = cfg.seed + 1                                      # fresh faults: not the planner's
    hunt = critical_hunt(gm, xq, spec, n_critical=cfg.verify_critical, seed=seed, progress=progress, name="plan")
    schemes = {"plan": spec, **{s: s for s in compare}}
    camp = run_campaign(gm, xq, schemes, n_faults=cfg.verify_faults, seed=seed, n_clean=min(50, len(xq)),
                        progress=progress)
    soak = Soak(gm, xq, spec, seu=cfg.soak_seu, transients=cfg.soak_transients, seed=seed)
    counts = soak.run(cfg.soak, progress=progress)
    cov = camp["schemes"]
    over = {k: _over(overhead(ProtectedModel(gm, s))) for k, s in schemes.items()}
    p = cov["plan"]
    met = bool((hunt["critical_corrected"] or 0) >= TARGET_CRITICAL and p["silent"] == 0
               and p["state_silent"] == 0 and p["false_alarms"] == 0 and counts["silent"] == 0)
    bad = [Experiment(Fault.from_json(f["fault"]), int(f["image"]), "critical") for f in hunt["failures"]]
    bad += [Experiment(Fault.from_json(r.fault), int(r.image), r.effect) for r in camp["rows"]
            if r.scheme == "plan" and r.kind == "primary" and r.effect != "masked"
            and not (r.bit_exact or (r.alarm and r.top1_ok))]
    return {"met": met, "hunt": {k: v for k, v in hunt.items() if k != "failures"},
            "hunt_failures": hunt["failures"][:5], "coverage": cov, "primary": camp["primary"], "soak": counts,
            "overhead": over, "counterexamples": bad}


def plan_and_verify(gm, xq, experiments, cfg: PlanConfig | None = None, support: dict | None = None,
                    refine: int = 2, progress: bool = False) -> tuple[PlanResult, dict]:
    """``plan_protection`` then ``verify_plan``, refined while the target is not met (at most ``refine`` times):
    the faults the verification found unhandled (held-out critical faults not restored, campaign faults silent)
    are added to the experiments (counterexample-guided refinement); when it found none — the soak's silent
    errors come from accumulated upsets, not one replayable fault — every downgrade needs 4x the evidence
    (``min_support``) in the next search."""
    cfg = cfg or PlanConfig()
    exps = list(experiments)
    for k in range(refine + 1):
        res = plan_protection(gm, xq, exps, cfg, support)
        ver = verify_plan(gm, xq, res.scheme_map, cfg, progress=progress)
        bad = ver.pop("counterexamples")
        ver["refinements"] = k
        ver["min_support"] = cfg.min_support
        if ver["met"] or k == refine:
            return res, ver
        if bad:
            seen = set(exps)
            exps += [e for e in bad if e not in seen]
        else:
            cfg = dataclasses.replace(cfg, min_support=4 * cfg.min_support)
    raise AssertionError("unreachable")


def _over(o: dict) -> dict:
    return {k: o[k] for k in ("macs", "extra_macs", "extra_macs_abs", "extra_adds", "extra_ops", "extra_mem",
                              "extra_mem_bits", "fault_path_macs")}


__all__ = ["ELEMENTWISE_CANDIDATES", "Experiment", "PlanConfig", "PlanResult", "Planner", "TARGET_CRITICAL",
           "WEIGHTED_CANDIDATES", "candidates", "cost_table", "campaign_support", "experiments_from_campaign",
           "plan_and_verify", "plan_protection",
           "screen_experiments", "verify_plan"]

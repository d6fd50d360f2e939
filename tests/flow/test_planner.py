"""The protection planner (``protect/planner.py``) on a trained LeNet-5: its cost table is the overhead model's,
the plan it returns handles every experiment it was given (replayed afresh), costs no more than any uniform map
that does, and is locally minimal — every cheaper scheme on a node it was allowed to downgrade breaks an
experiment. Bad settings and an empty campaign are one-line errors."""
from __future__ import annotations

import numpy as np
import pytest

from sanitas.config import Config, PlanConfig
from sanitas.data import load_dataset
from sanitas.errors import SanitasError
from sanitas.golden import export_golden
from sanitas.models import build
from sanitas.protect import ProtectedModel
from sanitas.protect.campaign import OnceInjector, site_infos
from sanitas.protect.overhead import overhead
from sanitas.protect.planner import (
    WEIGHTED_CANDIDATES,
    Planner,
    candidates,
    cost_table,
    plan_protection,
    screen_experiments,
)
from sanitas.train import train_model


@pytest.fixture(scope="module")
def net():
    splits = load_dataset("digits")
    model = build("lenet5", splits.in_shape, splits.num_classes, seed=0)
    train_model(model, splits, epochs=2, lr=5e-3, seed=0, progress=False)
    gm = export_golden(model)
    xq = gm.quantize_input(splits.test.tensors[0].numpy()[:8]).astype(np.int64)
    exps = screen_experiments(gm, xq, 120, seed=0, n_critical=24, n_sdc=8)
    return gm, xq, exps


def _ok(gm, xq, m, e) -> bool:
    pm = ProtectedModel(gm, {"default": "none", **m})
    y, rep = pm.run(xq[e.image:e.image + 1], hook=OnceInjector([e.fault], site_infos(gm, pm)))
    clean = gm.run_int(xq[e.image:e.image + 1])[0]
    return bool(np.array_equal(y[0], clean) or (rep.alarm and y[0].argmax() == clean.argmax()))


def test_cost_table_is_the_overhead_model(net):
    gm, *_ = net
    t = cost_table(gm, add_weight=0.25, op_weight=0.5)
    for s in WEIGHTED_CANDIDATES:
        pm = ProtectedModel(gm, {"default": "none", **{n.name: s for n in gm.nodes}})
        o = overhead(pm)
        adds = o["extra_adds"] - round(pm.patrol.words_per_step())       # the patrol is not a layer's cost
        assert sum(t[(n.name, s)] for n in gm.nodes) == pytest.approx(o["extra_macs_abs"] + 0.25 * adds
                                                                      + 0.5 * o["extra_ops"])
    assert all(t[(n.name, "none")] == 0 for n in gm.nodes)
    assert candidates(gm, gm.by_name["conv1"]) == WEIGHTED_CANDIDATES
    assert candidates(gm, gm.by_name["relu1"]) == ("none", "dmr", "tmr")


def test_plan_handles_every_experiment_and_is_locally_minimal(net):
    gm, xq, exps = net
    assert sum(e.effect == "critical" for e in exps) == 24 and sum(e.effect == "sdc" for e in exps) == 8
    cfg = PlanConfig(min_support=1)
    r = plan_protection(gm, xq, exps, cfg)
    assert r.reached and r.experiments == {"critical": 24, "sdc": 8, "failing": 0}
    assert set(r.scheme_map) == {n.name for n in gm.nodes}
    assert all(_ok(gm, xq, r.scheme_map, e) for e in exps)                # replayed afresh, outside the planner
    pl = Planner(gm, xq, exps, cfg)
    assert r.cost == pytest.approx(pl.cost(r.scheme_map))
    feasible = [s for s in WEIGHTED_CANDIDATES if all(pl.rep.ok(pl._uniform(s), exps))]
    assert feasible and r.cost <= min(pl.cost(pl._uniform(s)) for s in feasible)
    assert r.cost < pl.cost(pl._uniform("sanity+dmr"))                     # cheaper than the uniform default
    tried = 0
    for n, s in r.scheme_map.items():            # local minimality where the experiments give evidence (support)
        if pl.support.get(n, 0) < cfg.min_support:
            continue
        for c in candidates(gm, gm.by_name[n]):
            if pl.costs[(n, c)] < pl.costs[(n, s)]:
                tried += 1
                assert not all(pl.rep.ok({**r.scheme_map, n: c}, exps, stop_at_failure=True)), (n, s, c)
    assert tried >= 5


def test_without_support_nothing_is_dropped(net):
    gm, xq, exps = net
    r = plan_protection(gm, xq, exps, PlanConfig(min_support=10 ** 6))
    start = r.steps[0]
    assert start["phase"] == "start" and not any(s["phase"] == "reverse-delete" for s in r.steps)
    assert set(r.scheme_map.values()) <= {start["move"]["*"], "dmr", "none"}


def test_bad_input_is_one_line(net):
    gm, xq, _ = net
    with pytest.raises(SanitasError, match="^protection planner: the campaign has no critical or SDC experiment "
                                           "to plan on$"):
        Planner(gm, xq, [])
    with pytest.raises(SanitasError, match="^plan: probe must be >= 1, got 0$"):
        PlanConfig(probe=0)
    with pytest.raises(SanitasError, match="plan.*min_support"):
        Config.from_dict({"plan": {"min_support": "many"}})

"""``ProtectedModel`` on zoo networks: bit-exact and quiet fault-free under every scheme; the unprotected executor
replays golden faults exactly; Sanity + DMR corrects any single fault in weights, biases, layer inputs,
accumulators, activations and outputs (DMR rolls input/activation faults back); its own state's faults never
reach the output; persistent weight faults stay repaired; per-layer scheme maps; one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanitas.errors import SanitasError
from sanitas.faults.executors import golden_hook
from sanitas.golden import export_golden
from sanitas.models import build
from sanitas.protect import DMR, ProtectedModel, Sanity, load_scheme_map, parse_scheme
from sanitas.protect.campaign import OnceInjector, sample_primary, sample_state, site_infos
from sanitas.train import load_checkpoint

ALL = ["none", "sanity", "sanity:eager", "sanity+dmr", "sanity:eager+dmr", "dmr", "tmr", "sanity-check", "clip"]


def _random_net(name: str, seed: int = 0):
    """A randomly initialised zoo net with real activation scales (one training-mode pass) and its golden twin."""
    torch.manual_seed(seed)
    m = build(name, (1, 8, 8))
    m.train()
    x = torch.rand(32, 1, 8, 8)
    m(x)
    m.eval()
    gm = export_golden(m)
    return gm, gm.quantize_input(torch.rand(16, 1, 8, 8).numpy())


_PM: dict = {}


def cached_pm(gm, spec) -> ProtectedModel:
    """One protected model per (net, scheme), reset before each use (campaigns do the same)."""
    key = (id(gm), spec)
    if key not in _PM:
        _PM[key] = ProtectedModel(gm, spec)
    pm = _PM[key]
    pm.reset()
    return pm


@pytest.fixture(scope="module")
def nets(lenet5_ckpt, digits):
    model, _ = load_checkpoint(lenet5_ckpt)
    gm = export_golden(model)
    out = {"lenet5": (gm, gm.quantize_input(digits.test.tensors[0].numpy()[:16]))}
    for name in ("mobilenetv2", "resnet20"):
        out[name] = _random_net(name)
    return out


@pytest.mark.parametrize("name", ["lenet5", "mobilenetv2", "resnet20"])
def test_fault_free_bit_exact_and_quiet_under_every_scheme(nets, name):
    gm, xq = nets[name]
    ref = gm.run_int(xq)
    for spec in ALL:
        pm = ProtectedModel(gm, spec, calib=xq)       # clip calibrated on these very images: no gap
        y, rep = pm.run(xq)
        assert np.array_equal(y, ref), spec
        assert not rep.alarm and rep.events == [], (spec, rep.events[:3])


def test_guards_by_layer_type(nets):
    gm, _ = nets["mobilenetv2"]
    d = ProtectedModel(gm, "sanity+dmr").describe()
    assert d["ir1_dw"][2] == "SpatialSanity" and d["ir1_exp"][2] == "SanityLayer"
    assert d["ir1_exp_relu"][2] == "DupGuard" and d["fc"][2] == "SanityLayer"
    assert {v[2] for v in ProtectedModel(gm, "tmr").describe().values()} == {"TMRGuard"}


def test_unprotected_executor_replays_golden_faults(nets):
    gm, xq = nets["resnet20"]
    pm = ProtectedModel(gm, "none")
    info = site_infos(gm)
    for cls, f in sample_primary(gm, 60, seed=3):
        i = hash(f.id) % len(xq)
        a = gm.run_int(xq[i:i + 1], hook=golden_hook(gm, [f]))
        pm.reset()
        b, rep = pm.run(xq[i:i + 1], hook=OnceInjector([f], info))
        assert np.array_equal(a, b), (cls, str(f))
        assert not rep.alarm


@pytest.mark.parametrize("name", ["lenet5", "mobilenetv2", "resnet20"])
@given(seed=st.integers(0, 10 ** 6), cls=st.sampled_from(["weight", "bias", "input", "acc", "activation", "output"]))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
def test_sanity_dmr_corrects_any_single_fault(nets, name, seed, cls):
    gm, xq = nets[name]
    f = sample_primary(gm, 6, seed=seed, classes=(cls,) * 6)[0][1]
    i = seed % len(xq)
    ref = gm.run_int(xq[i:i + 1])
    faulty = gm.run_int(xq[i:i + 1], hook=golden_hook(gm, [f]))
    pm = cached_pm(gm, "sanity+dmr")
    y, rep = pm.run(xq[i:i + 1], hook=OnceInjector([f], site_infos(gm, pm)))
    assert np.array_equal(y, ref), (str(f), rep.events)
    assert rep.uncorrectable == 0
    if not np.array_equal(faulty, ref):
        assert rep.detected >= 1
        if cls in ("input", "activation"):
            assert rep.rolled_back >= 1                   # DMR caught it and recomputed from a checkpoint


@pytest.mark.parametrize("name", ["lenet5", "mobilenetv2"])
@pytest.mark.parametrize("spec", ["sanity+dmr", "sanity:eager+dmr", "tmr", "dmr"])
def test_faults_in_the_protection_state_never_reach_the_output(nets, name, spec):
    gm, xq = nets[name]
    pm = ProtectedModel(gm, spec)
    info = site_infos(gm, pm)
    ref = gm.run_int(xq)
    faults = sample_state(pm, 40, seed=11)
    assert len({f.site for _, f in faults}) >= 2
    for k, (_, f) in enumerate(faults):
        i = k % len(xq)
        pm.reset()
        y, rep = pm.run(xq[i:i + 1], hook=OnceInjector([f], info))
        assert np.array_equal(y[0], ref[i]), (spec, str(f), rep.events)
        assert rep.corrected == 0 or spec == "tmr" or f.site in ("checkpoint", "dmr")


def test_dmr_only_misses_weight_faults_sanity_does_not(nets):
    """Both DMR copies read one weight memory: DMR alone cannot see a weight fault; sanity repairs it."""
    gm, xq = nets["lenet5"]
    from sanitas.faults import Fault
    ref = gm.run_int(xq)
    w = gm.by_name["fc1"].weight
    # the first bit-6 weight flip of fc1 that changes these images' logits (most do; which one depends on training)
    f, bad = next((f, bad) for f in (Fault("weight", "fc1", (o, i), 6) for o in range(w.shape[0])
                                     for i in range(w.shape[1]))
                  if not np.array_equal(bad := gm.run_int(xq, hook=golden_hook(gm, [f])), ref))
    y, rep = ProtectedModel(gm, "dmr").run(xq, hook=OnceInjector([f], site_infos(gm)))
    assert np.array_equal(y, bad) and not rep.alarm
    pm = ProtectedModel(gm, "sanity+dmr")
    y, rep = pm.run(xq, hook=OnceInjector([f], site_infos(gm)))
    assert np.array_equal(y, ref) and rep.repaired == 1
    for _ in range(3):                                     # repaired and stays repaired
        y, rep = pm.run(xq)
        assert np.array_equal(y, ref) and not rep.alarm
    assert np.array_equal(pm.memory("fc1").arrays["weight"], gm.by_name["fc1"].weight)


def test_double_fault_rolled_back_with_dmr_reported_without(nets):
    """Two accumulator faults in one pixel: sanity alone without escalation reports them uncorrectable; with
    escalation (no retries) the layer is reloaded and recomputed once; with DMR it is recomputed from its
    checkpointed input (the transient faults are gone) before any escalation."""
    gm, xq = nets["lenet5"]
    from sanitas.faults import Fault
    fs = [Fault("acc", "conv2", (3, 1, 1), 20), Fault("acc", "conv2", (7, 1, 1), 21)]
    ref = gm.run_int(xq[:1])
    y, rep = ProtectedModel(gm, "sanity", escalate=False).run(xq[:1], hook=OnceInjector(fs, site_infos(gm)))
    assert rep.detected == 1 and rep.uncorrectable == 1 and rep.corrected == 0 and rep.escalations == 0
    assert np.array_equal(y, gm.run_int(xq[:1], hook=golden_hook(gm, fs)))   # left as it was, not "fixed"
    y, rep = ProtectedModel(gm, "sanity").run(xq[:1], hook=OnceInjector(fs, site_infos(gm)))
    assert np.array_equal(y, ref) and (rep.detected, rep.escalations, rep.uncorrectable) == (1, 1, 0)
    y, rep = ProtectedModel(gm, "sanity+dmr").run(xq[:1], hook=OnceInjector(fs, site_infos(gm)))
    assert np.array_equal(y, ref) and rep.rolled_back == 1 and rep.uncorrectable == 0 and rep.escalations == 0


def test_checkpoint_fault_rolls_back_to_the_producer(nets):
    gm, xq = nets["lenet5"]
    from sanitas.faults import Fault
    pm = ProtectedModel(gm, "sanity+dmr")
    f = Fault("checkpoint", "pool1", (2, 1, 1), 7)
    y, rep = pm.run(xq[:1], hook=OnceInjector([f], site_infos(gm, pm)))
    assert np.array_equal(y, gm.run_int(xq[:1]))
    assert rep.detected == 1 and rep.rolled_back == 2       # re-read (still bad), re-execute pool1
    assert any(e[2] == "rollback" and "re-execute pool1" in e[3]["action"] for e in rep.events)


def test_per_layer_scheme_map(nets, tmp_path):
    gm, xq = nets["lenet5"]
    m = {"default": "sanity+dmr", "fc*": "tmr", "op:maxpool": "none", "conv1": "sanity:eager"}
    pm = ProtectedModel(gm, m)
    d = pm.describe()
    assert d["fc1"][1:] == ("tmr", "TMRGuard") and d["fc3"][1] == "tmr"
    assert d["pool1"][1:] == ("none", "PlainGuard") and d["conv1"][1] == "sanity:eager"
    assert d["conv2"][1] == "sanity+dmr" and not pm.plans["pool1"].verify_inputs
    assert np.array_equal(pm.run(xq)[0], gm.run_int(xq))
    p = tmp_path / "map.json"
    p.write_text(json.dumps(m))
    assert load_scheme_map(p) == m
    y = tmp_path / "map.yaml"
    y.write_text("default: sanity\nfc3: tmr\n")
    assert ProtectedModel(gm, load_scheme_map(y)).describe()["fc3"][1] == "tmr"
    with pytest.raises(SanitasError, match="no layer named 'fc9'"):
        ProtectedModel(gm, {"default": "none", "fc9": "tmr"})


def test_scheme_specs():
    s = parse_scheme("sanity:eager+dmr")
    assert isinstance(s[0], Sanity) and not s[0].lazy and isinstance(s[1], DMR)
    assert parse_scheme("none") == () and parse_scheme((Sanity, DMR(retries=4)))[1].retries == 4
    assert [repr(x) for x in parse_scheme("dmr-only+sanity-check")] == ["dmr", "sanity-check"]
    for bad, msg in (("foo", "unknown protection scheme 'foo'"), ("sanity:fast", "lazy or eager"),
                     ("tmr:x", "takes no option")):
        with pytest.raises(SanitasError, match=msg):
            parse_scheme(bad)

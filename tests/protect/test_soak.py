"""Soak campaigns (issue 12): accumulating memory upsets + a transient per inference on LeNet-5; sanity+dmr is never
silent and never wrong (patrol + escalation), the unprotected baseline is; an interrupted soak resumes to exactly
the counts of an uninterrupted one; ``sanitas soak`` writes, resumes and rejects bad input in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sanitas.cli import main as cli_main
from sanitas.golden import export_golden
from sanitas.protect.soak import COUNTS, Soak
from sanitas.train import load_checkpoint


@pytest.fixture(scope="module")
def lenet(lenet5_ckpt, digits):
    model, _ = load_checkpoint(lenet5_ckpt)
    gm = export_golden(model)
    return gm, gm.quantize_input(digits.test.tensors[0].numpy()[:32])


def test_sanity_dmr_soak_never_silent_and_resumes_exactly(lenet, tmp_path):
    gm, xq = lenet
    a = Soak(gm, xq, "sanity+dmr", seu=0.2, transients=1.0, seed=3, patrol=16)
    ca = a.run(120)
    assert ca["inferences"] == 120 and ca["memory_faults"] >= 12 and ca["transient_faults"] >= 90
    assert ca["silent"] == 0 and ca["wrong_flagged"] == 0 and ca["top1_wrong"] == 0
    assert ca["detected"] == ca["corrected"] > 0 and ca["repaired"] > 0 and ca["uncorrectable"] == 0
    # interrupted after 50 (state saved), resumed in a fresh process-like object: identical counts and memory
    b = Soak(gm, xq, "sanity+dmr", seu=0.2, transients=1.0, seed=3, patrol=16)
    b.run(50, every=25, on_save=lambda s: s.save(tmp_path / "state.npz"))
    c = Soak(gm, xq, "sanity+dmr", seu=0.2, transients=1.0, seed=3, patrol=16)
    c.load(tmp_path / "state.npz")
    assert c.counts["inferences"] == 50
    assert c.run(120) == ca and c.events == a.events
    for ma, mc in zip(a.pm.memories(), c.pm.memories()):
        assert all(np.array_equal(ma.arrays[k], mc.arrays[k]) for k in ma.arrays)


def test_soak_of_a_per_layer_map_hits_every_memory(lenet):
    gm, xq = lenet
    s = Soak(gm, xq, {"default": "sanity+dmr", "fc3": "tmr"}, seu=2.0, transients=1.0, seed=1)
    sites = {(layer, site) for _, layer, site, *_ in s.table}
    assert {("fc3", "tmr_w"), ("conv2", "sanity_sum"), ("conv2", "sanity_wx"), ("pool1", "checkpoint"),
            ("fc1", "weight"), ("fc1", "bias")} <= sites
    c = s.run(15)
    assert c["memory_faults"] >= 15 and c["silent"] == c["wrong_flagged"] == 0


def test_unprotected_soak_is_silently_wrong(lenet):
    gm, xq = lenet
    c = Soak(gm, xq, "none", seu=0.2, transients=1.0, seed=3).run(60)
    assert c["silent"] > 0 and c["detected"] == c["wrong_flagged"] == c["escalations"] == 0
    assert set(c) == set(COUNTS)


def test_soak_command_resume_and_errors(lenet5_ckpt, lenet, tmp_path, capsys):
    gm, _ = lenet
    out = tmp_path / "s"
    base = ["soak", "--checkpoint", str(lenet5_ckpt), "--scheme", "sanity+dmr", "--seu-per-inference", "0.2",
            "--transients-per-inference", "1", "--seed", "5", "--images", "32", "--out", str(out), "--quiet",
            "--json"]
    assert cli_main([*base, "--inferences", "30", "--save-every", "10"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["inferences"] == 30 and first["silent"] == 0 and first["wrong_flagged"] == 0
    assert cli_main([*base, "--inferences", "45", "--resume"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in ("inferences", "memory_faults", "transient_faults", "silent", "detected", "corrected", "escalations",
              "wrong_flagged"):
        assert k in s
    from sanitas.data import load_dataset
    xq = gm.quantize_input(load_dataset("digits").test.tensors[0].numpy()[:32])
    straight = Soak(gm, xq, "sanity+dmr", seu=0.2, transients=1.0, seed=5).run(45)
    assert {k: s[k] for k in COUNTS} == straight
    assert (out / "soak.png").exists() and json.loads((out / "manifest.json").read_text())["kind"] == "soak"
    assert cli_main(["report", str(out)]) == 0 and "silent" in (out / "index.md").read_text()
    capsys.readouterr()
    other = [*base[:-4], "--quiet", "--out"]
    for args, msg in (([*base, "--inferences", "10"], "already holds a soak; use --resume"),
                      ([*other, str(tmp_path / "n"), "--resume"], "nothing to resume"),
                      ([*base, "--inferences", "50", "--resume", "--seed", "6"], "different configuration (seed)"),
                      ([*other, str(tmp_path / "m"), "--seu-per-inference", "-1"],
                       "argument --seu-per-inference: must be >= 0, got -1"),
                      ([*other, str(tmp_path / "m"), "--scheme", "magic"], "unknown protection scheme 'magic'")):
        assert cli_main(args) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1

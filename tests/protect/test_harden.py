"""Protection that survives time (issue 12): seals verify the sanity rows before any repair, position-weighted
checksums see cancelling pairs, the patrol scrubs memory no inference reads, and uncorrectable layers escalate to
a reload from the trusted image. Every hand-built multi-fault case ends bit-exact (corrected or escalated) —
never silent, never an endless wrong answer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sanitas.faults import Fault
from sanitas.faults.executors import golden_hook
from sanitas.golden import export_golden
from sanitas.models import build
from sanitas.protect import ProtectedModel
from sanitas.protect import seal as sl
from sanitas.protect.base import Report, checksum
from sanitas.protect.campaign import OnceInjector, site_infos
from sanitas.train import load_checkpoint


@pytest.fixture(scope="module")
def lenet(lenet5_ckpt, digits):
    model, _ = load_checkpoint(lenet5_ckpt)
    gm = export_golden(model)
    return gm, gm.quantize_input(digits.test.tensors[0].numpy()[:8])


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    m = build("mobilenetv2", (1, 8, 8))
    m.train()
    m(torch.rand(32, 1, 8, 8))
    m.eval()
    gm = export_golden(m)
    return gm, gm.quantize_input(torch.rand(4, 1, 8, 8).numpy())


def opposite_bits(values, bits=range(7)):
    """(i, j, b): two positions of flat int ``values`` whose bit b differ (flipping both gives +2**b and -2**b)."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    for b in bits:
        on = np.nonzero((v >> b) & 1)[0]
        off = np.nonzero(((v >> b) & 1) == 0)[0]
        if len(on) and len(off):
            return int(off[0]), int(on[0]), b
    raise AssertionError("no pair with opposite bits")


def run_faults(gm, pm, xq, faults):
    """(protected logits, report, unprotected logits) of one inference with ``faults`` delivered at first read."""
    bad = gm.run_int(xq, hook=golden_hook(gm, faults)) if all(f.site in ("weight", "bias", "acc", "input", "output")
                                                              for f in faults) else None
    y, rep = pm.run(xq, hook=OnceInjector(faults, site_infos(gm, pm)))
    return y, rep, bad


# ------------------------------------------------------------------------------------------------ seals
def test_seal_locates_a_single_word_and_reports_pairs():
    rng = np.random.default_rng(1)
    a = rng.integers(-3000, 3000, 200)
    s = sl.seal(a)
    assert sl.check(a, s).status == sl.OK and int(s.sum()) == 0
    for j, e in ((0, 1), (57, -64), (199, 2 ** 31)):
        b = a.copy()
        b[j] += e
        assert sl.check(b, s) == sl.Verdict(sl.WORD, j, e)
    b = a.copy()
    b[10] += 8
    b[90] -= 8                                     # cancelling pair: the plain sum is blind to it
    assert int(b.sum()) == int(a.sum()) and sl.check(b, s).status == sl.BAD
    b = a.copy()
    b[10] += 8
    b[12] += 8                                     # two equal errors point at their midpoint in (S0, S1) ...
    d0, d1, _ = (u - v for u, v in zip(sl.weighted(b), sl.weighted(a)))
    assert d1 // d0 - 1 == 11 and sl.check(b, s).status == sl.BAD     # ... the quadratic sum rejects it
    for w in range(4):                             # a fault in the seal itself is told apart and rebuilt
        t = s.copy()
        t[w] ^= 1 << 40
        assert sl.check(a, t) == sl.Verdict(sl.SEAL, w, int(s[w]))


def test_weighted_checksum_sees_every_cancelling_pair():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (1, 6, 12, 12))
    for b in (0, 7, 31):
        for i, j in ((0, 1), (5, 700), (3, 863)):
            c = a.copy().reshape(-1)
            c[i] += 1 << b
            c[j] -= 1 << b
            ck = checksum(c.reshape(a.shape))
            assert ck[0, 0] == checksum(a)[0, 0] and ck[0, 1] - checksum(a)[0, 1] == (i - j) * (1 << b)


# ------------------------------------------------------------------------------------------------ the reproducer
@pytest.mark.parametrize("spec", ["sanity+dmr", "sanity:eager+dmr", "sanity"])
def test_latent_sanity_fault_never_steers_a_repair(lenet, spec):
    """Issue 12 reproducer: conv1, bit 1 of sanity_w[0, 2, 19], then bit 1 of weight [0, 0, 3, 4] (same column 19);
    with one sum over the rows the scrub rewrote a healthy third weight and stayed silent ever after."""
    gm, xq = lenet
    ref = gm.run_int(xq)
    pm = ProtectedModel(gm, spec, patrol=0)
    mem = pm.memory("conv1")
    mem.arrays["sanity_w"][0, 2, 19] ^= 2
    mem.dirty = True
    y, rep = pm.run(xq)
    lazy = ":eager" not in spec                   # lazy: a partial row is never read fault-free -> latent
    assert np.array_equal(y, ref) and rep.uncorrectable == 0 and rep.repaired == (0 if lazy else 1)
    assert rep.alarm == (not lazy)
    w = mem.arrays["weight"]
    w[0, 0, 3, 4] = int(w[0, 0, 3, 4]) ^ 2
    y, rep = pm.run(xq)
    assert np.array_equal(y, ref) and rep.detected == 1 and rep.uncorrectable == rep.escalations == 0
    assert rep.repaired == (2 if lazy else 1)     # lazy: the seal rebuilds the sanity word first, then the weight
    for _ in range(2):
        y, rep = pm.run(xq)
        assert np.array_equal(y, ref) and not rep.alarm
    assert all(np.array_equal(mem.arrays[k], mem.pristine[k]) for k in mem.arrays)


@pytest.mark.parametrize("spec", ["sanity+dmr", "sanity:eager+dmr"])
def test_sanity_row_word_and_weight_of_its_column_together(lenet, spec):
    """Both faults in memory before one inference: the rows are verified against their seals before the
    column's repair reads them, so the weight (not a healthy neighbour) is rebuilt."""
    gm, xq = lenet
    ref = gm.run_int(xq)
    pm = ProtectedModel(gm, spec, patrol=0)
    fs = [Fault("sanity_w", "conv1", (0, 2, 19), 1), Fault("weight", "conv1", (0, 0, 3, 4), 1)]
    y, rep, _ = run_faults(gm, pm, xq, fs)
    assert np.array_equal(y, ref) and rep.detected >= 1 and rep.uncorrectable == 0
    assert rep.repaired == 2 and rep.escalations == 0
    mem = pm.memory("conv1")
    assert all(np.array_equal(mem.arrays[k], mem.pristine[k]) for k in mem.arrays)
    kinds = sorted(e[0] for ev in rep.events if ev[2] == "repaired" for e in ev[3]["words"])
    assert kinds == ["sanity_w", "weight"]


# ------------------------------------------------------------------------------------------------ cancelling pairs
@pytest.mark.parametrize("spec", ["sanity+dmr", "sanity:eager+dmr"])
def test_cancelling_pair_of_accumulators_in_one_pixel(lenet, spec):
    gm, xq = lenet
    x = xq[:1]
    acc = gm.run_int(x, return_all=True)["conv2"][0, :, 2, 2]
    i, j, b = opposite_bits(acc, bits=range(20, 31))
    fs = [Fault("acc", "conv2", (i, 2, 2), b), Fault("acc", "conv2", (j, 2, 2), b)]
    pm = ProtectedModel(gm, spec, patrol=0)
    y, rep, bad = run_faults(gm, pm, x, fs)
    faulty = gm.run_int(x, hook=golden_hook(gm, fs), return_all=True)["conv2"][0, :, 2, 2]
    assert int(faulty.sum()) == int(acc.sum()) and not np.array_equal(bad, gm.run_int(x))   # cancels, effective
    assert np.array_equal(y, gm.run_int(x)) and rep.detected >= 1 and rep.rolled_back >= 1
    assert rep.uncorrectable == 0


@pytest.mark.parametrize("spec", ["sanity+dmr", "sanity:eager+dmr"])
def test_cancelling_pair_of_weights_in_one_input_column(lenet, spec):
    gm, xq = lenet
    ref = gm.run_int(xq)
    col = gm.by_name["conv2"].weight[:, 0, 2, 2]
    i, j, b = opposite_bits(col, bits=range(4, 7))
    fs = [Fault("weight", "conv2", (i, 0, 2, 2), b), Fault("weight", "conv2", (j, 0, 2, 2), b)]
    pm = ProtectedModel(gm, spec, patrol=0)
    y, rep, bad = run_faults(gm, pm, xq, fs)
    assert not np.array_equal(bad, ref)
    assert np.array_equal(y, ref) and rep.detected >= 1 and rep.escalations == 1 and rep.uncorrectable == 0
    y, rep = pm.run(xq)                             # reloaded: the next inference is clean and quiet
    assert np.array_equal(y, ref) and not rep.alarm


@pytest.mark.parametrize("site", ["checkpoint", "input"])
@pytest.mark.parametrize("spec", ["sanity+dmr", "sanity:eager+dmr"])
def test_cancelling_pair_in_a_checkpoint_or_layer_input(lenet, spec, site):
    gm, xq = lenet
    x = xq[:1]
    ref = gm.run_int(x)
    layer, src = ("pool1", "pool1") if site == "checkpoint" else ("conv2", "pool1")
    v = gm.run_int(x, return_all=True)[src][0]
    i, j, b = opposite_bits(v, bits=range(3, 7))
    fs = [Fault(site, layer, tuple(int(t) for t in np.unravel_index(k, v.shape)), b) for k in (i, j)]
    pm = ProtectedModel(gm, spec, patrol=0)
    y, rep = pm.run(x, hook=OnceInjector(fs, site_infos(gm, pm)))
    assert np.array_equal(y, ref) and rep.detected >= 1 and rep.rolled_back >= 1 and rep.uncorrectable == 0
    assert any(e[2] == "detected" and "checksum of pool1" in e[3].get("check", "") for e in rep.events)


@pytest.mark.parametrize("same_tap", [True, False])
def test_cancelling_pair_of_depthwise_filter_words(mobilenet, same_tap):
    """Two filter words of a depthwise conv with +2**b / -2**b: the filter seal sees them; in one tap (one
    column of the channel code) the code cannot repair them -> escalation; in two taps it repairs both."""
    gm, xq = mobilenet
    ref = gm.run_int(xq)
    w = gm.by_name["ir1_dw"].weight
    if same_tap:
        i, j, b = opposite_bits(w[:, 0, 1, 1], bits=range(2, 7))
        idx = [(i, 0, 1, 1), (j, 0, 1, 1)]
    else:
        i, j, b = opposite_bits(np.array([w[0, 0, 1, 1], w[1, 0, 0, 1]]), bits=range(2, 7))
        idx = [((0, 0, 1, 1), (1, 0, 0, 1))[k] for k in (i, j)]
    fs = [Fault("weight", "ir1_dw", t, b) for t in idx]
    pm = ProtectedModel(gm, "sanity+dmr", patrol=0)
    y, rep, bad = run_faults(gm, pm, xq, fs)
    g = pm.memory("ir1_dw").arrays["weight"].astype(np.int64)
    assert not np.array_equal(bad, ref)
    assert np.array_equal(y, ref) and rep.detected >= 1 and rep.uncorrectable == 0
    assert (rep.escalations, rep.repaired) == ((1, 0) if same_tap else (0, 2))
    assert np.array_equal(g, w)


# ------------------------------------------------------------------------------------------------ escalation
@pytest.mark.parametrize("spec", ["sanity+dmr", "sanity"])
def test_two_bias_flips_in_one_layer_escalate_then_stay_correct(lenet, spec):
    gm, xq = lenet
    ref = gm.run_int(xq)
    fs = [Fault("bias", "fc1", (3,), 20), Fault("bias", "fc1", (7,), 21)]
    pm = ProtectedModel(gm, spec, patrol=0)
    y, rep, bad = run_faults(gm, pm, xq, fs)
    assert not np.array_equal(bad, ref)
    assert np.array_equal(y, ref) and rep.escalations == 1 and rep.uncorrectable == 0
    assert rep.rolled_back == (2 if spec == "sanity+dmr" else 0)      # retries first, then the reload
    for _ in range(2):
        y, rep = pm.run(xq)
        assert np.array_equal(y, ref) and not rep.alarm and rep.escalations == 0


# ------------------------------------------------------------------------------------------------ patrol
def test_fault_free_patrol_is_quiet_and_counts_its_words(lenet):
    gm, xq = lenet
    pm = ProtectedModel(gm, "sanity+dmr", patrol=7)
    y, rep = pm.run(xq)
    assert np.array_equal(y, gm.run_int(xq)) and rep.events == []
    assert all(v == 0 for k, v in rep.summary().items() if k != "scrubbed")
    lines = [(g, g.patrol_lines()) for g, _ in pm.patrol.guards]
    assert [n for _, n in lines] == [int(np.prod(n.weight.shape[1:])) + 2 for n in gm.layers()]   # K + 2 each
    g0 = lines[0][0]
    # 7 columns of conv1: 6 weights + 4 sanity-row words + 1 word of the layer-wide weighted row each
    assert g0.check.mode == "weighted" and rep.scrubbed == 7 * (g0.C + g0.M + 1 + 1)
    rep = pm.scrub_all()
    assert rep.scrubbed == sum(g.patrol_words() for g, _ in lines) and rep.repaired == rep.escalations == 0


@pytest.mark.parametrize("site,index", [("weight", (4, 3, 0, 0)), ("sanity_sum", (0, 1, 2)),
                                        ("sanity_b", (0, 4)), ("sanity_w", (0, 1, 5))])
def test_patrol_repairs_memory_no_inference_reads(lenet, site, index):
    """A fault in a seal word, or in a word the input never reaches, raises no alarm; the patrol finds and
    repairs it within one cycle of the lines (here 64 per inference: 13 inferences for LeNet-5)."""
    gm, xq = lenet
    ref = gm.run_int(xq)
    pm = ProtectedModel(gm, "sanity+dmr", patrol=64)
    mem = pm.memory("conv2")
    mem.arrays[site][index] ^= 1 << 3
    mem.dirty = True
    total = Report()
    for _ in range(-(-pm.patrol.total // 64)):
        y, rep = pm.run(np.zeros_like(xq[:1]))
        total.merge(rep)
        assert np.array_equal(y, gm.run_int(np.zeros_like(xq[:1])))
    assert all(np.array_equal(mem.arrays[k], mem.pristine[k]) for k in mem.arrays)
    assert total.repaired == 1 and total.escalations == 0 and total.uncorrectable == 0
    assert np.array_equal(pm.run(xq)[0], ref)


def test_patrol_escalates_two_faults_in_one_codeword(lenet):
    gm, _ = lenet
    pm = ProtectedModel(gm, "sanity+dmr", patrol=4)
    mem = pm.memory("fc2")
    mem.arrays["weight"][3, 17] ^= 4
    mem.arrays["weight"][9, 17] ^= 16
    mem.dirty = True
    rep = pm.scrub_all()
    assert (rep.escalations, rep.repaired) == (1, 0)
    assert all(np.array_equal(mem.arrays[k], mem.pristine[k]) for k in mem.arrays)

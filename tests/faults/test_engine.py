"""Executors and the batched engine agree with the golden reference on the same fault records.

* golden (``run_golden``, the reference) vs Brevitas (``run_brevitas``) on every site the Brevitas model can
  express (bias bits >= 24 excluded: Brevitas accumulates in float32, so such accumulators are rounded there);
* the batched engine ``FastGolden`` (faults along the batch, prefix reuse, early stop, incremental conv) vs the
  golden replay of each record: identical outcome class and faulty top-1 for every (fault, input), with every
  optimisation on, off, and forced, on LeNet-5 and on a residual net (adds, shared quantisers, global sum).
"""
import numpy as np
import pytest
import torch

from sanitas.errors import SanitasError
from sanitas.faults import KINDS, Fault, sample_faults
from sanitas.faults.engine import CRITICAL, MASKED, SDC, EngineStats, FastGolden, classify
from sanitas.faults.executors import run_brevitas, run_golden


def _golden_outcomes(gm, xq, faults):
    clean = gm.run_int(xq, backend="f64")
    res = [classify(run_golden(gm, xq, f, backend="f64"), clean) for f in faults]
    return np.stack([r[0] for r in res]), np.stack([r[1] for r in res])


def test_fast_model_is_bit_exact(lenet, resnet, images):
    for _, gm in (lenet, resnet):
        xq = gm.quantize_input(images)
        assert np.array_equal(FastGolden(gm).logits(xq), gm.run_int(xq))


@pytest.mark.parametrize("which", ["lenet", "resnet"])
def test_brevitas_executor_matches_golden(which, lenet, resnet, images):
    qnet, gm = lenet if which == "lenet" else resnet
    x = images[:8]
    xq = gm.quantize_input(x)
    n_cmp = n_changed = 0
    for site in ("weight", "bias", "acc", "output", "input"):
        for f in sample_faults(gm, 20 if which == "lenet" else 9, sites=(site,), kinds=KINDS, seed=11,
                               layers=[n.name for n in gm.nodes if n.op in ("input", "conv", "linear", "act")]):
            if site == "bias" and f.kind != "random" and f.bit >= (1 << 24 if f.kind == "multibit" else 24):
                continue
            if site == "bias" and f.kind == "random":
                continue
            a = run_golden(gm, xq, f)
            b = run_brevitas(qnet, gm, x, f)
            assert np.array_equal(a, b), str(f)
            n_cmp += 1
            n_changed += not np.array_equal(a, gm.run_int(xq))
    assert n_cmp >= 35 and n_changed >= 12         # the comparison is not vacuous


def test_brevitas_executor_refuses_moduleless_nodes(lenet, images):
    qnet, gm = lenet
    with pytest.raises(SanitasError, match="cannot be expressed on the Brevitas model"):
        run_brevitas(qnet, gm, images[:2], Fault("output", "pool1", (0, 0, 0), 1))


CONFIGS = {"default": {}, "dense propagation": {"propagate": "dense"}, "no early stop": {"early_stop": False},
           "no prefix reuse": {"prefix_reuse": False}, "incremental conv forced": {"sparse_delta": True}}


@pytest.mark.parametrize("which", ["lenet", "resnet"])
def test_engine_matches_golden_replay(which, lenet, resnet, images):
    _, gm = lenet if which == "lenet" else resnet
    xq = gm.quantize_input(images[:8])
    faults = []
    for site in ("weight", "bias", "acc", "output", "input"):
        faults += sample_faults(gm, 24 if which == "lenet" else 10, sites=(site,), kinds=KINDS, seed=5)
    if which == "resnet":      # module-less nodes too: add, gsum, maxpool-free residual stream
        faults += sample_faults(gm, 10, sites=("output",), kinds=("bitflip",), seed=6,
                                layers=[n.name for n in gm.nodes if n.op in ("add", "gsum")])
    ref_o, ref_p = _golden_outcomes(gm, xq, faults)
    assert {MASKED, SDC, CRITICAL} <= set(np.unique(ref_o)) or which == "resnet"
    from sanitas.faults.campaign import make_chunks
    for name, kw in CONFIGS.items():
        fg = FastGolden(gm, **kw)
        env = fg.run(xq)
        st = EngineStats()
        pos = {f.id: i for i, f in enumerate(faults)}
        got_o, got_p = np.zeros_like(ref_o), np.zeros_like(ref_p)
        for chunk in make_chunks(faults, len(xq), 64):          # small chunks: several per (site, layer)
            o, p = fg.run_faults(env, chunk, len(xq), st)
            for f, oo, pp in zip(chunk, o, p):
                got_o[pos[f.id]], got_p[pos[f.id]] = oo, pp
        assert np.array_equal(got_o, ref_o), name
        assert np.array_equal(got_p, ref_p), name
        assert st.rows == len(faults) * len(xq)
        if name in ("default", "dense propagation"):
            # measured saving of prefix reuse + early stop (dense), and of the sparse deltas (default)
            assert st.macs_done < (0.6 if name != "default" else 0.15) * st.macs_naive
            assert st.stopped_early > 0


def test_engine_counts_work(lenet, images):
    """Weight faults reuse the prefix and skip the faulted layer's MACs; low bits are masked at the requant."""
    _, gm = lenet
    xq = gm.quantize_input(images)
    fg = FastGolden(gm)
    env = fg.run(xq)
    faults = [Fault("weight", "fc1", (o, 3), 0) for o in range(16)]
    st = EngineStats()
    o, _ = fg.run_faults(env, faults, len(xq), st)
    assert o.shape == (16, len(xq))
    assert st.macs_done <= st.macs_naive * 0.5
    ref, _ = _golden_outcomes(gm, xq, faults)
    assert np.array_equal(o, ref)


@pytest.mark.parametrize("prop", ["sparse", "dense"])
def test_mixed_chunk_equals_one_group_at_a_time(prop, lenet, images):
    """A chunk may mix sites and layers: the sparse engine propagates it in one pass, the dense one per group."""
    _, gm = lenet
    xq = gm.quantize_input(images[:8])
    faults = []
    for site in ("weight", "bias", "acc", "output", "input"):
        faults += sample_faults(gm, 8, sites=(site,), kinds=KINDS, seed=21)
    faults = [faults[i] for i in np.random.default_rng(0).permutation(len(faults))]   # interleaved groups
    fg = FastGolden(gm, propagate=prop)
    env = fg.run(xq)
    st = EngineStats()
    o, p = fg.run_faults(env, faults, len(xq), st)
    ref_o, ref_p = _golden_outcomes(gm, xq, faults)
    assert np.array_equal(o, ref_o) and np.array_equal(p, ref_p)
    assert st.rows == len(faults) * len(xq)
    assert len({(f.site, f.layer) for f in faults}) >= 10


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_engine_on_cuda_matches_golden(lenet, images):
    _, gm = lenet
    xq = gm.quantize_input(images[:8])
    faults = sample_faults(gm, 60, sites=("weight", "output", "acc"), seed=2)
    from sanitas.faults.campaign import run_fault_list
    o, p = run_fault_list(gm, xq, faults, device="cuda")
    ref_o, ref_p = _golden_outcomes(gm, xq, faults)
    assert np.array_equal(o, ref_o) and np.array_equal(p, ref_p)

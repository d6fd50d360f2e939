"""Supernet primitives (forward/backward), derived nets (genotype round trip, golden bit-exactness) and FTT.

Every primitive of both FTT-NAS sets runs forward and backward in the weight-sharing supernet, at stride 1 and 2;
a derived net that uses every primitive is trained briefly and must match the golden integer model bit for bit
on the digits test split (that covers the sum-pool form of avg_pool_3x3, padded max pools, the shared
quantisers of the adds/concats).
"""
import json

import numpy as np
import pytest
import torch

from sanitas.data import load_dataset
from sanitas.golden import export_golden
from sanitas.models import build_from_spec
from sanitas.nas.derive import build_derived, count_params, emit_derived, genotype_spec
from sanitas.nas.ftt import FTTLoss, evaluate_faulty, make_fault
from sanitas.nas.space import WEIGHT_PRIMITIVES, Genotype, SearchSpace, SpaceConfig
from sanitas.nas.supernet import Supernet
from sanitas.train import load_checkpoint, save_checkpoint

TINY = SpaceConfig(primitives=WEIGHT_PRIMITIVES, cells=2, nodes=2, channels=2, stem_multiplier=1, reductions=(1,))
OPS = [p for p in WEIGHT_PRIMITIVES if p != "none"]

# every primitive at least once in each cell type, inputs from cell inputs (stride 2 in the reduce cell) and nodes
ALL_OPS = Genotype(
    normal=(("sep_conv_3x3", 0), ("max_pool_3x3", 1), ("avg_pool_3x3", 2), ("dil_conv_5x5", 1),
            ("skip_connect", 3), ("relu_conv_bn_5x5", 2), ("conv_1x1", 4), ("sep_conv_5x5", 0)),
    reduce=(("avg_pool_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 1), ("dil_conv_3x3", 2),
            ("relu_conv_bn_3x3", 0), ("conv_1x1", 3), ("sep_conv_3x3", 4), ("none", 2)))
ALL_SPACE = SpaceConfig(primitives=WEIGHT_PRIMITIVES, cells=3, nodes=4, channels=2, stem_multiplier=2,
                        reductions=(1,))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return Supernet(TINY, (1, 8, 8), 10)


@pytest.mark.parametrize("op", OPS)
def test_every_primitive_forward_backward(supernet, digits, op):
    torch.set_num_threads(1)
    cell = ((op, 0), (op, 1), (op, 2), (op, 1))       # node 1 reads node 0: stride-1 op in the reduce cell too
    g = Genotype(cell, cell)
    x, y = digits.train.tensors[0][:16], digits.train.tensors[1][:16]
    supernet.train()
    supernet.zero_grad(set_to_none=True)
    out = supernet(x, g)
    assert out.shape == (16, 10) and torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, y).backward()
    keys = {n.module_key for n in supernet.nodes if n.op in ("conv", "linear") and f"_{op}_" in n.module_key}
    mods = [supernet._bank[k] for k in keys]
    if op in ("max_pool_3x3", "avg_pool_3x3") or (op == "skip_connect" and not keys):
        assert all(not m.weight.requires_grad for m in mods)          # only the fixed sum pools
    else:
        assert mods, f"{op}: no weights in the sampled path"
        for m in mods:
            assert m.weight.grad is not None and torch.isfinite(m.weight.grad).all()
            assert m.weight.grad.abs().sum() > 0
    # the stem always receives gradient through any primitive
    assert supernet._bank["stem"].weight.grad.abs().sum() > 0
    supernet.float_mode = True                                         # float warm-up path: same weights
    try:
        assert torch.isfinite(supernet(x, g)).all()
    finally:
        supernet.float_mode = False


def test_dead_nodes_become_zeros_in_supernet_and_vanish_in_derived(supernet):
    cell = (("none", 0), ("none", 1), ("sep_conv_3x3", 0), ("none", 2))   # node 0 dead, node 1 live
    g = Genotype(cell, cell)
    out = supernet(torch.rand(4, 1, 8, 8), g)
    assert out.shape == (4, 10)
    assert any(n.op == "zeros" for n in supernet.nodes)
    em = emit_derived(g, TINY, (1, 8, 8), 10)
    assert not any(n.name.startswith("c0_n0") for n in em.nodes)
    # only input 0 of each cell is read: input 1's pre-processing is pruned (dead code)
    assert {n.name for n in em.nodes if "_pre" in n.name and n.op == "conv"} == {"c0_pre0_conv", "c1_pre0_conv"}
    old = emit_derived(g, TINY, (1, 8, 8), 10, prune=False)    # the layout of checkpoints before pruning
    # cell output = the one live node (C=2 channels), so the next pre-processing conv reads 2 channels
    assert old.layers["c1_pre1_conv"]["c_in"] == 2
    assert em.macs() == old.macs() - old.layers["c0_pre1_conv"]["macs"] - old.layers["c1_pre1_conv"]["macs"]


def test_derived_checkpoints_before_pruning_still_load(tmp_path):
    """A derived net whose spec has no "prune" (written before pruning) rebuilds with every pre-processing."""
    cell = (("sep_conv_3x3", 0), ("none", 1), ("skip_connect", 2), ("none", 2))   # input 1 never read
    spec = genotype_spec(Genotype(cell, cell), TINY, (1, 8, 8), 10)
    assert spec["prune"] is True
    legacy = {k: v for k, v in spec.items() if k != "prune"}
    a, b = build_from_spec(spec), build_from_spec(legacy)
    assert "c0_pre1_conv" not in [n.name for n in a.nodes] and "c0_pre1_conv" in [n.name for n in b.nodes]
    assert (a.spec["prune"], b.spec["prune"]) == (True, False)
    path = save_checkpoint(b, tmp_path / "legacy.pt", "digits")
    c, _ = load_checkpoint(path)
    assert [n.name for n in c.nodes] == [n.name for n in b.nodes]


def test_genotype_json_roundtrip_same_macs_params(tmp_path):
    spec = genotype_spec(ALL_OPS, ALL_SPACE, (1, 8, 8), 10)
    text = json.dumps(spec)
    torch.manual_seed(1)
    a = build_from_spec(json.loads(text))
    torch.manual_seed(2)
    b = build_from_spec(json.loads(text))
    ga, gb = export_golden(a), export_golden(b)
    assert ga.macs() == gb.macs() == emit_derived(ALL_OPS, ALL_SPACE, (1, 8, 8), 10).macs()
    assert count_params(a) == count_params(b) > 0
    assert [n.name for n in a.nodes] == [n.name for n in b.nodes]
    # checkpoint round trip through the generic loader (build_from_spec -> nas.derive)
    path = save_checkpoint(a, tmp_path / "net.pt", "digits")
    c, _ = load_checkpoint(path)
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), c(x))


def test_derived_net_golden_bitexact(digits):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = build_derived(ALL_OPS, ALL_SPACE, (1, 8, 8), 10)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=5e-3)
    x, y = digits.train.tensors
    net.train()
    for i in range(30):                     # enough steps for every quantiser to leave its initial scale
        xb, yb = x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    gm = export_golden(net)
    xt = digits.test.tensors[0]
    with torch.no_grad():
        ref = net(xt).double().numpy()
    for backend in ("int", "f64"):
        got = gm.predict(xt.numpy(), backend=backend).astype(np.float64) * 2.0 ** gm.out_exp
        assert np.array_equal(got, ref), f"{backend}: {(got != ref).sum()} mismatching logits"
    assert len(np.unique(ref.argmax(1))) > 1                 # a real, non-constant net
    # the sum pools stayed fixed and equal-weighted (one int8 code per layer)
    for n in gm.nodes:
        if n.attrs.get("sum_pool"):
            assert len(np.unique(n.weight)) == 1 and not n.bias.any()


@pytest.mark.parametrize("fault", ["mibb", "adsaf", "bitflip"])
def test_ftt_actually_injects(digits, fault):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = build_derived(ALL_OPS, ALL_SPACE, (1, 8, 8), 10)
    x, y = digits.train.tensors[0][:64], digits.train.tensors[1][:64]
    net.train()
    rate = {"mibb": 1e-2, "adsaf": 0.08, "bitflip": 1e-2}[fault]
    loss_fn = FTTLoss(make_fault(fault, rate), beta=0.5, generator=torch.Generator().manual_seed(0))
    loss = loss_fn(net, x, y)
    assert loss_fn.last["faulty"] != loss_fn.last["clean"]
    assert loss.item() == pytest.approx(0.5 * loss_fn.last["clean"] + 0.5 * loss_fn.last["faulty"], rel=1e-5)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    zero = FTTLoss(make_fault(fault, 0.0), beta=0.5, generator=torch.Generator().manual_seed(0))
    net.eval()                               # eval: quantiser scales fixed, so both passes see the same net
    zero(net, x, y)
    assert zero.last["faulty"] == zero.last["clean"]


def test_ftt_injects_in_supernet_and_eval_ci(supernet, digits):
    g = Genotype(ALL_OPS.normal[:4], ALL_OPS.reduce[:4])
    SearchSpace(TINY).check(g)
    supernet.set_genotype(g)
    x, y = digits.train.tensors[0][:64], digits.train.tensors[1][:64]
    loss_fn = FTTLoss(make_fault("mibb", 1e-2), beta=0.7, generator=torch.Generator().manual_seed(1))
    loss_fn(supernet, x, y)
    assert loss_fn.last["faulty"] != loss_fn.last["clean"]
    r = evaluate_faulty(supernet, digits.val, make_fault("mibb", 5e-2), n_samples=4, seed=0)
    assert len(r["faulty_samples"]) == 4 and r["faulty_ci"] >= 0
    assert r["faulty_acc"] != r["clean_acc"]


def test_protection_overhead_of_candidates_matches_protect_model():
    """The reward prices a candidate's protection on a shape-only golden model: same count as the protection
    issue's model on the real exported net (or, without it, the analytic Sanity count)."""
    from sanitas.nas.reward import Reward, analytic_overhead
    em = emit_derived(ALL_OPS, ALL_SPACE, (1, 8, 8), 10)
    cost = Reward().cost(em.layers, em.nodes, (1, 8, 8), 10)
    assert cost["macs"] == em.macs()
    try:
        from sanitas.protect.model import ProtectedModel
        from sanitas.protect.overhead import overhead
    except ImportError:
        assert cost["overhead"] == analytic_overhead(em.layers)
        return
    net = build_derived(ALL_OPS, ALL_SPACE, (1, 8, 8), 10)
    assert cost["overhead"] == overhead(ProtectedModel(export_golden(net), "sanity"))["extra_macs_abs"] > 0

"""The op table (``sanitas.models.ops``) and the fusion pass (``sanitas.models.passes``).

Expected MAC counts were computed with the code before the op table (``GoldenModel.macs``, the engine's
per-node counts and ``protect.base.base_macs`` agreed on every zoo net); the ResNet-20 fusions are the ones the
sparse engine's own fusion code chose before it became a pass.
"""
from __future__ import annotations

import numpy as np
import pytest
import sanitas.faults.engine  # noqa: F401 - registers the dense kernels
import sanitas.faults.sparse  # noqa: F401 - registers the sparse kernels
import sanitas.golden.model  # noqa: F401 - registers the golden kernels
import sanitas.models.graph  # noqa: F401 - registers the Brevitas kernels
import sanitas.nas.supernet  # noqa: F401 - registers the supernet kernels
from sanitas.errors import SanitasError
from sanitas.golden import export_golden
from sanitas.models import build
from sanitas.models.ops import OP_NAMES, OPS, TABLES, kernels, node_shapes, spec
from sanitas.models.passes import FusedRequant, FusedResidual, Fusions, fuse
from sanitas.protect.base import base_macs

EXECUTORS = ("golden", "brevitas", "supernet", "dense", "sparse")

# (model, input shape) -> MACs per image, from the code before the op table
OLD_MACS = {("lenet5", (1, 8, 8)): 66600, ("lenet5", (3, 32, 32)): 1209000,
            ("resnet20", (1, 8, 8)): 2532992, ("resnet20", (3, 32, 32)): 40813184,
            ("mobilenetv2", (1, 8, 8)): 178304, ("mobilenetv2", (3, 32, 32)): 3138176,
            ("vgg", (1, 8, 8)): 456320, ("vgg", (3, 32, 32)): 7586432}
OLD_LENET_LAYERS = {"conv1": 9600, "conv2": 38400, "fc1": 7680, "fc2": 10080, "fc3": 840}


def test_every_op_has_every_executors_kernel():
    assert OP_NAMES == ("input", "conv", "linear", "act", "add", "concat", "maxpool", "gsum", "flatten")
    assert set(EXECUTORS) <= set(TABLES)
    for ex in EXECUTORS:
        assert kernels(ex).missing() == [], ex
        assert all(callable(kernels(ex)[op]) for op in OP_NAMES)


def test_table_rejects_unknown_ops_and_double_registration():
    with pytest.raises(SanitasError, match="unknown graph op 'softmax'"):
        spec("softmax")
    with pytest.raises(SanitasError, match="golden: no kernel for op 'softmax'"):
        kernels("golden")["softmax"]
    with pytest.raises(ValueError, match="kernel of 'add' registered twice"):
        kernels("golden").register("add")(lambda run, n, ins: None)


def test_properties_replace_op_names():
    assert [op for op in OP_NAMES if OPS[op].has_weights] == ["conv", "linear"]
    assert [op for op in OP_NAMES if OPS[op].has_module] == ["input", "conv", "linear", "act"]
    assert [op for op in OP_NAMES if OPS[op].masking] == ["act", "maxpool"]
    assert [op for op in OP_NAMES if OPS[op].multi_input] == ["add", "concat"]
    assert OPS["add"].out_bits([8, 7]) == 9 and OPS["concat"].out_bits([8, 7]) == 8 and OPS["gsum"].out_bits([9]) == 32


@pytest.mark.parametrize("name,shape", sorted(OLD_MACS))
def test_mac_counts_and_shapes_equal_the_old_code(name, shape):
    gm = export_golden(build(name, shape, 10, seed=0))
    assert gm.macs() == OLD_MACS[(name, shape)]
    shapes = gm.shapes()
    assert sum(base_macs(n, shapes[n.name]) for n in gm.nodes) == OLD_MACS[(name, shape)]
    # the shape rules give what the golden executor computes
    env = gm.run_int(np.zeros((1,) + tuple(shape), np.int64), backend="f64", return_all=True)
    assert {k: v.shape for k, v in env.items()} == shapes
    if name == "lenet5" and shape == (1, 8, 8):
        assert {n.name: base_macs(n, shapes[n.name]) for n in gm.layers()} == OLD_LENET_LAYERS


def test_shape_rules_without_weights():
    net = build("lenet5", (1, 8, 8), 10, seed=0)
    w = {n.name: tuple(net.module_of(n).weight.shape) for n in net.nodes if spec(n.op).has_weights}
    s = node_shapes(net.nodes, (1, 8, 8), lambda n: w[n.name])
    assert s["conv1"] == (6, 8, 8) and s["pool2"] == (16, 2, 2) and s["flatten"] == (64,) and s["fc3"] == (10,)


def test_fusion_pass_on_resnet20():
    gm = export_golden(build("resnet20", (1, 8, 8), 10, seed=0))
    fused = fuse(gm.nodes)
    req = [f for f in fused if isinstance(f, FusedRequant)]
    res = [f for f in fused if isinstance(f, FusedResidual)]
    assert fused == req + res
    blocks = [f"s{s}b{b}" for s in range(3) for b in range(3)]
    expect = [FusedRequant("stem", "stem_relu")]
    for blk in blocks:
        expect += [FusedRequant(f"{blk}_conv1", f"{blk}_relu1"), FusedRequant(f"{blk}_conv2", f"{blk}_qm")]
        if blk in ("s1b0", "s2b0"):
            expect.append(FusedRequant(f"{blk}_proj", f"{blk}_qs"))
        expect.append(FusedRequant(f"{blk}_add", f"{blk}_out"))
    assert req == expect
    assert res == [FusedResidual(f"{b}_conv2", f"{b}_qm", f"{b}_add", f"{b}_out", f"{b}_qs") for b in blocks]
    # a vetoed conv is dropped after it claimed its add: the projection does not take the add over
    res2 = [f for f in fuse(gm.nodes, residual_ok=lambda c: c != "s1b0_conv2") if isinstance(f, FusedResidual)]
    assert [r.conv for r in res2] == [f"{b}_conv2" for b in blocks if b != "s1b0"]
    ix = Fusions.of(fused)
    assert ix.requant["s2b2_add"] == "s2b2_out" and ix.at_add["s0b1_add"].conv == "s0b1_conv2"
    assert ix.at_mid["s1b0_qm"].other == "s1b0_qs" and "fc" not in ix.requant


@pytest.mark.parametrize("name,n_req,n_res", [("lenet5", 4, 0), ("vgg", 6, 0), ("mobilenetv2", 21, 2)])
def test_fusion_pass_counts_on_the_zoo(name, n_req, n_res):
    fused = fuse(export_golden(build(name, (1, 8, 8), 10, seed=0)).nodes)
    assert sum(isinstance(f, FusedRequant) for f in fused) == n_req
    assert sum(isinstance(f, FusedResidual) for f in fused) == n_res

"""Searched networks through the RTL engine's host side (`sanitas.rtl.engine.network_steps` / `run_network`) and
its Python model (`model_layer`: pack the stream, `engine_model`, unpack), no simulator: a derived FTT-NAS net with
every primitive of the mibb and adsaf spaces (separable / dilated depthwise convs, padded max and sum pools, skip
connections, adds, concats, the global sum head), MobileNet-V2 and ResNet-20, each bit-exact with the golden model;
grouped / dilated convs as engine GEMMs (`gemm_weights`, `im2col(..., dilation)`) against `conv2d_int`; and the
searched net through the Icarus engine (rtl_tests/engine test_network) on 2 images.
"""
from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from sanitas.config import ArrayConfig
from sanitas.errors import SanitasError
from sanitas.golden.model import GNode, conv2d_int
from sanitas.nas.space import WEIGHT_PRIMITIVES, Genotype, SpaceConfig
from sanitas.rtl.engine import EngineCmd, HostStep, gemm_weights, im2col, layer_commands, model_layer, \
    network_steps, output_tensor, run_network

ARRAY = ArrayConfig(rows=8, cols=8, max_k=16, fault_injection=True)
# every primitive of the adsaf (weight) set, which holds the mibb (feature) set, in both cell types
EVERY_OP = Genotype(
    normal=(("dil_conv_3x3", 0), ("avg_pool_3x3", 1), ("max_pool_3x3", 2), ("sep_conv_5x5", 1),
            ("relu_conv_bn_3x3", 3), ("skip_connect", 2), ("sep_conv_3x3", 4), ("conv_1x1", 0)),
    reduce=(("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("dil_conv_5x5", 2),
            ("conv_1x1", 3), ("relu_conv_bn_5x5", 1), ("avg_pool_3x3", 4), ("none", 2)))
SPACE = SpaceConfig(primitives=WEIGHT_PRIMITIVES, cells=3, nodes=4, channels=2, stem_multiplier=2, reductions=(1,))


def _golden(name):
    from sanitas.golden import export_golden
    from sanitas.models import build
    from sanitas.nas.derive import build_derived
    torch.manual_seed(0)
    if name == "searched":
        return export_golden(build_derived(EVERY_OP, SPACE, (1, 8, 8), 10))
    return export_golden(build(name, (1, 8, 8), 10, seed=0))


def _kinds(steps) -> Counter:
    return Counter(s.node.op if isinstance(s, HostStep) else ("raw" if s.raw else f"pool{s.pool}") for s in steps)


@pytest.mark.parametrize("name,kinds", [
    ("searched", {"pool1": 43, "raw": 1, "act": 35, "add": 11, "maxpool": 3, "concat": 3, "gsum": 1}),
    ("mobilenetv2", {"pool1": 19, "raw": 1, "act": 5, "add": 2, "gsum": 1}),
    ("resnet20", {"pool1": 21, "raw": 1, "act": 17, "add": 9, "gsum": 1}),
])
def test_network_through_the_engine_model_is_bit_exact(digits, name, kinds):
    gm = _golden(name)
    steps = network_steps(gm)
    assert _kinds(steps) == kinds
    cmds = [s for s in steps if isinstance(s, EngineCmd)]
    assert [c.name for c in cmds] == [n.name for n in gm.layers()]        # every conv/linear is an engine command
    done = {gm.input_node.name}
    for s in steps:                                                      # graph order: inputs written before
        assert set(s.src if isinstance(s, HostStep) else (s.src,)) <= done
        done.add(s.dst)
    assert output_tensor(gm) in done and cmds[-1].raw
    xq = gm.quantize_input(digits.test.tensors[0].numpy()[:16])
    ref = gm.run_int(xq)
    got = run_network(gm, xq, model_layer(ARRAY))
    assert got.shape == (16, 10) and np.array_equal(got, ref)
    assert len({tuple(r) for r in ref}) > 1                              # not a constant network
    with pytest.raises(SanitasError, match=r"^engine: op '\w+' of node '\w+' is not an engine layer$"):
        layer_commands(gm)
    assert [c.name for c in layer_commands(gm, skip_other=True)] == [c.name for c in cmds]


def test_searched_net_has_every_primitive_as_engine_work():
    gm = _golden("searched")
    cmds = [s for s in network_steps(gm) if isinstance(s, EngineCmd)]
    dw = [c for c in cmds if gm.by_name[c.name].attrs.get("groups", 1) > 1]
    dil = [c for c in cmds if c.conv and c.conv["dilation"] == 2]
    # per normal cell (2): dil_conv_3x3 1 + sep_conv 2 x 2 + avg_pool 1; the reduce cell: sep 2 + dil 1 + avg 1
    assert (len(dw), len(dil)) == (2 * 6 + 4, 2 * 1 + 1)
    assert sorted({(c.conv["k"], c.conv["dilation"]) for c in dw}) == [(3, 1), (3, 2), (5, 1), (5, 2)]
    pools = [n for n in gm.nodes if n.op == "maxpool"]
    assert sorted((n.attrs["k"], n.attrs["stride"], n.attrs["padding"]) for n in pools) == [(3, 1, 1), (3, 1, 1),
                                                                                           (3, 2, 1)]


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")
def test_searched_net_through_the_rtl_engine(tmp_path):
    """Icarus + cocotbext-axi: the searched net with every primitive, command by command through the engine (the
    host nodes between them on the host, their tensors read back with a host checkpoint), logits bit-exact."""
    from sanitas.rtl.network import run_engine_network
    gm = _golden("searched")
    s = run_engine_network(tmp_path, ARRAY, None, 2, gm=gm, tests=("test_network",))
    assert s["passed"], s["log"]
    assert (s["bit_exact"], s["total"], s["host_nodes"]) == (2, 2, 53)
    assert [lay["name"] for lay in s["layers"]] == [n.name for n in gm.layers()]
    assert s["cycles"] == sum(lay["cycles"] for lay in s["layers"]) > 0


@pytest.mark.parametrize("groups,dilation,stride,padding", [(1, 2, 1, 2), (4, 1, 2, 1), (4, 2, 1, 2), (2, 1, 1, 0)])
def test_grouped_dilated_conv_as_a_gemm(groups, dilation, stride, padding):
    rng = np.random.default_rng(groups * 10 + dilation)
    x = rng.integers(-128, 128, (2, 4, 9, 9))
    w = rng.integers(-128, 128, (8, 4 // groups, 3, 3))
    n = GNode("c", "conv", ["x"], 0, 32, True, dict(k=3, stride=stride, padding=padding, groups=groups,
                                                   dilation=dilation), weight=w, bias=np.zeros(8, np.int64))
    b = gemm_weights(n)
    a, (nb, ho, wo) = im2col(x, 3, stride, padding, 1, dilation)
    assert b.shape == (36, 8) and a.shape == (2 * ho * wo, 36)
    assert np.count_nonzero(b) == np.count_nonzero(w)                    # block diagonal: zeros off the groups
    y = conv2d_int(x, w, np.zeros(8, np.int64), stride, padding, groups, dilation)
    assert np.array_equal((a @ b).reshape(nb, ho, wo, 8).transpose(0, 3, 1, 2), y)


def test_wide_tensor_into_a_command_is_refused():
    gm = _golden("resnet20")
    gsum = next(n for n in gm.nodes if n.op == "gsum")
    fc = gm.layers()[-1]
    bad = type(gm)([n if n is not fc else GNode(fc.name, fc.op, [gsum.name], fc.e_out, 32, True, fc.attrs,
                                                fc.weight, fc.bias, fc.e_w) for n in gm.nodes],
                   gm.input_shape, gm.num_classes, gm.spec)
    with pytest.raises(SanitasError, match=rf"^engine: linear '{fc.name}' reads '{gsum.name}', a \d+-bit tensor "
                                           r"\(the engine reads int8/uint8\)$"):
        network_steps(bad)

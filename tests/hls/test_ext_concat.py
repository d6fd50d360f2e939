"""Searched networks through the hls4ml extension: concat of cell nodes (``SanitasConcat``; a QNet concat of n > 2
inputs is split by ``hls.layout.binary_concats`` and put back together by ``emit.net_of``), dilated convs (hls4ml's
Conv handler mis-sizes them: ``ext.frontend.parse_dilated_conv``), the nodes torch's exporter merges
(``hls.convert.merged_twins``), and the linear channels-last pass (``hls.layout``) that replaced qonnx's quadratic
one. The net holds every primitive of the adsaf (hence mibb) space; it converts in ~20 s and compiles in ~20 s.
"""
from __future__ import annotations

import filecmp

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from sanitas.config import ArrayConfig
from sanitas.data import load_digits
from sanitas.errors import SanitasError
from sanitas.golden import export_golden
from sanitas.hls.convert import FixType, concat_type, merged_twins
from sanitas.paths import REPO_ROOT

OUT = REPO_ROOT / "build" / "hls4ml" / "test_ext_concat"
FILES = ("sanitas_net.cpp", "weights.h", "sanitas_regmap.h")


def _every_primitive_net():
    from sanitas.nas.derive import build_derived
    from sanitas.nas.space import WEIGHT_PRIMITIVES, Genotype, SpaceConfig
    g = Genotype(
        normal=(("sep_conv_3x3", 0), ("max_pool_3x3", 1), ("avg_pool_3x3", 2), ("dil_conv_5x5", 1),
                ("skip_connect", 3), ("relu_conv_bn_5x5", 2), ("conv_1x1", 4), ("sep_conv_5x5", 0)),
        reduce=(("avg_pool_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 1), ("dil_conv_3x3", 2),
                ("relu_conv_bn_3x3", 0), ("conv_1x1", 3), ("sep_conv_3x3", 4), ("none", 2)))
    assert {op for cell in (g.normal, g.reduce) for op, _ in cell} == set(WEIGHT_PRIMITIVES)
    space = SpaceConfig(primitives=WEIGHT_PRIMITIVES, cells=3, nodes=4, channels=2, stem_multiplier=2,
                        reductions=(1,))
    torch.manual_seed(0)
    return build_derived(g, space, (1, 8, 8), 10)


@pytest.fixture(scope="module")
def searched():
    from sanitas.hls.ext.convert import to_sanitas_hls4ml
    model = _every_primitive_net()
    gm = export_golden(model)
    return model, gm, to_sanitas_hls4ml(model, OUT / "every_primitive", golden=gm, compile=True)


def test_searched_net_lowers_onto_sanitas_layers(searched):
    from sanitas.hls.ext.layers import records
    _, gm, hm = searched
    recs = records(hm)
    cats = [r for r in recs if r.op == "concat"]
    # 3 cells x one concat of 4 nodes = 3 two-input concats each
    assert sum(n.op == "concat" and len(n.inputs) == 4 for n in gm.nodes) == 3 and len(cats) == 9
    assert sum("_sanitas_part" in r.name for r in cats) == 6
    assert all((r.e_out, r.bits, r.signed) == (-7, 8, True) for r in cats)
    dil = [r for r in recs if r.op == "conv" and r.attrs["dilation"] > 1]
    gdil = [n for n in gm.nodes if n.op == "conv" and n.attrs.get("dilation", 1) > 1]
    assert sorted(r.out_shape for r in dil) == sorted(tuple(gm.shapes()[n.name][1:]) for n in gdil)
    assert len(dil) == len(gdil) > 0
    assert not [layer.class_name for layer in hm.get_layers() if layer.class_name in ("Concatenate", "Conv2D")]


def test_merged_twins_are_what_the_exporter_merged(searched):
    _, gm, _ = searched
    assert merged_twins(gm) == {"c0_pre1_relu": "c0_pre0_relu",
                                "c0_n3_e1_sep_conv_5x5_relu1": "c0_n0_e0_sep_conv_3x3_relu1",
                                "c1_pre0_relu": "c0_pre0_relu", "c2_pre0_relu": "c1_pre1_relu",
                                "c2_n3_e1_sep_conv_5x5_relu1": "c2_n0_e0_sep_conv_3x3_relu1"}


def test_searched_net_firmware_byte_identical(searched, tmp_path):
    from sanitas.hls.ext.emit import net_of, write_firmware_ext
    from sanitas.hls.firmware import write_firmware
    _, gm, hm = searched

    def fields(n):
        return (n.name, n.op, list(n.inputs), n.e_out, n.bits, n.signed, n.narrow, n.attrs)
    assert [fields(n) for n in net_of(hm).nodes] == [fields(n) for n in gm.nodes]
    for spec in ("none", "sanity+dmr"):
        gold, ext = tmp_path / spec / "golden", tmp_path / spec / "ext"
        write_firmware(gm, gold, ArrayConfig(), spec)
        write_firmware_ext(hm, ext, spec=spec)
        assert [f for f in FILES if not filecmp.cmp(gold / f, ext / f, shallow=False)] == [], spec


def test_searched_net_project_is_bit_exact(searched):
    """The hls4ml project itself (sanitas::glue::concat2, the corrected dilated conv sizes) on all 270 digits."""
    from sanitas.hls.ext.convert import predict
    _, gm, hm = searched
    x = load_digits().test.tensors[0].numpy()
    y = predict(hm, x)
    assert y.shape == (270, 10)
    assert int((y == gm.run_int(gm.quantize_input(x))).all(axis=1).sum()) == 270
    assert 0 < hm.sanitas_convert_s < 90


def test_concat_type():
    t = concat_type("c", [FixType(8, -7, True), FixType(6, -7, True)])
    assert (t.width, t.e, t.signed) == (8, -7, True)
    with pytest.raises(SanitasError, match=r"^c: concatenates grids 2\*\*-7 signed, 2\*\*-6 signed \(golden: one "
                                           r"grid and sign\)$"):
        concat_type("c", [FixType(8, -7, True), FixType(8, -6, True)])
    with pytest.raises(SanitasError, match=r"^c: concatenates grids 2\*\*-7 unsigned, 2\*\*-7 signed "):
        concat_type("c", [FixType(8, -7, True), FixType(8, -7, False)])
    with pytest.raises(SanitasError, match=r"^c \(Concat\): input type unknown$"):
        concat_type("c", [FixType(8, -7, True), None])


def test_binary_concats_splits_left_to_right():
    from qonnx.core.modelwrapper import ModelWrapper

    from sanitas.hls.layout import PART, binary_concats
    ins = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [1, 2, 2, c]) for i, c in enumerate((1, 2, 3))]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 6])
    g = helper.make_graph([helper.make_node("Concat", ["x0", "x1", "x2"], ["y"], name="cat", axis=3)], "g", ins,
                          [out])
    m = binary_concats(ModelWrapper(helper.make_model(g)))
    got = [(n.name, list(n.input), list(n.output)) for n in m.graph.node]
    assert got == [(f"cat{PART}1", ["x0", "x1"], [f"y{PART}1"]), ("cat", [f"y{PART}1", "x2"], ["y"])]
    assert m.get_tensor_shape(f"y{PART}1") == [1, 2, 2, 3]
    onnx.checker.check_model(m.model)
    from qonnx.core.onnx_exec import execute_onnx
    xs = {f"x{i}": np.random.default_rng(i).normal(size=(1, 2, 2, c)).astype(np.float32)
          for i, c in enumerate((1, 2, 3))}
    np.testing.assert_array_equal(execute_onnx(m, xs)["y"], np.concatenate(list(xs.values()), axis=3))

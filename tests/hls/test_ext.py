"""The hls4ml extension front end (sanitas.hls.ext): Brevitas LeNet-5 -> QONNX -> hls4ml flow ``vitis:sanitas``
-> a compiled hls4ml project whose firmware calls the sanitas kernels, bit-exact with the golden model.

A module fixture converts the session's cached LeNet-5 checkpoint once, on a non-default 3 x 5 array (so the
GEMM tiling of the ArrayConfig is exercised: partial row and column tiles), and compiles it with hls4ml's g++
build (~60 s on 2 cores). The tests assert exact integer equality with ``GoldenModel.run_int`` on all 270 digits
test images and on inputs with rounding ties and saturating values, that the written firmware calls only sanitas
kernels (no hls4ml conv / dense / relu / pooling kernel left), that the records equal the golden nodes, that the
GEMM struct is the ArrayConfig's, and the exact errors of the passes for what they cannot lower exactly. A second
fixture does the same for MobileNet-V2 (depthwise convs, residual adds, the global sum through the extension's
ReduceSum handler) on the default array.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sanitas.config import ArrayConfig
from sanitas.errors import SanitasError
from sanitas.golden import export_golden
from sanitas.hls.firmware import gemm_geometry
from sanitas.train import load_checkpoint
from ..conftest import trained_checkpoint

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "hls4ml" / "test_ext" / "lenet5"
ARRAY = ArrayConfig(rows=3, cols=5)

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed (hls4ml compile needs it)")


@pytest.fixture(scope="module")
def lenet(digits):
    from sanitas.hls.ext.convert import to_sanitas_hls4ml
    model, _ = load_checkpoint(trained_checkpoint("lenet5"))
    gm = export_golden(model)
    if OUT.exists():
        shutil.rmtree(OUT)
    hm = to_sanitas_hls4ml(model, OUT, array=ARRAY, golden=gm)
    return SimpleNamespace(model=model, gm=gm, hm=hm, x=digits.test.tensors[0].numpy(),
                           y=digits.test.tensors[1].numpy())


def test_bitexact_whole_digits_test_split(lenet):
    from sanitas.hls.ext.convert import predict
    got = predict(lenet.hm, lenet.x)
    want = lenet.gm.run_int(lenet.gm.quantize_input(lenet.x))
    assert got.shape == want.shape == (270, 10)
    assert int((got == want).all(axis=1).sum()) == 270
    assert float((got.argmax(1) == lenet.y).mean()) > 0.5      # a trained net: logits are not degenerate


def test_bitexact_rounding_ties_and_saturation(lenet):
    """Inputs on exact half-LSB ties and far outside [0, 1]: the input cast rounds half to even and saturates."""
    from sanitas.hls.ext.convert import predict
    rng = np.random.default_rng(3)
    lsb = 2.0 ** lenet.gm.input_node.e_out
    ties = (rng.integers(-40, 300, size=(6, 1, 8, 8)) + 0.5) * lsb
    x = np.concatenate([ties, rng.uniform(-3, 3, size=(6, 1, 8, 8))]).astype(np.float32)
    assert np.array_equal(predict(lenet.hm, x), lenet.gm.run_int(lenet.gm.quantize_input(x)))


def test_firmware_calls_only_sanitas_kernels(lenet):
    src = (OUT / "firmware" / "myproject.cpp").read_text()
    calls = re.findall(r"sanitas::glue::(\w+)<", src)
    assert calls == ["conv", "requantize", "max_pool", "conv", "requantize", "max_pool",
                     "conv", "requantize", "conv", "requantize", "conv"]
    assert not re.search(r"nnet::(conv_2d|dense|relu|pooling2d|linear)", src)
    fw = OUT / "firmware"
    for path in ("sanitas/hls4ml_glue.h", "sanitas/layers.h", "sanitas/sanitas/systolic_gemm.h"):
        assert (fw / path).read_text() == (ROOT / "hls" / "include" / "sanitas" / Path(path).name).read_text()
    assert '#include "sanitas/hls4ml_glue.h"' in (fw / "parameters.h").read_text()


def test_records_are_the_golden_nodes(lenet):
    from sanitas.hls.ext.layers import records
    recs = records(lenet.hm)
    gold = [n for n in lenet.gm.nodes if n.op not in ("input", "flatten")]
    assert [r.op for r in recs] == [n.op for n in gold]
    assert [(r.e_out, r.bits, r.signed) for r in recs] == [(n.e_out, n.bits, n.signed) for n in gold]
    for r, n in zip(recs, gold):
        if r.op == "conv":
            assert np.array_equal(r.weight, n.weight) and np.array_equal(r.bias, n.bias)
            assert {k: r.attrs[k] for k in ("stride", "padding", "groups")} == \
                   {k: n.attrs[k] for k in ("stride", "padding", "groups")}
        elif r.op == "linear":
            assert np.array_equal(r.bias, n.bias)
            assert sorted(r.weight.reshape(-1)) == sorted(n.weight.reshape(-1))   # HWC-permuted fc1 rows


def test_gemm_struct_is_the_array_config(lenet):
    params = (OUT / "firmware" / "parameters.h").read_text()
    geo = gemm_geometry(lenet.gm, ARRAY)
    assert params.count("struct gemm {") == 5
    assert params.count(f"static const unsigned rows = {ARRAY.rows};") == 5
    assert params.count(f"static const unsigned cols = {ARRAY.cols};") == 5
    assert params.count(f"static const unsigned max_m = {geo['max_m']};") == 5
    assert params.count(f"static const unsigned max_k = {geo['max_k']};") == 5


def test_flow_registered_once():
    from hls4ml.model.flow import get_flow

    from sanitas.hls.ext import FLOW, LOWER_FLOW, register
    assert register() == register() == FLOW == "vitis:sanitas"
    reqs = list(get_flow(FLOW).requires)
    assert reqs[reqs.index("optimize") + 1] == LOWER_FLOW
    assert reqs.index(LOWER_FLOW) < reqs.index("vivado:init_layers") < reqs.index("vitis:apply_templates")
    assert get_flow(LOWER_FLOW).optimizers == ["vitis:sanitas_lower_gemm", "vitis:sanitas_lower_requant",
                                               "vitis:sanitas_lower_maxpool", "vitis:sanitas_lower_add",
                                               "vitis:sanitas_lower_concat", "vitis:sanitas_lower_gsum"]
    from hls4ml.model.flow import get_flow as flow_of
    assert "sanitas_reduce_sum_axes" in flow_of("parse_qonnx").optimizers


class _Node(SimpleNamespace):
    def get_attr(self, k, default=None):
        return self.attrs.get(k, default)

    def get_input_variable(self, name=None):
        return self.x

    def get_output_variable(self):
        return self.y


def _var(prec, shape):
    return SimpleNamespace(type=SimpleNamespace(precision=prec), shape=shape)


def test_passes_refuse_inexact_layers():
    from hls4ml.model.types import FixedPrecisionType

    from sanitas.hls.ext import passes
    u8 = FixedPrecisionType(8, 2, False, "RND_CONV", "SAT")
    acc = FixedPrecisionType(32, 18, True, "TRN", "WRAP")
    avg = _Node(name="AvgPool_0", attrs={"pool_op": "Average"}, x=_var(u8, [4, 4, 6]), y=_var(u8, [2, 2, 6]))
    with pytest.raises(SanitasError, match="^AvgPool_0: Average pooling: hls4ml's average divides and rounds"):
        passes._build_maxpool(None, avg)
    pad = _Node(name="MaxPool_1", attrs={"pool_op": "Max", "pool_height": 2, "pool_width": 2, "stride_height": 2,
                                         "stride_width": 2, "pad_top": 0, "pad_bottom": 1, "pad_left": 0,
                                         "pad_right": 0}, x=_var(u8, [4, 4, 6]), y=_var(u8, [2, 2, 6]))
    with pytest.raises(SanitasError, match=r"^MaxPool_1: asymmetric padding \[0, 1, 0, 0\] \(golden: one value\)$"):
        passes._build_maxpool(None, pad)
    trn = _Node(name="Relu_9", attrs={"activation": "ReLU"}, x=_var(acc, [8]),
                y=_var(FixedPrecisionType(8, 2, False, "TRN", "SAT"), [8]))
    with pytest.raises(SanitasError, match="^Relu_9: result type .* is not a rounding .half to even., saturating"):
        passes._build_requant(None, trn)
    sig = _Node(name="Sig_0", attrs={"activation": "Sigmoid"}, x=_var(acc, [8]), y=_var(u8, [8]))
    with pytest.raises(SanitasError, match="^Sig_0: activation sigmoid has no exact sanitas layer$"):
        passes._build_requant(None, sig)


def test_requant_record_from_types():
    from hls4ml.model.types import FixedPrecisionType

    from sanitas.hls.ext import passes
    acc = FixedPrecisionType(32, 18, True, "TRN", "WRAP")               # e_in = -14
    relu = _Node(name="Relu_0", inputs=["c"], attrs={"activation": "ReLU"}, x=_var(acc, [8, 8, 6]),
                 y=_var(FixedPrecisionType(8, 2, False, "RND_CONV", "SAT"), [8, 8, 6]))   # e_out = -6
    kind, rec, _ = passes._build_requant(None, relu)
    assert kind == "SanitasRequant" and rec.op == "act"
    assert rec.attrs == {"relu": True, "shift": 8, "lo": 0, "hi": 255, "n": 384}
    assert (rec.e_out, rec.bits, rec.signed, rec.out_shape) == (-6, 8, False, (6, 8, 8))
    lin = _Node(name="Quant_3", inputs=["c"], attrs={"activation": "linear"}, x=_var(acc, [10]),
                y=_var(FixedPrecisionType(8, 1, True, "RND_CONV", "SAT_SYM"), [10]))
    _, rec, _ = passes._build_requant(None, lin)
    assert rec.attrs == {"relu": False, "shift": 7, "lo": -127, "hi": 127, "n": 10} and rec.narrow


@pytest.fixture(scope="module")
def mobilenet(digits):
    from sanitas.hls.ext.convert import to_sanitas_hls4ml
    model, _ = load_checkpoint(trained_checkpoint("mobilenetv2"))
    gm = export_golden(model)
    out = OUT.parent / "mobilenetv2"
    if out.exists():
        shutil.rmtree(out)
    return SimpleNamespace(gm=gm, hm=to_sanitas_hls4ml(model, out, golden=gm), out=out,
                           x=digits.test.tensors[0].numpy())


def test_mobilenetv2_bitexact_depthwise_adds_global_sum(mobilenet):
    """Depthwise convs (groups = C), linear requantisations, residual adds and the global sum (ReduceSum, parsed by
    the extension's ONNX handler) all run as sanitas kernels, bit-exact on the 270 test images; the golden's
    identity requantisations (a shortcut quantiser onto its input's own grid) are the acts hls4ml removed."""
    from sanitas.hls.ext.convert import _identity, predict
    gm = mobilenet.gm
    got = predict(mobilenet.hm, mobilenet.x)
    assert int((got == gm.run_int(gm.quantize_input(mobilenet.x))).all(axis=1).sum()) == 270
    src = (mobilenet.out / "firmware" / "myproject.cpp").read_text()
    calls = re.findall(r"sanitas::glue::(\w+)<", src)
    ops = [n.op for n in gm.nodes]
    identities = sum(_identity(gm, n) for n in gm.nodes)
    assert {c: calls.count(c) for c in set(calls)} == {
        "conv": ops.count("conv") + ops.count("linear"), "requantize": ops.count("act") - identities,
        "add2": ops.count("add"), "global_sum": ops.count("gsum")}
    assert sum(n.op == "conv" and n.attrs["groups"] > 1 for n in gm.nodes) == 6      # depthwise layers
    # the one hls4ml kernel left is the NHWC -> NCHW transpose Brevitas exports in front of the ReduceSum
    assert re.findall(r"nnet::(\w+)<", src.split("// hls-fpga-machine-learning insert layers")[-1]) == ["transpose"]


def test_reduce_sum_handler_refuses_other_axes():
    from onnx import TensorProto, helper

    from sanitas.hls.ext.frontend import parse_reduce_sum
    graph = helper.make_graph([], "g", [], [], initializer=[helper.make_tensor("ax", TensorProto.INT64, [1], [1])])
    node = helper.make_node("ReduceSum", ["x", "ax"], ["y"], name="ReduceSum_7", keepdims=0)
    with pytest.raises(SanitasError, match=r"^ReduceSum_7: ReduceSum over axes \[1\] of a 4-d tensor \(keepdims 0\): "
                                           r"only the global sum over H, W \(NCHW, keepdims 0\)$"):
        parse_reduce_sum(node, ["x", "ax"], [[1, 8, 4, 4]], graph)
    ok = helper.make_graph([], "g", [], [], initializer=[helper.make_tensor("ax", TensorProto.INT64, [2], [2, 3])])
    layer = parse_reduce_sum(node, ["x", "ax"], [[1, 8, 4, 4]], ok)
    assert (layer["class_name"], layer["n_chan"], layer["in_height"], layer["in_width"]) == \
           ("SanitasReduceSum", 8, 4, 4)


def test_cli_bad_input_one_line(tmp_path, capsys):
    from sanitas.hls.ext.__main__ import main
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == f"sanitas: error: hls.ext: argument --checkpoint: file not found: {tmp_path / 'none.pt'}\n"
    assert not (tmp_path / "o").exists()

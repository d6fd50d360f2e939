"""Brevitas LeNet-5 -> QONNX -> hls4ml (Vitis backend, io_parallel) -> g++ ``compile()``: bit-exact with the golden.

One module-scoped fixture trains LeNet-5 on 8x8 digits for 2 epochs (fixed seeds), exports the golden model and
builds + compiles the hls4ml project under build/hls4ml/test_convert/lenet5. The tests then assert exact integer
equality of the compiled C++ model with ``GoldenModel.predict`` on the whole digits test split, on random inputs
with exact rounding ties and saturating values, and layer by layer through hls4ml's trace.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sanitas.data import load_dataset
from sanitas.errors import SanitasError
from sanitas.golden import export_golden
from sanitas.hls.convert import check_bitexact, hls_predict, hls_report, to_hls4ml, trace_compare
from sanitas.models import build
from sanitas.train import train_model

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "hls4ml" / "test_convert" / "lenet5"

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed (hls4ml compile needs it)")


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    splits = load_dataset("digits")
    model = build("lenet5", splits.in_shape, splits.num_classes)
    metrics = train_model(model, splits, epochs=2, batch_size=64, lr=2e-3, seed=0, progress=False)
    golden = export_golden(model)
    if OUT.exists():
        shutil.rmtree(OUT)
    t0 = time.time()
    hm = to_hls4ml(model, OUT, golden=golden, backend="Vitis", io_type="io_parallel", trace=True)
    build_s = time.time() - t0
    x_test = splits.test.tensors[0].numpy()      # (270, 1, 8, 8) float32 in [0, 1]
    return SimpleNamespace(model=model, golden=golden, hm=hm, x_test=x_test, y_test=splits.test.tensors[1].numpy(),
                           metrics=metrics, build_s=build_s)


def test_bitexact_whole_test_split(lenet):
    r = check_bitexact(lenet.hm, lenet.golden, lenet.x_test)
    assert r["total"] == len(lenet.x_test) == 270
    assert r["bit_exact"] == r["total"], r
    assert r["max_abs_diff"] == 0 and r["mismatched_logits"] == 0
    # the net did learn something, so the logits are not a degenerate constant
    acc = float((hls_predict(lenet.hm, lenet.x_test).argmax(1) == lenet.y_test).mean())
    assert acc > 0.3


def test_bitexact_rounding_ties_and_saturation(lenet):
    """Input quantisation happens in the bridge's double -> ap_fixed<8,1,RND_CONV,SAT> cast: ties go to even."""
    rng = np.random.default_rng(1)
    e_in = lenet.golden.input_node.e_out
    ties = ((rng.integers(-160, 160, size=(64, 1, 8, 8)) + 0.5) * 2.0 ** e_in).astype(np.float32)  # exact halves
    wide = rng.uniform(-1.5, 1.5, size=(64, 1, 8, 8)).astype(np.float32)                            # saturates
    x = np.concatenate([ties, wide])
    assert np.all(np.abs(ties * 2.0 ** -e_in % 1 - 0.5) == 0)
    r = check_bitexact(lenet.hm, lenet.golden, x)
    assert r["bit_exact"] == r["total"] == 128, r


def test_types_are_derived_from_quant_nodes(lenet):
    rep = hls_report(OUT)
    g = lenet.golden
    assert rep["backend"] == "Vitis" and rep["io_type"] == "io_parallel" and rep["compiled"]
    assert rep["channels_last"] is True
    assert rep["input_type"] == f"fixed<8,{8 + g.input_node.e_out},RND_CONV,SAT,0>"
    assert rep["out_exp"] == g.out_exp
    mac = [lay for lay in rep["layers"] if lay["class"] in ("Conv2D", "Dense")]
    assert [lay["accum_t"] for lay in mac] == [f"fixed<32,{32 + n.e_out},TRN,WRAP,0>" for n in g.layers()]
    assert all(lay["result_t"] == lay["accum_t"] for lay in mac)           # int32 accumulators, no rounding
    assert [lay["weight_t"] for lay in mac] == [f"fixed<8,{8 + n.e_w},RND_CONV,SAT_SYM,0>" for n in g.layers()]
    relus = [lay for lay in rep["layers"] if lay["class"] == "Activation"]
    acts = g.layers(("act",))
    assert [lay["result_t"] for lay in relus] == [f"ufixed<8,{8 + n.e_out},RND_CONV,SAT,0>" for n in acts]
    assert rep["compile_s"] is not None and rep["compile_s"] < 120


def test_hls_predict_checks_input_shape(lenet):
    with pytest.raises(SanitasError):
        hls_predict(lenet.hm, lenet.x_test[:, :, :4, :])


def test_trace_every_layer_bitexact(lenet):
    """Per-layer outputs (hls4ml trace, channels-last) equal ``golden.run_int(..., return_all=True)``."""
    rows = trace_compare(lenet.hm, lenet.golden, lenet.x_test[:32])
    assert [r["golden"] for r in rows] == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
                                           "fc1", "relu3", "fc2", "relu4", "fc3"]
    assert all(r["max_abs_diff"] == 0 for r in rows), rows

"""Golden integer model vs Brevitas: bit-exact on the digits test split for all four zoo models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sanitas.golden import GoldenModel, export_golden, requantize, shift_round_half_even
from sanitas.golden.check import check_bitexact
from sanitas.models import build
from sanitas.train import load_checkpoint

from ..conftest import trained_checkpoint


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "mobilenetv2", "vgg"])
def test_zoo_bitexact_on_digits_test_split(name, digits, tmp_path):
    model, ck = load_checkpoint(trained_checkpoint(name))
    gm = export_golden(model)
    x, y = digits.test.tensors
    r = check_bitexact(model, gm, x)
    assert r["bit_exact"] == r["total"] == 270
    assert r["max_abs_diff"] == 0.0
    # the nets learned something: golden predictions are the net's predictions
    acc = float((r["golden_pred"] == y.numpy()).mean())
    assert acc == pytest.approx(ck["metrics"]["test_acc"])
    assert acc > 0.3
    # fast executor (torch float64, exact below 2**53) equals the int64 reference, node by node
    xq = gm.quantize_input(x.numpy()[:64])
    a = gm.run_int(xq, return_all=True, backend="int")
    b = gm.run_int(xq, return_all=True, backend="f64")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # save/load round trip keeps every integer
    gm2 = GoldenModel.load(gm.save(tmp_path / "g.npz"))
    assert np.array_equal(gm2.predict(x.numpy()[:32]), gm.predict(x.numpy()[:32]))


def test_graph_features_are_covered():
    """The zoo exercises residual adds, depthwise convs, max pools and global sum pools."""
    ops = {n.op for n in build("resnet20").nodes} | {n.op for n in build("mobilenetv2").nodes}
    assert {"add", "gsum", "conv", "linear", "act"} <= ops
    assert any(n.attrs.get("groups", 1) > 1 for n in build("mobilenetv2").nodes)
    assert "maxpool" in {n.op for n in build("lenet5").nodes}


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "mobilenetv2", "vgg"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_larger_inputs_bitexact(name, shape):
    torch.manual_seed(1)
    m = build(name, shape)
    m.train()
    x = torch.rand(8, *shape)
    m(x)            # one step of runtime statistics for the activation scales
    gm = export_golden(m)
    r = check_bitexact(m, gm, x)
    assert r["bit_exact"] == 8


def test_rounding_rule_half_even_and_saturation():
    x = np.array([5, 6, 7, -5, -6, -7, 3, -3, 1 << 40], dtype=np.int64)
    # /2: 2.5->2, 3->3, 3.5->4, -2.5->-2, -3->-3, -3.5->-4, 1.5->2, -1.5->-2
    assert shift_round_half_even(x[:8], 1).tolist() == [2, 3, 4, -2, -3, -4, 2, -2]
    assert requantize(x, 0, 1, 8, True).tolist() == [2, 3, 4, -2, -3, -4, 2, -2, 127]
    assert requantize(x, 0, 1, 8, False).tolist() == [2, 3, 4, 0, 0, 0, 2, 0, 255]
    assert requantize(np.array([3]), 0, -2, 8, True).tolist() == [12]          # left shift is exact
    # agrees with torch.round (what Brevitas uses) on every tie and non-tie in a range
    v = np.arange(-4096, 4096, dtype=np.int64)
    for s in (1, 2, 5):
        ref = torch.round(torch.tensor(v / 2 ** s)).numpy().astype(np.int64)
        assert np.array_equal(shift_round_half_even(v, s), ref)


def test_bad_input_shape_is_one_line_error(lenet5_ckpt):
    from sanitas.errors import SanitasError
    model, _ = load_checkpoint(lenet5_ckpt)
    gm = export_golden(model)
    with pytest.raises(SanitasError, match=r"input must have shape \(N, 1, 8, 8\)"):
        gm.predict(np.zeros((2, 1, 9, 9), dtype=np.float32))

"""Rate-based injectors (MiBB, adSAF, BER) on Brevitas modules: empirical rates within statistical bounds,
fault values, determinism from the generator, gradients, and any nn.Module (not only QNets)."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from sanitas.errors import SanitasError
from sanitas.faults import ADSAF, BER, MiBB, inject
from sanitas.faults.torch_inject import mac_layers, macs_per_output


def _x(images, n=64):
    return torch.as_tensor(np.concatenate([images] * (n // len(images) + 1))[:n])


def _within(observed, expected, var, k=5.0):
    return abs(observed - expected) <= k * math.sqrt(max(var, 1e-12)) + 1


def test_mibb_rate_matches_per_output_probability(lenet, images):
    qnet, _ = lenet
    p = 2e-3
    numel = {}
    hooks = [m.register_forward_hook(lambda m, a, o, name=name: numel.__setitem__(name, o.value.numel()))
             for name, m in mac_layers(qnet)]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad(), inject(qnet, MiBB(p), generator=g) as inj:
        for _ in range(5):
            qnet(_x(images))
    for h in hooks:
        h.remove()
    mods = dict(mac_layers(qnet))
    q = {n: 1 - (1 - p) ** macs_per_output(mods[n]) for n in numel}
    exp = 5 * sum(numel[n] * q[n] for n in numel)
    var = 5 * sum(numel[n] * q[n] * (1 - q[n]) for n in numel)
    st = inj.stats["mibb"]
    assert st.calls == 5 * len(mods) and st.total == 5 * sum(numel.values())
    assert _within(st.faulty, exp, var), (st.faulty, exp)
    assert macs_per_output(mods["layers.conv2"]) == 6 * 5 * 5 and macs_per_output(mods["layers.fc1"]) == 64


def test_mibb_fault_values_are_power_of_two_steps(lenet, images):
    qnet, _ = lenet
    conv = dict(mac_layers(qnet))["layers.conv2"]
    with torch.no_grad():
        x = qnet(_x(images, 128), return_all=True)["pool1"]             # conv2's input (QuantTensor)
    with torch.no_grad():
        clean = conv(x).value
        with inject(conv, MiBB(0.01), generator=torch.Generator().manual_seed(1)):
            faulty = conv(x).value
    step = 2.0 ** (math.ceil(math.log2(clean.abs().max().item())) - 7)
    d = (faulty - clean)[faulty != clean]
    assert d.numel() > 1000
    lo, hi = -128 * step, 127 * step
    at_rail = (faulty[faulty != clean] == lo) | (faulty[faulty != clean] == hi)
    r = (d[~at_rail].abs() / step)
    j = torch.log2(r)
    assert torch.equal(j, torch.round(j)) and j.min() >= 0 and j.max() <= 7     # |delta| = 2^j * step
    counts = torch.bincount(j.long(), minlength=8)
    assert (counts > 0).all()                                                   # every j in 0..7 occurs
    assert 0.4 < (d > 0).float().mean() < 0.6                                    # random sign


def test_adsaf_cell_rates(lenet):
    p, sa1 = 0.08, 0.163
    fm = ADSAF(p, sa1)
    g = torch.Generator().manual_seed(3)
    n = 200_000
    w = torch.full((n,), 50.0)
    wf, bad, cells = fm.faulty_int(w, g)
    assert cells.shape == (2, n)
    assert _within(cells.sum().item(), 2 * n * p, 2 * n * p * (1 - p))
    p1 = p * sa1
    # w = +50 is (G+ = 50, G- = 0): unchanged iff G+ is fine and G- is not stuck-at-1
    keep = (wf == 50).float().sum().item()
    e = (1 - p) * (1 - p1)
    assert _within(keep, n * e, n * e * (1 - e))
    # G+ stuck-at-1 alone drives it to +127; G+ stuck-at-0 alone zeroes it
    e127 = p1 * (1 - p1)
    assert _within((wf == 127).float().sum().item(), n * e127, n * e127 * (1 - e127))
    e0 = (p - p1) * (1 - p1) + p1 * p1
    assert _within((wf == 0).float().sum().item(), n * e0, n * e0 * (1 - e0))
    assert torch.equal(bad, cells.any(0))


def test_adsaf_per_bit_rates():
    p, sa1 = 0.1, 0.163
    fm = ADSAF(p, sa1, per_bit=True)
    n = 100_000
    w = torch.full((n,), -85.0)                  # -85: magnitude bits 0, 2, 4, 6 set
    wf, bad, cells = fm.faulty_int(w, torch.Generator().manual_seed(4))
    assert cells.shape == (n, 7) and (wf <= 0).all()    # sign kept
    m = (-wf).long()
    set_rate = ((m >> 1) & 1).float().mean().item()     # bit 1 was 0: set only by stuck-at-1
    clr_rate = 1 - (m & 1).float().mean().item()        # bit 0 was 1: cleared only by stuck-at-0
    assert _within(set_rate * n, n * p * sa1, n * p * sa1)
    assert _within(clr_rate * n, n * p * (1 - sa1), n * p * (1 - sa1))


@pytest.mark.parametrize("site", ["weight", "act"])
def test_ber_rate(lenet, images, site):
    qnet, _ = lenet
    p = 1e-3
    with torch.no_grad(), inject(qnet, BER(p, site=site), generator=torch.Generator().manual_seed(5)) as inj:
        for _ in range(3):
            qnet(_x(images))
    st = inj.stats[f"ber:{site}"]
    assert _within(st.faulty, st.total * p, st.total * p * (1 - p))
    assert st.faulty > 50


def test_ber_all_bits_is_bitwise_not(lenet, images):
    """BER(p=1) on weights flips all 8 bits: w -> ~w = -w - 1, checked against the golden executor."""
    qnet, gm = lenet
    x = images[:8]

    def invert(node, site, arr):
        return -np.asarray(arr, dtype=np.int64) - 1 if site == "weight" else arr
    ref = gm.run_int(gm.quantize_input(x), hook=invert)
    with torch.no_grad(), inject(qnet, BER(1.0, "weight")):
        out = qnet(torch.as_tensor(x))
    got = torch.round(out.double() * 2.0 ** -gm.out_exp).long().numpy()
    assert np.array_equal(got, ref)


def test_determinism_and_resampling(lenet, images):
    qnet, _ = lenet
    x = _x(images)
    outs = []
    for seed in (7, 7, 8):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad(), inject(qnet, MiBB(1e-3), ADSAF(0.02), BER(1e-3, "act"), generator=g):
            outs.append((qnet(x), qnet(x)))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])   # same seed, same faults
    assert not torch.equal(outs[0][0], outs[2][0])                                      # other seed
    assert not torch.equal(outs[0][0], outs[0][1])                                      # resampled per forward
    with torch.no_grad():
        clean = qnet(x)
    with torch.no_grad(), inject(qnet, MiBB(1e-3), enabled=False):
        assert torch.equal(qnet(x), clean)
    assert torch.equal(qnet(x), clean)                                                  # hooks removed


def test_gradients(lenet, images):
    qnet, _ = lenet
    x, y = _x(images, 32), torch.arange(32) % 10
    convs = [m for _, m in mac_layers(qnet)]

    losses = []

    def grads(*fms, seed=0):
        qnet.zero_grad()
        with inject(qnet, *fms, generator=torch.Generator().manual_seed(seed)):
            loss = nn.functional.cross_entropy(qnet(x), y)
        loss.backward()
        losses.append(loss.item())
        return [m.weight.grad.clone() for m in convs], [m.bias.grad.clone() for m in convs]
    qnet.train()
    try:
        w0, b0 = grads()
        w1, b1 = grads(ADSAF(0.0))
        assert losses[0] == losses[1]                                  # no fault: the clean forward
        assert all(torch.allclose(a, b, atol=1e-3 * a.abs().max().item()) for a, b in zip(w0, w1))
        w2, b2 = grads(ADSAF(1.0))
        assert all((g == 0).all() for g in w2), [(g != 0).sum().item() for g in w2]   # all faulty: no weight grad
        assert any((g != 0).any() for g in b2)
        w3, _ = grads(ADSAF(0.3), seed=1)
        frac0 = np.mean([(g == 0).float().mean().item() for g in w3])
        assert frac0 > 0.3                                            # faulty weights (~51 %) get no gradient
        w4, _ = grads(MiBB(1e-3))
        assert all(torch.isfinite(g).all() and (g != 0).any() for g in w4)   # clean path keeps its gradient
    finally:
        qnet.eval()
        qnet.zero_grad()


def test_any_module_with_plain_tensor_outputs(images):
    """A non-QNet module whose Brevitas layers return plain tensors (as a supernet may) works too."""
    from brevitas.nn import QuantConv2d, QuantLinear, QuantReLU
    torch.manual_seed(0)
    net = nn.Sequential(QuantConv2d(1, 4, 3, padding=1), QuantReLU(), nn.Flatten(), QuantLinear(256, 10))
    x = _x(images, 16)
    with torch.no_grad():
        clean = net(x)
        for fm, key in ((MiBB(1e-2), "mibb"), (BER(1e-2, "act"), "ber:act"), (BER(1e-2), "ber:weight"),
                        (ADSAF(0.1), "adsaf")):
            with inject(net, fm, generator=torch.Generator().manual_seed(0)) as inj:
                out = net(x)
            assert inj.stats[key].faulty > 0 and not torch.equal(out, clean), key


def test_bad_rates_and_models():
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(SanitasError, match="no Brevitas"):
        with inject(net, MiBB(1e-3)):
            pass
    from brevitas.nn import QuantLinear
    q = nn.Sequential(QuantLinear(2, 2))
    for fm in (MiBB(2.0), ADSAF(-0.1), BER(0.1, site="bias")):
        with pytest.raises(SanitasError):
            with inject(q, fm):
                pass

"""Zoo models: shapes for all three input sizes, spec round trip, weights-only checkpoints."""
from __future__ import annotations

import pytest
import torch

from sanitas.errors import SanitasError
from sanitas.models import build, build_from_spec
from sanitas.train import load_checkpoint, save_checkpoint


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "mobilenetv2", "vgg"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_forward_backward_all_input_sizes(name, shape):
    m = build(name, shape, 10)
    m.train()
    y = m(torch.rand(2, *shape))
    assert tuple(y.shape) == (2, 10)
    y.sum().backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if n.endswith("weight"))


def test_spec_round_trip_and_weights_only_checkpoint(tmp_path):
    m = build("mobilenetv2", (1, 8, 8), 10)
    m2 = build_from_spec(m.spec)
    assert [n.name for n in m2.nodes] == [n.name for n in m.nodes]
    assert sum(p.numel() for p in m2.parameters()) == sum(p.numel() for p in m.parameters())
    p = save_checkpoint(m, tmp_path / "m.pt", "digits", {"test_acc": 0.5})
    raw = torch.load(p, weights_only=True)          # plain tensors and JSON-able values only
    assert raw["spec"]["name"] == "mobilenetv2" and raw["metrics"]["test_acc"] == 0.5
    m3, ck = load_checkpoint(p)
    x = torch.rand(4, 1, 8, 8)
    m.eval()
    assert torch.equal(m(x), m3(x))
    assert not list(tmp_path.glob("*.tmp*"))        # atomic write leaves nothing behind


def test_unknown_model():
    with pytest.raises(SanitasError, match="unknown model 'alexnet'"):
        build("alexnet")


def test_seeded_build_is_independent_of_earlier_rng_use():
    """build(seed=...) draws the same initial weights whatever consumed the global RNG before, and leaves the
    caller's RNG stream where it was."""
    torch.manual_seed(1)
    a = build("lenet5", (1, 8, 8), 10, seed=3).state_dict()
    torch.rand(1000)                                   # something else used the global RNG in between
    state = torch.random.get_rng_state()
    b = build("lenet5", (1, 8, 8), 10, seed=3).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = build("lenet5", (1, 8, 8), 10, seed=4).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a if k.endswith("weight"))

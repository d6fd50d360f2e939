"""Fault records: stable ids, JSON round trip, validation messages, reproducible sampling, Wilson / sample size."""
import json

import numpy as np
import pytest

from sanitas.errors import SanitasError
from sanitas.faults import (KINDS, SITES, Fault, Site, SiteInfo, enumerate_faults, population, register_site,
                            sample_faults, validate)
from sanitas.faults.stats import sample_size, wilson


def test_id_is_stable_and_json_round_trips():
    f = Fault("weight", "conv1", (1, 0, 2, 3), 5, "bitflip")
    assert f.id == "231f7c1fb0058465"               # blake2b-64 of the canonical JSON: same in every run
    g = Fault.from_json(f.to_json())
    assert g == f and g.id == f.id and isinstance(g.index, tuple)
    assert Fault("weight", "conv1", [1, 0, 2, 3], 5).id == f.id          # list index normalised to tuple
    assert Fault("weight", "conv1", (1, 0, 2, 3), 4).id != f.id
    assert json.loads(f.to_json()) == {"site": "weight", "layer": "conv1", "index": [1, 0, 2, 3], "bit": 5,
                                       "kind": "bitflip", "value": None, "cycle": None}
    with pytest.raises(SanitasError):
        Fault.from_json('{"site": "weight"}')


@pytest.mark.parametrize("fault, msg", [
    (Fault("x", "conv1", (0,), 0), "unknown site 'x'"),
    (Fault("weight", "fc9", (0, 0), 0), "layer 'fc9' does not exist"),
    (Fault("weight", "conv1", (0, 0, 0, 0), 9), "bit 9 out of range for int8 weight"),
    (Fault("bias", "conv1", (0,), 32), "bit 32 out of range for int32 bias"),
    (Fault("output", "relu1", (0, 0, 0), 8), "bit 8 out of range for uint8 output"),
    (Fault("weight", "relu1", (0,), 0), "layer 'relu1' (act) has no 'weight' site"),
    (Fault("weight", "conv1", (6, 0, 0, 0), 0), "index (6, 0, 0, 0) out of range"),
    (Fault("weight", "conv1", (0, 0, 0), 0), "out of range"),
    (Fault("weight", "conv1", (0, 0, 0, 0), 0x100, "multibit"), "bit mask 0x100 out of range"),
    (Fault("weight", "conv1", (0, 0, 0, 0), 0, "random", value=200), "random fault needs a value in [-128, 127]"),
    (Fault("weight", "conv1", (0, 0, 0, 0), 0, "flip"), "unknown fault kind 'flip'"),
])
def test_validation_messages(lenet, fault, msg):
    with pytest.raises(SanitasError) as e:
        validate(fault, lenet[1])
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_sampling_is_reproducible_distinct_and_uniform(lenet):
    gm = lenet[1]
    a = sample_faults(gm, 400, sites=("weight", "output"), kinds=("bitflip", "stuck0"), seed=3)
    b = sample_faults(gm, 400, sites=("weight", "output"), kinds=("bitflip", "stuck0"), seed=3)
    c = sample_faults(gm, 400, sites=("weight", "output"), kinds=("bitflip", "stuck0"), seed=4)
    assert a == b and a != c
    assert len({f.id for f in a}) == 400                                    # without replacement
    for f in a:
        validate(f, gm)
    # uniform over the population: the weight share matches its population share within 5 sigma
    pw = population(gm, ("weight",), ("bitflip", "stuck0"))
    pt = population(gm, ("weight", "output"), ("bitflip", "stuck0"))
    k = sum(f.site == "weight" for f in a)
    sd = (400 * pw / pt * (1 - pw / pt)) ** 0.5
    assert abs(k - 400 * pw / pt) < 5 * sd
    # "output" defaults to the stored activations (input / act nodes)
    assert {gm.by_name[f.layer].op for f in a if f.site == "output"} <= {"input", "act"}
    # every kind draws valid records, random values inside the type range
    for f in sample_faults(gm, 50, sites=tuple(SITES), kinds=KINDS, seed=1):
        validate(f, gm)


def test_exhaustive_enumeration_matches_population(lenet):
    gm = lenet[1]
    faults = list(enumerate_faults(gm, "bias", ["conv1", "fc3"], kinds=("bitflip", "stuck1")))
    assert len(faults) == population(gm, ("bias",), ("bitflip", "stuck1"), ["conv1", "fc3"]) == (6 + 10) * 32 * 2
    assert len({f.id for f in faults}) == len(faults)
    assert sample_faults(gm, 10**9, ("bias",), ("bitflip",), 0, ["conv1"]) and \
        len(sample_faults(gm, 10**9, ("bias",), ("bitflip",), 0, ["conv1"])) == 6 * 32


def test_site_registry_is_open(lenet):
    gm = lenet[1]
    site = Site("sanity_test", "a protection's own state (test)", lambda g: ["fc3"],
                lambda g, n: SiteInfo((3,), 32, True, False), hook=None)
    register_site(site)
    try:
        validate(Fault("sanity_test", "fc3", (2,), 31), gm)
        with pytest.raises(SanitasError, match="bit 32 out of range for int32 sanity_test"):
            validate(Fault("sanity_test", "fc3", (2,), 32), gm)
    finally:
        SITES.pop("sanity_test")


def test_wilson_and_sample_size():
    assert wilson(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    lo, hi = wilson(100, 100)
    assert hi == 1.0 and lo == pytest.approx(0.96301, abs=1e-5)
    assert wilson(0, 0) == (0.0, 1.0)
    # Leveugle et al. 2009: N = 1e6, 1 % margin, 99 % confidence -> 16317 faults
    assert sample_size(10**6, 0.01, 2.5758) == 16317
    assert sample_size(100, 0.01, 2.5758) <= 100
    rng = np.random.default_rng(0)        # coverage of the 95 % interval on a known p (Monte Carlo, 400 runs)
    hits = sum(lo <= 0.1 <= hi for lo, hi in (wilson(int(rng.binomial(200, 0.1)), 200) for _ in range(400)))
    assert hits >= 0.92 * 400

"""The hardware sites of the systolic array in the fault-site registry (sanitas.faults.fault) and their golden mapping.

* pe_acc / chk_acc / pe_a / pe_b are registered with level "array", their golden site and mapping text, and are
  not executed by the golden campaign engines (`campaign_sites`);
* `golden_equivalent` maps their indices onto golden sites; for the linear layer fc3 of LeNet-5 the pe_a (column 0)
  and pe_b (row 0) faults replayed by `gemm_replay` on the layer's GEMM change the accumulators exactly as the
  golden input / weight faults they map to change the golden model's fc3 accumulators.
"""
from __future__ import annotations

import numpy as np
import pytest

from sanitas.config import ArrayConfig
from sanitas.errors import SanitasError
from sanitas.faults import SITES, Fault, validate
from sanitas.faults.executors import run_golden
from sanitas.faults.fault import ARRAY_ACC_SITES, ARRAY_OPERAND_SITES, campaign_sites, golden_equivalent
from sanitas.golden.gemm import gemm_replay


def test_array_sites_are_registered():
    assert ARRAY_ACC_SITES + ARRAY_OPERAND_SITES == ("pe_acc", "chk_acc", "pe_a", "pe_b")
    assert {name: (SITES[name].level, SITES[name].golden, SITES[name].hook) for name in ARRAY_ACC_SITES +
            ARRAY_OPERAND_SITES} == {"pe_acc": ("array", "acc", None), "chk_acc": ("array", None, None),
                                     "pe_a": ("array", "input", None), "pe_b": ("array", "weight", None)}
    assert all(SITES[n].mapping for n in ARRAY_ACC_SITES + ARRAY_OPERAND_SITES)
    assert campaign_sites() == ["weight", "bias", "acc", "output", "input"]
    assert (SITES["part_acc"].level, SITES["part_acc"].golden, SITES["part_acc"].hook) == ("array", None, None)


def test_array_site_shapes_and_validation(lenet):
    gm = lenet[1]
    assert validate(Fault("pe_acc", "conv1", (63, 5), 31), gm).shape == (64, 6)    # (H*W, C_out) per image
    assert validate(Fault("chk_acc", "conv2", (15,), 0), gm).shape == (16,)
    assert validate(Fault("part_acc", "conv1", (63, 2), 31), gm).shape == (64, 3)  # NP = floor(log2 6) + 1
    with pytest.raises(SanitasError, match=r"index \(0, 4\) out of range for fc3 part_acc of shape \(1, 4\)"):
        validate(Fault("part_acc", "fc3", (0, 4), 0), gm)
    assert validate(Fault("pe_a", "fc3", (0, 10), 7, cycle=3), gm).shape == (1, 11)  # column 10: checksum PE
    with pytest.raises(SanitasError, match=r"index \(0, 10\) out of range for fc3 pe_acc of shape \(1, 10\)"):
        validate(Fault("pe_acc", "fc3", (0, 10), 0), gm)
    with pytest.raises(SanitasError, match="layer 'relu1' \\(act\\) has no 'pe_acc' site"):
        validate(Fault("pe_acc", "relu1", (0, 0), 0), gm)


def test_golden_equivalent_indices(lenet):
    gm = lenet[1]
    # conv1 output (6, 8, 8): GEMM row m = oh * 8 + ow, column j = output channel
    assert golden_equivalent(Fault("pe_acc", "conv1", (19, 4), 9, "stuck1"), gm) == \
        Fault("acc", "conv1", (4, 2, 3), 9, "stuck1")
    assert golden_equivalent(Fault("pe_acc", "fc1", (0, 17), 3), gm) == Fault("acc", "fc1", (17,), 3)
    mid = Fault("pe_acc", "fc1", (0, 17), 3, cycle=20)          # data-dependent: needs the replayed value
    assert golden_equivalent(mid, gm) is None
    assert golden_equivalent(mid, gm, value=-77) == Fault("acc", "fc1", (17,), 0, "random", value=-77)
    assert golden_equivalent(Fault("chk_acc", "fc1", (0,), 3), gm) is None
    assert golden_equivalent(Fault("part_acc", "fc1", (0, 2), 3), gm) is None
    assert golden_equivalent(Fault("pe_a", "fc2", (0, 0), 2, cycle=33), gm) == Fault("input", "fc2", (33,), 2)
    assert golden_equivalent(Fault("pe_a", "fc2", (0, 1), 2, cycle=33), gm) is None      # columns >= 1 only
    assert golden_equivalent(Fault("pe_a", "conv2", (0, 0), 2, cycle=3), gm) is None     # one im2col copy
    assert golden_equivalent(Fault("pe_b", "fc2", (0, 5), 1, cycle=12), gm) == Fault("weight", "fc2", (5, 7), 1)
    assert golden_equivalent(Fault("pe_b", "fc2", (0, 84), 1, cycle=12), gm) is None     # checksum weights
    assert golden_equivalent(Fault("pe_b", "fc2", (0, 5), 1, cycle=2), gm) is None       # padding cycle
    with pytest.raises(SanitasError, match="'acc' is not an array site"):
        golden_equivalent(Fault("acc", "fc1", (3,), 1), gm)


def test_operand_faults_match_their_golden_equivalents(lenet, images):
    """fc3 of LeNet-5 on one image: the GEMM replay of pe_a / pe_b equals the golden input / weight fault."""
    qnet, gm = lenet
    xq = gm.quantize_input(images[:1])
    env = run_golden(gm, xq, return_all=True)
    node = gm.by_name["fc3"]
    a = np.asarray(env["relu4"], np.int64).reshape(1, -1)       # (1, 84) uint8 activations
    b = np.asarray(node.weight, np.int64).T                     # (84, 10) int8 weights
    arr = ArrayConfig(rows=4, cols=10, data_width=9, acc_width=32, max_k=128)   # 9 bits hold uint8 and int8
    c0, _ = gemm_replay(a, b, None, arr)
    rng = np.random.default_rng(5)
    checked = 0
    for site in ("pe_a", "pe_b"):
        for _ in range(12):
            j = 0 if site == "pe_a" else int(rng.integers(10))
            kk = int(rng.integers(84))
            f = Fault(site, "fc3", (0, j), int(rng.integers(7)), cycle=kk + j)   # bits 0..6: same in 8 and 9 bits
            g = golden_equivalent(f, gm)
            assert g is not None and g.site == {"pe_a": "input", "pe_b": "weight"}[site]
            c, _ = gemm_replay(a, b, f, arr)
            faulty = run_golden(gm, xq, g, return_all=True)
            assert np.array_equal(faulty["fc3"].astype(np.int64) - env["fc3"], c - c0), f
            checked += 1
    assert checked == 24

"""sanitas_top as a shared library (hls/top.py + firmware.py + layers.h): bit-exact with the golden model.

Every zoo net, trained on digits (the session's cached checkpoints), is generated once with the fault port and
compiled once (cached by content hash under build/hls/top); the tests assert exact integer equality of the logits
on all 270 test images, all-zero counters and checksum flags, the engine's cycle and MAC counts against their
closed forms, fault agreement with ``ProtectedModel(gm, "none")`` for sampled records of every golden site and
kind, a searched net holding every primitive of the adsaf (hence mibb) space, and 28x28 / 32x32x3 inputs.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from sanitas.config import ArrayConfig
from sanitas.errors import SanitasError
from sanitas.faults.executors import golden_hook, run_golden
from sanitas.faults.fault import KINDS, Fault, sample_faults
from sanitas.golden import export_golden
from sanitas.hls import regmap
from sanitas.hls.check import protected_per_image
from sanitas.hls.faultport import SITE_CODES, fault_registers
from sanitas.hls.cycles import _node_cycles, cycle_model
from sanitas.hls.top import TopLibrary, build_top, build_top_library, compile_net_csim
from sanitas.models import build
from sanitas.protect.model import ProtectedModel
from sanitas.protect.overhead import overhead
from sanitas.train import load_checkpoint
from ..conftest import trained_checkpoint

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

NETS = ("lenet5", "resnet20", "mobilenetv2", "vgg")
SITES = tuple(SITE_CODES)


@pytest.fixture(scope="module", params=NETS)
def top(request, digits, tmp_path_factory):
    model, _ = load_checkpoint(trained_checkpoint(request.param))
    gm = export_golden(model)
    lib = TopLibrary(build_top_library(gm, "none", tmp_path_factory.mktemp(request.param), fault_port=True), gm)
    return lib, gm, gm.quantize_input(digits.test.tensors[0].numpy())


def test_bitexact_digits_counters_zero(top):
    lib, gm, x = top
    y, counters = lib.run(x)
    assert len(x) == 270
    assert int((y == gm.run_int(x)).all(axis=1).sum()) == 270
    assert counters == dict.fromkeys(regmap.STATUS_COUNTERS, 0)
    st = lib.stats()
    assert st["flagged"] == 0                                  # no total-checksum row alarm fault-free
    assert st["macs"] == 270 * gm.macs()                       # data MACs issued = the op table's count
    assert st["cycles"] == 270 * cycle_model(gm, ArrayConfig())


def test_fault_agreement_with_protected_model(top):
    lib, gm, x = top
    x = x[:3]
    faults = sample_faults(gm, 10, sites=SITES, kinds=KINDS, seed=7)
    pm = ProtectedModel(gm, "none")
    clean = gm.run_int(x)
    changed = 0
    for f in faults:
        y, counters = lib.run(x, f)
        pm.reset()
        want, rep = pm.run(x, golden_hook(gm, [f]))
        np.testing.assert_array_equal(y, want, err_msg=str(f))
        assert counters == {k: getattr(rep, k) for k in regmap.STATUS_COUNTERS} == dict.fromkeys(
            regmap.STATUS_COUNTERS, 0)
        changed += not np.array_equal(want, clean)
    y, _ = lib.run(x)                                          # the fault lasts one run only
    np.testing.assert_array_equal(y, clean)
    assert changed >= 1                                        # the sample does reach the logits


def test_every_site_and_kind_on_lenet(digits, tmp_path):
    model, _ = load_checkpoint(trained_checkpoint("lenet5"))
    gm = export_golden(model)
    lib = TopLibrary(build_top_library(gm, "none", tmp_path, fault_port=True), gm)
    x = gm.quantize_input(digits.test.tensors[0].numpy())[:4]
    big = [Fault("weight", "fc1", (3, 5), 6), Fault("bias", "conv2", (1,), 30), Fault("acc", "fc3", (2,), 31),
           Fault("output", "relu2", (0, 1, 1), 7, "stuck1"), Fault("input", "fc2", (0,), 0, "random", value=255),
           Fault("output", "pool1", (2, 0, 3), 0b11, "multibit"), Fault("weight", "conv1", (0, 0, 2, 2), 7, "stuck0")]
    for f in big + sample_faults(gm, 40, sites=SITES, kinds=KINDS, seed=3):
        np.testing.assert_array_equal(lib.run(x, f)[0], run_golden(gm, x, [f]), err_msg=str(f))


def test_searched_net_with_every_primitive(digits, tmp_path):
    from sanitas.nas.derive import build_derived
    from sanitas.nas.space import WEIGHT_PRIMITIVES, Genotype, SpaceConfig
    g = Genotype(
        normal=(("sep_conv_3x3", 0), ("max_pool_3x3", 1), ("avg_pool_3x3", 2), ("dil_conv_5x5", 1),
                ("skip_connect", 3), ("relu_conv_bn_5x5", 2), ("conv_1x1", 4), ("sep_conv_5x5", 0)),
        reduce=(("avg_pool_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 1), ("dil_conv_3x3", 2),
                ("relu_conv_bn_3x3", 0), ("conv_1x1", 3), ("sep_conv_3x3", 4), ("none", 2)))
    used = {op for cell in (g.normal, g.reduce) for op, _ in cell}
    assert used == set(WEIGHT_PRIMITIVES)                      # adsaf's set, a superset of mibb's
    space = SpaceConfig(primitives=WEIGHT_PRIMITIVES, cells=3, nodes=4, channels=2, stem_multiplier=2,
                        reductions=(1,))
    torch.manual_seed(0)
    gm = export_golden(build_derived(g, space, digits.in_shape, digits.num_classes))
    assert {n.op for n in gm.nodes} >= {"conv", "linear", "act", "add", "concat", "maxpool", "gsum"}
    assert any(n.attrs.get("dilation", 1) > 1 for n in gm.nodes if n.op == "conv")
    lib = TopLibrary(build_top_library(gm, "none", tmp_path), gm)
    x = gm.quantize_input(digits.test.tensors[0].numpy())
    assert int((lib.run(x)[0] == gm.run_int(x)).all(axis=1).sum()) == 270


@pytest.mark.parametrize("net,shape", [("lenet5", (1, 28, 28)), ("mobilenetv2", (1, 28, 28)),
                                       ("vgg", (3, 32, 32)), ("resnet20", (3, 32, 32))])
def test_mnist_and_cifar_shapes(net, shape, tmp_path):
    torch.manual_seed(1)
    gm = export_golden(build(net, shape, 10))
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(2,) + shape)
    x[0] = np.where(x[0] % 3 == 0, 127, x[0])                   # saturating values
    lib = TopLibrary(build_top_library(gm, "none", tmp_path), gm)
    y, counters = lib.run(x)
    np.testing.assert_array_equal(y, gm.run_int(x))
    assert not any(counters.values()) and lib.stats()["flagged"] == 0


def test_register_file_abi(tmp_path):
    torch.manual_seed(0)
    gm = export_golden(build("lenet5", (1, 8, 8), 10))
    path, secs = build_top(gm, "none", tmp_path / "a", fault_port=True)
    assert path.name == "libsanitas_top.so" and path.is_file()
    again, secs2 = build_top(gm, "none", tmp_path / "b", fault_port=True)
    assert secs2 == 0.0 and again.read_bytes() == path.read_bytes()   # content-hash cache hit: no compile
    header = (tmp_path / "a" / "sanitas_regmap.h").read_text()
    for r in regmap.REGISTERS:
        assert f"#define SANITAS_REG_{r.name.upper()} 0x{r.offset:02X}\n" in header
    lib = TopLibrary(path, gm)
    regs = np.full(regmap.REG_WORDS, 0xDEAD, dtype=np.uint32)
    regs[regmap.word("n")] = 0
    for k, _ in regmap.FAULT_REGISTERS:
        regs[regmap.word(k)] = 0
    assert lib.lib.sanitas_top_axi(None, None, regs.ctypes.data) == 0
    for k in regmap.STATUS_COUNTERS:
        assert regs[regmap.word(k)] == 0 and regs[regmap.word(f"{k}_ctrl")] == 1
    assert regs[regmap.word("CTRL")] == 0xDEAD                  # the call touches only n's outputs


def test_fault_port_and_spec_errors():
    torch.manual_seed(0)
    gm = export_golden(build("lenet5", (1, 8, 8), 10))
    with pytest.raises(SanitasError, match="^sanitas_top's fault port has no site 'pe_acc' "
                                           r"\(choose from weight, bias, acc, output, input, sanity_w, sanity_b, "
                                           "sanity_sum, sanity_acc, sanity_spatial, sanity_wx, sanity_bx, param_sum, "
                                           r"dmr, checkpoint, checksum\)$"):
        fault_registers(Fault("pe_acc", "fc1", (0, 0), 3), gm)
    with pytest.raises(SanitasError, match="does not exist"):
        fault_registers(Fault("weight", "nope", (0, 0), 3), gm)
    regs = fault_registers(Fault("weight", "fc1", (2, 7), 3, "stuck0"), gm)
    assert regs == {"fi_enable": 1, "fi_site": 1, "fi_layer": [n.name for n in gm.nodes].index("fc1"),
                    "fi_index": 2 * gm.by_name["fc1"].weight.shape[1] + 7, "fi_and": 0xF7, "fi_or": 0, "fi_xor": 0,
                    "fi_and_hi": 0, "fi_or_hi": 0, "fi_xor_hi": 0}
    with pytest.raises(SanitasError, match="^sanitas_top generates the schemes none, dmr, sanity, sanity:eager only; "
                                           "asked for tmr$"):
        build_top_library(gm, "tmr+dmr")
    with pytest.raises(SanitasError, match="^site 'sanity_w' is protection state: the record needs the "
                                           "ProtectedModel$"):
        fault_registers(Fault("sanity_w", "fc1", (0, 0, 0), 3), gm)
    with pytest.raises(SanitasError, match="per-layer scheme map: no layer named 'fc9'"):
        build_top_library(gm, {"default": "dmr", "fc9": "tmr"})


def test_network_testbench_binary(digits, tmp_path):
    import subprocess
    torch.manual_seed(0)
    gm = export_golden(build("vgg", digits.in_shape, digits.num_classes))
    exe, _ = compile_net_csim(gm, tmp_path)
    x = gm.quantize_input(digits.test.tensors[0].numpy()[:20])
    x.astype(np.int8).tofile(tmp_path / "input.bin")
    gm.run_int(x).astype("<i4").tofile(tmp_path / "expected.bin")
    r = subprocess.run([str(exe), str(tmp_path), "20"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("sanitas_net: 20/20 bit-exact, counters 0, cycles ")
    bad = gm.run_int(x).astype("<i4")
    bad[5, 3] += 1
    bad.tofile(tmp_path / "expected.bin")
    r = subprocess.run([str(exe), str(tmp_path), "20"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout.startswith("sanitas_net: 19/20 bit-exact")


@pytest.mark.parametrize("net,images", [("lenet5", 270), ("resnet20", 24)])
def test_dmr_top(net, images, digits, tmp_path):
    """--scheme dmr: bit-exact, counters 0, +100 % MACs counted in the kernels = protect.overhead's figure, cycles =
    the closed form, and logits + counters equal ProtectedModel's for sampled faults of every site and kind."""
    model, _ = load_checkpoint(trained_checkpoint(net))
    gm = export_golden(model)
    lib = TopLibrary(build_top_library(gm, "dmr", tmp_path, fault_port=True), gm)
    x = gm.quantize_input(digits.test.tensors[0].numpy())[:images]
    y, counters = lib.run(x)
    np.testing.assert_array_equal(y, gm.run_int(x))
    assert counters == dict.fromkeys(regmap.STATUS_COUNTERS, 0)
    st = lib.stats()
    pm = ProtectedModel(gm, "dmr")
    assert st["macs"] - images * gm.macs() == images * overhead(pm)["extra_macs_abs"] == images * gm.macs()
    assert st["cycles"] == images * cycle_model(gm, ArrayConfig(), "dmr")
    # the duplicated convs/linears run twice on the array, the elementwise duplicates as a second lane of one pass
    gemm = sum(c for op, _, c, _ in _node_cycles(gm, ArrayConfig()) if op in ("conv", "linear"))
    assert cycle_model(gm, ArrayConfig(), "dmr") == cycle_model(gm, ArrayConfig()) + gemm
    assert cycle_model(gm, ArrayConfig(), "dmr", duplicate=False) == cycle_model(gm, ArrayConfig())
    xf = x[:2]
    alarms = 0
    for f in sample_faults(gm, 12, sites=SITES, kinds=KINDS, seed=5):
        got, cnt = lib.run(xf, f)
        want, want_cnt = protected_per_image(pm, xf, golden_hook(gm, [f]))
        np.testing.assert_array_equal(got, want, err_msg=str(f))
        assert cnt == want_cnt, str(f)
        alarms += cnt["detected"] > 0
    assert alarms >= 1


def test_dmr_events_on_lenet(digits, tmp_path):
    """The DMR event counts of single faults, per image: a read-path fault is re-read, then the producer
    re-executed (logits clean); an accumulator fault fires on every re-execution: 3 checks, 2 rollbacks,
    uncorrectable; a weight fault reaches both lanes (invisible to DMR)."""
    model, _ = load_checkpoint(trained_checkpoint("lenet5"))
    gm = export_golden(model)
    lib = TopLibrary(build_top_library(gm, "dmr", tmp_path, fault_port=True), gm)
    x = gm.quantize_input(digits.test.tensors[0].numpy())[:3]
    zero = dict.fromkeys(regmap.STATUS_COUNTERS, 0)
    y, cnt = lib.run(x, Fault("input", "fc2", (5,), 6))
    np.testing.assert_array_equal(y, gm.run_int(x))
    assert cnt == zero | {"detected": 3, "rolled_back": 6}
    f = Fault("acc", "fc3", (2,), 20)
    y, cnt = lib.run(x, f)
    np.testing.assert_array_equal(y, run_golden(gm, x, [f]))
    assert cnt == zero | {"detected": 9, "rolled_back": 6, "uncorrectable": 3}
    f = Fault("weight", "fc1", (3, 5), 6)
    y, cnt = lib.run(x, f)
    np.testing.assert_array_equal(y, run_golden(gm, x, [f]))
    assert cnt == zero


def test_per_layer_dmr_map(digits, tmp_path):
    """A per-layer map (DMR on the convs and the fc layers, none elsewhere): verified reads only where the producer
    keeps a checkpoint; logits, counters and extra MACs equal ProtectedModel's / protect.overhead's."""
    from sanitas.hls.check import check_top
    model, _ = load_checkpoint(trained_checkpoint("lenet5"))
    gm = export_golden(model)
    spec = {"default": "none", "op:conv": "dmr", "fc*": "dmr"}
    x = gm.quantize_input(digits.test.tensors[0].numpy())[:20]
    r = check_top(gm, x, spec, tmp_path, faults=20, fault_images=2)
    assert (r["bit_exact"], r["total"], r["fault_agreement"], r["faults"]) == (20, 20, 20, 20)
    assert r["extra_macs"] == r["extra_macs_golden"] == 20 * gm.macs()
    # every conv/linear duplicated: the cycles of plain DMR (its elementwise duplicates add none)
    assert r["counters_zero"] and r["cycles_equal"] and r["cycles_per_image"] == cycle_model(gm, ArrayConfig(), "dmr")
    assert r["cycles_per_image"] > cycle_model(gm, ArrayConfig())

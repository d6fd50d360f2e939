"""The fake board whose IP is the csim of ``sanitas_top`` (engine.CsimEngine): the accelerator's own C++, built
as a shared library by ``sanitas.hls.top`` and called through ``sanitas_top_axi`` with the IP's register file.

Checked: bit-exact with golden on the digits test split through pynq's Overlay/MMIO/allocate path; faults
programmed through the fault-injection registers give the logits and counters the csim library gives for the
same record when called directly (``hls.top.TopLibrary``) and the golden model's faulted logits; inject(None)
and reload(layer) clear them; ``sanitas board --backend fake --json`` says ``"ip": "csim"``.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

pynq = pytest.importorskip("pynq", reason="pynq not installed")
top = pytest.importorskip("sanitas.hls.top", reason="sanitas.hls.top (the csim library) not in this checkout")

from sanitas.board.driver import OFFSET, STATUS_COUNTERS, BoardInputError, BoardUnavailable  # noqa: E402
from sanitas.board.engine import CsimEngine  # noqa: E402
from sanitas.board.sim import FakeBoard  # noqa: E402
from sanitas.faults.executors import run_golden  # noqa: E402
from sanitas.faults.fault import Fault, sample_faults  # noqa: E402
from sanitas.hls.faultport import fault_registers  # noqa: E402

ZERO = dict.fromkeys(STATUS_COUNTERS, 0)


@pytest.fixture(scope="module")
def net(lenet5_ckpt):
    from sanitas.commands._common import load_model_data_golden
    _, splits, gm = load_model_data_golden(lenet5_ckpt)
    x, y = splits.test.tensors
    return gm, gm.quantize_input(x.numpy()).astype(np.int8), y.numpy()


@pytest.fixture(scope="module")
def board(net, tmp_path_factory):
    gm, _, _ = net
    with FakeBoard(gm, board="zcu104", out_dir=tmp_path_factory.mktemp("zcu104")) as b:
        yield b


def test_digits_test_split_bit_exact_on_the_csim_ip(board, net):
    gm, xq, labels = net
    assert board.ip_kind == "csim" and isinstance(board.ip.engine, CsimEngine)
    calls = board.ip.engine.calls
    y, counters = board.infer(xq)
    assert len(xq) == 270 and y.dtype == np.int32
    np.testing.assert_array_equal(y, gm.run_int(xq))
    assert counters == board.status() == ZERO
    assert board.ip.engine.calls == calls + 1                  # one ap_start, one call of the C entry point
    assert (y.argmax(1) == labels).mean() > 0.8


def test_faults_through_the_register_match_the_csim_and_golden(board, net):
    gm, xq, _ = net
    x = xq[:24]
    lib = top.TopLibrary(board.library, gm)
    clean = gm.run_int(x)
    faults = sample_faults(gm, 6, sites=("weight", "bias", "acc", "output", "input"), kinds=("bitflip", "stuck1"),
                           seed=3)
    faults.append(Fault("weight", "conv1", (0, 0, 1, 1), 6, "bitflip"))
    changed = 0
    for f in faults:
        words = board.inject(f)
        assert words == fault_registers(f, gm)
        assert {k: board.ip.window.u32(OFFSET[k]) for k in words} == words      # what the C++ reads
        y, counters = board.infer(x)
        ref_y, ref_counters = lib.run(x, fault=f)
        np.testing.assert_array_equal(y, ref_y)
        assert counters == ref_counters
        np.testing.assert_array_equal(y, run_golden(gm, x, [f]))
        changed += int((y != clean).any())
    assert changed >= 1                                        # the faults reach the logits
    board.inject(None)
    assert board.ip.window.u32(OFFSET["fi_enable"]) == 0
    np.testing.assert_array_equal(board.infer(x)[0], clean)


def test_reload_restores_the_trusted_image(board, net):
    gm, xq, _ = net
    x = xq[:8]
    f = Fault("weight", "conv1", (0, 0, 1, 1), 6, "bitflip")
    board.inject(f)
    faulty, _ = board.infer(x)
    assert (faulty != gm.run_int(x)).any()
    downloads = board.device.downloads
    board.reload("conv1")
    assert board.device.downloads == downloads and board.overlay.reloads >= 1   # the reload port: no download
    assert board.accel.status() == ZERO | {"escalations": 1}                   # the reload run's counters
    assert board.accel.fault is None and board.ip.window.u32(OFFSET["fi_enable"]) == 0
    np.testing.assert_array_equal(board.infer(x)[0], gm.run_int(x))     # same driver, same buffers
    with pytest.raises(BoardInputError, match=r"^unknown layer 'conv9'; the network's layers: input, conv1, "):
        board.reload("conv9")


def test_fault_port_errors(net, tmp_path):
    gm, xq, _ = net
    with FakeBoard(gm, out_dir=tmp_path, ip="callback") as b:
        with pytest.raises(BoardUnavailable, match=r"^this sanitas_top has no fault-injection port"):
            b.inject(Fault("weight", "conv1", (0, 0, 0, 0), 1))
        np.testing.assert_array_equal(b.infer(xq[:4])[0], gm.run_int(xq[:4]))
    with pytest.raises(BoardUnavailable, match=r"does not load as the csim of sanitas_top"):
        CsimEngine(tmp_path / "sanitas.json", (1, 8, 8), 10)


def test_cli_board_fake_says_csim(lenet5_ckpt, net, board):
    """``sanitas board --backend fake``: the csim IP, bit-exact on the digits test split; ``--faults`` goes through
    the fault-injection registers and sums what the csim library gives for the same records."""
    r = subprocess.run([sys.executable, "-m", "sanitas.cli", "board", "--checkpoint", str(lenet5_ckpt),
                        "--backend", "fake", "--limit", "270", "--faults", "3", "--fault-seed", "2", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert (s["ok"], s["backend"], s["ip"], s["bit_exact"], s["total"]) == (True, "fake", "csim", 270, 270)
    assert s["status"] == ZERO
    gm, xq, _ = net
    lib, clean = top.TopLibrary(board.library, gm), gm.run_int(xq)
    want = {"injected": 3, "changed_images": 0, "wrong_predictions": 0} | ZERO
    for f in sample_faults(gm, 3, sites=("weight", "acc", "output"), kinds=("bitflip",), seed=2):
        y, counters = lib.run(xq, fault=f)
        want["changed_images"] += int((y != clean).any(axis=1).sum())
        want["wrong_predictions"] += int((y.argmax(1) != clean.argmax(1)).sum())
        for k, v in counters.items():
            want[k] += v
    assert s["faults"] == want and want["changed_images"] > 0


def test_cli_board_fake_protected_csim_is_bit_exact(lenet5_ckpt, net):
    """Protection on: ``--scheme`` with what sanitas_top generates (``hls.firmware.BUILT_SCHEMES``) compiles it into
    the csim IP; the digits test split stays bit-exact, no alarm counter moves (``scrubbed`` is the patrol's work:
    the golden ProtectedModel's count for the same images), and the summary names the scheme."""
    from sanitas.hls.check import protected_per_image
    from sanitas.hls.firmware import BUILT_SCHEMES
    from sanitas.protect.model import ProtectedModel
    scheme = "+".join(BUILT_SCHEMES)
    r = subprocess.run([sys.executable, "-m", "sanitas.cli", "board", "--checkpoint", str(lenet5_ckpt),
                        "--backend", "fake", "--scheme", scheme, "--limit", "270", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert (s["ok"], s["ip"], s["scheme"], s["bit_exact"], s["total"]) == (True, "csim", scheme, 270, 270)
    gm, xq, _ = net
    _, want = protected_per_image(ProtectedModel(gm, scheme), xq.astype(np.int64), None)
    assert s["status"] == want == ZERO | {"scrubbed": want["scrubbed"]}


def test_golden_ip_decodes_the_fault_registers_like_the_csim(board, net, tmp_path):
    """ip='golden': the fi_* words decoded into a golden hook give the csim's logits (spec none) and, protected,
    the counters ProtectedModel gives for the same Fault record; a download restores the trusted memories."""
    from sanitas.faults.executors import golden_hook
    from sanitas.protect.model import ProtectedModel
    gm, xq, _ = net
    x = xq[:12]
    faults = sample_faults(gm, 4, sites=("weight", "acc", "output"), kinds=("bitflip",), seed=5)
    with FakeBoard(gm, out_dir=tmp_path / "none", ip="golden") as g:
        for f in faults:
            g.inject(f)
            board.inject(f)
            np.testing.assert_array_equal(g.infer(x)[0], board.infer(x)[0])
    board.inject(None)
    f = Fault("weight", "conv1", (0, 0, 1, 1), 6, "bitflip")
    with FakeBoard(gm, out_dir=tmp_path / "prot", ip="golden", spec="sanity+dmr") as g:
        g.inject(f)
        y, counters = g.infer(x)
        ref_y, rep = ProtectedModel(gm, "sanity+dmr").run(x, golden_hook(gm, [f]))
        np.testing.assert_array_equal(y, ref_y)
        assert counters == {k: getattr(rep, k) for k in STATUS_COUNTERS}
        assert counters["detected"] >= 1 and counters["uncorrectable"] == 0
        np.testing.assert_array_equal(y, gm.run_int(x))             # corrected: the fault-free logits
        g.reload("conv1")
        y2, after = g.infer(x)                                     # fault gone; the patrol scrubber still runs
        np.testing.assert_array_equal(y2, gm.run_int(x))
        assert after == ZERO | {"scrubbed": after["scrubbed"]} and after["scrubbed"] > 0


def test_two_networks_in_one_folder_each_run_their_own_library(net, tmp_path):
    """The library is rebuilt at the same path for another network; the process must not keep the old one."""
    import torch
    from sanitas.golden import export_golden
    from sanitas.models import build
    gm, xq, _ = net
    torch.manual_seed(7)
    other = export_golden(build("lenet5", tuple(gm.input_shape), gm.num_classes))
    x = xq[:6]
    assert (other.run_int(x) != gm.run_int(x)).any()
    for model in (gm, other, gm):
        with FakeBoard(model, out_dir=tmp_path) as b:
            np.testing.assert_array_equal(b.infer(x)[0], model.run_int(x))

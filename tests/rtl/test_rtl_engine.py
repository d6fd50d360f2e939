"""The RTL engine: its register map, the host side (`sanitas.rtl.engine`: commands, im2col, streams, the byte-level
model) against the golden LeNet-5 without a simulator, and the whole network through the Icarus engine with
cocotbext-axi (rtl_tests/engine) bit-exact on 50 digits test images.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from sanitas.config import ArrayConfig
from sanitas.errors import SanitasError
from sanitas.golden.model import conv2d_int
from sanitas.rtl.engine import KMAX, engine_model, im2col, layer_commands, model_layer, pack_stream, run_network, \
    tile_out_bytes, tiles, unpack_output
from sanitas.rtl.engine_regs import ENGINE_REG_TABLE, ENGINE_REGS
from sanitas.rtl.generate import render_systolic_array

ARRAY = ArrayConfig(rows=8, cols=8, max_k=16, fault_injection=True)
N_IMAGES = 50
needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")


@pytest.fixture(scope="module")
def lenet(lenet5_ckpt, digits):
    from sanitas.golden import export_golden
    from sanitas.train import load_checkpoint
    gm = export_golden(load_checkpoint(lenet5_ckpt)[0])
    xq = gm.quantize_input(digits.test.tensors[0].numpy()[:N_IMAGES])
    return gm, xq


def test_register_table_renders_into_the_engine():
    offsets = [r.offset for r in ENGINE_REG_TABLE]
    assert len(set(offsets)) == len(offsets) and all(o % 4 == 0 for o in offsets)
    assert all(r.access in ("rw", "w1", "ro") and 1 <= r.bits <= 32 for r in ENGINE_REG_TABLE)
    text = render_systolic_array(ARRAY, ("engine.v.j2",))["engine.v"]
    for r in ENGINE_REG_TABLE:
        if r.access == "rw":
            assert f"{r.offset}: {r.signal} <= s_axil_wdata[{r.bits - 1}:0];" in text, r.name
        if r.access != "w1":
            assert f"{r.offset}: s_axil_rdata[{r.bits - 1}:0] <= {r.signal};" in text, r.name
    assert f"parameter integer KMAX   = {KMAX}," in text
    assert ENGINE_REGS["CTRL"].offset == 0 and "localparam integer ROWS = 8;" in text


def test_im2col_rows_in_pooling_window_order():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (2, 3, 6, 6))
    w = rng.integers(-128, 128, (4, 3, 3, 3))
    a, (n, ho, wo) = im2col(x, 3, 1, 1, 2)
    assert a.shape == (2 * 36, 27) and (n, ho, wo) == (2, 6, 6)
    y = conv2d_int(x, w, np.zeros(4, np.int64), 1, 1)       # (2, 4, 6, 6)
    got = (a @ w.reshape(4, -1).T).reshape(2, 3, 3, 2, 2, 4)   # (n, ph, pw, dy, dx, o)
    assert np.array_equal(got.transpose(0, 5, 1, 3, 2, 4).reshape(2, 4, 6, 6), y)
    with pytest.raises(SanitasError, match=r"^engine: conv output 5x5 does not split into 2x2 pooling windows$"):
        im2col(x[:, :, :5, :5], 3, 1, 1, 2)


def test_stream_sizes_and_model_on_one_layer(lenet):
    gm, xq = lenet
    cmd = layer_commands(gm)[0]
    a, _ = im2col(xq[:3], 5, 1, 2, 2)
    mt, nt, kc = tiles(cmd, a.shape[0], ARRAY)
    assert (mt, nt, kc) == (24, 1, 1)
    stream = pack_stream(cmd, a, ARRAY)
    assert len(stream) == mt * nt * (KMAX + kc * (ARRAY.rows + ARRAY.cols) * KMAX)
    out = engine_model(stream, cmd, a.shape[0], ARRAY)
    assert len(out) == mt * nt * tile_out_bytes(cmd, ARRAY)[1] and tile_out_bytes(cmd, ARRAY) == (16, 32)
    y = unpack_output(out, cmd, a.shape[0], ARRAY)
    assert y.shape == (48, 6) and y.min() >= 0 and y.max() <= 255
    with pytest.raises(SanitasError, match=r"^engine: stream of 10 bytes, expected 13056$"):
        engine_model(stream[:10], cmd, a.shape[0], ARRAY)


def test_host_model_network_matches_golden(lenet):
    """The stream format and the engine's arithmetic (engine_model) reproduce the golden logits exactly."""
    gm, xq = lenet
    cmds = layer_commands(gm)
    assert [(c.name, c.in_unsigned, c.pool, c.raw) for c in cmds] == [
        ("conv1", False, 2, False), ("conv2", True, 2, False), ("fc1", True, 1, False), ("fc2", True, 1, False),
        ("fc3", True, 1, True)]
    assert np.array_equal(run_network(gm, xq, model_layer(ARRAY)), gm.run_int(xq))


def test_layer_commands_reject_other_ops(lenet):
    gm, _ = lenet
    import dataclasses
    bad = dataclasses.replace(gm.nodes[1], op="add")
    gm2 = type(gm)([gm.nodes[0], bad, *gm.nodes[2:]], gm.input_shape, gm.num_classes, gm.spec)
    with pytest.raises(SanitasError, match=r"^engine: op 'add' of node 'conv1' is not an engine layer$"):
        layer_commands(gm2)


@needs_iverilog
def test_lenet5_through_the_rtl_engine(tmp_path, lenet, lenet5_ckpt):
    """Icarus + cocotbext-axi: 50 images layer by layer through the engine (rollback_ctrl sequencing every command,
    every stored input read back and checked), every logit bit-exact; single faults in the PEs, the output stage,
    the stored tensors, their checkpoints, the read path and the controller state, each with its exact counters."""
    from sanitas.rtl.network import run_engine_network
    gm, _ = lenet
    s = run_engine_network(tmp_path, ARRAY, lenet5_ckpt, N_IMAGES, gm=gm)
    assert s["passed"], s["log"]
    assert (s["bit_exact"], s["total"], s["images"]) == (N_IMAGES, N_IMAGES, N_IMAGES)
    assert [lay["name"] for lay in s["layers"]] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert [lay["gemms"] for lay in s["layers"]] == [400, 100 * 2 * 5, 7 * 15 * 2, 7 * 11 * 4, 7 * 2 * 3]
    assert s["cycles"] == sum(lay["cycles"] for lay in s["layers"]) > 0
    _check_faults(s, 16)


#: The bench's directed single faults (rtl_tests/engine test_faults) -> {counter register: delta}, the same at every
#: geometry, outputs exact: the sanity unit's counters for array faults (in conv1 through the FI_* registers); the
#: output stage's tile re-executions / escalations and rollback_ctrl's for lane faults (the window-max faults could
#: be masked on other data); rollback_ctrl's for stored-input (host memory), checkpoint and read-path faults, and
#: for READ lengths no multiple of the read check's RD_W (odd_read: 77 words clean; odd_read_word: 45 words, the
#: last part's last word flipped).
_CNT = ("CNT_DETECTED", "CNT_CORRECTED", "CNT_UNCORR")
_RB = ("RB_DETECTED", "RB_ROLLED_BACK", "RB_UNCORR", "RB_ESCALATIONS")
_LANE = ("CNT_ROLLBACK", "CNT_ESCALATED") + _RB
_GROUPS = {
    _CNT: {"data_pe_bitflip": (1, 1, 0), "data_pe_stuck1": (1, 1, 0), "data_pe_last_row_col": (1, 1, 0),
           "total_checksum_pe": (1, 0, 0), "partial_checksum": (0, 0, 0)},
    _LANE: {"lane_a_s0": (1, 0, 0, 0, 0, 0), "lane_b_f": (1, 0, 0, 0, 0, 0), "lane_a_max": (1, 0, 0, 0, 0, 0),
            "lane_b_max": (1, 0, 0, 0, 0, 0), "lane_a_s0_every_try": (8, 4, 0, 2, 1, 1)},
    _RB: {"stored_word": (1, 2, 0, 0), "stored_word_msb": (1, 2, 0, 0), "read_path_word": (1, 1, 0, 0),
          "checkpoint_s0": (1, 2, 0, 0), "checkpoint_f": (1, 2, 0, 0), "read_path_checkpoint": (1, 1, 0, 0),
          "input_word": (1, 2, 0, 0), "odd_read": (0, 0, 0, 0), "odd_read_word": (1, 2, 0, 0)}}
ENGINE_FAULTS = {name: dict(zip(regs, deltas)) for regs, faults in _GROUPS.items() for name, deltas in faults.items()}


def _check_faults(s: dict, n_ctrl: int) -> None:
    faults, ctrl, golden = s["faults"], s["ctrl_faults"], s["golden_faults"]
    assert faults == ENGINE_FAULTS     # {counter register: delta}, names and values
    # accumulator and B operand faults in random tile GEMMs: the golden sanity flow's counters, none silent
    assert golden["faults"] == golden["agree"] == 8 and golden["silent"] == 0
    assert golden["masked"] == 0 and golden["corrected"] + golden["uncorrectable"] == 8
    # rollback_ctrl state faults: never silent (done, no flag, wrong result); each one ends somewhere
    assert sum(ctrl.values()) == n_ctrl and ctrl["silent"] == 0 and ctrl["ok"] > 0


@needs_iverilog
def test_engine_faults_at_the_flow_geometry(tmp_path, lenet, lenet5_ckpt):
    """The bench's single faults at the flow's default 4x4 array (max_k 1024): one 4-byte pooled word a conv1 tile,
    so the tail of its output beat is where an earlier raw layer's words would leak (the engine clears it); the
    same counters and exact bytes as at 8x8."""
    from sanitas.rtl.network import run_engine_network
    gm, _ = lenet
    s = run_engine_network(tmp_path, ArrayConfig(rows=4, cols=4), lenet5_ckpt, 4, gm=gm, tests=("test_faults",),
                           ctrl_faults=8)
    assert s["passed"] and s["bit_exact"] == 0, s["log"]       # no test_network: no image run
    _check_faults(s, 8)


@needs_iverilog
@pytest.mark.parametrize("array, params, errors", [
    (ArrayConfig(rows=8, cols=8, checksums="eager"), {}, ()),
    (ArrayConfig(rows=4, cols=4), {"FI_EN": 0, "RETRIES": 0}, ()),
    (ArrayConfig(rows=8, cols=8), {"KMAX": 6}, ("engine: KMAX*DATA_W must be a multiple of 32 and KMAX <= 2**K_W - 1",
                                                "engine: ROWS*COLS*32 must be a multiple of KMAX*DATA_W",
                                                "engine: the checkpoint beat needs KMAX*DATA_W > 160",
                                                "engine: RD_W must divide KMAX*DATA_W/8",
                                                "dmr_unit: RD_W must divide RD_N")),
    (ArrayConfig(rows=4, cols=4), {"PROT": 0}, ()),
    (ArrayConfig(rows=4, cols=4), {"PROT": 2}, ("engine: PROT must be 0 or 1",)),
    (ArrayConfig(rows=4, cols=4), {"RD_W": 32}, ()),
    (ArrayConfig(rows=4, cols=4), {"RD_W": 5}, ("engine: RD_W must divide KMAX*DATA_W/8",
                                                "dmr_unit: RD_W must divide RD_N")),
    (ArrayConfig(rows=1, cols=2), {}, ("engine: ROWS*COLS*32 must be a multiple of KMAX*DATA_W",)),
])
def test_engine_compiles_cleanly_and_guards_fire(tmp_path, array, params, errors):
    import subprocess
    from sanitas.rtl.generate import generate_engine
    paths = generate_engine(array, tmp_path / "rtl")
    extra = [f"-Pengine.{k}={v}" for k, v in params.items()]
    proc = subprocess.run(["iverilog", "-g2012", "-s", "engine", *extra, "-o", str(tmp_path / "a.vvp"),
                           *map(str, paths)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "warning" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr
    run = subprocess.run(["vvp", "-n", str(tmp_path / "a.vvp")], capture_output=True, text=True, timeout=60)
    found = [line.split(": ", 2)[-1] for line in (run.stdout + run.stderr).splitlines() if line.startswith("ERROR")]
    assert found == list(errors)

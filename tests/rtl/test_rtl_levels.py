"""The same Fault records at three levels -- the RTL engine (Icarus, rtl_tests/engine test_levels), the golden
`ProtectedModel` and the HLS csim (`sanitas.hls.top.TopLibrary`, the compiled sanitas_top) -- end in the same
outcome class and the same logits.

The records are the sites all three levels have: a bit of a layer's input activation word (site ``input``,
batched over the images as the golden hook applies it). In the golden model the hook corrupts every read of the
stored tensor until its producer re-executes; in the RTL it is that word flipped in the host memory the engine
reads (`sanitas.rtl.engine.stored_offsets` places the element), gone once the engine re-executes the producer and
rewrites the tensor. Outcome classes (`outcome`): masked / corrected / rolled back / escalated. The golden runs
``sanity+dmr`` (the RTL engine's protection); the HLS top generates ``dmr`` (the read check is DMR's in both).
Accumulator faults are not compared here (the HLS top has no sanity unit yet; one golden acc record is every
image's element, one RTL fault port record one GEMM's) -- rtl_tests/engine test_faults checks them against their
expected counters. Controller-state faults have no golden equivalent (test_faults reports them separately).
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sanitas.config import ArrayConfig
from sanitas.faults import Fault
from sanitas.faults.executors import golden_hook

ARRAY = ArrayConfig(rows=8, cols=8, max_k=16)
N_IMAGES = 2
#: (layer whose input word is hit, element index into one image's input tensor, bit)
RECORDS = (("conv2", (1, 2, 3), 7), ("fc1", (37,), 2), ("fc3", (5,), 3))
needs_tools = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("g++") is None,
                                 reason="iverilog and g++ needed")


def outcome(detected: int, corrected: int, rolled_back: int, uncorrectable: int, escalations: int) -> str:
    """The outcome class of one fault run from its counters."""
    if uncorrectable or escalations:
        return "escalated"
    if rolled_back:
        return "rolled back"
    if corrected:
        return "corrected"
    return "detected" if detected else "masked"


def _rtl(tmp_path, gm, xq, faults) -> list[dict]:
    from sanitas.rtl.engine import layer_commands, layer_input, layer_output, model_layer, stored_offsets
    from sanitas.rtl.generate import generate_engine, run_bench
    cmds = layer_commands(gm)
    names = [c.name for c in cmds]
    x, geo = np.asarray(xq, np.int64), {}
    run = model_layer(ARRAY)
    for cmd in cmds:                                   # each layer's A rows and geometry (host model)
        a, geom = layer_input(cmd, x)
        geo[cmd.name] = (a.shape[0], geom)
        x = layer_output(cmd, run(cmd, a), geom)
    recs = []
    for f in faults:
        i = names.index(f.layer)
        prev = cmds[i - 1]
        m, geom = geo[prev.name]
        offs = stored_offsets(prev, m, geom, ARRAY).reshape(len(xq), -1)
        shape = gm.shapes()[gm.by_name[f.layer].inputs[0]][1:]
        col = int(np.ravel_multi_index(f.index, shape))
        recs.append(dict(layer=i, offsets=[int(o) for o in offs[:, col]], bit=f.bit))
    gm.save(tmp_path / "golden.npz")
    np.save(tmp_path / "images.npy", xq)
    summary = tmp_path / "summary.json"
    sim_exit, n_tests, n_failed, _, log = run_bench(
        tmp_path, ARRAY, dict(golden=str(tmp_path / "golden.npz"), images=str(tmp_path / "images.npy"),
                              summary=str(summary), level_faults=recs), 0, ("test_levels",), toplevel="engine",
        bench="engine", sources=generate_engine(ARRAY, tmp_path / "rtl"))
    assert (sim_exit, n_tests, n_failed) == (0, 1, 0), f"cocotb test_levels failed (log: {log})"
    return json.loads(summary.read_text())


@needs_tools
def test_input_word_faults_agree_across_rtl_golden_and_csim(tmp_path, lenet5_ckpt, digits):
    from sanitas.golden import export_golden
    from sanitas.hls.top import TopLibrary, build_top_library
    from sanitas.protect import ProtectedModel
    from sanitas.train import load_checkpoint
    gm = export_golden(load_checkpoint(lenet5_ckpt)[0])
    xq = gm.quantize_input(digits.test.tensors[0].numpy()[:N_IMAGES])
    clean = gm.run_int(xq)
    faults = [Fault("input", layer, index, bit) for layer, index, bit in RECORDS]
    lib = TopLibrary(build_top_library(gm, "dmr", tmp_path / "hls", fault_port=True), gm)
    rtl = _rtl(tmp_path / "rtl", gm, xq, faults)
    for f, r in zip(faults, rtl):
        y_g, rep = ProtectedModel(gm, "sanity+dmr").run(xq, golden_hook(gm, [f]))
        y_h, cnt = lib.run(xq, f)
        y_r = np.asarray(r["logits"], np.int64)
        got = {"golden": outcome(rep.detected, rep.corrected, rep.rolled_back, rep.uncorrectable, rep.escalations),
               "csim": outcome(cnt["detected"], cnt["corrected"], cnt["rolled_back"], cnt["uncorrectable"],
                               cnt["escalations"]),
               "rtl": outcome(r["RB_DETECTED"] + r["CNT_DETECTED"], r["CNT_CORRECTED"], r["RB_ROLLED_BACK"],
                              r["RB_UNCORR"], r["RB_ESCALATIONS"])}
        assert set(got.values()) == {"rolled back"}, (f.to_json(), got)
        # one checkpoint mismatch per command / batch, re-read (still bad) then re-execute: rolled back 2
        assert (rep.detected, rep.rolled_back) == (1, 2) and (r["RB_DETECTED"], r["RB_ROLLED_BACK"]) == (1, 2)
        assert (cnt["detected"], cnt["rolled_back"]) == (N_IMAGES, 2 * N_IMAGES)     # the csim counts per image
        assert np.array_equal(y_g, clean) and np.array_equal(y_h, clean) and np.array_equal(y_r, clean), f.to_json()
        assert not r["alarm"]

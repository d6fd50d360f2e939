"""A whole network through the RTL ``engine``: `run_engine_network` builds the engine of an ArrayConfig with
Icarus and runs the cocotb bench rtl_tests/engine (cocotbext-axi drives its AXI4-Lite and AXI4-Stream ports) on
the first ``images`` digits test images of a trained checkpoint, command by command (`network_steps`: the host
computes the nodes the engine does not run); the bench compares every layer's
output bytes with `sanitas.rtl.engine.engine_model` and the logits with `GoldenModel.run_int`.

Files under ``out_dir``: rtl/ (Verilog), sim/ (Icarus build), golden.npz (the golden model the bench loads),
images.npy / reference.npy (int8 images and golden logits), summary.json (written by the bench), sim.log.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import ArrayConfig
from ..errors import SanitasError
from .engine import check_network
from .generate import generate_engine, run_bench


def run_engine_network(out_dir, array: ArrayConfig, checkpoint, images: int, gm=None, prot: bool = True,
                       tests: tuple[str, ...] = ("test_registers", "test_faults", "test_network"),
                       ctrl_faults: int = 16) -> dict:
    """Run ``images`` test images of ``checkpoint`` (a digits model) through the engine; returns {"images",
    "bit_exact", "total", "layers" (per layer M, K, N, cycles, GEMMs, stream beats), "cycles", "wall_s",
    "passed" (every test passed; with test_network every image bit-exact), "log", "faults" (with
    ``array.fault_injection``: {name: counter deltas} of the bench's directed single faults, each output still exact),
    "ctrl_faults" (rollback_ctrl state faults by outcome: ok / flagged / stalled / silent), "golden_faults" (the random
    accumulator and B operand faults checked against the golden sanity flow: faults, agree, outcomes)}.
    ``gm``: the golden model, when the caller has it (else exported from the checkpoint). ``prot`` False: the
    unprotected engine (PROT = 0, `sanitas rtl --scheme none`); ``tests``: the bench's cocotb tests to run;
    ``ctrl_faults``: rollback_ctrl state faults of test_faults."""
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise SanitasError(f"the engine network run needs images >= 1, got {images!r}")
    from ..data import load_dataset
    from ..golden import export_golden
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if gm is None:
        from ..train import load_checkpoint
        model, _ = load_checkpoint(checkpoint)
        gm = export_golden(model)
    check_network(gm, array)
    test = load_dataset("digits").test.tensors[0].numpy()
    if images > len(test):
        raise SanitasError(f"the digits test split has {len(test)} images, asked for {images}")
    xq = gm.quantize_input(test[:images])
    paths = {k: out / f for k, f in (("golden", "golden.npz"), ("images", "images.npy"),
                                     ("reference", "reference.npy"), ("summary", "summary.json"))}
    gm.save(paths["golden"])
    np.save(paths["images"], xq)
    np.save(paths["reference"], gm.run_int(xq))
    paths["summary"].unlink(missing_ok=True)
    paths["summary"].with_name("summary.json.faults.json").unlink(missing_ok=True)
    sim_exit, n_tests, n_failed, _, log = run_bench(
        out, array, dict({k: str(v) for k, v in paths.items()}, ctrl_faults=int(ctrl_faults), seed=0), 0, tests,
        toplevel="engine", bench="engine", sources=generate_engine(array, out / "rtl"),
        parameters={"PROT": int(bool(prot))})
    s = json.loads(paths["summary"].read_text()) if paths["summary"].is_file() else {}
    faults = paths["summary"].with_name("summary.json.faults.json")
    s["faults"] = json.loads(faults.read_text()) if faults.is_file() else {}
    s["ctrl_faults"] = s["faults"].pop("controller", {})
    s["golden_faults"] = s["faults"].pop("golden", {})
    s.setdefault("bit_exact", 0)
    s["total"] = images
    s["passed"] = (sim_exit, n_tests, n_failed) == (0, len(tests), 0) and \
        ("test_network" not in tests or s["bit_exact"] == images)
    s["log"] = str(log)
    return s

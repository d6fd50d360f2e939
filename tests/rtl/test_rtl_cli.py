"""``sanitas rtl`` / ``sanitas csim`` and ``make rtl`` read one ArrayConfig: ``--config FILE`` (its array section),
field overrides, defaults from ``ArrayConfig()``; bad values are one-line errors with exit status 2."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sanitas.config import ArrayConfig

ROOT = Path(__file__).resolve().parents[2]


def sanitas(*args):
    return subprocess.run([sys.executable, "-m", "sanitas.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_rtl_reads_the_array_from_config_and_overrides(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("array:\n  rows: 3\n  cols: 5\n  data_width: 6\n  acc_width: 24\n  max_k: 128\n")
    r = sanitas("rtl", "--config", str(cfg), "--out", str(tmp_path / "a"), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["array"] == ArrayConfig(rows=3, cols=5, data_width=6, acc_width=24, max_k=128).to_dict()
    top = (tmp_path / "a" / "systolic_array.v").read_text()
    assert "parameter integer DATA_W = 6," in top and "parameter integer K_W    = 8," in top
    r = sanitas("rtl", "--config", str(cfg), "--rows", "2", "--out", str(tmp_path / "b"), "--json")
    assert json.loads(r.stdout.strip().splitlines()[-1])["array"]["rows"] == 2
    r = sanitas("rtl", "--out", str(tmp_path / "c"), "--json")                  # no config: ArrayConfig()
    assert json.loads(r.stdout.strip().splitlines()[-1])["array"] == ArrayConfig().to_dict()


@pytest.mark.parametrize("args, message", [
    (("rtl", "--data-width", "1"), "sanitas: error: array: data_width must be >= 2, got 1"),
    (("rtl", "--cols", "4", "--acc-width", "18"),
     ("sanitas: error: array: acc_width must be >= 2*data_width + clog2(cols) + 1 = 19 (checksum product width), "
      "got 18")),
    (("rtl", "--regress", "0"), "sanitas: error: rtl: argument --regress: must be >= 1, got 0"),
    (("csim", "--cols", "5", "--data-width", "6", "--acc-width", "24"),
     ("sanitas: error: array: the HLS kernel needs acc_width >= 2*data_width + clog2(max_k) + clog2(cols) = 25 "
      "for exact accumulators, got 24")),
])
def test_bad_array_is_one_line_error(tmp_path, args, message):
    r = sanitas(*args, "--out" if args[0] == "rtl" else "--build-dir", str(tmp_path / "x"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith(message), r.stderr
    assert not (tmp_path / "x").exists(), "nothing may be written for a bad array"


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")
def test_rtl_regress_json(tmp_path):
    """--regress N: N single faults (whole PEs; 1x2: 2 data + 1 total + 2 partial PEs) through sanity_tile."""
    r = sanitas("rtl", "--rows", "1", "--cols", "2", "--regress", "10", "--seed", "3", "--out", str(tmp_path / "r"),
                "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["faults"] == s["total"] == 10 and s["silent"] == 0 and s["bit_exact"] is True and s["ok"] is True
    assert s["masked"] + s["corrected"] + s["rolled_back"] == 10 and s["corrected"] <= s["detected"] <= 10
    assert s["faults_per_s"] > 0


@pytest.mark.skipif(shutil.which("make") is None, reason="make not on PATH")
def test_make_rtl_passes_config(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"array": {"rows": 2, "cols": 3}}))
    r = subprocess.run(["make", "-n", "rtl", f"CONFIG={cfg}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"sanitas rtl --out build/rtl --config {cfg}" in r.stdout
    r = subprocess.run(["make", "-n", "csim", f"CONFIG={cfg}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert f"CONFIG={cfg}" in r.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make not on PATH")
def test_hls_csynth_part_and_clock_come_from_the_array(tmp_path):
    cfg = tmp_path / "zcu.yaml"
    cfg.write_text("array:\n  part: xczu7ev-ffvc1156-2-e\n  clock_mhz: 200\n")
    for extra, part, period in (([], "xc7z020clg400-1", "10"), ([f"CONFIG={cfg}"], "xczu7ev-ffvc1156-2-e", "5")):
        r = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT / "hls"), "csynth-systolic_gemm",
                            f"PYTHON={sys.executable}", f"BUILD_DIR={tmp_path / 'hls'}", *extra],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"'set_part {part}'" in r.stdout and f"'create_clock -period {period}'" in r.stdout


@pytest.mark.parametrize("args, message", [
    (("--images", "2"), "sanitas: error: rtl: --checkpoint and --images go together"),
    (("--images", "0", "--checkpoint", "pyproject.toml"),
     "sanitas: error: rtl: argument --images: must be >= 1, got 0"),
    (("--scheme", "none"), "sanitas: error: rtl: --scheme goes with --checkpoint and --images"),
    (("--scheme", "tmr"),
     "sanitas: error: rtl: argument --scheme: invalid choice: 'tmr' (choose from 'sanity+dmr', 'none')"),
])
def test_rtl_engine_options_are_checked(tmp_path, args, message):
    r = sanitas("rtl", *args, "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and r.stderr.strip() == message, r.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")
def test_rtl_checkpoint_images_json(tmp_path, lenet5_ckpt):
    """--checkpoint P --images K: K digits images through the RTL engine, bit_exact / total in the JSON; --scheme
    none: the unprotected engine (PROT = 0; the protected one runs 50 images in test_rtl_engine)."""
    r = sanitas("rtl", "--rows", "8", "--cols", "8", "--checkpoint", str(lenet5_ckpt), "--images", "3",
                "--scheme", "none", "--out", str(tmp_path / "e"), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert (s["bit_exact"], s["total"], s["ok"], s["scheme"]) == (3, 3, True, "none")
    assert [lay["name"] for lay in s["engine"]["layers"]] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert (tmp_path / "e" / "engine_none" / "rtl" / "engine.v").is_file()

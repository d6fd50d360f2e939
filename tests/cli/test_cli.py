"""The ``sanitas`` CLI: --json summaries alone on stdout, one-line errors, exit statuses."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def sanitas(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sanitas.cli", *args], check=False, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_train_and_golden_json(tmp_path):
    ck = tmp_path / "m.pt"
    r = sanitas("train", "--model", "lenet5", "--epochs", "2", "--out", str(ck), "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    s = last_json(r.stdout)
    assert s["checkpoint"] == str(ck) and 0.0 <= s["test_acc"] <= 1.0 and ck.exists()
    r = sanitas("golden", "--checkpoint", str(ck), "--json")
    assert r.returncode == 0, r.stderr
    assert "bit-exact: 270/270" in r.stderr and len(r.stdout.splitlines()) == 1    # --json: stdout is the summary
    s = json.loads(r.stdout)
    assert s["bit_exact"] == s["total"] == 270
    r = sanitas("board", "--checkpoint", str(ck), "--backend", "sim", "--limit", "16", "--json")
    assert r.returncode == 0, r.stderr
    assert last_json(r.stdout)["bit_exact"] == 16


def test_golden_fails_on_tampered_checkpoint(tmp_path, lenet5_ckpt):
    """A checkpoint whose float weights no longer match its quantiser grid still exports; corrupting the
    golden side must make the check fail with exit 1 (the check can fail)."""
    import torch
    from sanitas.golden import export_golden
    from sanitas.golden.check import check_bitexact
    from sanitas.train import load_checkpoint
    model, _ = load_checkpoint(lenet5_ckpt)
    gm = export_golden(model)
    gm.by_name["fc3"].bias[3] += 1                  # one LSB off in one bias
    from sanitas.data import load_dataset
    x = load_dataset("digits").test.tensors[0]
    r = check_bitexact(model, gm, x)
    assert r["bit_exact"] == 0 and r["max_abs_diff"] == 1.0
    del torch


@pytest.mark.parametrize("args,msg", [
    (["golden", "--checkpoint", "missing.pt"],
     "sanitas: error: golden: argument --checkpoint: file not found: missing.pt"),
    (["train", "--dataset", "mnist", "--out", "x.pt"], "sanitas: error: mnist needs --data-dir"),
    (["rtl", "--rows", "0", "--out", "build/x"], "sanitas: error:"),
    (["flow", "--steps", "train,bogus"], "sanitas: error: unknown flow step(s): bogus"),
])
def test_errors_are_one_line(args, msg, tmp_path):
    r = sanitas(*args, cwd=tmp_path) if args[0] != "rtl" else sanitas(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) >= 1 and lines[-1].startswith(msg)
    assert "Traceback" not in r.stderr


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    r = sanitas("golden", "--checkpoint", str(bad))
    assert r.returncode == 2 and "cannot read checkpoint" in r.stderr


def test_flow_subset_writes_report(tmp_path):
    r = sanitas("flow", "--steps", "train,golden,report", "--epochs", "1", "--out", str(tmp_path / "f"),
                "--report", str(tmp_path / "rep"), "--quiet", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    s = last_json(r.stdout)
    assert s["ok"] and s["golden_bit_exact"] == "270/270"
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<td>Brevitas vs golden</td><td>test images (logits)</td><td>270/270</td>" in page
    assert 'src="training.png"' in page
    assert (tmp_path / "rep" / "training.png").stat().st_size > 1000


def test_python_dash_m_sanitas_is_the_cli():
    """``python -m sanitas`` runs the same parser: a bad subcommand is one line and exit 2."""
    r = subprocess.run([sys.executable, "-m", "sanitas", "nosuch"], check=False, cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith("sanitas: error: ")

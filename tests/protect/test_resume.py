"""`sanitas protect --resume`: kill at every phase (real SIGKILL) + resume = the uninterrupted study, and refused
resumes (other settings, checkpoint content, fault list, damaged journal) leave the folder byte-identical.

The killed runs are children of a forkserver with sanitas imported once (``runfolder.run_cli_child``).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal

import pytest
from sanitas.cli import main
from sanitas.runfolder import CRASH_ENV, PHASES, FolderLock, run_cli_child, snapshot

PRELOAD = ["sanitas.runfolder", "sanitas.cli", "sanitas.commands.protect", "sanitas.protect.campaign",
           "sanitas.report.protect", "sanitas.train", "sanitas.golden", "sanitas.data"]
ARGS = ["protect", "--scheme", "sanity+dmr", "--compare", "none", "--campaign", "48", "--state-faults", "12",
        "--clean", "4", "--timing-batch", "8", "--quiet", "--json"]
VOLATILE = {"seconds", "time", "time_ratio", "report", "out"}     # wall-clock measurements and paths


@pytest.fixture(scope="module")
def fork():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def strip(obj):
    """``obj`` without its wall-clock fields (at any depth)."""
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def one_error(rc, err, needle):
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("sanitas: error: ") and needle in lines[0], err


def journal_rows(d):
    return sum("\trow\t" in json.loads(ln)["k"] for ln in (d / "journal.jsonl").read_text().splitlines())


def test_protect_kill_at_every_phase_and_refused_resumes(lenet5_ckpt, tmp_path, fork, capsys):
    args = [*ARGS, "--checkpoint", lenet5_ckpt]
    ref = tmp_path / "ref"
    rc, so, _ = cli(capsys, *args, "--out", ref)
    assert rc == 0
    s_ref = json.loads(so.strip().splitlines()[-1])
    rows_ref = (ref / "faults.jsonl").read_bytes()
    res_ref = json.loads((ref / "protect.json").read_text())
    n_rows = len(rows_ref.splitlines())
    assert n_rows == journal_rows(ref) > 20
    for phase in PHASES:
        d = tmp_path / phase
        p = fork.Process(target=run_cli_child, args=([str(a) for a in [*args, "--out", d]], {CRASH_ENV: phase}))
        p.start()
        p.join()
        assert p.exitcode == -signal.SIGKILL, phase
        assert not (d / "manifest.json").exists() and not (d / "protect.json").exists()
        if phase == "setup":
            assert (d / "plan.json").exists() and not (d / "settings.json").exists()
        elif phase == "first_chunk":
            assert journal_rows(d) == 1
        elif phase == "mid":
            assert 1 < journal_rows(d) < n_rows
        else:                                         # final write: the rows file is whole, nothing else is there
            assert (d / "faults.jsonl").read_bytes() == rows_ref
            one_error(*cli(capsys, "report", d)[::2], "no manifest.json")
        rc, so, _ = cli(capsys, *args, "--out", d, "--resume")
        assert rc == 0, phase
        assert (d / "faults.jsonl").read_bytes() == rows_ref, phase
        assert strip(json.loads((d / "protect.json").read_text())) == strip(res_ref), phase
        assert strip(json.loads(so.strip().splitlines()[-1])) == strip(s_ref), phase
        assert json.loads((d / "manifest.json").read_text())["kind"] == "protect"

    cut = tmp_path / "cut"                           # a manifest that names a missing file: one line, no report
    shutil.copytree(ref, cut)
    (cut / "protect.json").unlink()
    one_error(*cli(capsys, "report", cut)[::2], "the manifest names protect.json, which is missing")

    # ---- refused resumes change nothing on disk
    def refused(d, needle, *argv):
        before = snapshot(d)
        one_error(*cli(capsys, *argv, "--out", d)[::2], needle)
        assert snapshot(d) == before

    refused(ref, "already holds a protect study: use --resume", *args)
    with FolderLock(ref):                             # a live owner (this process)
        refused(ref, f"{ref} is in use by another sanitas process (pid {os.getpid()})", *args, "--resume")
    refused(ref, "differs in seed", *args, "--resume", "--seed", "1")
    refused(ref, "differs in campaign", *[a if a != "48" else "30" for a in args], "--resume")
    from sanitas.train import load_checkpoint, save_checkpoint
    other = tmp_path / "resaved.pt"
    model, ck = load_checkpoint(lenet5_ckpt)
    save_checkpoint(model, other, ck.get("dataset", "digits"), {"note": "re-saved"})
    refused(ref, "differs in checkpoint content", *ARGS, "--checkpoint", other, "--resume")
    edited = tmp_path / "edited"
    shutil.copytree(ref, edited)
    (edited / "plan.json").write_text((edited / "plan.json").read_text().replace('"acc"', '"bias"', 1))
    refused(edited, "plan.json is missing or was modified", *args, "--resume")
    damaged = tmp_path / "damaged"
    shutil.copytree(ref, damaged)
    lines = (damaged / "journal.jsonl").read_text().splitlines()
    (damaged / "journal.jsonl").write_text("\n".join(["{cut", *lines[1:]]) + "\n")
    refused(damaged, "journal.jsonl: damaged at line 1", *args, "--resume")

"""Campaign folder integrity: one owner, settings recorded before the first result, kill at every phase.

Kills are real SIGKILLs (``SANITAS_CRASH_AT=<phase>`` makes the process kill itself there); the children are
forked from a forkserver that has sanitas, torch and the engines imported once, so a child costs its work only.
Every refusal must be exactly one ``sanitas: error:`` line, exit 2, and leave the folder byte-identical.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal

import pytest
from sanitas.cli import main
from sanitas.faults.store import Store
from sanitas.runfolder import CRASH_ENV, PHASES, FolderLock, run_cli_child, snapshot

PRELOAD = ["sanitas.runfolder", "sanitas.cli", "sanitas.commands.inject", "sanitas.faults.campaign",
           "sanitas.faults.sparse", "sanitas.faults.engine", "sanitas.train", "sanitas.golden", "sanitas.data"]
RUN_KEYS = {"faults_per_s", "experiments_per_s", "seconds", "new_faults", "resumed_faults", "work", "out", "db"}


@pytest.fixture(scope="module")
def fork():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def child(ctx, argv, env=None, log=None):
    p = ctx.Process(target=run_cli_child, args=([str(a) for a in argv], env or {}, str(log) if log else None))
    p.start()
    return p


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(rc, err, needle):
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("sanitas: error: ") and needle in lines[0], err
    return lines[0]


def last_json(out):
    return json.loads(out.strip().splitlines()[-1])


def with_opt(argv, flag, value):
    """``argv`` with the value after ``flag`` replaced."""
    i = argv.index(flag)
    return [*argv[:i + 1], value, *argv[i + 2:]]


def table(d):
    with Store(d / "results.sqlite", readonly=True) as st:
        return st.table()


def n_results(d):
    with Store(d / "results.sqlite", readonly=True) as st:
        return st.n_results()


def test_kill_at_every_phase_then_resume_equals_uninterrupted(lenet_ckpt, tmp_path, fork, capsys):
    """SIGKILL at setup / first chunk / mid-run / final write; each resume gives the uninterrupted table and
    summary exactly (no row lost or duplicated)."""
    n, k = 200, 16                                   # 4 faults (64 rows) per chunk: 50 chunks
    args = ["inject", "--checkpoint", lenet_ckpt, "--faults", n, "--site", "weight,output,acc", "--inputs", k,
            "--chunk-rows", 64, "--seed", 3, "--quiet", "--json"]
    ref = tmp_path / "ref"
    rc, so, _ = cli(capsys, *args, "--out", ref)
    assert rc == 0
    s_ref, t_ref = last_json(so), table(ref)
    assert len(t_ref) == n * k
    at_kill = {"setup": None, "first_chunk": 64, "mid": 25 * 64, "final_write": n * k}
    for phase in PHASES:
        d = tmp_path / phase
        p = child(fork, [*args, "--out", d], {CRASH_ENV: phase})
        p.join()
        assert p.exitcode == -signal.SIGKILL, phase
        if phase == "setup":                         # the fault list is on disk, the settings are not
            assert (d / "faults.jsonl").exists() and not (d / "settings.json").exists()
            assert not (d / "results.sqlite").exists()
            one_error(*cli(capsys, "report", d)[::2], "no manifest.json")
            (d / "manifest.json").write_text('{"kind": "campaign"}')      # a report cannot be fooled either
            one_error(*cli(capsys, "report", d)[::2], "setup never completed")
            (d / "manifest.json").unlink()
            other = tmp_path / "setup-then-other-settings"     # the case: a resume with new settings
            shutil.copytree(d, other)
            rc, so, _ = cli(capsys, *with_opt(with_opt(args, "--faults", 100), "--seed", 7), "--out", other,
                            "--resume")
            s7 = last_json(so)
            assert rc == 0 and s7["faults"] == 100 and s7["inputs"] == k and s7["clean_acc"] == s_ref["clean_acc"]
            assert json.loads((other / "settings.json").read_text())["settings"]["seed"] == 7
            assert n_results(other) == 100 * k
        else:
            assert n_results(d) == at_kill[phase], phase
            man = json.loads((d / "manifest.json").read_text())
            assert man["status"] == "running"
        rc, so, _ = cli(capsys, *args, "--out", d, "--resume")
        assert rc == 0, phase
        s = last_json(so)
        assert s["resumed_faults"] == (at_kill[phase] or 0) // k and s["new_faults"] + s["resumed_faults"] == n
        assert table(d) == t_ref, phase
        assert {a: b for a, b in s.items() if a not in RUN_KEYS} == {a: b for a, b in s_ref.items()
                                                                      if a not in RUN_KEYS}, phase
        assert json.loads((d / "manifest.json").read_text())["status"] == "done"
        assert not [q.name for q in d.iterdir() if ".tmp" in q.name]

    # ---- killed between settings.json and the store's setup transaction: the resume sets the store up
    nostore = tmp_path / "nostore"
    shutil.copytree(ref, nostore)
    for q in nostore.glob("results.sqlite*"):
        q.unlink()
    (nostore / "manifest.json").unlink()
    rc, so, _ = cli(capsys, *args, "--out", nostore, "--resume")
    assert rc == 0 and last_json(so)["new_faults"] == n and table(nostore) == t_ref

    # ---- refused resumes change nothing on disk
    def refused(d, needle, *extra, argv=args):
        before = snapshot(d)
        line = one_error(*cli(capsys, *argv, *extra)[::2], needle)
        assert snapshot(d) == before
        return line

    refused(ref, "holds a different campaign (differs in seed)", "--out", ref, "--resume",
            argv=with_opt(args, "--seed", 4))
    refused(ref, "already holds a campaign: use --resume", "--out", ref)
    from sanitas.train import load_checkpoint, save_checkpoint
    other = tmp_path / "same-weights-other-bytes.pt"
    model, ck = load_checkpoint(lenet_ckpt)
    save_checkpoint(model, other, ck.get("dataset", "digits"), {"note": "re-saved"})
    argv2 = list(args)
    argv2[argv2.index(lenet_ckpt)] = other
    refused(ref, "differs in checkpoint content", "--out", ref, "--resume", argv=argv2)
    with FolderLock(ref):                            # a live owner (this process)
        refused(ref, f"{ref} is in use by another sanitas process (pid {os.getpid()})", "--out", ref, "--resume")
    edited = tmp_path / "edited"
    shutil.copytree(ref, edited)
    lines = (edited / "faults.jsonl").read_text().splitlines()
    (edited / "faults.jsonl").write_text("\n".join(lines[1:] + lines[:1]) + "\n")
    refused(edited, "faults.jsonl is missing or was modified", "--out", edited, "--resume")
    garbage = tmp_path / "garbage"
    shutil.copytree(ref, garbage)
    (garbage / "results.sqlite").write_bytes(b"not a database" * 100)
    refused(garbage, "not a sanitas campaign database", "--out", garbage, "--resume")


def test_two_writers_into_one_folder(lenet_ckpt, tmp_path, fork):
    """Two `inject` with different seeds into one --out at once: exactly one runs, the other exits 2 with the
    one line naming the owner's pid; the folder holds the winner's campaign only."""
    out = tmp_path / "c"
    n, k = 1500, 16
    ps = []
    for seed in (0, 1):
        argv = ["inject", "--checkpoint", lenet_ckpt, "--faults", n, "--inputs", k, "--seed", seed, "--out", out,
                "--quiet", "--json"]
        ps.append(child(fork, argv, log=tmp_path / f"log{seed}"))
    for p in ps:
        p.join()
    codes = sorted(p.exitcode for p in ps)
    assert codes == [0, 2]
    win = 0 if ps[0].exitcode == 0 else 1
    loser_log = (tmp_path / f"log{1 - win}").read_text().strip().splitlines()
    assert loser_log == [f"sanitas: error: {out} is in use by another sanitas process (pid {ps[win].pid})"]
    settings = json.loads((out / "settings.json").read_text())["settings"]
    assert settings["seed"] == win and settings["faults"] == n
    with Store(out / "results.sqlite", readonly=True) as st:
        assert st.n_results() == n * k and st.n_faults() == n
        assert st.records() == (out / "faults.jsonl").read_text().splitlines()

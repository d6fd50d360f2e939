"""Campaigns: CLI summary, store, kill-and-resume (SIGKILL), dask equivalence, rate models, report, bad specs."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sanitas.cli import main
from sanitas.faults.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _json(out):
    return json.loads(out.strip().splitlines()[-1])


def test_inject_summary_store_and_report(lenet_ckpt, tmp_path, capsys):
    out = tmp_path / "c"
    rc, so, _ = _cli(capsys, "inject", "--checkpoint", str(lenet_ckpt), "--faults", "120",
                     "--site", "weight,output,acc", "--inputs", "12", "--out", str(out), "--quiet", "--json")
    assert rc == 0
    s = _json(so)
    for k in ("faults", "masked", "sdc", "critical", "faults_per_s"):
        assert k in s
    assert s["faults"] == 120 and s["inputs"] == 12 and s["masked"] + s["sdc"] + s["critical"] == 120 * 12
    cr = s["critical_rate"]
    assert s["faults_per_s"] > 0 and 0 <= cr["lo"] <= cr["p"] <= cr["hi"]
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "campaign" and man["status"] == "done"
    with Store(out / "results.sqlite", readonly=True) as st:
        assert st.n_results() == 120 * 12 and st.n_faults() == 120
        mode = st.con.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        fid = st.table()[0][0]
    con = sqlite3.connect(out / "results.sqlite")
    try:
        with pytest.raises(sqlite3.IntegrityError):              # the (fault_id, input_id) key is unique
            con.execute("INSERT INTO results VALUES(?, 0, 0, 0)", (fid,))
    finally:
        con.rollback()
        con.close()
    # same campaign through the golden reference backend: identical table
    out2 = tmp_path / "g"
    rc, so2, _ = _cli(capsys, "inject", "--checkpoint", str(lenet_ckpt), "--faults", "120",
                      "--site", "weight,output,acc", "--inputs", "12", "--out", str(out2), "--quiet", "--json",
                      "--backend", "golden")
    assert rc == 0
    with Store(out / "results.sqlite", readonly=True) as a, Store(out2 / "results.sqlite", readonly=True) as b:
        assert a.table() == b.table()
    # report
    rc, so, _ = _cli(capsys, "report", str(out), "--json")
    r = _json(so)
    assert rc == 0 and r["kind"] == "campaign"
    for f in ("index.html", "report.md", "accuracy_vs_rate.png", "vulnerability_layer.png", "vulnerability_site.png",
              "vulnerability_bit.png"):
        assert (out / f).stat().st_size > 0, f
    assert "critical" in (out / "report.md").read_text()
    # an existing campaign is not overwritten without --resume; --resume of a finished one adds nothing
    rc, _, err = _cli(capsys, "inject", "--checkpoint", str(lenet_ckpt), "--faults", "120", "--out", str(out))
    assert rc == 2 and "use --resume" in err
    rc, so, _ = _cli(capsys, "inject", "--checkpoint", str(lenet_ckpt), "--faults", "120",
                     "--site", "weight,output,acc", "--inputs", "12", "--out", str(out), "--quiet", "--json",
                     "--resume")
    assert rc == 0 and _json(so)["new_faults"] == 0 and _json(so)["resumed_faults"] == 120
    rc, _, err = _cli(capsys, "inject", "--checkpoint", str(lenet_ckpt), "--faults", "121",
                      "--site", "weight,output,acc", "--inputs", "12", "--out", str(out), "--quiet", "--resume")
    assert rc == 2 and "different campaign" in err and "faults" in err


def test_kill_and_resume_equals_uninterrupted(lenet_ckpt, tmp_path):
    """SIGKILL a running `python -m sanitas.cli inject`, resume it, compare with an uninterrupted run."""
    base = [sys.executable, "-m", "sanitas.cli", "inject", "--checkpoint", str(lenet_ckpt), "--faults", "1500",
            "--site", "weight,output,acc,input", "--inputs", "16", "--chunk-rows", "64", "--quiet", "--seed", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    a, b = tmp_path / "killed", tmp_path / "clean"
    p = subprocess.Popen(base + ["--out", str(a)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    db = a / "results.sqlite"
    n_at_kill, t0 = 0, time.time()
    while time.time() - t0 < 120 and p.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                    n_at_kill = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.Error:
                n_at_kill = 0
            if n_at_kill >= 2 * 64:
                break
        time.sleep(0.005)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    with Store(db, readonly=True) as st:
        done_at_kill = st.n_results()
        assert 0 < done_at_kill < 1500 * 16                  # killed mid-campaign, after some commits
        assert done_at_kill % 16 == 0                        # whole faults only (commit per chunk)
    r = subprocess.run(base + ["--out", str(a), "--resume", "--json"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["resumed_faults"] == done_at_kill // 16 and s["new_faults"] == 1500 - done_at_kill // 16
    r = subprocess.run(base + ["--out", str(b), "--json"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    with Store(a / "results.sqlite", readonly=True) as x, Store(b / "results.sqlite", readonly=True) as y:
        tx, ty = x.table(), y.table()
        assert len(tx) == len(ty) == 1500 * 16                # nothing lost, nothing duplicated
        assert tx == ty


def test_dask_engine_matches_local(lenet_ckpt, tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    args = ["inject", "--checkpoint", str(lenet_ckpt), "--faults", "150", "--site", "weight,output", "--inputs", "8",
            "--quiet", "--json", "--chunk-rows", "128"]
    rc, so, _ = _cli(capsys, *args, "--out", str(tmp_path / "local"))
    assert rc == 0
    rc, so2, _ = _cli(capsys, *args, "--out", str(tmp_path / "dask"), "--engine", "dask", "--workers", "2")
    assert rc == 0 and _json(so2)["engine"] == "dask"
    with Store(tmp_path / "local" / "results.sqlite", readonly=True) as a, \
            Store(tmp_path / "dask" / "results.sqlite", readonly=True) as b:
        assert a.table() == b.table() and len(a.table()) == 150 * 8


def test_rate_campaign_and_report(lenet_ckpt, tmp_path, capsys):
    out = tmp_path / "mibb"
    rc, so, _ = _cli(capsys, "inject", "--checkpoint", str(lenet_ckpt), "--fault", "mibb", "--rates", "1e-4,1e-3,1e-2",
                     "--faults", "3", "--inputs", "32", "--out", str(out), "--quiet", "--json")
    assert rc == 0
    s = _json(so)
    assert s["faults"] == 9 and [r["rate"] for r in s["per_rate"]] == [1e-4, 1e-3, 1e-2]
    acc = [r["accuracy"]["p"] for r in s["per_rate"]]
    assert acc[0] > acc[2]                                      # more faults, lower accuracy
    # resuming reproduces the trials exactly (each seeded from its record)
    with Store(out / "results.sqlite") as st:
        before = st.table()
        st.con.execute("DELETE FROM results WHERE fault_id IN (SELECT fault_id FROM faults WHERE seq % 2 = 0)")
        st.con.commit()
    rc, so, _ = _cli(capsys, "inject", "--checkpoint", str(lenet_ckpt), "--fault", "mibb", "--rates", "1e-4,1e-3,1e-2",
                     "--faults", "3", "--inputs", "32", "--out", str(out), "--quiet", "--json", "--resume")
    assert rc == 0 and _json(so)["new_faults"] == 5
    with Store(out / "results.sqlite", readonly=True) as st:
        assert st.table() == before
    rc, so, _ = _cli(capsys, "report", str(out), "--json")
    assert rc == 0 and (out / "accuracy_vs_rate.png").exists()
    for fault, extra in (("adsaf", ["--rates", "0.05"]), ("ber", ["--site", "act", "--rates", "1e-3"])):
        rc, so, _ = _cli(capsys, "inject", "--checkpoint", str(lenet_ckpt), "--fault", fault, "--faults", "2",
                         "--inputs", "16", "--out", str(tmp_path / fault), "--quiet", "--json", *extra)
        assert rc == 0 and _json(so)["faults"] == 2, fault


@pytest.mark.parametrize("argv, msg", [
    (["--site", "x"], "unknown site 'x'"),
    (["--layer", "fc9"], "layer 'fc9' does not exist"),
    (["--site", "weight", "--layer", "relu1"], "no layer has site(s) weight among relu1"),
    (["--fault", "ber", "--site", "bias"], "--fault ber takes --site weight or --site act"),
    (["--faults", "0"], "inject: argument --faults: must be >= 1, got 0"),
    (["--rates", "2", "--fault", "mibb"], "inject: argument --rates: must be a probability in [0, 1], got 2"),
    (["--engine", "dask", "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "1", "--faults", "2"],
     "cannot reach the dask scheduler at tcp://127.0.0.1:1"),
])
def test_bad_specs_give_one_line_errors(lenet_ckpt, tmp_path, capsys, argv, msg):
    if "--engine" in argv:
        pytest.importorskip("dask.distributed")
    rc, out, err = _cli(capsys, "inject", "--checkpoint", str(lenet_ckpt), "--out", str(tmp_path / "x"), "--quiet",
                        *argv)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sanitas: error: ") and msg in lines[0], err


def test_bad_checkpoint_and_report_dir(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sanitas.cli", "inject", "--checkpoint", str(tmp_path / "nope.pt"),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    want = f"sanitas: error: inject: argument --checkpoint: file not found: {tmp_path / 'nope.pt'}"
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [want]
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "manifest.json").write_text(json.dumps({"kind": "nosuchkind"}))
    r = subprocess.run([sys.executable, "-m", "sanitas.cli", "report", str(tmp_path / "r")], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "no report writer for kind 'nosuchkind'" in r.stderr


def test_run_fault_list_api(lenet, images):
    """The in-memory API other parts of sanitas use: outcome/pred arrays aligned with the fault list."""
    from sanitas.faults import sample_faults
    from sanitas.faults.campaign import run_fault_list
    from sanitas.faults.engine import EngineStats, classify
    from sanitas.faults.executors import run_golden
    _, gm = lenet
    xq = gm.quantize_input(images[:6])
    faults = sample_faults(gm, 40, sites=("weight", "acc"), seed=9)
    st = EngineStats()
    o, p = run_fault_list(gm, xq, faults, chunk_rows=30, stats=st)
    assert o.shape == p.shape == (40, 6) and st.rows == 240
    clean = gm.run_int(xq)
    for i in (0, 17, 39):
        ro, rp = classify(run_golden(gm, xq, faults[i]), clean)
        assert np.array_equal(o[i], ro) and np.array_equal(p[i], rp)

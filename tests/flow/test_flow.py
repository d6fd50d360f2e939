"""``sanitas flow`` as named steps: one table, ``--steps`` subsets (``rtl`` alone needs no checkpoint), artefacts
loaded from ``--out`` when their step is not selected, one-line errors before anything is written, skipped
dependents of a failed step, and the train / campaign / protect / board steps driven by the flow's config.

Subsets only and ``--epochs 1`` here; the default steps end to end, on a tiny budget: ``test_flow_default.py``.
"""
from __future__ import annotations

import json
import shutil

import pytest

from sanitas.cli import main
from sanitas.config import Config
from sanitas.flow import STEPS, Step, run_flow

DEFAULT_STEPS = ["search", "golden", "campaign", "plan", "csim", "rtl", "board", "report"]
TABLE = ["train", "search", "golden", "hls", "campaign", "plan", "protect", "csim", "rtl", "board", "report"]


def _run(capsys, *argv):
    rc = main(["flow", *argv, "--quiet", "--json"])
    cap = capsys.readouterr()
    return rc, (json.loads(cap.out.strip().splitlines()[-1]) if rc in (0, 1) else None), cap.err


def test_table_names_and_default_steps():
    assert list(STEPS) == TABLE
    assert all(s.fn.__name__ == f"step_{n}" for n, s in STEPS.items())
    assert Config().flow.steps == DEFAULT_STEPS


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog")
def test_steps_rtl_alone_succeeds(tmp_path, capsys):
    out, rep = tmp_path / "f", tmp_path / "rep"
    rc, s, err = _run(capsys, "--steps", "rtl,report", "--out", str(out), "--report", str(rep))
    assert rc == 0, err
    assert s["ok"] and s["steps"] == {n: ("ok" if n in ("rtl", "report") else "skipped") for n in STEPS}
    flow = json.loads((out / "flow.json").read_text())
    assert list(flow["steps"]) == list(STEPS)                  # the table's names, in its order
    assert all({"status", "seconds"} <= set(r) for r in flow["steps"].values())
    assert flow["steps"]["train"] == {"status": "skipped", "seconds": 0.0, "reason": "not selected"}
    rtl = flow["steps"]["rtl"]
    assert rtl["sim"]["passed"] and rtl["files"] == ["systolic_pe.v", "systolic_delay.v", "systolic_array.v"]
    assert rtl["area"]["protected"]["DSP"] > rtl["area"]["unprotected_estimate"]["DSP"]    # checksum PEs
    assert rtl["area"]["tmr_estimate"]["DSP"] == 3 * rtl["area"]["unprotected_estimate"]["DSP"] == 3 * 16
    assert flow["config"]["flow"]["steps"] == ["rtl", "report"]
    assert not list(out.glob("*.pt"))                          # nothing trained
    md = (rep / "index.md").read_text()
    assert "| rtl | ok |" in md and "| train |" not in md       # the report lists the selected steps


@pytest.mark.parametrize("argv, msg", [
    (["--steps", "train,bogus,rtl2"],
     ("unknown flow step(s): bogus, rtl2 (valid: train, search, golden, hls, campaign, plan, protect, csim, rtl, "
     "board, report)")),
    (["--steps", "golden"], ("flow step golden needs the checkpoint {out}/train/lenet5.pt: add train to the steps "
                            "or run it into that folder first")),
    (["--steps", "board", "--epochs", "1"], ("flow step board needs the checkpoint {out}/train/lenet5.pt: add train "
                                            "to the steps or run it into that folder first")),
    (["--epochs", "-1"], "flow: argument --epochs: must be >= 0, got -1"),
])
def test_plan_errors_are_one_line_and_write_nothing(tmp_path, capsys, argv, msg):
    out = tmp_path / "f"
    rc, _, err = _run(capsys, *argv, "--out", str(out), "--report", str(tmp_path / "rep"))
    assert rc == 2
    assert err.strip().splitlines() == [f"sanitas: error: {msg.format(out=out)}"]
    assert not out.exists() and not (tmp_path / "rep").exists()


def test_skipped_when_the_producing_step_failed(tmp_path, monkeypatch):
    def step_train(ctx, cfg):
        raise RuntimeError("boom")
    monkeypatch.setitem(STEPS, "train", Step(step_train, ("data",)))
    s = run_flow(Config(), tmp_path / "f", tmp_path / "rep", ["train", "golden", "hls", "campaign", "report"],
                 progress=False)
    assert not s["ok"]
    rec = json.loads((tmp_path / "f" / "flow.json").read_text())["steps"]
    assert rec["train"]["status"] == "failed" and rec["train"]["error"] == "RuntimeError: boom"
    for name in ("golden", "hls", "campaign"):
        assert (rec[name]["status"], rec[name]["reason"]) == ("skipped", "train failed"), name
    assert rec["report"]["status"] == "ok" and rec["csim"]["reason"] == "not selected"


def test_train_then_steps_from_out(tmp_path, capsys):
    """train + golden + campaign + protect + board, then golden and board alone on the checkpoint left in --out:
    unchanged steps are reused, a changed setting reruns its step."""
    out = tmp_path / "f"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("flow: {campaign_faults: 12, campaign_inputs: 8, board_faults: 2}\n"
                   "protect: {campaign: 12, clean: 4, compare: [none], timing_batch: 8}\n")
    rc, s, err = _run(capsys, "--config", str(cfg), "--steps", "train,golden,campaign,protect,board", "--epochs",
                      "1", "--out", str(out))
    assert rc == 0, err
    rec = json.loads((out / "flow.json").read_text())["steps"]
    assert s["golden_bit_exact"] == "270/270" and s["cached"] == []
    assert rec["campaign"]["faults"] == 12 and rec["campaign"]["inputs"] == 8
    assert json.loads((out / "campaign" / "manifest.json").read_text())["kind"] == "campaign"
    assert rec["protect"]["scheme"] == "sanity+dmr" and (out / "protect" / "study" / "protect.json").exists()
    assert (rec["board"]["bit_exact"], rec["board"]["total"]) == (8, 8) and rec["board"]["status"] == "ok"
    assert rec["board"]["board_status"]["detected"] == 0
    assert rec["board"]["fault_agreement"] == rec["board"]["faults"] == 2
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 1
    assert all((out / n / "step.json").is_file() for n in ("train", "golden", "campaign", "protect", "board"))
    # a second flow on the same --out: golden and board load the checkpoint the first one trained; golden's
    # settings and input did not change (reused), board's did (64 images now: it runs again)
    rc, s, err = _run(capsys, "--steps", "golden,board", "--out", str(out))
    assert rc == 0, err
    rec = json.loads((out / "flow.json").read_text())["steps"]
    assert s["golden_bit_exact"] == "270/270" and rec["train"]["reason"] == "not selected"
    assert s["cached"] == ["golden"] and rec["golden"]["cached"] and "cached" not in rec["board"]
    assert (rec["board"]["bit_exact"], rec["board"]["total"]) == (32, 32)    # [flow] campaign_inputs default


def test_second_flow_into_a_busy_folder_is_refused(tmp_path, capsys):
    import os

    from sanitas.runfolder import FolderLock
    out = tmp_path / "f"
    with FolderLock(out):
        before = sorted(p.name for p in out.iterdir())
        rc, _, err = _run(capsys, "--steps", "report", "--out", str(out), "--report", str(tmp_path / "r"))
        assert rc == 2
        msg = f"sanitas: error: {out} is in use by another sanitas process (pid {os.getpid()})"
        assert err.strip().splitlines() == [msg]
        assert sorted(p.name for p in out.iterdir()) == before

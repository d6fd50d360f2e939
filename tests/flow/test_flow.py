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
def test_steps_rtl_alone_succeeds(tmp_path, capsys, monkeypatch):
    """rtl alone on a 2x2 array: the sanity_tile regression (every record equal to the golden protected GEMM, none
    silent), the engine skipped with the reason (no checkpoint), and the area table of ``rtl.area.variant_area``
    (replaced here by a recording stand-in: its yosys numbers are rtl-array's tests; this checks the flow's
    wiring, its content-hash cache and the report) in the record and the report."""
    from sanitas import flowsteps
    from sanitas.rtl import area
    calls = []

    def variant_area(array, out):
        calls.append((array.rows, array.cols, out))
        return {v: {"LUT": 100 * (i + 1), "FF": 50 * (i + 1), "DSP": 4 + i, "BRAM": 0, "seconds": 0.1}
                for i, v in enumerate(area.VARIANTS)}
    monkeypatch.setattr(area, "variant_area", variant_area)
    monkeypatch.setattr(flowsteps, "AREA_CACHE", tmp_path / "area-cache")
    out, rep = tmp_path / "f", tmp_path / "rep"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("array: {rows: 2, cols: 2}\nflow: {rtl_faults: 30}\n")
    rc, s, err = _run(capsys, "--steps", "rtl,report", "--out", str(out), "--report", str(rep), "--config", str(cfg))
    assert rc == 0, err
    assert s["ok"] and s["steps"] == {n: ("ok" if n in ("rtl", "report") else "skipped") for n in STEPS}
    flow = json.loads((out / "flow.json").read_text())
    assert list(flow["steps"]) == list(STEPS)                  # the table's names, in its order
    assert all({"status", "seconds"} <= set(r) for r in flow["steps"].values())
    assert flow["steps"]["train"] == {"status": "skipped", "seconds": 0.0, "reason": "not selected"}
    rtl = flow["steps"]["rtl"]
    assert rtl["files"] == ["systolic_pe.v", "systolic_delay.v", "systolic_array.v"] and rtl["array"] == "2x2"
    r = rtl["regress"]
    assert r["passed"] and r["faults"] >= 30 and r["bit_exact"] == r["faults"] and r["silent"] == 0
    assert r["corrected"] + r["masked"] + r["rolled_back"] == r["faults"] and r["corrected"] > 0
    assert rtl["engine"] == {"skipped": "flow network: no checkpoint; search baseline lenet5: no checkpoint"}
    assert calls == [(2, 2, out / "rtl" / "area")]
    assert rtl["area"] == {"array": "2x2", "variants": variant_area(Config().array, None), "cached": False}
    assert flow["config"]["flow"]["steps"] == ["rtl", "report"]
    assert not list(out.glob("*.pt"))                          # nothing trained
    md = (rep / "index.md").read_text()
    assert "| rtl | ok |" in md and "| train |" not in md       # the report lists the selected steps
    assert "| unprotected | 100 (1.00x) | 50 (1.00x) | 4 (1.00x) | 0 (—) |" in md
    assert "| tmr | 500 (5.00x) | 250 (5.00x) | 8 (2.00x) | 0 (—) |" in md
    row = (f"| RTL sanity_tile regression (2x2, cocotb + Icarus) | fault records vs golden protected GEMM | "
           f"{r['faults']}/{r['faults']} | 0 silent, {r['corrected']} corrected,")
    assert row in md and (rep / "area.png").is_file()
    # another folder, same array and RTL sources: the table comes from the cache; another geometry synthesises
    calls.clear()
    rc, s, err = _run(capsys, "--steps", "rtl", "--out", str(tmp_path / "g"), "--config", str(cfg))
    assert rc == 0, err
    assert calls == [] and json.loads((tmp_path / "g" / "flow.json").read_text())["steps"]["rtl"]["area"]["cached"]
    assert flowsteps.variant_area_cached(Config.from_dict({"array": {"rows": 2, "cols": 4}}).array,
                                         tmp_path / "a")[1] is False and calls[0][:2] == (2, 4)


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


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog")
def test_rtl_engine_runs_the_flow_network_layer_by_layer(tmp_path, capsys, lenet5_ckpt):
    """With a LeNet-5-shaped network in --out, the rtl step runs it through the RTL engine: logits bit-exact with
    golden (without the fault-injection ports here; the engine's directed faults are rtl_tests/engine's)."""
    out = tmp_path / "f"
    (out / "train").mkdir(parents=True)
    shutil.copy(lenet5_ckpt, out / "train" / "lenet5.pt")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("array: {fault_injection: false}\nflow: {rtl_faults: 16, rtl_images: 2, rtl_area: false}\n")
    rc, s, err = _run(capsys, "--steps", "rtl", "--out", str(out), "--config", str(cfg))
    assert rc == 0, err
    e = json.loads((out / "flow.json").read_text())["steps"]["rtl"]["engine"]
    assert (e["network"], e["name"], e["bit_exact"], e["total"], e["passed"]) == ("flow network", "lenet5", 2, 2,
                                                                                  True)
    assert "faults" not in e and "passed_over" not in e and e["cycles"] > 0


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog")
def test_rtl_engine_runs_a_graph_network_not_the_fallback(tmp_path, capsys):
    """A residual graph (MobileNet-V2: adds, depthwise convs, the global sum head) as the flow's network: the rtl step
    runs it through the RTL engine (host nodes between the commands), no LeNet-5 fallback."""
    import torch
    from sanitas.models import build
    from sanitas.train import save_checkpoint
    out = tmp_path / "f"
    torch.manual_seed(0)
    save_checkpoint(build("mobilenetv2", (1, 8, 8), 10, seed=0), out / "train" / "mobilenetv2.pt", "digits")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {model: mobilenetv2}\narray: {fault_injection: false}\n"
                   "flow: {rtl_faults: 16, rtl_images: 2, rtl_area: false}\n")
    rc, s, err = _run(capsys, "--steps", "rtl", "--out", str(out), "--config", str(cfg))
    assert rc == 0, err
    e = json.loads((out / "flow.json").read_text())["steps"]["rtl"]["engine"]
    assert (e["network"], e["name"], e["bit_exact"], e["total"], e["passed"]) == ("flow network", "mobilenetv2", 2,
                                                                                  2, True)
    assert (e["commands"], e["host_nodes"]) == (20, 8) and "passed_over" not in e and e["cycles"] > 0


def test_engine_fault_totals():
    """The engine bench's directed faults ({name: {counter register: delta}}), summed under the flow's names."""
    from sanitas.flowsteps import _engine_faults
    got = _engine_faults({"a": {"CNT_DETECTED": 1, "CNT_CORRECTED": 1, "CNT_UNCORR": 0},
                          "b": {"CNT_DETECTED": 1, "CNT_CORRECTED": 0, "CNT_UNCORR": 1},
                          "c": {"CNT_ROLLBACK": 1, "CNT_ESCALATED": 0, "RB_DETECTED": 0, "RB_ROLLED_BACK": 0,
                                "RB_UNCORR": 0, "RB_ESCALATIONS": 0},
                          "d": {"CNT_ROLLBACK": 8, "CNT_ESCALATED": 4, "RB_DETECTED": 0, "RB_ROLLED_BACK": 2,
                                "RB_UNCORR": 1, "RB_ESCALATIONS": 1},
                          "e": {"RB_DETECTED": 1, "RB_ROLLED_BACK": 2, "RB_UNCORR": 0, "RB_ESCALATIONS": 0}})
    assert got == {"directed": 5, "detected": 2, "corrected": 1, "uncorrectable": 1, "reexecuted": 9,
                   "tiles_escalated": 4, "input_mismatches": 1, "rolled_back": 4, "alarms": 1, "escalations": 1}


def test_report_engine_row_names_commands_and_host_nodes():
    """The report's RTL engine row says how the net ran: engine commands and host nodes (older records: layer by
    layer)."""
    from sanitas.report.flow import cross_level
    e = {"network": "searched net", "name": "every_primitive", "bit_exact": 4, "total": 4}
    row, = cross_level({"rtl": {"engine": dict(e, commands=44, host_nodes=53)}})
    assert row == {"level": "RTL engine, searched net (every_primitive): 44 engine commands, 53 host nodes",
                   "what": "test images (logits)", "exact": "4/4", "faults": "—"}
    old, = cross_level({"rtl": {"engine": e}})
    assert old["level"] == "RTL engine, searched net (every_primitive): layer by layer"


def test_hardware_spec_drops_only_what_the_top_does_not_generate(monkeypatch):
    from sanitas.flowsteps import hardware_spec
    from sanitas.golden import export_golden
    from sanitas.hls import firmware
    from sanitas.models import build
    gm = export_golden(build("lenet5", (1, 8, 8), 10, seed=0))
    layers = [n.name for n in gm.layers()]
    spec = {"default": "sanity+dmr", layers[-1]: "tmr"}
    monkeypatch.setattr(firmware, "BUILT_SCHEMES", ("dmr",))
    hw, dropped = hardware_spec(gm, spec)
    assert dropped == {"sanity": len(gm.nodes) - 1, "tmr": 1}        # per node of the map
    assert hw == {"default": "none", **{n.name: "dmr" for n in gm.nodes}, layers[-1]: "none"}
    monkeypatch.setattr(firmware, "BUILT_SCHEMES", ("dmr", "sanity", "tmr"))     # a top that generates them all
    assert hardware_spec(gm, spec) == (spec, {})
    assert hardware_spec(gm, "none") == ("none", {})


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

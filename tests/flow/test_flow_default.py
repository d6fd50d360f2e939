"""The default flow end to end on a tiny budget (search -> FTT -> golden -> campaign -> plan -> csim -> board ->
report; rtl has its own tests in test_flow.py), then resumed: unchanged steps are reused, a changed setting reruns
exactly its step and the steps that read its artefacts. The report is opened in a real headless browser
(``tests/report/cdp.py``): the page loads, every image loads, no console error, a screenshot goes to ``build/``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from sanitas.config import Config
from sanitas.flow import run_flow
from sanitas.paths import REPO_ROOT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from cdp import Browser, chromium  # noqa: E402

STEPS = ["search", "golden", "campaign", "plan", "csim", "board", "report"]
TINY = {
    "search": {"channels": 2, "stem_multiplier": 1, "float_batch": 256, "batch_size": 256, "arch_batch": 2,
               "eval_fault_samples": 1, "max_macs": None},
    "flow": {"search_budget": 2, "search_float_epochs": 1, "search_epochs": 1, "final_epochs": 1,
             "baseline_epochs": 1, "test_fault_samples": 1, "campaign_faults": 150, "campaign_inputs": 16,
             "baselines": [], "board_faults": 5, "csim_faults": 12, "csim_fault_images": 2},
    "plan": {"critical": 30, "sdc": 10, "verify_critical": 30, "verify_faults": 60, "soak": 40},
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    d = tmp_path_factory.mktemp("flow")
    cfg = Config.from_dict(TINY)
    s = run_flow(cfg, d / "out", d / "report", STEPS, progress=False)
    return d, cfg, s, json.loads((d / "out" / "flow.json").read_text())["steps"]


def test_steps_ok_and_levels_bit_exact(flow):
    d, cfg, s, rec = flow
    assert {k: s["steps"][k] for k in STEPS if k != "plan"} == {k: "ok" for k in STEPS if k != "plan"}
    assert rec["search"]["evaluated"] == 2 and rec["search"]["best"]["golden"]["bitexact"]
    assert rec["golden"]["bit_exact"] == rec["golden"]["total"] == 270
    assert rec["campaign"]["faults"] == 150 and rec["campaign"]["experiments"] == 150 * 16
    c = rec["csim"]                                   # the protected network's csim, the whole test split
    assert (c["bit_exact"], c["total"], c["fault_agreement"], c["faults"]) == (270, 270, 12, 12)
    assert c["counters_zero"] and c["kernel"]["passed"] and c["kernel"]["mismatches"] == 0
    # the searched net (cells with concats) goes through the hls4ml extension, not the golden-driven fallback
    assert (c["emitter"], c["ext_error"]) == ("hls4ml-ext", None) and 0 < c["convert_s"] < 120
    b = rec["board"]
    assert (b["bit_exact"], b["total"], b["ip"]) == (16, 16, "csim")       # sanitas_top's C++ behind the registers
    assert b["fault_agreement"] == b["faults"] == 5
    assert all(r["seconds"] >= 0 for r in rec.values()) and s["cached"] == []


def test_plan_record(flow):
    d, cfg, s, rec = flow
    p = rec["plan"]
    nodes = [n for n, _ in rec["golden"]["nodes"]]
    assert list(p["scheme_map"]) == nodes
    assert p["reached"] and p["experiments"]["failing"] == 0
    assert p["experiments"]["critical"] == 30 and p["experiments"]["sdc"] == 10
    start = [st for st in p["steps"] if st["phase"] == "start"]
    assert start and p["cost"] <= start[0]["cost"] == p["uniform"][start[0]["move"]["*"]]   # only ever cheaper
    on_disk = json.loads((d / "out" / "plan" / "scheme_map.json").read_text())
    assert on_disk == {"default": "none", **p["scheme_map"]}
    v = p["verify"]
    met = (v["hunt"]["critical_corrected"] >= 0.999 and v["coverage"]["plan"]["silent"] == 0
           and v["coverage"]["plan"]["state_silent"] == 0 and v["coverage"]["plan"]["false_alarms"] == 0
           and v["soak"]["silent"] == 0)
    assert v["met"] == met and (p["status"] == "ok") == met
    assert v["soak"]["inferences"] == 40 and v["hunt"]["critical"] == 30
    assert v["coverage"]["sanity+dmr"]["false_alarms"] == 0


def test_csim_and_board_run_the_plan_as_far_as_the_top_generates_it(flow):
    """csim and board build sanitas_top for the plan; the schemes it does not generate (hls.firmware.BUILT_SCHEMES,
    read when the step runs) are dropped and counted, never silently."""
    from sanitas.hls.firmware import BUILT_SCHEMES
    d, cfg, s, rec = flow
    dropped: dict = {}
    for spec in rec["plan"]["scheme_map"].values():
        for part in spec.split("+"):
            if part != "none" and part not in BUILT_SCHEMES:
                dropped[part] = dropped.get(part, 0) + 1
    for k in ("csim", "board"):
        r = rec[k]
        assert r["built_schemes"] == list(BUILT_SCHEMES)
        assert r.get("dropped", {}) == dropped and r["scheme"] == ("plan restricted" if dropped else "plan")
    assert rec["board"]["protected"] is True
    md = (d / "report" / "index.md").read_text()
    if dropped:
        assert f"sanitas_top, plan restricted to none+{'+'.join(BUILT_SCHEMES)} (" in md
        assert all(f"{k} on {n} nodes" in md for k, n in dropped.items())


def test_resume_reuses_unchanged_steps(flow):
    d, cfg, _, rec = flow
    s = run_flow(cfg, d / "out", d / "report", STEPS, progress=False)
    ok = [k for k in STEPS if k != "report" and rec[k]["status"] == "ok"]
    assert s["cached"] == ok
    again = json.loads((d / "out" / "flow.json").read_text())["steps"]
    assert again["golden"]["bit_exact"] == rec["golden"]["bit_exact"] and again["report"].get("cached") is None
    # a plan setting changes: plan runs again, and board, which builds the csim for the plan; search, golden and
    # campaign are reused
    cfg2 = Config.from_dict({**TINY, "plan": {**TINY["plan"], "soak": 20}})
    s = run_flow(cfg2, d / "out", d / "report", STEPS, progress=False)
    assert s["cached"] == ["search", "golden", "campaign"]
    assert json.loads((d / "out" / "flow.json").read_text())["steps"]["plan"]["verify"]["soak"]["inferences"] == 20


def test_report_files(flow):
    d, _, _, rec = flow
    rep = d / "report"
    html, md = (rep / "index.html").read_text(), (rep / "index.md").read_text()
    for fig in ("reward", "pareto", "cells", "heatmap", "plan", "timings"):
        assert (rep / f"{fig}.png").is_file(), fig
        assert f'src="{fig}.png"' in html and f"({fig}.png)" in md
    for text in ("Architecture search", "Vulnerability", "Protection plan", "Across levels", "Timings"):
        assert text in html and text in md
    assert "| Brevitas vs golden | test images (logits) | 270/270 |" in md
    p = rec["plan"]                                   # schemes x coverage x overhead: the plan, then uniform costs
    plan_row = next(ln for ln in md.splitlines() if ln.startswith("| plan (per layer) |"))
    assert plan_row.endswith(f"| {100 * p['cost'] / p['macs']:.1f} % |")
    assert f"| tmr (uniform, cost only) | {'— | ' * 10}{100 * p['uniform']['tmr'] / p['macs']:.1f} % |" in md
    row = "| test images (logits) | 270/270 | 12/12 fault records: logits and counters equal ProtectedModel's (2 images"
    assert row + " each) |" in md
    assert "test images (logits) | 16/16 | 5/5 faults: logits and counters equal ProtectedModel's |" in md


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (make test installs it when run as root)")
def test_report_in_a_headless_browser(flow):
    d, *_ = flow
    shot = REPO_ROOT / "build" / "report_screenshot.png"
    with Browser() as b:
        b.open((d / "report" / "index.html").as_uri())
        assert b.evaluate("document.title").startswith("sanitas flow")
        imgs = b.images()
        assert len(imgs) >= 6
        assert [i["src"] for i in imgs if not (i["complete"] and i["w"] > 0 and i["h"] > 0)] == []
        assert b.problems() == []
        b.screenshot(shot)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = np.frombuffer(png[16:24], dtype=">u4")
    assert w >= 800 and h > 900                       # the whole page, beyond the first screen


def test_browser_sees_a_broken_image_and_a_console_error(tmp_path):
    """The checks above can fail: a missing image and a console error are reported."""
    if chromium() is None:
        pytest.skip("needs Debian's chromium (make test installs it when run as root)")
    p = tmp_path / "bad.html"
    p.write_text("<!doctype html><html><head><title>t</title></head><body><img src='missing.png'>"
                 "<script>console.error('boom')</script></body></html>")
    with Browser() as b:
        b.open(p.as_uri())
        assert [(i["src"], i["w"]) for i in b.images()] == [("missing.png", 0)]
        probs = b.problems()
        assert "console: boom" in probs and any(x.startswith(("request failed", "log:")) for x in probs)

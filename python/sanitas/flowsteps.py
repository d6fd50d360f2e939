"""The steps of ``sanitas flow`` (table and runner: ``flow.py``): thin functions ``step_<name>(ctx, cfg) -> record``
that call the packages' own APIs and write their artefacts into ``ctx.step_dir(name)``.

Each record holds what the report shows (``report/flow.py``): numbers, never prose. The HLS, RTL and board steps
call what ``sanitas.hls``, ``sanitas.rtl`` and ``sanitas.board`` offer (the GEMM kernel csim, the generated array
with its cocotb regression sample and yosys area, the PYNQ driver on the fake device).
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np

from .config import Config
from .flow import FlowContext, _subcommand
from .runfolder import atomic_write


def _save(path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1, default=str))


def step_train(ctx: FlowContext, cfg: Config) -> dict:
    """Quantisation-aware training of [train] model on [data]; writes ``train/<model>.pt``."""
    from .models import build
    from .train import save_checkpoint, train_model
    splits, t = ctx.data(), cfg.train
    model = build(t.model, splits.in_shape, splits.num_classes, seed=t.seed)
    m = train_model(model, splits, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                    seed=t.seed, device=t.device, progress=ctx.progress)
    save_checkpoint(model, ctx.checkpoint, cfg.data.dataset, {"test_acc": m["test_acc"], "val_acc": m["val_acc"]})
    ctx.model = model
    return {"test_acc": m["test_acc"], "val_acc": m["val_acc"], "history": m["history"],
            "checkpoint": str(ctx.checkpoint)}


def search_config(cfg: Config):
    """[search] with the flow's small budget ([flow] search_*, final_epochs, baselines, ...) and [data]."""
    f = cfg.flow
    return dataclasses.replace(
        cfg.search, dataset=cfg.data.dataset, data_dir=cfg.data.data_dir, budget=f.search_budget,
        float_epochs=f.search_float_epochs, epochs=f.search_epochs, cells=f.search_cells, nodes=f.search_nodes,
        topk=1, final_epochs=f.final_epochs, baselines=tuple(f.baselines), baseline_epochs=f.baseline_epochs,
        test_fault_samples=f.test_fault_samples)


def step_search(ctx: FlowContext, cfg: Config) -> dict:
    """FTT-NAS search (small budget), then the FTT training of the best derived net and of the baselines, into
    ``search/`` (``nas.search.Search``: history.json, genotype.json, summary.json)."""
    from .nas.search import Search
    s = Search(search_config(cfg), ctx.step_dir("search"), progress=ctx.progress).run()
    bb = s.get("best_baseline")
    rec = {"best": s["best"], "evaluated": s["evaluated"], "timings": s["timings"], "baselines": s["baselines"],
           "best_baseline": bb, "faulty_gain": s.get("faulty_gain"), "macs_ratio": s.get("macs_ratio"),
           "fault": s["fault"], "test_acc": s["best"]["clean_acc"]}
    return rec if s["ok"] else {"status": "failed", **rec}


def step_golden(ctx: FlowContext, cfg: Config) -> dict:
    """Export the integer golden model (``golden/golden.npz``) and check it bit-exactly on the test split."""
    from .golden import export_golden
    from .golden.check import check_bitexact
    model = ctx.need_model()
    ctx.golden = gm = export_golden(model)
    gm.save(ctx.step_dir("golden") / "golden.npz")
    x, y = ctx.data().test.tensors
    c = check_bitexact(model, gm, x, backend=cfg.golden.backend)
    rec = {"bit_exact": c["bit_exact"], "total": c["total"],
           "golden_test_acc": float((c["golden_pred"] == y.numpy()).mean()), "macs": gm.macs(),
           "network": model.spec.get("name"), "nodes": [[n.name, n.op] for n in gm.nodes]}
    return rec if c["bit_exact"] == c["total"] else {"status": "failed", **rec}


def step_hls(ctx: FlowContext, cfg: Config) -> dict:
    """QONNX -> hls4ml project (``hls/hls4ml``), compiled; predictions checked bit-exactly against golden."""
    from .hls.convert import check_bitexact, to_hls4ml
    model, gm = ctx.need_model(), ctx.need_golden()
    prj = ctx.step_dir("hls") / "hls4ml"
    hm = to_hls4ml(model, prj, golden=gm)
    c = check_bitexact(hm, gm, ctx.data().test.tensors[0].numpy()[: cfg.hls.limit])
    rec = {"bit_exact": c["bit_exact"], "total": c["total"], "project": str(prj)}
    return rec if c["bit_exact"] == c["total"] else {"status": "failed", **rec}


CAMPAIGN_SITES = "weight,bias,input,output,acc"


def step_campaign(ctx: FlowContext, cfg: Config) -> dict:
    """Single-bit flips over every golden site on the network (``sanitas inject`` into ``campaign/``): the
    vulnerability per layer, site and bit the planner and the heat maps read."""
    f = cfg.flow
    rec = _subcommand(ctx, "inject", ["--checkpoint", str(ctx.need_checkpoint()), "--out",
                                      str(ctx.step_dir("campaign")), "--fault", "bitflip", "--site", CAMPAIGN_SITES,
                                      "--faults", str(f.campaign_faults), "--inputs", str(f.campaign_inputs),
                                      "--seed", str(cfg.campaign.seed), "--no-exhaustive"])
    return {k: v for k, v in rec.items() if k not in ("per_layer", "per_site", "per_bit")}


def step_plan(ctx: FlowContext, cfg: Config) -> dict:
    """The cheapest per-layer protection map from the campaign and the overhead model, verified on fresh faults
    and a soak (``protect.planner``); writes ``plan/scheme_map.json`` (a ``--per-layer`` file) and ``plan.json``."""
    from .protect.planner import campaign_support, experiments_from_campaign, plan_and_verify
    camp = ctx.need_ok("campaign")
    gm = ctx.need_golden()
    xq, _ = ctx.test_images()
    p = cfg.plan
    exps = experiments_from_campaign(camp, p.critical, p.sdc, p.seed)
    res, ver = plan_and_verify(gm, xq, exps, p, campaign_support(camp), refine=p.refine, progress=ctx.progress)
    d = ctx.step_dir("plan")
    _save(d / "scheme_map.json", {"default": "none", **res.scheme_map})
    out = {**res.to_dict(), "macs": int(gm.macs()), "cost_frac": res.cost / gm.macs(), "verify": ver}
    _save(d / "plan.json", out)
    return out if (res.reached and ver["met"]) else {"status": "failed", **out}


def step_protect(ctx: FlowContext, cfg: Config) -> dict:
    """Protection coverage and overhead study [protect] on the network into ``protect/`` (``sanitas protect``)."""
    ck = ctx.need_checkpoint()
    return _subcommand(ctx, "protect", ["--checkpoint", str(ck), "--out", str(ctx.step_dir("protect") / "study")])


def step_csim(ctx: FlowContext, cfg: Config) -> dict:
    """C simulation of the [csim] kernel for the [array] geometry (g++ + ap_types) into ``csim/``: bit-exact GEMMs
    against the golden GEMM and injected faults located by the checksum rows."""
    from .hls.csim import run_csim
    c = run_csim(kernel=cfg.csim.kernel, build_dir=ctx.step_dir("csim"), array=cfg.array)
    rec = {k: c[k] for k in ("kernel", "cases", "mismatches", "faults", "faults_located") if k in c}
    return rec if c.get("passed") else {"status": "failed", **rec}


def _area(array, d) -> dict:
    """yosys area of the protected array (no fault-injection ports) and the TMR estimate: three copies of its
    rows x cols data PEs, voters not counted (so a lower bound of TMR's area)."""
    from .rtl.area import estimate_area
    from .rtl.generate import generate_systolic_array
    a = dataclasses.replace(array, fault_injection=False)
    files = generate_systolic_array(a, d)
    prot = estimate_area(files, "systolic_array")
    pe = estimate_area([f for f in files if f.name == "systolic_pe.v"], "systolic_pe")
    keys = ("LUT", "FF", "DSP", "CARRY")
    n = array.rows * array.cols
    return {"protected": {k: prot[k] for k in keys}, "pe": {k: pe[k] for k in keys},
            "unprotected_estimate": {k: n * pe[k] for k in keys}, "tmr_estimate": {k: 3 * n * pe[k] for k in keys},
            "pes": n}


RTL_SAMPLE = (20, 100)     # the regression sample: random GEMMs, injected accumulator faults


def step_rtl(ctx: FlowContext, cfg: Config) -> dict:
    """Verilog of the [array] systolic engine (``rtl/verilog``), a cocotb regression sample on Icarus (random
    GEMMs and injected accumulator faults, ``rtl/sim``), and its yosys area against TMR (``rtl/area``)."""
    from .rtl.generate import generate_systolic_array, run_cocotb_smoke
    d = ctx.step_dir("rtl")
    files = generate_systolic_array(cfg.array, d / "verilog")
    rec: dict = {"files": [f.name for f in files]}
    if not shutil.which("iverilog"):
        return {"status": "failed", **rec, "error": "iverilog not on PATH (make setup installs it as root)"}
    s = run_cocotb_smoke(d / "sim", cfg.array, seed=cfg.rtl.seed, n_random=RTL_SAMPLE[0], n_faults=RTL_SAMPLE[1])
    s.pop("log", None)
    rec["sim"] = s
    if cfg.flow.rtl_area and shutil.which("yosys"):
        rec["area"] = _area(cfg.array, d / "area")
    return rec if s.get("passed") else {"status": "failed", **rec}


def _open_csim_board(ctx: FlowContext, cfg: Config, gm):
    """The fake board whose IP is the csim of ``sanitas_top`` (the network's C++ behind the register map), built
    for the plan's per-layer map when the top generates it, else unprotected (and the record says why)."""
    from .board import open_board
    from .errors import SanitasError
    plan = ctx.step_dir("plan") / "scheme_map.json"
    spec = json.loads(plan.read_text()) if plan.is_file() else "none"
    kw = {"compute": gm, "board": cfg.board.board, "out_dir": ctx.step_dir("board") / "overlay", "ip": "csim"}
    try:
        return open_board("fake", spec=spec, **kw), spec != "none", None
    except SanitasError as e:
        if spec == "none":
            raise
        return open_board("fake", spec="none", **kw), False, str(e)


def step_board(ctx: FlowContext, cfg: Config) -> dict:
    """The network through the PYNQ driver on the fake device whose IP is the csim of ``sanitas_top`` (the real
    pynq stack, emulated registers and DDR, the accelerator's C++): bit-exact with golden on the campaign's test
    images, then [flow] board_faults faults through the fault-injection registers, each compared with the same
    fault on golden (images changed and predictions wrong: fault agreement)."""
    from .board.demo import fault_sweep
    from .faults.executors import golden_hook
    from .faults.fault import sample_faults
    gm = ctx.need_golden()
    xq, y = ctx.test_images()
    b, protected, why = _open_csim_board(ctx, cfg, gm)
    with b:
        logits, status = b.infer(xq.astype(np.int8))
        faults = sample_faults(gm, cfg.flow.board_faults, sites=("weight", "acc", "output"), kinds=("bitflip",),
                               seed=cfg.board.fault_seed)
        rows = fault_sweep({"csim": b}, gm, xq.astype(np.int8), faults)
    logits = np.asarray(logits).astype(np.int64)
    ref = gm.run_int(xq)
    same = int((logits == ref).all(axis=1).sum())
    agree = 0
    for f, r in zip(faults, rows):
        g = gm.run_int(xq, hook=golden_hook(gm, [f]))
        agree += (int((g != ref).any(axis=1).sum()), int((g.argmax(1) != ref.argmax(1)).sum())) == (
            r["changed_images"], r["wrong_predictions"])
    rec = {"backend": "fake", "ip": "csim", "board": cfg.board.board, "protected": protected, "bit_exact": same,
           "total": int(len(xq)), "accuracy": float((logits.argmax(1) == y).mean()), "board_status": status,
           "faults": len(faults), "fault_agreement": agree}
    if why:
        rec["unprotected_because"] = why
    return rec if (same == len(xq) and agree == len(faults)) else {"status": "failed", **rec}


def step_report(ctx: FlowContext, cfg: Config) -> dict:
    """The HTML + Markdown report of ``flow.json`` and the step folders into flow.report."""
    from .report.flow import write_report
    ctx.write_json()
    return {"path": str(write_report(ctx.out, ctx.report_dir))}

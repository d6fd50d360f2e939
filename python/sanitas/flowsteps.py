"""The steps of ``sanitas flow`` (table and runner: ``flow.py``): thin functions ``step_<name>(ctx, cfg) -> record``
that call the packages' own APIs and write their artefacts into ``ctx.step_dir(name)``.

Each record holds what the report shows (``report/flow.py``): numbers, never prose. The HLS, RTL and board steps
call what ``sanitas.hls``, ``sanitas.rtl`` and ``sanitas.board`` offer: ``hls.check.check_top`` (the protected
network's ``sanitas_top`` csim) and the GEMM kernel csim; ``rtl.regress.run_regression``,
``rtl.network.run_engine_network`` and ``rtl.area.variant_area``; the PYNQ driver on the fake device. The csim and
board levels run the plan as far as ``sanitas_top`` generates it (``hardware_spec``: the schemes outside
``hls.firmware.BUILT_SCHEMES`` are dropped, and the record counts them).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .config import Config
from .errors import SanitasError
from .flow import FlowContext, _subcommand
from .paths import REPO_ROOT
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


def _ext_graph(model, gm, out_dir, compile: bool):
    """The QNet through the hls4ml extension (``hls.ext.convert.to_sanitas_hls4ml``), as ``sanitas hls`` does:
    (ModelGraph or None, emitter, ext_error, convert_s); a net it cannot lower falls back ("golden"), said."""
    import sys

    from .hls.ext.convert import to_sanitas_hls4ml
    try:
        hm = to_sanitas_hls4ml(model, out_dir, golden=gm, compile=compile)
        return hm, "hls4ml-ext", None, hm.sanitas_convert_s
    except SanitasError as e:
        print(f"sanitas: note: the hls4ml extension cannot lower this net ({e}); falling back", file=sys.stderr)
        return None, "golden", str(e), None


def step_hls(ctx: FlowContext, cfg: Config) -> dict:
    """QONNX -> hls4ml project (``hls/hls4ml``) through the sanitas extension (flow ``vitis:sanitas``), compiled;
    predictions checked bit-exactly against golden. A net the extension cannot lower gets hls4ml's plain QONNX
    project instead (``emitter`` "golden" in the record, with ``ext_error``)."""
    from .hls.convert import check_bitexact, to_hls4ml
    from .hls.ext.convert import predict
    model, gm = ctx.need_model(), ctx.need_golden()
    prj = ctx.step_dir("hls") / "hls4ml"
    x = ctx.data().test.tensors[0].numpy()[: cfg.hls.limit]
    hm, emitter, why, convert_s = _ext_graph(model, gm, prj, compile=True)
    if hm is not None:
        exact = int((predict(hm, x) == gm.run_int(gm.quantize_input(x))).all(axis=1).sum())
        c = {"bit_exact": exact, "total": len(x)}
    else:
        c = check_bitexact(to_hls4ml(model, prj, golden=gm), gm, x)
    rec = {"bit_exact": c["bit_exact"], "total": c["total"], "project": str(prj), "emitter": emitter,
           "ext_error": why, "convert_s": convert_s}
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


def plan_spec(ctx: FlowContext):
    """The plan's per-layer map (``plan/scheme_map.json``, written also when the plan missed its target) when the
    plan step ran into ``<out>``, else ``"none"`` (the records then say scheme none)."""
    p = ctx.step_dir("plan") / "scheme_map.json"
    return json.loads(p.read_text()) if p.is_file() else "none"


def hardware_spec(gm, spec) -> tuple[object, dict]:
    """(the part of ``spec`` that ``sanitas_top`` generates, {dropped component: nodes}).

    Every node keeps the components of its schemes named in ``hls.firmware.BUILT_SCHEMES`` (read at call time, so
    a top that generates more picks the whole plan up); ``spec`` comes back unchanged when nothing is dropped."""
    from .hls import firmware
    from .protect.model import resolve_map, scheme_name
    built = set(firmware.BUILT_SCHEMES)
    keep, dropped = {}, {}
    for node, schemes in resolve_map(gm, spec).items():
        keep[node] = scheme_name(tuple(s for s in schemes if repr(s) in built))
        for s in schemes:
            if repr(s) not in built:
                dropped[repr(s)] = dropped.get(repr(s), 0) + 1
    return (spec, {}) if not dropped else ({"default": "none", **keep}, dropped)


def _hardware_note(gm, spec, dropped: dict) -> dict:
    """The record's account of the protection a hardware level ran (the report prints it beside the row)."""
    from .hls import firmware
    from .protect.model import resolve_map
    rec = {"scheme": "plan" if isinstance(spec, dict) else str(spec), "built_schemes": list(firmware.BUILT_SCHEMES),
           "protected": any(resolve_map(gm, spec).values())}
    if dropped:
        rec["dropped"] = dropped
        rec["scheme"] = "plan restricted"
    return rec


def step_csim(ctx: FlowContext, cfg: Config) -> dict:
    """The protected network's C simulation (``hls.check.check_top``: ``sanitas_top`` generated for the plan,
    compiled with g++ into ``csim/top``): bit-exact logits against golden on the whole test split, then
    [flow] csim_faults fault records through its fault port, each compared (logits and counters) with
    ``ProtectedModel`` under the same plan on the first [flow] csim_fault_images images. Schemes the top does not
    generate yet are dropped from the plan (``hardware_spec``) and the record says which. Beside it, the [csim]
    GEMM kernel testbench for the [array] geometry (``csim/kernel``)."""
    from .hls.check import check_top
    from .hls.csim import run_csim
    f = cfg.flow
    gm = ctx.need_golden()
    spec, dropped = hardware_spec(gm, plan_spec(ctx))
    x = ctx.data().test.tensors[0].numpy()
    xq = gm.quantize_input(x).astype(np.int64)
    hm, emitter, why, convert_s = _ext_graph(ctx.need_model(), gm, ctx.step_dir("csim") / "hls4ml", compile=False)
    c = check_top(gm, xq, spec, ctx.step_dir("csim") / "top", faults=f.csim_faults, seed=cfg.campaign.seed,
                  fault_images=f.csim_fault_images, array=cfg.array, model_graph=hm)
    rec = {**_hardware_note(gm, spec, dropped), "network": gm.spec.get("name"), "fault_images": f.csim_fault_images,
           "emitter": emitter, "ext_error": why, "convert_s": convert_s,
           **{k: c[k] for k in ("bit_exact", "total", "faults", "fault_agreement", "faults_changing_logits",
                                "counters_zero", "cycles_per_image", "compile_s", "images_per_s")},
           "extra_macs_per_image": c["extra_macs"] // max(1, c["total"])}
    k = run_csim(kernel=cfg.csim.kernel, build_dir=ctx.step_dir("csim") / "kernel", array=cfg.array)
    rec["kernel"] = {key: k[key] for key in ("kernel", "passed", "cases", "mismatches", "faults", "faults_located")
                     if key in k}
    ok = c["bit_exact"] == c["total"] and c["fault_agreement"] == c["faults"] and c["counters_zero"] and k["passed"]
    return rec if ok else {"status": "failed", **rec}


def _engine_net(ctx: FlowContext, array):
    """(label, checkpoint, golden model, why) of the first net the RTL engine runs (`rtl.engine.network_steps`: its
    conv/linear layers as engine commands, whatever else -- adds, concats, padded pools, the global sum -- on the
    host; every command within ``array``): the flow's network (the searched net, every primitive of the mibb and
    adsaf spaces), else the search's LeNet-5 baseline, and why the ones before it were passed over ("" for the
    flow's network); (None, None, None, why) when none runs."""
    from .errors import SanitasError
    from .golden import export_golden
    from .rtl.engine import check_network
    from .train import load_checkpoint
    cands = [("flow network", ctx.checkpoint), ("search baseline lenet5",
                                                 ctx.step_dir("search") / "baselines" / "lenet5.pt")]
    why = []
    for label, ck in cands:
        if not ck.is_file():
            why.append(f"{label}: no checkpoint")
            continue
        gm = ctx.golden if (ck == ctx.checkpoint and ctx.golden is not None) else export_golden(load_checkpoint(ck)[0])
        try:
            check_network(gm, array)
        except SanitasError as e:
            why.append(f"{label}: {e}")
            continue
        return label, ck, gm, "; ".join(why)
    return None, None, None, "; ".join(why)


#: The engine's counter registers the flow totals its directed faults by, and their names in the totals.
ENGINE_FAULT_COUNTERS = {"CNT_DETECTED": "detected", "CNT_CORRECTED": "corrected", "CNT_UNCORR": "uncorrectable",
                         "CNT_ROLLBACK": "reexecuted", "CNT_ESCALATED": "tiles_escalated",
                         "RB_DETECTED": "input_mismatches", "RB_ROLLED_BACK": "rolled_back",
                         "RB_UNCORR": "alarms", "RB_ESCALATIONS": "escalations"}


def _engine_faults(faults: dict) -> dict:
    """The engine bench's directed faults ({name: {counter register: delta}}) as totals: the sanity unit's
    (detected, corrected, uncorrectable), the output stage's (tile re-executions, tiles escalated) and
    rollback_ctrl's (input checkpoint mismatches, rollbacks, alarms, layer escalations)."""
    t = {"directed": len(faults), **dict.fromkeys(ENGINE_FAULT_COUNTERS.values(), 0)}
    for d in faults.values():
        for reg, v in d.items():
            t[ENGINE_FAULT_COUNTERS[reg]] += int(v)
    return t


AREA_CACHE = REPO_ROOT / "build" / "cache" / "area"     # variant_area tables by content hash (array + RTL sources)


def variant_area_cached(array, out_dir) -> tuple[dict, bool]:
    """(``rtl.area.variant_area(array, out_dir)``, cached?): the table is kept under ``build/cache/area/`` keyed by
    the sha256 of the array's fields and of the RTL generator's sources and templates, so a flow that reruns the
    rtl step for another setting, or a second flow folder, does not synthesise the same Verilog again."""
    import hashlib

    from .rtl import area
    src = Path(area.__file__).parent
    h = hashlib.sha256(json.dumps(dataclasses.asdict(array), sort_keys=True, default=str).encode())
    for p in [src / "area.py", src / "generate.py", *sorted((src / "templates").glob("*.j2"))]:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    cache = AREA_CACHE / f"{h.hexdigest()[:20]}.json"
    if cache.is_file():
        return json.loads(cache.read_text()), True
    table = area.variant_area(array, Path(out_dir))
    cache.parent.mkdir(parents=True, exist_ok=True)
    _save(cache, table)
    return table, False


def step_rtl(ctx: FlowContext, cfg: Config) -> dict:
    """The RTL level for the [array] geometry: the regression of the protected GEMM datapath (``rtl.regress``:
    [flow] rtl_faults single accumulator faults in ``sanity_tile``, one Icarus simulation, every record's result
    compared with the golden ``protected_gemm``: silent / corrected / handed to rollback, faults/s; ``rtl/regress``),
    the RTL ``engine`` layer by layer on [flow] rtl_images test images of a LeNet-5-shaped net (``rtl.network``,
    bit-exact logits against golden, with the bench's directed faults when [array] fault_injection;
    ``rtl/engine``), and the yosys area of the engine variants, TMR included (``rtl.area.variant_area``,
    ``rtl/area``)."""
    from .errors import SanitasError
    from .rtl.generate import generate_systolic_array
    from .rtl.network import run_engine_network
    from .rtl.regress import run_regression
    d, f, array = ctx.step_dir("rtl"), cfg.flow, cfg.array
    files = generate_systolic_array(array, d / "verilog")
    rec: dict = {"files": [p.name for p in files], "array": f"{array.rows}x{array.cols}"}
    if not shutil.which("iverilog"):
        return {"status": "failed", **rec, "error": "iverilog not on PATH (make setup installs it as root)"}
    say = print if ctx.progress else (lambda *a, **k: None)
    area = None
    if f.rtl_area and not shutil.which("yosys"):
        rec["area"] = {"skipped": "yosys not on PATH"}
    with ThreadPoolExecutor(1) as pool:       # yosys on one core while Icarus runs the benches on the other
        if f.rtl_area and "area" not in rec:
            say(f"  rtl: yosys area of the engine variants ({rec['array']}), in the background", flush=True)
            area = pool.submit(variant_area_cached, array, d / "area")
        say(f"  rtl: sanity_tile regression, {f.rtl_faults} faults ({rec['array']}, Icarus)", flush=True)
        r = run_regression(d / "regress", dataclasses.replace(array, fault_injection=True), f.rtl_faults,
                           cfg.rtl.seed)
        o = r.get("outcomes", {})
        rec["regress"] = {"faults": r.get("faults", 0), "bit_exact": r.get("faults", 0) - r.get("mismatches", 0),
                          "silent": o.get("silent"), "corrected": o.get("corrected"), "masked": o.get("masked"),
                          "rolled_back": o.get("uncorrectable"), "detected": r.get("alarmed"),
                          "faults_per_s": round(r.get("faults_per_s", 0.0), 1), "passed": bool(r.get("passed"))}
        ok = rec["regress"]["passed"] and o.get("silent") == 0
        label, ck, gm, why = _engine_net(ctx, array)
        if label is None:
            rec["engine"] = {"skipped": why}
        else:
            say(f"  rtl: engine, {f.rtl_images} test images of the {label} layer by layer", flush=True)
            e = run_engine_network(d / "engine", array, ck, f.rtl_images, gm=gm)
            rec["engine"] = {"network": label, "name": gm.spec.get("name"), "bit_exact": e["bit_exact"],
                             "total": e["total"], "commands": len(e.get("layers", [])),
                             "host_nodes": e.get("host_nodes"), "cycles": e.get("cycles"), "wall_s": e.get("wall_s"),
                             "passed": bool(e["passed"]), **({"passed_over": why} if why else {})}
            if e.get("faults"):
                rec["engine"]["faults"] = _engine_faults(e["faults"])
                rec["engine"]["golden_faults"] = e.get("golden_faults") or {}
                rec["engine"]["ctrl_faults"] = e.get("ctrl_faults") or {}
            ok = ok and e["passed"]
        if area is not None:
            try:
                table, cached = area.result()
            except RuntimeError as e:
                raise SanitasError(str(e)) from None
            rec["area"] = {"array": rec["array"], "variants": table, "cached": cached}
    return rec if ok else {"status": "failed", **rec}


def step_board(ctx: FlowContext, cfg: Config) -> dict:
    """The network through the PYNQ driver on the fake device whose IP is the csim of ``sanitas_top`` (the real
    pynq stack, emulated registers and DDR, the accelerator's C++), built for the plan as far as the top generates
    it (``hardware_spec``): bit-exact with golden on the campaign's test images, then [flow] board_faults faults
    through the fault-injection registers, each compared (logits and counters) with ``ProtectedModel`` under the
    same map and record (fault agreement)."""
    from .board import open_board
    from .faults.executors import golden_hook
    from .faults.fault import sample_faults
    from .hls.check import protected_per_image
    from .protect.model import ProtectedModel
    gm = ctx.need_golden()
    xq, y = ctx.test_images()
    spec, dropped = hardware_spec(gm, plan_spec(ctx))
    faults = sample_faults(gm, cfg.flow.board_faults, sites=("weight", "acc", "output"), kinds=("bitflip",),
                           seed=cfg.board.fault_seed)
    pm = ProtectedModel(gm, spec)
    x8 = xq.astype(np.int8)
    agree = changed = 0
    with open_board("fake", compute=gm, board=cfg.board.board, out_dir=ctx.step_dir("board") / "overlay",
                    ip="csim", spec=spec) as b:
        logits, status = b.infer(x8)
        for f in faults:
            b.inject(f)
            got, counters = b.infer(x8)
            want, want_counters = protected_per_image(pm, xq, golden_hook(gm, [f]))
            agree += bool(np.array_equal(np.asarray(got, np.int64), want) and
                          {k: counters[k] for k in want_counters} == want_counters)
            changed += int((np.asarray(got, np.int64) != np.asarray(logits, np.int64)).any(axis=1).sum())
        b.inject(None)
    logits = np.asarray(logits).astype(np.int64)
    same = int((logits == gm.run_int(xq)).all(axis=1).sum())
    rec = {"backend": "fake", "ip": "csim", "board": cfg.board.board, **_hardware_note(gm, spec, dropped),
           "bit_exact": same, "total": int(len(xq)),
           "accuracy": float((logits.argmax(1) == y).mean()), "board_status": status, "faults": len(faults),
           "fault_agreement": agree, "changed_images": changed}
    return rec if (same == len(xq) and agree == len(faults)) else {"status": "failed", **rec}


def step_report(ctx: FlowContext, cfg: Config) -> dict:
    """The HTML + Markdown report of ``flow.json`` and the step folders into flow.report."""
    from .report.flow import write_report
    ctx.write_json()
    return {"path": str(write_report(ctx.out, ctx.report_dir))}

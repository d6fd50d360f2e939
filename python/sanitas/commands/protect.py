"""``sanitas protect``: protect trained checkpoints with Sanity ABFT + DMR (or a baseline), measure coverage with a
single-bit fault campaign over every site, count the overhead, and write a report.

    sanitas protect --checkpoint PATH [--checkpoint PATH2 ...] --scheme sanity+dmr [--per-layer FILE]
                    [--compare none,sanity,...] --campaign N --out DIR [--json]

``--scheme`` is the scheme under test (components joined by '+': sanity, sanity:eager, dmr, tmr, sanity-check,
clip, none); ``--per-layer FILE`` (JSON/YAML ``{"default": ..., "<layer|pattern|op:conv>": ...}``) makes it a
per-layer map whose default is ``--scheme``. ``--compare`` adds baselines to the same campaign (same faults).
``DIR`` receives ``protect.json`` (all numbers), ``faults.jsonl`` (one row per protected run), ``manifest.json``
(kind "protect") and the report (``index.html``/``index.md`` + plots; ``sanitas report DIR`` rewrites it).
The summary (``--json``) is the scheme under test on the first checkpoint: ``critical_corrected``,
``corrected``, ``detected`` (fractions), ``false_alarms`` (count), ``extra_macs`` (fraction of the model's MACs).

``DIR`` has one owner (``runfolder.FolderLock``). Before the first protected run, the settings (with each
checkpoint's sha256) and the fault list (``plan.json``, its sha256 in the settings) are written atomically;
every finished run is appended to ``journal.jsonl``. ``--resume`` continues a killed study to the same results;
a resume with other settings, checkpoint content or fault list is refused before anything is written.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..runfolder import FolderLock, Journal, RunFolder, canonical, remove_stale_tmp, sha256_file
from ._common import (
    any_int,
    existing_dir,
    existing_file,
    limit_threads,
    load_model_data_golden,
    non_negative_int,
    output_dir,
    positive_int,
    scheme,
    scheme_list,
)
from ._config import configure

PLAN, JOURNAL = "plan.json", "journal.jsonl"


def add_parser(sub):
    p = sub.add_parser("protect", help="Sanity ABFT + DMR protection: fault coverage, overhead, report")
    p.add_argument("--checkpoint", type=existing_file, required=True, action="append",
                   help="trained checkpoint (.pt); repeat for several networks")
    p.add_argument("--scheme", type=scheme, default=None,
                   help="scheme under test, e.g. sanity+dmr, sanity:eager+dmr, tmr")
    p.add_argument("--per-layer", type=existing_file, default=None,
                   help="JSON/YAML per-layer scheme map (default entry: --scheme)")
    p.add_argument("--compare", type=scheme_list, default=None,
                   help="comma list of baseline schemes run on the same faults ('' for none)")
    p.add_argument("--campaign", type=non_negative_int, default=None,
                   help="primary single-bit faults per network (equal share over weight, bias, input, acc, "
                        "activation, output); 0 = overhead only")
    p.add_argument("--state-faults", type=non_negative_int, default=None,
                   help="faults in each scheme's own state per network (default: campaign // 6)")
    p.add_argument("--clean", type=non_negative_int, default=None,
                   help="fault-free test images checked for false alarms")
    p.add_argument("--hunt", type=non_negative_int, default=None,
                   help="also screen for this many CRITICAL (fault, image) experiments and replay them on the "
                        "scheme under test (a Wilson bound >= 99.9%% needs >= 3840)")
    p.add_argument("--timing-batch", type=positive_int, default=None,
                   help="batch of test images for the CPU-time ratio")
    p.add_argument("--seed", type=any_int, default=None)
    p.add_argument("--data-dir", type=existing_dir, default=None, help="dataset folder (mnist / cifar10 checkpoints)")
    p.add_argument("--out", type=output_dir, required=True, help="output folder (protect.json, faults.jsonl, report)")
    p.add_argument("--resume", action="store_true", help="continue the study already in --out (same settings)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return configure(p, "protect", "data")


def _specs(args) -> dict:
    from ..protect import load_scheme_map, parse_scheme
    parse_scheme(args.scheme)                      # one-line error for a bad spec
    main = args.scheme
    specs = {}
    if args.per_layer:
        m = dict(load_scheme_map(args.per_layer))
        m.setdefault("default", args.scheme)
        main = f"per-layer:{Path(args.per_layer).stem}"
        specs[main] = m
    else:
        specs[main] = args.scheme
    for s in args.compare or []:
        if s not in specs:
            parse_scheme(s)
            specs[s] = s
    return main, specs


def run(args) -> dict:
    from ..protect.campaign import save_study, study
    from ..protect.model import resolve_map
    from ..report.protect import write_report
    limit_threads()
    main, specs = _specs(args)
    nets, meta = {}, {}
    for ck in args.checkpoint:
        model, splits, gm = load_model_data_golden(ck, args.data_dir)
        name = model.spec.get("name", Path(ck).stem)
        if name in nets:
            name = f"{name}:{Path(ck).stem}"
        for spec in specs.values():
            resolve_map(gm, spec)                  # bad layer names in a per-layer map fail before any work
        x, y = splits.test.tensors
        nets[name] = (gm, gm.quantize_input(x.numpy()), gm.quantize_input(splits.train.tensors[0].numpy()),
                      y.numpy())
        meta[name] = {"checkpoint": str(ck), "dataset": splits.name}
    from ..protect.campaign import make_plan
    settings = {"checkpoints": {n: sha256_file(m["checkpoint"]) for n, m in meta.items()},
                "datasets": {n: m["dataset"] for n, m in meta.items()}, "main": main, "specs": specs,
                "campaign": args.campaign, "state_faults": args.state_faults, "clean": args.clean,
                "hunt": args.hunt, "timing_batch": args.timing_batch, "seed": args.seed}
    plans = {n: make_plan(gm, len(xq), specs, args.campaign, args.seed, args.state_faults, calib=cal)
             for n, (gm, xq, cal, _) in nets.items()} if args.campaign else {}
    lists = {PLAN: canonical(plans)}
    t0 = time.time()
    with FolderLock(args.out):
        out = Path(args.out)
        folder = RunFolder(out, "protect study", results=("manifest.json", "protect.json", JOURNAL),
                           labels={"checkpoints": "checkpoint content"})
        resuming = folder.check(settings, lists, args.resume)          # read-only: a refusal changes nothing
        journal = Journal(out / JOURNAL)
        if resuming:
            journal.load()                                              # refuses a damaged journal
        else:
            folder.setup(settings, lists)
        remove_stale_tmp(out)
        journal.open()
        try:
            res, rows = study(nets, specs, args.campaign, args.state_faults, args.clean, args.seed,
                              args.timing_batch, progress=not args.quiet, hunt=args.hunt, hunt_scheme=main,
                              plans=plans, journal=journal)
        finally:
            journal.close()
        res.update({"main": main, "specs": {k: v for k, v in specs.items()}, "campaign": args.campaign,
                    "seed": args.seed, "seconds": time.time() - t0})
        for k, v in meta.items():
            res["networks"][k].update(v)
        out = save_study(args.out, res, rows, main, nets, list(specs))
        report = write_report(out)
    first = res["networks"][next(iter(nets))]
    cov = (first.get("coverage") or {}).get(main, {})
    ov = first["overhead"][main]
    summary = {"scheme": main, "network": next(iter(nets)),
               "critical_corrected": cov.get("critical_corrected"), "corrected": cov.get("corrected"),
               "detected": cov.get("detected"), "false_alarms": cov.get("false_alarms", 0),
               "extra_macs": ov["extra_macs"], "time_ratio": first["time"][main]["ratio"],
               "critical": cov.get("critical"), "effective": cov.get("effective"),
               "silent": cov.get("silent"), "miscorrected": cov.get("miscorrected"),
               "rollbacks": cov.get("rollbacks"), "report": str(report), "out": str(out)}
    if "hunt" in first:
        h = first["hunt"]
        summary.update({"hunt_critical": h["critical"], "hunt_critical_corrected": h["critical_corrected"],
                        "hunt_lower95": h["lower95"]})
    summary["ok"] = not summary["false_alarms"] or "clip" in main
    return summary

"""``sanitas flow``: the main job — by default an FTT-NAS search on digits (small budget) with the FTT training of the
best derived net and of the best baseline, the golden check, a fault campaign, the automatic per-layer protection
plan (verified), HLS csim, the RTL engine with a cocotb regression sample and its area, the fake-board run, and
the HTML + Markdown report (``sanitas.flow`` module doc).

The steps are the table ``sanitas.flow.STEPS`` (train, search, golden, hls, campaign, plan, protect, csim, rtl,
board, report); ``--steps`` (default: [flow] steps) picks a subset, run in table order; a step whose settings and
inputs did not change since its last run into ``--out`` is skipped (its record is reused). Every step records
``{"status": "ok"|"failed"|"skipped", "seconds": t, ...}`` in ``<out>/flow.json``; a failing step does not hide
the others (the summary says which failed and the exit status is 1). The config (``--config``, typed) and the
plan (step names, the checkpoint a step needs, the dataset) are checked before anything is written.
"""
from __future__ import annotations

import dataclasses

from ._common import limit_threads, non_negative_int, output_dir
from ._config import configure, csv_list


def add_parser(sub):
    from ..flow import STEPS
    p = sub.add_parser("flow", help="search -> FTT -> golden -> campaign -> protection plan -> csim -> RTL -> board -> "
                       "build/report/index.html")
    p.add_argument("--out", type=output_dir, default=None, help="artefact folder")
    p.add_argument("--report", type=output_dir, default=None, help="report folder")
    p.add_argument("--epochs", type=non_negative_int, default=None, help="training epochs")
    p.add_argument("--steps", type=csv_list(), default=None,
                   help=f"comma-separated steps, run in this order: {','.join(STEPS)}")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
    return configure(p, "flow", "train")


def run(args) -> dict:
    from ..flow import run_flow, select
    from ._config import fill
    limit_threads()
    cfg = fill(args)
    select(args.steps)                  # unknown names: one line listing the table's names
    # the command-line values go through the sections' own checks (e.g. --epochs -1 is refused before any work)
    cfg.train = dataclasses.replace(cfg.train, epochs=args.epochs)
    cfg.flow = dataclasses.replace(cfg.flow, out=args.out, report=args.report, steps=list(args.steps))
    return run_flow(cfg, args.out, args.report, args.steps, progress=not args.quiet)

"""``sanitas report DIR``: write the report (plots + index.html + report.md) of a run folder.

Dispatches on ``DIR/manifest.json``'s ``"kind"`` to ``sanitas.report.<kind>.write_report(DIR)``
(``campaign`` from ``sanitas inject``; ``protect``, ``search``, ... from their commands).
"""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("report", help="plots and an HTML/Markdown report of a run folder (campaign, ...)")
    p.add_argument("dir", help="run folder holding manifest.json")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from pathlib import Path

    from ..report import read_manifest, write_report
    kind = read_manifest(args.dir)["kind"]
    index = write_report(args.dir)
    figs = sorted(p.name for p in Path(args.dir).glob("*.png"))
    return {"kind": kind, "report": str(index), "figures": figs}

"""``sanitas report DIR``: write the report (plots + index.html + report.md) of a run folder.

Dispatches on ``DIR/manifest.json``'s ``"kind"`` to ``sanitas.report.<kind>.write_report(DIR)``
(``campaign`` from ``sanitas inject``; ``protect``, ``search``, ... from their commands). A campaign's database
is checked before any plot is drawn, so a garbage ``results.sqlite`` is one line, not a traceback.
"""
from __future__ import annotations

import sqlite3

from ..errors import SanitasError
from ._common import check_campaign_db, existing_dir


def add_parser(sub):
    p = sub.add_parser("report", help="plots and an HTML/Markdown report of a run folder (campaign, ...)")
    p.add_argument("dir", type=existing_dir, help="run folder holding manifest.json")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from pathlib import Path

    from ..report import read_manifest, write_report
    d = Path(args.dir)
    man = read_manifest(d)
    kind = man["kind"]
    if kind == "campaign":
        db = man.get("db", "results.sqlite")
        if not isinstance(db, str) or Path(db).name != db:
            raise SanitasError(f"{d / 'manifest.json'}: bad \"db\" entry {db!r} (a file name in the folder)")
        from ..faults.campaign import check_campaign_folder
        if not (d / db).exists():
            check_campaign_folder(d)          # a folder whose setup was interrupted: say so, not "db not found"
        check_campaign_db(d / db)
    try:
        index = write_report(d)
    except sqlite3.DatabaseError as e:
        raise SanitasError(f"{d}: campaign database unreadable ({e})") from None
    figs = sorted(p.name for p in d.glob("*.png"))
    return {"kind": kind, "report": str(index), "figures": figs}

"""Reports of sanitas runs: ``write_report(dir)`` reads ``dir/manifest.json`` and dispatches on its ``"kind"``
to ``sanitas.report.<kind>.write_report(dir) -> Path`` (the index.html it wrote).

Kinds: ``campaign`` (fault-injection campaigns, ``sanitas inject``); other parts of sanitas add theirs
(``protect``, ``search``, ...) as modules of this package with the same function.
"""
from __future__ import annotations

import html
import importlib
import json
import re
from pathlib import Path

from ..errors import SanitasError


MANIFEST_FILES = ("db", "results", "rows", "summary", "genotype", "config")   # keys naming required files


def read_manifest(d) -> dict:
    p = Path(d) / "manifest.json"
    if not p.exists():
        raise SanitasError(f"{d}: no manifest.json (not a sanitas run folder)")
    try:
        m = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SanitasError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(m, dict) or "kind" not in m:
        raise SanitasError(f"{p}: manifest has no \"kind\"")
    for key in MANIFEST_FILES:                       # a manifest must not name files that are not there
        name = m.get(key)
        if isinstance(name, str) and not (Path(d) / name).is_file():
            raise SanitasError(f"{d}: the manifest names {name}, which is missing (an interrupted or damaged run); "
                               "nothing to report")
    return m


def html_head(title: str) -> str:
    """Opening of a report page up to ``<body>``: charset, escaped title and the shared table/figure style."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:2px 10px;"
            "border-bottom:1px solid #ddd;text-align:left}img{max-width:100%}</style></head><body>")


def write_report(d) -> Path:
    """Write the report of run folder ``d``; returns the path of its index.html."""
    kind = read_manifest(d)["kind"]
    if not isinstance(kind, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", kind):
        raise SanitasError(f"{d}: bad report kind {kind!r}")
    try:
        mod = importlib.import_module(f"sanitas.report.{kind}")
    except ModuleNotFoundError as e:
        if e.name == f"sanitas.report.{kind}":
            raise SanitasError(f"{d}: no report writer for kind '{kind}'") from None
        raise
    if not hasattr(mod, "write_report"):
        raise SanitasError(f"{d}: sanitas.report.{kind} has no write_report(dir)")
    return Path(mod.write_report(Path(d)))


__all__ = ["html_head", "read_manifest", "write_report"]

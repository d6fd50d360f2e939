"""The ``sanitas`` command line: one subcommand per stage of the flow.

Each subcommand lives in ``sanitas/commands/<name>.py`` and exposes ``add_parser(subparsers)`` (registering
its arguments and ``set_defaults(func=run)``) and ``run(args) -> dict``. The returned dict is the command's
summary: with ``--json`` it is printed as ONE JSON object on the last line of stdout; without, as
``key: value`` lines. A ``SanitasError`` becomes ``sanitas: error: <one line>`` on stderr and exit status 2;
a summary with ``"ok": False`` exits 1.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from .errors import SanitasError

COMMANDS = ("train", "golden", "hls", "csim", "rtl", "board", "inject", "report", "protect", "soak", "search", "flow")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sanitas", description="fault-tolerant CNN accelerator co-design flow")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"sanitas.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"sanitas.commands.{name}":
                continue            # command not part of this build
            raise
        sp = mod.add_parser(sub)
        sp.add_argument("--json", action="store_true", help="print one JSON summary object as the last line")
    return p


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, default=str))
        return
    for k, v in summary.items():
        if isinstance(v, (dict, list)):
            v = json.dumps(v, default=str)
        print(f"{k}: {v}")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        summary = args.func(args) or {}
    except SanitasError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"sanitas: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sanitas: interrupted", file=sys.stderr)
        return 130
    _print_summary(summary, args.json)
    return 1 if summary.get("ok") is False else 0


if __name__ == "__main__":
    sys.exit(main())

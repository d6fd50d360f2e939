"""The ``sanitas`` command line: one subcommand per stage of the flow.

Each subcommand lives in ``sanitas/commands/<name>.py`` and exposes ``add_parser(subparsers)`` (registering
its arguments, typed with the shared ``sanitas.commands._common`` types, and ``set_defaults(func=run)``) and
``run(args) -> dict``. The returned dict is the command's summary: with ``--json`` it is printed as ONE strict
JSON object (no NaN/Infinity: non-finite numbers become ``null``), the only line on stdout (the command's progress
lines, its own and its subprocesses', go to stderr), so ``sanitas X --json | jq`` works; without, as
``key: value`` lines after the progress. Bad usage (an unknown option, a value its type refuses) and every
``SanitasError`` become ONE line ``sanitas: error: <message>`` on stderr and exit status 2; a summary with
``"ok": False`` exits 1.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import sys

from .errors import SanitasError

COMMANDS = ("train", "golden", "hls", "csim", "rtl", "board", "inject", "report", "protect", "soak", "search", "flow")


class UsageError(SanitasError):
    """The command line itself is wrong (argparse's errors, made one line)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise ``UsageError`` (one line, prefixed by the subcommand) instead of
    printing the usage block and exiting; subparsers inherit the class."""

    def error(self, message):
        sub = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        line = " ".join(str(message).split())
        raise UsageError(f"{sub}: {line}" if sub else line)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="sanitas", description="fault-tolerant CNN accelerator co-design flow")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"sanitas.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"sanitas.commands.{name}":
                continue            # command not part of this build
            raise
        sp = mod.add_parser(sub)
        sp.add_argument("--json", action="store_true",
                        help="print only one JSON summary object on stdout (progress goes to stderr)")
    return p


def strict_json(v):
    """``v`` with every non-finite float replaced by None (strict JSON has no NaN/Infinity), numpy scalars and
    arrays made plain, tuples made lists; anything else unknown becomes its ``str``."""
    if isinstance(v, dict):
        return {str(k): strict_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [strict_json(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, (str, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if hasattr(v, "tolist"):                      # numpy scalars / arrays, torch tensors
        return strict_json(v.tolist())
    return str(v)


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(strict_json(summary), allow_nan=False))
        return
    for k, v in summary.items():
        if isinstance(v, (dict, list)):
            v = json.dumps(strict_json(v), allow_nan=False)
        print(f"{k}: {v}")


def _error(e: BaseException) -> int:
    lines = str(e).strip().splitlines()
    print(f"sanitas: error: {lines[0] if lines else type(e).__name__}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def _progress_to_stderr(on: bool):
    """With ``on``, everything written to stdout meanwhile -- Python's ``sys.stdout`` and file descriptor 1, which
    subprocesses inherit -- goes to stderr instead, and stdout is restored afterwards."""
    if not on:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SanitasError as e:
        return _error(e)
    try:
        with _progress_to_stderr(args.json):
            summary = args.func(args) or {}
    except SanitasError as e:
        return _error(e)
    except KeyboardInterrupt:
        print("sanitas: interrupted", file=sys.stderr)
        return 130
    _print_summary(summary, args.json)
    return 1 if summary.get("ok") is False else 0


if __name__ == "__main__":
    sys.exit(main())

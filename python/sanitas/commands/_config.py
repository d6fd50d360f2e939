"""Subcommand argument defaults read from their ``Config`` sections, and ``--config FILE`` for every subcommand.

A subcommand declares its options with ``default=None`` (a default equal to the section's is tolerated and
cleared) and ends its ``add_parser`` with
``configure(parser, "train", "data")``: every option whose destination is a key of one of those sections (the
first section holding the key wins) takes that key's value when it is not given on the command line — from
``--config FILE`` (``Config.load``: typed, one-line errors) or else from the dataclass defaults (``Config()``).
Its help shows the default and the key it comes from. So a default is written once, in ``sanitas.config``.

``command_args(name, argv, cfg)`` parses one subcommand's arguments with the defaults of ``cfg``: the flow's
steps run subcommands that way, so a step does exactly what the subcommand does with the same config.
"""
from __future__ import annotations

import argparse
import copy
import functools
import importlib

from ..config import Config, section_keys
from ..errors import SanitasError


def csv_list(item=str):
    """argparse ``type=``: ``"a,b,c"`` -> ``[item("a"), ...]`` (empty items dropped; ``""`` -> ``[]``)."""
    def parse(text: str) -> list:
        try:
            return [item(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"cannot parse comma-separated list {text!r}") from None
    parse.__name__ = f"list of {item.__name__}"
    return parse


def _source(cfg: Config, dest: str, sections) -> str | None:
    for name in sections:
        if dest in section_keys(type(getattr(cfg, name))):
            return name
    return None


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value)) or "''"
    return str(getattr(value, "value", value)).replace("%", "%%")


def configure(parser, *sections: str):
    """Add ``--config FILE`` to ``parser`` and take the defaults of its options from ``sections`` (module doc)."""
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="YAML/JSON config file (sanitas.config.Config) whose sections give the defaults")
    cfg = Config()
    for a in parser._actions:
        src = _source(cfg, a.dest, sections)
        if src is None:
            continue
        value = getattr(getattr(cfg, src), a.dest)
        if a.default is not None and a.default != value:    # a programming error: two defaults for one setting
            raise TypeError(f"{'/'.join(a.option_strings)}: default {a.default!r} differs from [{src}] {a.dest}")
        a.default = None                # not given -> filled from the config (a plain store_true flag too)
        a.help = (a.help + " " if a.help else "") + f"(default: {_show(value)}, from [{src}] {a.dest})"
    func = parser.get_default("func")
    parser.set_defaults(config_sections=tuple(sections), func=functools.partial(_run, func))
    return parser


def fill(args, cfg: Config | None = None) -> Config:
    """Give every option left at None the value of its section key in ``cfg`` (default: ``--config`` or
    ``Config()``); returns the config and stores it as ``args.config_obj``. Idempotent."""
    if getattr(args, "config_obj", None) is not None:
        return args.config_obj
    if cfg is None:
        cfg = Config.load(args.config) if getattr(args, "config", None) else Config()
    seen: set[str] = set()
    for name in getattr(args, "config_sections", ()):
        sec = getattr(cfg, name)
        for key in section_keys(type(sec)):
            if key in seen or not hasattr(args, key):
                continue
            seen.add(key)
            if getattr(args, key) is None:
                setattr(args, key, copy.deepcopy(getattr(sec, key)))
    args.config_obj = cfg
    return cfg


def _run(func, args):
    fill(args)
    return func(args)


def command_args(name: str, argv: list[str], cfg: Config | None = None) -> argparse.Namespace:
    """``sanitas <name> <argv>`` parsed, with the defaults of ``cfg`` filled in (``args.func(args)`` runs it)."""
    mod = importlib.import_module(f"sanitas.commands.{name}")
    p = argparse.ArgumentParser(prog="sanitas")
    mod.add_parser(p.add_subparsers(dest="command"))
    try:
        args = p.parse_args([name, *argv])
    except SystemExit:
        raise SanitasError(f"bad arguments for sanitas {name}: {' '.join(argv)}") from None
    args.json = False
    fill(args, cfg)
    return args

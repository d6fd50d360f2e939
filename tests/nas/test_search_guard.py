"""`sanitas search` into a folder of another search: refused with one line before anything in it is written.

The folders are made by hand (a state with another seed, a config.json alone, a truncated state, a live owner),
so no search runs: each case costs the CLI's start only.
"""
from __future__ import annotations

import json
import os

import torch
from sanitas.cli import build_parser, main
from sanitas.commands.search import config_from_args
from sanitas.nas.search import STATE_FORMAT
from sanitas.runfolder import FolderLock, snapshot

ARGS = ["search", "--budget", "2", "--epochs", "1", "--float-epochs", "0", "--final-epochs", "1",
        "--baselines", "", "--quiet"]


def _cfg(*extra):
    return config_from_args(build_parser().parse_args([*ARGS, "--out", "unused", *extra]))


def _refused(capsys, d, needle, *extra):
    before = snapshot(d)
    rc = main([*ARGS, "--out", str(d), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("sanitas: error: ") and needle in err[0], err
    assert snapshot(d) == before


def test_search_refuses_another_search_before_writing(tmp_path, capsys):
    d = tmp_path / "s"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(_cfg().to_dict()))
    torch.save({"format": STATE_FORMAT, "config": _cfg("--seed", "3").to_dict(), "epoch": 1}, d / "search_state.pt")
    _refused(capsys, d, f"{d} holds a search with other settings (differs in seed)")
    _refused(capsys, d, "differs in budget, seed", "--budget", "3")
    (d / "search_state.pt").write_bytes((d / "search_state.pt").read_bytes()[:100])
    _refused(capsys, d, "search_state.pt: not a readable sanitas search state")
    (d / "search_state.pt").unlink()                  # no epoch finished: config.json is the record
    (d / "config.json").write_text(json.dumps(_cfg("--channels", "6").to_dict()))
    _refused(capsys, d, "differs in channels")
    with FolderLock(d):
        _refused(capsys, d, f"{d} is in use by another sanitas process (pid {os.getpid()})")

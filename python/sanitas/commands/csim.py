"""``sanitas csim``: build and run an HLS kernel testbench with g++ and hls4ml's ap_types (``make -C hls csim``)
for one ArrayConfig ([array] of ``--config FILE`` and the field overrides of ``sanitas rtl``)."""
from __future__ import annotations

from ._common import output_dir
from ._config import configure
from .rtl import add_array_options, array_from_args


def add_parser(sub):
    p = sub.add_parser("csim", help="run the HLS C simulation of a kernel (g++ + ap_types from hls4ml)")
    p.add_argument("--kernel", default=None, help="HLS kernel testbench under hls/tests/")
    p.add_argument("--build-dir", type=output_dir, default=None)
    add_array_options(p)
    p.set_defaults(func=run)
    return configure(p, "csim", "array")


def run(args) -> dict:
    from ..hls.csim import run_csim
    r = run_csim(kernel=args.kernel, build_dir=args.build_dir, array=array_from_args(args))
    r.pop("log", None)
    r["ok"] = bool(r.get("passed"))
    return r

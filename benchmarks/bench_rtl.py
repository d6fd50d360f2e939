"""RTL area and fault-free cycles of the protected systolic engine against its unprotected and TMR baselines (issue 14).

Area (`sanitas.rtl.area.area_table`: yosys ``synth_xilinx -flatten``, 7-series, FI_EN = 0), each variant the sum of
its units synthesised separately at ``--rows`` x ``--cols`` (default 16 x 16); every variant reads its results
through the same drain (a ROWS:1 row multiplexer and a COLS-word output register):
  unprotected   sanity_array CHK_EN = 0 (no checksum PEs, the drain only) + dmr_unit DMR_EN = 0 (one-lane stage)
  sanity lazy   sanity_array EAGER = 0 (one total-checksum PE column; partial / complement sets serially on it in
                the re-run; the residual checked on the drain, NP + 1 pattern bits per row)        + the same stage
  sanity eager  sanity_array EAGER = 1 (total + NP partial PE columns, parallel check)            + the same stage
  sanity+dmr    sanity_array lazy + dmr_unit DMR_EN = 1 (two lanes, stream checksums) + rollback_ctrl
  tmr           tmr_array (three unprotected arrays + bitwise voters + the drain)                 + the same stage
BRAM is 0 for every variant: the units hold no tensor buffers (the engine's activation/weight memories are the
same in all variants and are not part of this comparison). Printed: the table, the ratios against unprotected
(same run), the targets and the yosys seconds per variant; ``--breakdown`` adds LUT / FF per module of the lazy
sanity_array (hierarchical synth_xilinx); ``--engine`` also synthesises the whole engine top with PROT = 0 and
PROT = 1 (`sanitas.rtl.area.engine_area`: every unit either engine instantiates counted, the hold bank and the
sanity_tile capture register included).

Fault-free cycles (``--cycles``): measured, not modelled -- `sanitas.rtl.cycles.cycle_table` simulates the RTL
engine PROT = 1 vs PROT = 0 and reads its CYCLES register per command (the same table as
benchmarks/bench_rtl_cycles.py, at ``--engine-rows`` x ``--engine-cols``; LeNet-5 on ``--images`` digits images of
``--checkpoint``, or of the test suite's cached checkpoint, and every distinct ResNet-20 shape once). Target:
protected <= +10 % cycles. Area targets: sanity+dmr <= +10 % LUT+FF and at most one extra DSP column (``cols``-wide
array: rows extra DSPs) over unprotected; TMR >= +200 % LUT+FF.

Measured (``--checkpoint P [--images K]``): the RTL ``engine`` (Icarus, cocotbext-axi; `sanitas.rtl.network`) runs K
digits test images of a LeNet-5 checkpoint layer by layer (batched along M) at ``--engine-rows`` x
``--engine-cols``; printed: the engine's busy cycles per layer (CYCLES register: stream in, sanity passes, output
stage, stream out) and per image, bit-exact images, simulated cycles/s.

Run: ``.venv/bin/python benchmarks/bench_rtl.py [--rows 16 --cols 16] [--cycles] [--checkpoint P --images 10]
[--json out.json]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from sanitas.config import ArrayConfig  # noqa: E402
from sanitas.rtl.area import area_table, engine_area, module_breakdown  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=16)
    ap.add_argument("--no-area", action="store_true", help="cycles only (no yosys)")
    ap.add_argument("--breakdown", action="store_true", help="also LUT / FF per module of the lazy sanity_array")
    ap.add_argument("--engine", action="store_true", help="also the whole engine top, PROT = 0 vs PROT = 1")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    ap.add_argument("--checkpoint", type=Path, default=None, help="a digits LeNet-5 checkpoint: run the RTL engine")
    ap.add_argument("--images", type=int, default=10, help="images through the RTL engine (--checkpoint, --cycles)")
    ap.add_argument("--cycles", action="store_true", help="also the measured fault-free engine cycles")
    ap.add_argument("--sample-tiles", type=int, default=None, help="--cycles, ResNet-20: M tiles to simulate")
    ap.add_argument("--engine-rows", type=int, default=8)
    ap.add_argument("--engine-cols", type=int, default=8)
    args = ap.parse_args(argv)
    array = ArrayConfig(rows=args.rows, cols=args.cols, fault_injection=False)
    result: dict = {"rows": array.rows, "cols": array.cols}
    if not args.no_area:
        print(f"area, {array.rows}x{array.cols} (yosys synth_xilinx -flatten, 7-series, FI_EN = 0):")
        with tempfile.TemporaryDirectory() as tmp:
            tab = area_table(array, Path(tmp), progress=print)
            if args.breakdown:
                from sanitas.rtl.generate import generate_sanity_array
                files = generate_sanity_array(array, Path(tmp) / "breakdown")
                bd = module_breakdown(files, "sanity_array")
                print("lazy sanity_array by module (hierarchical synth_xilinx; instances x their cells):")
                for mod, r in sorted(bd.items(), key=lambda kv: -(kv[1]["LUT"] + kv[1]["FF"])):
                    print(f"  {mod:16s} x{r['instances']:4d}  LUT {r['LUT']:6d}  FF {r['FF']:6d}  DSP {r['DSP']:4d}")
                tab["breakdown"] = bd
        print(f"  {'variant':13s} {'LUT':>7s} {'FF':>7s} {'DSP':>5s} {'BRAM':>5s}   {'LUT+FF':>8s} {'DSP+':>5s}"
              "  yosys s")
        for v, r in tab["variants"].items():
            q = tab["ratios"][v]
            print(f"  {v:13s} {r['LUT']:7d} {r['FF']:7d} {r['DSP']:5d} {r['BRAM']:5d}   "
                  f"{100 * q['LUT+FF']:+7.1f}% {q['extra_DSP']:+5d}  {r['seconds']:7.1f}")
        sd, tmr = tab["ratios"]["sanity+dmr"], tab["ratios"]["tmr"]
        print(f"targets: sanity+dmr LUT+FF <= +10 %: {sd['LUT+FF'] <= 0.10} ({100 * sd['LUT+FF']:+.1f} %); extra DSP "
              f"<= one column ({array.rows}): {sd['extra_DSP'] <= array.rows}; TMR >= +200 %: {tmr['LUT+FF'] >= 2.0} "
              f"({100 * tmr['LUT+FF']:+.1f} %); yosys {tab['seconds']:.0f} s")
        result.update(area=tab["variants"], area_ratios=tab["ratios"], area_targets=tab["targets"],
                      area_seconds=tab["seconds"])
    if args.engine:
        print(f"engine top, {array.rows}x{array.cols} (yosys synth_xilinx -flatten, FI_EN = 0):")
        eng_area = engine_area(array, progress=print)
        q = eng_area["ratio"]
        print(f"engine sanity+dmr over unprotected: LUT+FF {100 * q['LUT+FF']:+.1f} %, extra DSP {q['extra_DSP']:+d}")
        result["engine_area"] = eng_area
    if args.cycles:
        from bench_rtl_cycles import default_checkpoint

        from sanitas.rtl.cycles import cycle_table
        eng = ArrayConfig(rows=args.engine_rows, cols=args.engine_cols)
        with tempfile.TemporaryDirectory(prefix="sanitas_cycles_") as tmp:
            t = cycle_table(Path(tmp), eng, default_checkpoint(args.checkpoint), args.images, args.sample_tiles)
        print(f"fault-free engine cycles (CYCLES register), {t['array']} array: protected vs unprotected")
        for net, tot in t["totals"].items():
            print(f"  {net:9s} protected {tot['protected']:8d}  unprotected {tot['unprotected']:8d}  "
                  f"{100 * (tot['ratio'] - 1):+.1f} % (target <= +10 %: {tot['ratio'] <= 1.10})")
        result["cycles"] = t
    if args.checkpoint is not None:
        from sanitas.rtl.network import run_engine_network
        eng = ArrayConfig(rows=args.engine_rows, cols=args.engine_cols, fault_injection=False)
        with tempfile.TemporaryDirectory() as tmp:
            s = run_engine_network(Path(tmp), eng, args.checkpoint, args.images)
        if not s["passed"]:
            print(f"engine run failed: {s['bit_exact']}/{s['total']} bit-exact")
            return 1
        print(f"RTL engine {eng.rows}x{eng.cols}, {args.images} images: {s['bit_exact']}/{s['total']} bit-exact, "
              f"{s['cycles']} cycles ({s['cycles'] / args.images:.0f} per image), "
              f"{s['cycles'] / s['wall_s']:.0f} simulated cycles/s")
        for lay in s["layers"]:
            print(f"  {lay['name']:6s} M {lay['m']:5d} K {lay['k']:4d} N {lay['n']:4d}  GEMMs {lay['gemms']:5d}  "
                  f"cycles {lay['cycles']:7d}")
        result["engine"] = {k: s[k] for k in ("layers", "cycles", "bit_exact", "total", "wall_s")}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

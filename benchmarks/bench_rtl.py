"""RTL area and fault-free cycles of the protected systolic engine against its unprotected and TMR baselines (issue 14).

Area (yosys ``synth_xilinx``, 7-series, FI_EN = 0; `sanitas.rtl.area.estimate_area`), each variant the sum of its
units synthesised separately at ``--rows`` x ``--cols`` (default 16 x 16):
  unprotected   systolic_array CHK_EN = 0 (no checksum PEs)      + dmr_unit DMR_EN = 0 (one-lane output stage)
  sanity lazy   sanity_array EAGER = 0 (total PE column; partials serially on it in the re-run) + the same stage
  sanity eager  sanity_array EAGER = 1 (total + NP partial PE columns)                          + the same stage
  sanity+dmr    sanity_array lazy + dmr_unit DMR_EN = 1 (two lanes, stream checksums) + rollback_ctrl
  tmr           tmr_array (three unprotected arrays + bitwise voters)                           + the same stage
BRAM is 0 for every variant: the units hold no tensor buffers (the engine's activation/weight memories are the
same in all variants and are not part of this comparison).

Fault-free cycles per layer (LeNet-5 and ResNet-20 on 8x8 digits, per image): each conv/linear is an im2col GEMM
(M = output pixels, N = output channels, K = C_in/groups * kh * kw) cut into ceil(M/rows) * ceil(N/cols) tiles; one
tile pass of the RTL array takes K + rows + cols + 2 edges from start to done (start edge, K beats, the wavefront,
the check edge: measured by rtl_tests/systolic_array). Lazy detection is the array's own row check (all rows in
the check edge), so fault-free lazy sanity adds no beat; the unprotected array's wavefront is one column shorter
(K + rows + cols + 1); eager adds the ``rows`` sanity_unit beats per tile (partial residuals). The DMR lanes and
checksums run beside the stream (no cycles). Targets: sanity+dmr <= +10 % LUT+FF and at most one extra DSP column
(``cols``-wide array: rows extra DSPs) over unprotected; TMR >= +200 % LUT+FF; lazy fault-free cycles <= +10 %.

Run: ``.venv/bin/python benchmarks/bench_rtl.py [--rows 16 --cols 16] [--json out.json]``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from sanitas.config import ArrayConfig  # noqa: E402
from sanitas.rtl.area import variant_area  # noqa: E402


def gemm_layers(model: str) -> list[tuple[str, int, int, int]]:
    """[(layer, M, N, K)] of the per-image im2col GEMMs of a zoo network on 8x8 digits."""
    from sanitas.golden import export_golden
    from sanitas.models import build
    gm = export_golden(build(model, seed=0))
    shapes = gm.shapes()
    out = []
    for n in gm.layers():
        shape = shapes[n.name][1:]
        m = int(math.prod(shape[1:])) if len(shape) > 1 else 1
        k = int(math.prod(n.weight.shape[1:]))
        out.append((n.name, m, int(shape[0]), k))
    return out


def tile_cycles(array: ArrayConfig, k: int, variant: str) -> int:
    """Edges of one fault-free tile pass of the RTL array (see the module doc)."""
    base = k + array.rows + array.cols + 2
    return {"unprotected": base - 1, "lazy": base, "eager": base + array.rows}[variant]


def cycle_table(array: ArrayConfig, model: str) -> list[dict]:
    rows = []
    for name, m, n, k in gemm_layers(model):
        tiles = math.ceil(m / array.rows) * math.ceil(n / array.cols)
        c = {v: tiles * tile_cycles(array, k, v) for v in ("unprotected", "lazy", "eager")}
        rows.append(dict(layer=name, M=m, N=n, K=k, tiles=tiles, **c))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=16)
    ap.add_argument("--no-area", action="store_true", help="cycles only (no yosys)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    array = ArrayConfig(rows=args.rows, cols=args.cols, fault_injection=False)
    result: dict = {"rows": array.rows, "cols": array.cols}
    if not args.no_area:
        print(f"area, {array.rows}x{array.cols} (yosys synth_xilinx, FI_EN = 0):")
        with tempfile.TemporaryDirectory() as tmp:
            table = variant_area(array, Path(tmp), progress=print)
        base = table["unprotected"]
        lf = base["LUT"] + base["FF"]
        ratios = {v: {"LUT+FF": round((r["LUT"] + r["FF"]) / lf - 1, 4), "extra_DSP": r["DSP"] - base["DSP"]}
                  for v, r in table.items()}
        for v, r in ratios.items():
            print(f"  {v:13s} LUT+FF {100 * r['LUT+FF']:+7.1f} %   DSP {r['extra_DSP']:+5d}")
        sd, tmr = ratios["sanity+dmr"], ratios["tmr"]
        print(f"targets: sanity+dmr LUT+FF <= +10 %: {sd['LUT+FF'] <= 0.10}; extra DSP <= one column "
              f"({array.rows}): {sd['extra_DSP'] <= array.rows}; TMR >= +200 %: {tmr['LUT+FF'] >= 2.0}")
        result.update(area=table, area_ratios=ratios)
    result["cycles"] = {}
    for model in ("lenet5", "resnet20"):
        rows = cycle_table(array, model)
        tot = {v: sum(r[v] for r in rows) for v in ("unprotected", "lazy", "eager")}
        print(f"fault-free cycles per image, {model} ({len(rows)} GEMM layers): unprotected {tot['unprotected']}, "
              f"lazy {tot['lazy']} ({100 * (tot['lazy'] / tot['unprotected'] - 1):+.1f} %), eager {tot['eager']} "
              f"({100 * (tot['eager'] / tot['unprotected'] - 1):+.1f} %)")
        for r in rows:
            print(f"  {r['layer']:10s} M {r['M']:4d} N {r['N']:4d} K {r['K']:4d} tiles {r['tiles']:3d}  "
                  f"{r['unprotected']:6d} / {r['lazy']:6d} / {r['eager']:6d}")
        result["cycles"][model] = {"layers": rows, "total": tot}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

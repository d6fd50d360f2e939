"""Fault-free cycles per layer of the RTL engine, protected vs unprotected, measured in simulation (issue 14).

The engine (templates/engine.v.j2) is simulated twice with Icarus + cocotbext-axi: PROT = 1 (sanity_tile lazy,
two-lane dmr_unit, the read check of every stored input against its checkpoint, rollback_ctrl sequencing the
command) and PROT = 0 (`sanitas rtl --scheme none`: the same architecture without the units). The figure per
command is the engine's CYCLES register (edges busy, host stream waits included). What is simulated
(`sanitas.rtl.cycles`): LeNet-5 -- the whole network on ``--images`` digits test images of ``--checkpoint``
(default: the test suite's cached LeNet-5 checkpoint under build/test-cache), bit-exact in both runs; ResNet-20 --
every distinct conv/linear shape of the zoo's digits ResNet-20 once, on one image (random weights and
activations; the adds and the global pool are not engine commands), the network total weighting each shape by
its layer count. Target: protected <= +10 % cycles.

Run: ``.venv/bin/python benchmarks/bench_rtl_cycles.py [--rows 8 --cols 8] [--images 10] [--json out.json]``.
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
from sanitas.rtl.cycles import cycle_table  # noqa: E402

TARGET = 1.10


def default_checkpoint(path: Path | None) -> Path | None:
    """``path``, else the test suite's cached digits LeNet-5 checkpoint (None when there is none)."""
    if path is not None:
        return path
    hits = sorted((ROOT / "build" / "test-cache").glob("lenet5-e*.pt"))
    return hits[0] if hits else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--images", type=int, default=10, help="LeNet-5 digits test images through the engine")
    ap.add_argument("--checkpoint", type=Path, default=None, help="a digits LeNet-5 checkpoint")
    ap.add_argument("--sample-tiles", type=int, default=None, help="ResNet-20: simulate only this many M tiles")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    ckpt = default_checkpoint(args.checkpoint)
    array = ArrayConfig(rows=args.rows, cols=args.cols)
    with tempfile.TemporaryDirectory(prefix="sanitas_cycles_") as tmp:
        t = cycle_table(Path(tmp), array, ckpt, args.images, args.sample_tiles)
    print(f"fault-free engine cycles, {t['array']} array, KMAX {t['kmax']}: protected (sanity lazy + dmr + read "
          f"checks + rollback_ctrl) vs unprotected")
    if "lenet5" not in t:
        print("  LeNet-5: no checkpoint (train one, e.g. run tests/rtl/test_rtl_engine.py, or pass --checkpoint)")
    for net in ("lenet5", "resnet20"):
        if net not in t:
            continue
        extra = f" ({t['lenet5_images']} images)" if net == "lenet5" else " (one image, each distinct shape)"
        print(f"  {net}{extra}")
        for r in t[net]:
            cnt = f" x{r['count']}" if "count" in r else ""
            print(f"    {r['layer']:14s}{cnt:4s} protected {r['protected']:8d}  unprotected {r['unprotected']:8d}  "
                  f"ratio {r['ratio']:.3f}")
        tot = t["totals"][net]
        ok = "meets" if tot["ratio"] <= TARGET else "misses"
        print(f"    total              protected {tot['protected']:8d}  unprotected {tot['unprotected']:8d}  "
              f"ratio {tot['ratio']:.3f} ({ok} the <= {TARGET:.2f} target)")
    if args.json is not None:
        args.json.write_text(json.dumps(t, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Network-level C simulation (``make -C hls csim``): one testbench per zoo net, vectors from the golden model.

``python -m sanitas.hls.netcsim --net NAME --out DIR [--checkpoint P | --checkpoints DIR] [--config F] [--limit N]
[--scheme S]``
builds the zoo net at the digits input shape (the trained checkpoint when given, else the seed-0 initialised net:
real quantiser scales and weights, just untrained), exports its golden model, writes ``input.bin`` (the digits test
split, int8) and ``expected.bin`` (``GoldenModel.run_int``, int32) into DIR, compiles the network testbench
(``top.compile_net_csim``: ``sanitas_net.cpp`` with ``-DSANITAS_TB``, cached by content hash) and runs it. The
exit status is the testbench's: 0 only when every image is bit-exact, every counter equals the golden fault-free
one (``counters.bin``: all 0 but the patrol's scrubbed words) and every checksum flag is 0.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..errors import SanitasError


def golden_of(net: str, checkpoint=None):
    import torch

    from ..data import load_dataset
    from ..golden import export_golden
    from ..models import build
    from ..train import load_checkpoint
    splits = load_dataset("digits")
    if checkpoint is not None:
        model, _ = load_checkpoint(checkpoint)
    else:
        torch.manual_seed(0)
        model = build(net, splits.in_shape, splits.num_classes)
    return export_golden(model), splits


def run_net_csim(net: str, out_dir, checkpoint=None, array=None, limit: int | None = None,
                 scheme="none") -> tuple[int, str]:
    """Vectors + build + run of one net's testbench under protection ``scheme``; returns (exit status, its output
    line). ``counters.bin``: the golden fault-free counters of the run (``check.protected_per_image``)."""
    from ..protect.model import ProtectedModel
    from .check import protected_per_image
    from .regmap import STATUS_COUNTERS
    from .top import compile_net_csim
    gm, splits = golden_of(net, checkpoint)
    out = Path(out_dir)
    exe, _ = compile_net_csim(gm, out, array=array, spec=scheme)
    x = gm.quantize_input(splits.test.tensors[0].numpy()[:limit])
    x.astype(np.int8).tofile(out / "input.bin")
    gm.run_int(x).astype("<i4").tofile(out / "expected.bin")
    _, cnt = protected_per_image(ProtectedModel(gm, scheme), x, None)
    np.array([cnt[k] for k in STATUS_COUNTERS], dtype="<i4").tofile(out / "counters.bin")
    r = subprocess.run([str(exe), str(out), str(len(x))], capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip()


def main(argv=None) -> int:
    from ..config import Config
    from ..models.zoo import ZOO
    ap = argparse.ArgumentParser(prog="python -m sanitas.hls.netcsim")
    ap.add_argument("--net", required=True, choices=sorted(ZOO))
    ap.add_argument("--out", required=True)
    ap.add_argument("--checkpoint", default=None, help="a trained checkpoint of the net")
    ap.add_argument("--checkpoints", default=None, help="a folder holding <net>.pt (used when present)")
    ap.add_argument("--config", default=None, help="a sanitas Config; its array section is the ArrayConfig")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--scheme", default="none", help="protection scheme of the testbench (e.g. sanity+dmr)")
    a = ap.parse_args(argv)
    ck = a.checkpoint
    if ck is None and a.checkpoints and (Path(a.checkpoints) / f"{a.net}.pt").is_file():
        ck = Path(a.checkpoints) / f"{a.net}.pt"
    try:
        array = Config.load(a.config).array if a.config else None
        rc, line = run_net_csim(a.net, a.out, ck, array, a.limit, a.scheme)
    except SanitasError as e:
        print(f"sanitas: error: {e}", file=sys.stderr)
        return 2
    print(f"{a.net}: {line}")
    return rc


if __name__ == "__main__":
    sys.exit(main())

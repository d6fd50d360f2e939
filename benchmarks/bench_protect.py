"""Protection schemes x networks: coverage of single-bit faults and overhead, printed as one table (issue 4).

For LeNet-5, ResNet-20, MobileNet-V2 and VGG trained on digits (checkpoints cached in build/protect/ckpt), every
scheme — sanity+dmr (full protection, lazy location), sanity:eager+dmr (the reference's eager location),
sanity (ABFT only), dmr (DMR-only baseline), tmr, sanity-check (detection-only predecessor), clip (range
restriction), none — gets the SAME primary single-bit faults (``--faults`` per network, an equal share over
weights, biases, layer inputs, accumulators, activations, layer outputs) plus faults in its own state, and is
timed fault-free against the unprotected executor in the same process. A critical-fault hunt (``--hunt``
critical experiments per network) bounds the fraction of critical faults whose top-1 sanity+dmr restores.
The report (tables + plots, ``sanitas.report.protect``) goes to ``--out``.

Run: ``.venv/bin/python benchmarks/bench_protect.py [--faults 600] [--hunt 1000] [--models lenet5,resnet20]``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from sanitas.data import load_dataset  # noqa: E402
from sanitas.golden import export_golden  # noqa: E402
from sanitas.models import build  # noqa: E402
from sanitas.protect.campaign import save_study, study  # noqa: E402
from sanitas.report.protect import targets, text_table, write_report  # noqa: E402
from sanitas.train import load_checkpoint, save_checkpoint, train_model  # noqa: E402

# recipes that work on digits (lr, epochs)
RECIPES = {"lenet5": (5e-3, 8), "vgg": (5e-3, 8), "mobilenetv2": (5e-3, 10), "resnet20": (2e-3, 3)}
SCHEMES = ["sanity+dmr", "sanity:eager+dmr", "sanity", "dmr", "tmr", "sanity-check", "clip", "none"]


def checkpoint(name: str, splits, cache: Path) -> Path:
    lr, ep = RECIPES[name]
    p = cache / f"{name}-e{ep}-lr{lr:g}.pt"
    if not p.exists():
        m = build(name, splits.in_shape, splits.num_classes, seed=0)
        met = train_model(m, splits, epochs=ep, lr=lr, seed=0, progress=False)
        save_checkpoint(m, p, "digits", {"test_acc": met["test_acc"]})
    return p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="lenet5,resnet20,mobilenetv2,vgg")
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--faults", type=int, default=600, help="primary faults per network (replayed on every scheme)")
    ap.add_argument("--hunt", type=int, default=1000, help="critical experiments per network for sanity+dmr")
    ap.add_argument("--clean", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "build" / "protect" / "bench"))
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    t0 = time.time()
    splits = load_dataset("digits")
    cache = ROOT / "build" / "protect" / "ckpt"
    nets, meta = {}, {}
    for name in [m.strip() for m in a.models.split(",") if m.strip()]:
        ck = checkpoint(name, splits, cache)
        model, info = load_checkpoint(ck)
        gm = export_golden(model)
        nets[name] = (gm, gm.quantize_input(splits.test.tensors[0].numpy()),
                      gm.quantize_input(splits.train.tensors[0].numpy()), splits.test.tensors[1].numpy())
        meta[name] = {"checkpoint": str(ck), "dataset": "digits"}
    schemes = [s.strip() for s in a.schemes.split(",") if s.strip()]
    res, rows = study(nets, schemes, a.faults, None, a.clean, a.seed, 128, progress=not a.quiet,
                      hunt=a.hunt, hunt_scheme=schemes[0])
    res.update({"main": schemes[0], "specs": {s: s for s in schemes}, "campaign": a.faults, "seed": a.seed,
                "seconds": time.time() - t0})
    for k, v in meta.items():
        res["networks"][k].update(v)
    out = save_study(a.out, res, rows, schemes[0], nets, schemes)
    report = write_report(out)
    print(f"digits, {a.faults} primary single-bit faults per network (same faults for every scheme), "
          f"{a.clean} fault-free images for false alarms; time x = CPU time / unprotected executor, batch 128\n")
    print(text_table(res))
    print()
    for net, e in res["networks"].items():
        print(f"{net}: accuracy {e['accuracy']:.4f}, {e['macs']:,} MACs/image, {e['seconds']:.0f} s")
    print()
    for t in targets(res):
        print("*", t)
    print(f"\nreport: {report}  ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

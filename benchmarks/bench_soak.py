"""Soak campaigns, schemes x networks: silent and flagged wrong outputs while memory upsets accumulate (issue 12).

For LeNet-5, ResNet-20, MobileNet-V2 and VGG trained on digits (checkpoints cached in build/protect/ckpt, shared
with bench_protect.py), every scheme runs ``--inferences`` inferences with ``--seu`` expected single-bit memory
upsets per inference (weights, biases, the protection's own memory, checkpoints; they accumulate) and
``--transients`` transient datapath faults per inference (the same seeded pool for every scheme), each
inference's logits compared with the fault-free golden model (``sanitas.protect.soak``). The table gives per
scheme: inferences, memory upsets, transients, silent (wrong, no alarm), wrong_flagged (wrong, alarm), top1_wrong
(the predicted class changed), detected, corrected, escalations, repaired words, and the measured inferences per
second (so a full run can be sized). Results go to ``--out``/soak.json.

A full table is hours of CPU, so the run persists as it goes: every (network, scheme) soak has its own folder
``--out``/<net>/<scheme>/ with ``state.npz`` (``Soak.save``, every ``--save-every`` inferences) and, once done,
``result.json``. Run the same command again after a crash or a kill and it resumes each unfinished soak from its
last state (same counts as an uninterrupted run: every inference's randomness is seeded by its index) and skips
the finished ones; ``--order schemes`` runs one scheme over all networks before the next scheme.

Run: ``.venv/bin/python benchmarks/bench_soak.py [--inferences 20000] [--seu 0.01] [--transients 1]
[--models lenet5,resnet20] [--schemes sanity+dmr,none,dmr,tmr,sanity-check]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_protect import checkpoint  # noqa: E402

from sanitas.data import load_dataset  # noqa: E402
from sanitas.golden import export_golden  # noqa: E402
from sanitas.protect.soak import Soak  # noqa: E402
from sanitas.train import load_checkpoint  # noqa: E402

SCHEMES = ["sanity+dmr", "none", "dmr", "tmr", "sanity-check"]
COLS = ("inferences", "memory_faults", "transient_faults", "silent", "wrong_flagged", "top1_wrong", "detected",
        "corrected", "escalations", "repaired")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="lenet5,resnet20,mobilenetv2,vgg")
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--inferences", type=int, default=20000)
    ap.add_argument("--seu", type=float, default=0.01, help="memory upsets per inference (expected)")
    ap.add_argument("--transients", type=float, default=1.0, help="transient faults per inference (expected)")
    ap.add_argument("--patrol", type=int, default=4, help="codewords scrubbed per inference")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "build" / "protect" / "soak"))
    ap.add_argument("--save-every", type=int, default=500, help="inferences between state saves")
    ap.add_argument("--order", choices=("networks", "schemes"), default="networks",
                    help="loop networks outside (default) or schemes outside")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    splits = load_dataset("digits")
    cache = ROOT / "build" / "protect" / "ckpt"
    res = {"config": vars(a), "networks": {}}
    print(f"digits soak: {a.inferences} inferences, {a.seu} memory upsets + {a.transients} transients per inference "
          f"(expected), patrol {a.patrol} codewords/inference, seed {a.seed}")
    print(f"{'net':12s} {'scheme':14s} " + " ".join(f"{c[:13]:>13s}" for c in COLS) + f" {'inf/s':>7s}")
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    schemes = [x.strip() for x in a.schemes.split(",") if x.strip()]
    pairs = [(n, x) for n in models for x in schemes] if a.order == "networks" else \
        [(n, x) for x in schemes for n in models]
    nets = {}
    for name, spec in pairs:
        if name not in nets:
            gm = export_golden(load_checkpoint(checkpoint(name, splits, cache))[0])
            nets[name] = (gm, gm.quantize_input(splits.test.tensors[0].numpy()[:a.images]))
        gm, xq = nets[name]
        folder = Path(a.out) / name / spec
        folder.mkdir(parents=True, exist_ok=True)
        done = folder / "result.json"
        key = {k: getattr(a, k) for k in ("inferences", "seu", "transients", "patrol", "images", "seed")}
        r = json.loads(done.read_text()) if done.exists() else None
        if r is None or r.get("key") != key:
            soak = Soak(gm, xq, spec, a.seu, a.transients, a.seed, a.patrol)
            state = folder / "state.npz"
            keyf = folder / "key.json"
            if state.exists() and keyf.exists() and json.loads(keyf.read_text()) == key:
                soak.load(state)
            keyf.write_text(json.dumps(key))
            start, t = soak.counts["inferences"], time.perf_counter()
            c = soak.run(a.inferences, progress=not a.quiet, every=a.save_every, on_save=lambda s, p=state: s.save(p))
            dt = time.perf_counter() - t
            rate = (c["inferences"] - start) / dt if dt > 0 and c["inferences"] > start else None
            r = {"key": key, **c, "inferences_per_s": rate, "memory_bits": soak.memory_bits(), "events": soak.events}
            tmp = folder / "result.json.tmp"
            tmp.write_text(json.dumps(r))
            tmp.replace(done)
        res["networks"].setdefault(name, {})[spec] = {k: v for k, v in r.items() if k != "key"}
        rate = r["inferences_per_s"]
        print(f"{name:12s} {spec:14s} " + " ".join(f"{r[k]:13d}" for k in COLS)
              + (f" {rate:7.1f}" if rate else f" {'-':>7s}"), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

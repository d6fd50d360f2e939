"""Hand-built multi-fault cases (issue 12): cancelling pairs and a latent sanity-row fault, replayed on protected
networks; counts how each ends — bit-exact (corrected or escalated), silent (wrong, no alarm), flagged (wrong,
alarm) — over the faulty inference and the clean inference after it (an endless wrong answer shows there).

Cases per network and layer (drawn with ``--seed``): ``sanity_row+weight`` (a flip in a sanity-row word and one in
a weight of the same column, both in memory before the inference), ``weight_pair`` (two weights of one input
column, +2**b / -2**b), ``acc_pair`` (two accumulators of one pixel, +2**b / -2**b), ``checkpoint_pair`` (two
elements of one checkpoint), ``dw_pair`` (two filter words of a depthwise conv in one tap).

Run: ``.venv/bin/python benchmarks/bench_pairs.py [--cases 20] [--models lenet5,resnet20,mobilenetv2]``
(random-init nets with real activation scales for all but LeNet-5, which is trained on digits).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from sanitas.faults import Fault  # noqa: E402
from sanitas.golden import export_golden  # noqa: E402
from sanitas.models import build  # noqa: E402
from sanitas.protect import ProtectedModel  # noqa: E402
from sanitas.protect.campaign import OnceInjector, site_infos  # noqa: E402
from sanitas.protect.sanity import SanityLayer, SpatialSanity  # noqa: E402


def net(name: str):
    if name == "lenet5":
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import trained_checkpoint

        from sanitas.data import load_dataset
        from sanitas.train import load_checkpoint
        gm = export_golden(load_checkpoint(trained_checkpoint("lenet5"))[0])
        return gm, gm.quantize_input(load_dataset("digits").test.tensors[0].numpy()[:16])
    torch.manual_seed(0)
    m = build(name, (1, 8, 8))
    m.train()
    m(torch.rand(32, 1, 8, 8))
    m.eval()
    gm = export_golden(m)
    return gm, gm.quantize_input(torch.rand(16, 1, 8, 8).numpy())


def opposite(vals, rng, bits):
    """Two flat positions with opposite bit b (flipping both: +2**b and -2**b), or None."""
    v = np.asarray(vals, dtype=np.int64).reshape(-1)
    for b in rng.permutation(list(bits)):
        on, off = np.nonzero((v >> b) & 1)[0], np.nonzero(((v >> b) & 1) == 0)[0]
        if len(on) and len(off):
            return int(rng.choice(off)), int(rng.choice(on)), int(b)
    return None


def cases(gm, pm, xq, kind, rng):
    """(memory edits [(layer, site, index, bit)], hook faults [Fault], image) of one case, or None."""
    img = int(rng.integers(len(xq)))
    layers = [n for n in gm.layers() if isinstance(pm.plans[n.name].guard, SanityLayer)]
    if kind == "dw_pair":
        dws = [n for n in gm.layers() if isinstance(pm.plans[n.name].guard, SpatialSanity)]
        if not dws:
            return None
        n = dws[rng.integers(len(dws))]
        w = n.weight
        tap = tuple(int(rng.integers(d)) for d in w.shape[1:])
        p = opposite(w[(slice(None),) + tap], rng, range(7))
        return p and ([(n.name, "weight", (p[0],) + tap, p[2]), (n.name, "weight", (p[1],) + tap, p[2])], [], img)
    n = layers[rng.integers(len(layers))]
    g = pm.plans[n.name].guard
    if kind == "sanity_row+weight":
        grp, m, k = int(rng.integers(g.G)), int(rng.integers(g.M + 1)), int(rng.integers(g.K))
        i = grp * g.C + int(rng.integers(g.C))
        widx = (i,) + tuple(int(t) for t in np.unravel_index(k, n.weight.shape[1:]))
        edits = [(n.name, "sanity_w", (grp, m, k), int(rng.integers(8))),
                 (n.name, "weight", widx, int(rng.integers(8)))]
        return edits, [], img
    if kind == "weight_pair":
        k = tuple(int(rng.integers(d)) for d in n.weight.shape[1:])
        p = opposite(n.weight[(slice(None),) + k], rng, range(7))
        return p and ([(n.name, "weight", (p[0],) + k, p[2]), (n.name, "weight", (p[1],) + k, p[2])], [], img)
    env = gm.run_int(xq[img:img + 1], return_all=True)
    if kind == "acc_pair":
        y = env[n.name][0]
        pix = tuple(int(rng.integers(d)) for d in y.shape[1:])
        p = opposite(y[(slice(None),) + pix], rng, range(32))
        return p and ([], [Fault("acc", n.name, (p[0],) + pix, p[2]), Fault("acc", n.name, (p[1],) + pix, p[2])], img)
    if kind == "checkpoint_pair":
        node = gm.nodes[int(rng.integers(1, len(gm.nodes)))]
        v = env[node.name][0]
        p = opposite(v, rng, range(min(node.bits, 31)))
        idx = [tuple(int(t) for t in np.unravel_index(q, v.shape)) for q in p[:2]] if p else None
        return p and ([], [Fault("checkpoint", node.name, t, p[2]) for t in idx], img)
    raise ValueError(kind)


def flip(pm, layer, site, index, bit):
    mem = pm.memory(layer)
    mem.arrays[site][index] = int(mem.arrays[site][index]) ^ (1 << bit) if site != "weight" else \
        int(np.int8(np.uint8(np.int8(mem.arrays[site][index]).view(np.uint8) ^ np.uint8(1 << bit)).view(np.int8)))
    mem.dirty = True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="lenet5,resnet20,mobilenetv2")
    ap.add_argument("--schemes", default="sanity+dmr,sanity:eager+dmr")
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    kinds = ("sanity_row+weight", "weight_pair", "acc_pair", "checkpoint_pair", "dw_pair")
    print(f"{'net':12s} {'scheme':18s} {'case':18s} {'cases':>6s} {'exact':>6s} {'silent':>6s} {'flagged':>7s} "
          f"{'escal.':>6s}")
    for name in a.models.split(","):
        gm, xq = net(name)
        ref = gm.run_int(xq)
        for spec in a.schemes.split(","):
            pm = ProtectedModel(gm, spec, patrol=0)
            info = site_infos(gm, pm)
            for kind in kinds:
                rng = np.random.default_rng([a.seed, kinds.index(kind)])
                tally = dict.fromkeys(("cases", "exact", "silent", "flagged", "escalations"), 0)
                for _ in range(a.cases):
                    c = cases(gm, pm, xq, kind, rng)
                    if c is None:
                        continue
                    edits, faults, img = c
                    pm.reset()
                    for e in edits:
                        flip(pm, *e)
                    outs = []
                    for hook in (OnceInjector(faults, info) if faults else None, None):
                        y, rep = pm.run(xq[img:img + 1], hook=hook)
                        outs.append((np.array_equal(y[0], ref[img]), rep.alarm))
                        tally["escalations"] += rep.escalations
                    tally["cases"] += 1
                    tally["exact"] += all(ok for ok, _ in outs)
                    tally["silent"] += any((not ok) and not al for ok, al in outs)
                    tally["flagged"] += any((not ok) and al for ok, al in outs)
                if tally["cases"]:
                    print(f"{name:12s} {spec:18s} {kind:18s} " + " ".join(f"{tally[k]:6d}" for k in tally),
                          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``sanitas soak``: run a protected checkpoint for many inferences while memory upsets accumulate and transients
strike every inference; count silent and flagged wrong outputs (``sanitas.protect.soak``).

    sanitas soak --checkpoint P --scheme S [--per-layer F] --inferences N --seu-per-inference r
                 --transients-per-inference t --seed k --out DIR [--resume] [--json]

``DIR`` receives ``manifest.json`` (kind "soak", the configuration), ``state.npz`` (memory contents, patrol
position, counters: saved every ``--save-every`` inferences, so ``--resume`` after a kill continues from the last
save and ends with the same counts as an uninterrupted run), ``soak.json`` (counters, the inferences with wrong
logits, speed) and its report (``sanitas report DIR``: ``soak.png``, cumulative silent / flagged wrong outputs over
the inferences, ``index.html``, ``index.md``). The summary has
``inferences, memory_faults, transient_faults, silent, detected, corrected, escalations, wrong_flagged`` and the
protection's own counters.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ..errors import SanitasError
from ._common import (any_int, existing_dir, existing_file, limit_threads, load_model_data_golden, non_negative_float,
                      non_negative_int, output_dir, positive_int, scheme)
from ._config import configure

CONFIG_KEYS = ("checkpoint", "scheme", "per_layer", "seu_per_inference", "transients_per_inference", "seed",
               "patrol", "images")


def _check_args(args) -> None:
    """One-line errors for bad numbers (before any work)."""
    for name in ("seu_per_inference", "transients_per_inference"):
        v = getattr(args, name)
        if not math.isfinite(v) or v < 0:
            raise SanitasError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v}")
    for name in ("inferences", "patrol", "save_every"):
        if getattr(args, name) < 0:
            raise SanitasError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.images < 1:
        raise SanitasError(f"--images must be >= 1, got {args.images}")


def add_parser(sub):
    p = sub.add_parser("soak", help="long run under accumulating memory upsets and transients (resumable)")
    p.add_argument("--checkpoint", type=existing_file, required=True, help="trained checkpoint (.pt)")
    p.add_argument("--scheme", type=scheme, default=None, help="protection scheme, e.g. sanity+dmr, dmr, tmr, none")
    p.add_argument("--per-layer", type=existing_file, default=None,
                   help="JSON/YAML per-layer scheme map (default entry: --scheme)")
    p.add_argument("--inferences", type=non_negative_int, default=None,
                   help="inferences in total (a resume may extend)")
    p.add_argument("--seu-per-inference", type=non_negative_float, default=None,
                   help="expected single-bit memory upsets per inference over all of the scheme's memory")
    p.add_argument("--transients-per-inference", type=non_negative_float, default=None,
                   help="expected transient datapath faults per inference")
    p.add_argument("--seed", type=any_int, default=None, help="seed of upsets, transients and image draws")
    p.add_argument("--patrol", type=non_negative_int, default=None,
                   help="parameter codewords the patrol scrubs per inference")
    p.add_argument("--images", type=positive_int, default=None, help="test images the inferences draw from")
    p.add_argument("--save-every", type=non_negative_int, default=None, help="inferences between state saves")
    p.add_argument("--data-dir", type=existing_dir, default=None, help="dataset folder (mnist / cifar10 checkpoints)")
    p.add_argument("--out", type=output_dir, required=True, help="soak folder")
    p.add_argument("--resume", action="store_true", help="continue the soak in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return configure(p, "soak", "data")


def _config(args) -> dict:
    return {"checkpoint": str(args.checkpoint), "scheme": args.scheme, "per_layer": args.per_layer,
            "seu_per_inference": args.seu_per_inference, "transients_per_inference": args.transients_per_inference,
            "seed": args.seed, "patrol": args.patrol, "images": args.images}


def _spec(args):
    from ..protect import load_scheme_map, parse_scheme
    parse_scheme(args.scheme)                       # one-line error for a bad spec
    if not args.per_layer:
        return args.scheme
    m = dict(load_scheme_map(args.per_layer))
    m.setdefault("default", args.scheme)
    return m


def run(args) -> dict:
    from ..runfolder import FolderLock
    _check_args(args)
    spec = _spec(args)
    if not Path(args.checkpoint).exists():
        raise SanitasError(f"checkpoint not found: {args.checkpoint}")
    limit_threads()
    with FolderLock(args.out):          # one soak per folder at a time
        return _soak(args, spec)


def _soak(args, spec) -> dict:
    from ..protect.soak import Soak
    from ..report import write_report
    out = Path(args.out)
    cfg = _config(args)
    man = out / "manifest.json"
    if args.resume:
        if not man.exists():
            raise SanitasError(f"nothing to resume in {out} (no manifest.json)")
        old = json.loads(man.read_text())
        diff = [k for k in CONFIG_KEYS if old.get("config", {}).get(k) != cfg[k]]
        if diff:
            raise SanitasError(f"--resume with a different configuration ({', '.join(diff)}) than {man}")
    elif man.exists():
        raise SanitasError(f"{out} already holds a soak; use --resume or another --out")
    _, ds, gm = load_model_data_golden(args.checkpoint, args.data_dir)
    xq = gm.quantize_input(ds.test.tensors[0].numpy()[:args.images])
    soak = Soak(gm, xq, spec, args.seu_per_inference, args.transients_per_inference, args.seed, args.patrol)
    state = out / "state.npz"
    if args.resume and state.exists():
        soak.load(state)
    man.write_text(json.dumps({"kind": "soak", "version": 1, "config": cfg, "results": "soak.json"}, indent=1))
    start, t0 = soak.counts["inferences"], time.perf_counter()
    counts = soak.run(args.inferences, progress=not args.quiet, every=args.save_every, on_save=lambda s: s.save(state))
    dt = time.perf_counter() - t0
    done = counts["inferences"] - start
    res = {"scheme": args.scheme if not args.per_layer else f"per-layer:{Path(args.per_layer).stem}",
           "memory_bits": soak.memory_bits(), **counts,
           "inferences_per_s": round(done / dt, 2) if done and dt > 0 else None}
    (out / "soak.json").write_text(json.dumps({**res, "events": soak.events, "config": cfg}, indent=1))
    res["report"] = str(write_report(out))
    return res

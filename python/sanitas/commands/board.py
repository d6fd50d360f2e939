"""``sanitas board``: run the test split through the PYNQ driver — on a real board (``pynq``), on the fake
pynq Device (``fake``: its IP is the csim of ``sanitas_top``, the accelerator's own C++ behind the register map,
the protected golden model behind the registers with ``--ip golden``, or a plain callback), or on the golden-backed
simulator (``sim``) — and compare with golden.

The ``--json`` summary says which IP computed (``"ip"``: ``hw`` on a board; ``csim``, ``golden`` or ``callback``
on the fake board; ``golden`` for ``sim``), the protection behind the fake IP (``"scheme"``; the csim IP takes the
schemes ``sanitas_top`` generates, ``hls.firmware.BUILT_SCHEMES``), how many images were bit-exact, the accuracy,
and the protection counters of the run.
"""
from __future__ import annotations

import numpy as np

from ..errors import SanitasError
from ._common import (choice, existing_dir, existing_file, load_model_data_golden, non_negative_int,
                      positive_int, scheme)
from ._config import configure

IPS = ("csim", "golden", "callback")


def add_parser(sub):
    p = sub.add_parser("board", help="run inference through the PYNQ driver (pynq | fake | sim) and check vs golden")
    p.add_argument("--checkpoint", type=existing_file, required=True)
    p.add_argument("--backend", type=choice(("pynq", "fake", "sim"), "backend"), default=None)
    p.add_argument("--board", default=None, help="board folder name under boards/")
    p.add_argument("--bitfile", type=existing_file, default=None, help="overlay .bit (backend pynq)")
    p.add_argument("--ip", type=choice(IPS, "fake IP"), default=None,
                   help="backend fake: csim (sanitas_top's C++), golden (the protected golden model behind the "
                        "registers) or callback (golden run_int, no fault port)")
    p.add_argument("--scheme", type=scheme, default=None, help="protection of the csim IP (backend fake)")
    p.add_argument("--data-dir", type=existing_dir, default=None)
    p.add_argument("--limit", type=positive_int, default=None, help="number of test images")
    p.add_argument("--faults", type=non_negative_int, default=None,
                   help="then inject this many sampled faults (weight/acc/output bit flips) through the IP's "
                        "fault-injection registers, one at a time, over the same images")
    p.add_argument("--fault-seed", type=non_negative_int, default=None, help="seed of the sampled faults")
    p.set_defaults(func=run)
    return configure(p, "board", "data")


def run(args) -> dict:
    from ..board import open_board
    from ..board.overlay import load_board
    load_board(args.board)                      # an unknown board is refused before anything is built
    if args.faults and (args.backend == "sim" or (args.backend == "fake" and args.ip == "callback")):
        raise SanitasError(f"--faults needs the IP's fault-injection registers: backend {args.backend}"
                           f"{' with --ip callback' if args.backend == 'fake' else ''} has none")
    model, splits, gm = load_model_data_golden(args.checkpoint, args.data_dir)
    x, y = splits.test.tensors
    xq = gm.quantize_input(x.numpy()[: args.limit]).astype(np.int8)
    kw = {"board": args.board}
    if args.bitfile:
        kw["bitfile"] = args.bitfile
    if args.backend == "fake":
        kw |= {"ip": args.ip, "spec": args.scheme}
    with open_board(args.backend, compute=gm, **kw) as b:
        logits, status = b.infer(xq)
        ip = {"sim": "golden", "pynq": "hw"}.get(args.backend) or b.ip_kind
        if args.faults:
            from ..board.demo import fault_sweep, totals
            from ..faults.fault import sample_faults
            faults = sample_faults(gm, args.faults, sites=("weight", "acc", "output"), kinds=("bitflip",),
                                   seed=args.fault_seed)
            rows = fault_sweep({"ip": b}, gm, xq, faults)
    logits = np.asarray(logits).astype(np.int64)
    ref = gm.run_int(xq)
    same = int((logits == ref).all(axis=1).sum())
    acc = float((logits.argmax(1) == y.numpy()[: args.limit]).mean())
    print(f"bit-exact: {same}/{len(xq)} ({ip})")
    summary = {"ok": same == len(xq), "backend": args.backend, "ip": ip, "bit_exact": same, "total": int(len(xq)),
               "accuracy": acc, "status": status}
    if args.backend == "fake" and ip in ("csim", "golden"):
        summary["scheme"] = args.scheme or "none"          # the protection compiled into / run behind the IP
    if args.faults:
        t = totals(rows)["ip"]
        print(f"{len(faults)} faults through the fault-injection registers: {t['changed_images']} image runs "
              f"changed, {t['detected']} detected, {t['corrected']} corrected")
        summary["faults"] = {"injected": len(faults), **t}
    return summary

"""``sanitas golden``: export the integer golden model and check it bit-exactly against Brevitas on the test split."""
from __future__ import annotations

from ..golden.check import check_bitexact
from ._common import choice, existing_dir, existing_file, limit_threads, load_model_data_golden, output_file
from ._config import configure


def add_parser(sub):
    p = sub.add_parser("golden", help="export the integer golden model; print 'bit-exact: K/N' (exit 1 unless K == N)")
    p.add_argument("--checkpoint", type=existing_file, required=True)
    p.add_argument("--data-dir", type=existing_dir, default=None, help="dataset folder (mnist / cifar10 checkpoints)")
    p.add_argument("--backend", type=choice(("int", "f64"), "backend"), default=None,
                   help="integer executor (int: numpy int64)")
    p.add_argument("--save", type=output_file, default=None, help="also write the golden model (.npz) here")
    p.set_defaults(func=run)
    return configure(p, "golden", "data")


def run(args) -> dict:
    limit_threads()
    model, splits, gm = load_model_data_golden(args.checkpoint, args.data_dir)
    x, y = splits.test.tensors
    r = check_bitexact(model, gm, x, backend=args.backend)
    acc = float((r["golden_pred"] == y.numpy()).mean()) if len(y) else 0.0
    print(f"bit-exact: {r['bit_exact']}/{r['total']}")
    out = {"ok": r["bit_exact"] == r["total"], "bit_exact": r["bit_exact"], "total": r["total"],
           "max_abs_diff_lsb": r["max_abs_diff"], "golden_test_acc": acc, "macs": gm.macs()}
    if args.save:
        out["golden"] = str(gm.save(args.save))
    return out

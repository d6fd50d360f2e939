"""``sanitas train``: quantisation-aware training of a zoo model; writes a weights-only checkpoint."""
from __future__ import annotations

import time

from ..data import load_dataset
from ..models import ZOO, build
from ..train import save_checkpoint, train_model
from ._common import (
    add_data_args,
    any_int,
    check_data_args,
    choice,
    device,
    limit_threads,
    non_negative_float,
    non_negative_int,
    output_file,
    positive_float,
    positive_int,
)
from ._config import configure


def add_parser(sub):
    p = sub.add_parser("train", help="train an INT8 zoo model (Brevitas, power-of-two scales)")
    p.add_argument("--model", type=choice(ZOO, "model"), default=None)
    add_data_args(p)
    p.add_argument("--epochs", type=non_negative_int, default=None)
    p.add_argument("--lr", type=positive_float, default=None)
    p.add_argument("--weight-decay", type=non_negative_float, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--seed", type=any_int, default=None)
    p.add_argument("--device", type=device, default=None)
    p.add_argument("--out", type=output_file, required=True, help="checkpoint path (.pt)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return configure(p, "train", "data")


def run(args) -> dict:
    check_data_args(args.dataset, args.data_dir)
    limit_threads()
    splits = load_dataset(args.dataset, args.data_dir)
    model = build(args.model, splits.in_shape, splits.num_classes, seed=args.seed)
    t0 = time.time()
    m = train_model(model, splits, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    weight_decay=args.weight_decay, seed=args.seed, device=args.device, progress=not args.quiet)
    path = save_checkpoint(model, args.out, args.dataset,
                           {"test_acc": m["test_acc"], "val_acc": m["val_acc"], "epochs": args.epochs})
    return {"checkpoint": str(path), "model": args.model, "dataset": args.dataset, "test_acc": m["test_acc"],
            "val_acc": m["val_acc"], "seconds": round(time.time() - t0, 2)}

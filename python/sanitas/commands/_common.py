"""Arguments and helpers shared by several subcommands."""
from __future__ import annotations

import torch


def add_data_args(p) -> None:
    p.add_argument("--dataset", default=None, choices=["digits", "mnist", "cifar10"],
                   help="dataset (digits is bundled with scikit-learn; the others need --data-dir)")
    p.add_argument("--data-dir", default=None, help="folder in torchvision's layout for mnist / cifar10")


def limit_threads() -> None:
    """Use at most 2 intra-op threads: the reference machine has 2 cores, more only adds contention."""
    torch.set_num_threads(min(2, torch.get_num_threads()))


def load_model_data_golden(checkpoint, data_dir=None):
    """Checkpoint -> (Brevitas model, its dataset splits, exported golden model)."""
    from ..data import load_dataset
    from ..golden import export_golden
    from ..train import load_checkpoint
    model, ck = load_checkpoint(checkpoint)
    return model, load_dataset(ck["dataset"], data_dir), export_golden(model)

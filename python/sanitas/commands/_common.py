"""Arguments and helpers shared by several subcommands."""
from __future__ import annotations

import torch


def add_data_args(p) -> None:
    p.add_argument("--dataset", default="digits", choices=["digits", "mnist", "cifar10"],
                   help="dataset (digits is bundled with scikit-learn; the others need --data-dir)")
    p.add_argument("--data-dir", default=None, help="folder in torchvision's layout for mnist / cifar10")


def limit_threads() -> None:
    """Use at most 2 intra-op threads: the reference machine has 2 cores, more only adds contention."""
    torch.set_num_threads(min(2, torch.get_num_threads()))

"""Shared fixtures: trained zoo checkpoints cached under build/test-cache (keyed by model, epochs, lr, seed and
checkpoint format, so files of an older format are not reused).

A cache entry is trained once even when pytest-xdist workers ask for it at the same time: the first takes a file
lock beside it (``filelock``, in the dev extra) and trains, the others wait and load the finished file
(``save_checkpoint`` writes a temp file and renames it, so nobody reads half a checkpoint).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "test-cache"

# few epochs: enough for non-trivial accuracy and real (non-initial) quantiser scales
RECIPES = {"lenet5": (5, 5e-3), "vgg": (3, 5e-3), "mobilenetv2": (3, 5e-3), "resnet20": (2, 2e-3)}


def trained_checkpoint(name: str, epochs: int | None = None, lr: float | None = None, seed: int = 0) -> Path:
    """Train (once per cache) a zoo model on digits and return its checkpoint path."""
    from sanitas.data import load_dataset
    from sanitas.models import build
    from sanitas.train import CKPT_FORMAT, save_checkpoint, train_model
    ep, r = RECIPES[name]
    ep = ep if epochs is None else epochs
    r = r if lr is None else lr
    path = CACHE / f"{name}-e{ep}-lr{r:g}-s{seed}-init-{CKPT_FORMAT}.pt"
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        if not path.exists():
            torch.set_num_threads(min(2, os.cpu_count() or 1))
            s = load_dataset("digits")
            m = build(name, s.in_shape, s.num_classes, seed=seed)   # initial weights independent of test order
            met = train_model(m, s, epochs=ep, lr=r, seed=seed, progress=False)
            save_checkpoint(m, path, "digits", {"test_acc": met["test_acc"]})
    return path


@pytest.fixture(scope="session")
def digits():
    from sanitas.data import load_dataset
    return load_dataset("digits")


@pytest.fixture(scope="session")
def lenet5_ckpt():
    return trained_checkpoint("lenet5")

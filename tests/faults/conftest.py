"""Shared fixtures of the fault tests: small trained INT8 nets (cached under build/test-cache/faults/) and inputs.

LeNet-5 (digits, 4 epochs, ~5 s) and a narrow ResNet-20 (width 4, 1 epoch) for the residual (add, shared
quantiser, gsum) graph paths. Checkpoints are reused across sessions; delete the folder to retrain.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "test-cache" / "faults"


def _trained(name: str, epochs: int, lr: float, **kw) -> Path:
    from sanitas.data import load_dataset
    from sanitas.models import build
    from sanitas.train import CKPT_FORMAT, save_checkpoint, train_model
    tag = "_".join([name] + [f"{k}{v}" for k, v in sorted(kw.items())] + [CKPT_FORMAT])
    path = CACHE / f"{tag}.pt"
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):   # pytest-xdist: one worker trains, the others wait for the file
        if not path.exists():
            torch.set_num_threads(min(2, torch.get_num_threads()))
            s = load_dataset("digits")
            m = build(name, s.in_shape, s.num_classes, **kw)
            met = train_model(m, s, epochs=epochs, lr=lr, progress=False)
            save_checkpoint(m, path, "digits", met)
    return path


@pytest.fixture(scope="session")
def lenet_ckpt() -> Path:
    return _trained("lenet5", 4, 5e-3)


@pytest.fixture(scope="session")
def resnet_ckpt() -> Path:
    return _trained("resnet20", 1, 3e-3, width=4)


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    from sanitas.data import load_dataset
    return load_dataset("digits").test.tensors[0][:16].numpy()       # (16, 1, 8, 8) float32


def _load(path):
    from sanitas.golden import export_golden
    from sanitas.train import load_checkpoint
    qnet, _ = load_checkpoint(path)
    return qnet, export_golden(qnet)


@pytest.fixture(scope="session")
def lenet(lenet_ckpt):
    """(QNet, GoldenModel) of the trained LeNet-5."""
    return _load(lenet_ckpt)


@pytest.fixture(scope="session")
def resnet(resnet_ckpt):
    """(QNet, GoldenModel) of the trained narrow ResNet-20."""
    return _load(resnet_ckpt)

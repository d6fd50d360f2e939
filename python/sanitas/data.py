"""Datasets: scikit-learn's bundled 8x8 digits (default, offline), MNIST and CIFAR-10 from a local folder.

All loaders return float32 NCHW images scaled to [0, 1] and int64 labels, split deterministically into
train / val / test (the split seed is fixed and independent of the training seed, so every run of every
level sees the same test set).

Folder layouts (torchvision's):
* MNIST:    ``<data-dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (``<data-dir>`` may also
  be the ``raw`` folder itself).
* CIFAR-10: ``<data-dir>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` (python pickles; ``<data-dir>``
  may also be the ``cifar-10-batches-py`` folder itself).
"""
from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .errors import DatasetError

DATASETS = ("digits", "mnist", "cifar10")
SPLIT_SEED = 12345  # fixed: the test split never depends on a training seed

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


@dataclass
class Splits:
    """Train/val/test tensors of one dataset: images (N, C, H, W) float32 in [0, 1], labels (N,) int64."""
    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    in_shape: tuple[int, int, int]   # (C, H, W)
    num_classes: int


def _tds(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                         torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))


def _split(x, y, frac_val, frac_test=None, x_test=None, y_test=None):
    """Deterministic permutation split. If a test set is given, only val is carved from train."""
    rng = np.random.default_rng(SPLIT_SEED)
    idx = rng.permutation(len(x))
    if x_test is None:
        n_test = int(round(frac_test * len(x)))
        n_val = int(round(frac_val * len(x)))
        te, va, tr = idx[:n_test], idx[n_test:n_test + n_val], idx[n_test + n_val:]
        return (x[tr], y[tr]), (x[va], y[va]), (x[te], y[te])
    n_val = int(round(frac_val * len(x)))
    va, tr = idx[:n_val], idx[n_val:]
    return (x[tr], y[tr]), (x[va], y[va]), (x_test, y_test)


def load_digits() -> Splits:
    """scikit-learn's 1797 8x8 digits (pixel values 0..16 -> [0, 1]); 70/15/15 split."""
    from sklearn.datasets import load_digits as _ld
    d = _ld()
    x = (d.images.astype(np.float32) / 16.0)[:, None]        # (1797, 1, 8, 8)
    y = d.target.astype(np.int64)
    tr, va, te = _split(x, y, 0.15, 0.15)
    return Splits("digits", _tds(*tr), _tds(*va), _tds(*te), (1, 8, 8), 10)


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format): magic 0x0000 08 <ndim>, big-endian dims, uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path}: not an IDX uint8 file (bad magic)")
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: truncated IDX file ({body.size} values, header says {int(np.prod(dims))})")
    return body.reshape(dims)


def _find(root: Path, names, subdirs, what: str, gz: bool = False) -> Path:
    for d in [root / s for s in subdirs] + [root]:
        if all((d / n).exists() or (gz and (d / (n + ".gz")).exists()) for n in names):
            return d
    raise DatasetError(f"{what} not found under '{root}': expected {', '.join(names)} in "
                       f"{root}/{subdirs[0]}/ (torchvision layout)")


def load_mnist(data_dir) -> Splits:
    """MNIST from ``data_dir`` (torchvision layout); 10% of train held out as val."""
    if data_dir is None:
        raise DatasetError("mnist needs --data-dir pointing to a folder with MNIST/raw/ (torchvision layout)")
    root = Path(data_dir)
    d = _find(root, MNIST_FILES, ["MNIST/raw", "raw"], "MNIST", gz=True)

    def rd(n):
        p = d / n
        return _read_idx(p if p.exists() else d / (n + ".gz"))
    xtr, ytr, xte, yte = (rd(n) for n in MNIST_FILES)
    if xtr.ndim != 3 or xtr.shape[1:] != (28, 28) or len(xtr) != len(ytr) or len(xte) != len(yte):
        raise DatasetError(f"MNIST files in '{d}' have inconsistent shapes {xtr.shape}/{ytr.shape}/{xte.shape}/{yte.shape}")
    xtr = xtr[:, None].astype(np.float32) / 255.0
    xte = xte[:, None].astype(np.float32) / 255.0
    tr, va, te = _split(xtr, ytr.astype(np.int64), 0.1, x_test=xte, y_test=yte.astype(np.int64))
    return Splits("mnist", _tds(*tr), _tds(*va), _tds(*te), (1, 28, 28), 10)


def load_cifar10(data_dir) -> Splits:
    """CIFAR-10 from ``data_dir`` (torchvision's python pickles); 10% of train held out as val."""
    if data_dir is None:
        raise DatasetError("cifar10 needs --data-dir pointing to a folder with cifar-10-batches-py/ (torchvision layout)")
    root = Path(data_dir)
    d = _find(root, CIFAR_FILES, ["cifar-10-batches-py"], "CIFAR-10")

    def rd(n):
        try:
            with open(d / n, "rb") as f:
                b = pickle.load(f, encoding="bytes")
            x = np.asarray(b[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(b[b"labels"], dtype=np.int64)
        except Exception as e:  # noqa: BLE001 - any parse failure is a malformed file
            raise DatasetError(f"{d / n}: malformed CIFAR-10 batch ({type(e).__name__}: {e})") from None
        if len(x) != len(y):
            raise DatasetError(f"{d / n}: {len(x)} images but {len(y)} labels")
        return x, y
    parts = [rd(n) for n in CIFAR_FILES[:5]]
    xtr = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = rd("test_batch")
    tr, va, te = _split(xtr, ytr, 0.1, x_test=xte.astype(np.float32) / 255.0, y_test=yte)
    return Splits("cifar10", _tds(*tr), _tds(*va), _tds(*te), (3, 32, 32), 10)


def load_dataset(name: str, data_dir=None) -> Splits:
    """Load ``name`` in {'digits', 'mnist', 'cifar10'}; MNIST/CIFAR-10 need ``data_dir``."""
    if name == "digits":
        return load_digits()
    if name == "mnist":
        return load_mnist(data_dir)
    if name == "cifar10":
        return load_cifar10(data_dir)
    raise DatasetError(f"unknown dataset '{name}' (choose from {', '.join(DATASETS)})")

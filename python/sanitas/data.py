"""Datasets: scikit-learn's bundled 8x8 digits (default, offline), MNIST and CIFAR-10 from a local folder.

All loaders return float32 NCHW images scaled to [0, 1] and int64 labels, split deterministically into
train / val / test (the split seed is fixed and independent of the training seed, so every run of every
level sees the same test set).

Folder layouts (torchvision's):
* MNIST:    ``<data-dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (``<data-dir>`` may also
  be the ``raw`` folder itself).
* CIFAR-10: ``<data-dir>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` (python pickles; ``<data-dir>``
  may also be the ``cifar-10-batches-py`` folder itself).

No code runs from data: CIFAR-10 pickles go through a restricted unpickler that resolves only the globals a real
batch holds (numpy array reconstruction, dict/list/bytes) and refuses anything else; IDX headers are checked
before their body is read. Every malformed file is a one-line ``DatasetError`` naming it.
"""
from __future__ import annotations

import gzip
import importlib
import math
import pickle
import struct
import zlib
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
        n_test = round(frac_test * len(x))
        n_val = round(frac_val * len(x))
        te, va, tr = idx[:n_test], idx[n_test:n_test + n_val], idx[n_test + n_val:]
        return (x[tr], y[tr]), (x[va], y[va]), (x[te], y[te])
    n_val = round(frac_val * len(x))
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


IDX_MAX_DIMS = 4            # MNIST files have 1 (labels) or 3 (images) dimensions
IDX_MAX_BYTES = 1 << 31     # refuse a header that claims more data than any MNIST-like file holds


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format): magic 0x0000 08 <ndim>, big-endian uint32 dims, uint8 data.

    The header is checked before the body is read (at most what it claims, plus one byte to find trailing
    data), so a bad header or a garbage/truncated ``.gz`` is a one-line ``DatasetError`` naming the file.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise DatasetError(f"{path}: not an IDX uint8 file (bad magic)")
            ndim = head[3]
            if not 1 <= ndim <= IDX_MAX_DIMS:
                raise DatasetError(f"{path}: IDX header claims {ndim} dimensions (1..{IDX_MAX_DIMS} expected)")
            raw = f.read(4 * ndim)
            if len(raw) < 4 * ndim:
                raise DatasetError(f"{path}: truncated IDX header")
            dims = struct.unpack(">" + "I" * ndim, raw)
            n = math.prod(dims)
            if n > IDX_MAX_BYTES:
                raise DatasetError(f"{path}: IDX header claims {n} values (more than {IDX_MAX_BYTES})")
            data = f.read(n + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read ({type(e).__name__}: {str(e)[:120]})") from None
    if len(data) != n:
        what = "truncated" if len(data) < n else "trailing data after the"
        raise DatasetError(f"{path}: {what} IDX body ({min(len(data), n + 1)} bytes read, header says {n})")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _latin1_encode(s, encoding="latin1"):
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: latin-1 only."""
    if not isinstance(s, str) or encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode(..., {encoding!r})")
    return s.encode("latin1")


def _numpy_attr(*names):
    for n in names:
        mod, _, attr = n.rpartition(".")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(names[0])


# Everything a real CIFAR-10 batch (a dict of bytes keys, a list of labels, a list of file names and one
# uint8 numpy array) needs, under the names numpy 1.x / 2.x pickles use (numpy integer scalars too: batches
# written from numpy labels hold them); nothing else is ever imported.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray._reconstruct",
                                                "numpy.core.multiarray._reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray._reconstruct",
                                                 "numpy.core.multiarray._reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar"),
    ("numpy", "ndarray"): ("numpy.ndarray",),
    ("numpy", "dtype"): ("numpy.dtype",),
}
_PICKLE_BUILTINS = {("builtins", "dict"): dict, ("builtins", "list"): list, ("builtins", "bytes"): bytes,
                    ("builtins", "bytearray"): bytearray, ("_codecs", "encode"): _latin1_encode}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the CIFAR-10 allow-list (it is never imported, let alone called)."""


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a CIFAR-10 batch holds; anything else is refused (no code runs)."""

    def find_class(self, module, name):
        key = (module, name)
        if key in _PICKLE_BUILTINS:
            return _PICKLE_BUILTINS[key]
        if key in _PICKLE_ALLOWED:
            return _numpy_attr(*_PICKLE_ALLOWED[key])
        raise RefusedGlobal(f"refused to load global {module}.{name} (a CIFAR-10 batch holds only "
                                     f"dicts, lists, bytes and numpy arrays)")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file -> (images (N, 3, 32, 32) uint8, labels (N,) int64), read without running code."""
    try:
        with open(path, "rb") as f:
            b = _BatchUnpickler(f, encoding="bytes").load()
    except RefusedGlobal as e:
        raise DatasetError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any parse failure of a user's file is a malformed file
        raise DatasetError(f"{path}: malformed CIFAR-10 batch ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(b, dict) or b"data" not in b or b"labels" not in b:
        raise DatasetError(f"{path}: malformed CIFAR-10 batch (not a dict with b'data' and b'labels')")
    data, labels = b[b"data"], b[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: malformed CIFAR-10 batch (data is {desc}, expected uint8 (N, 3072))")
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()
    if not isinstance(labels, (list, tuple)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        raise DatasetError(f"{path}: malformed CIFAR-10 batch (labels are not a list of ints)")
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(data):
        raise DatasetError(f"{path}: {len(data)} images but {len(y)} labels")
    _check_labels(path, y)
    return data.reshape(-1, 3, 32, 32), y


def _check_labels(path, y: np.ndarray, num_classes: int = 10) -> None:
    if len(y) == 0:
        raise DatasetError(f"{path}: no samples")
    if y.min() < 0 or y.max() >= num_classes:
        raise DatasetError(f"{path}: labels outside 0..{num_classes - 1} (min {y.min()}, max {y.max()})")


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
    if (xtr.ndim != 3 or xtr.shape[1:] != (28, 28) or xte.ndim != 3 or xte.shape[1:] != (28, 28)
            or ytr.ndim != 1 or yte.ndim != 1 or len(xtr) != len(ytr) or len(xte) != len(yte)):
        raise DatasetError(f"MNIST files in '{d}' have inconsistent shapes {xtr.shape}/{ytr.shape}/{xte.shape}/"
                           f"{yte.shape} (expected (N, 28, 28)/(N,) for train and t10k)")
    _check_labels(d / "train-labels-idx1-ubyte", ytr)
    _check_labels(d / "t10k-labels-idx1-ubyte", yte)
    xtr = xtr[:, None].astype(np.float32) / 255.0
    xte = xte[:, None].astype(np.float32) / 255.0
    tr, va, te = _split(xtr, ytr.astype(np.int64), 0.1, x_test=xte, y_test=yte.astype(np.int64))
    return Splits("mnist", _tds(*tr), _tds(*va), _tds(*te), (1, 28, 28), 10)


def load_cifar10(data_dir) -> Splits:
    """CIFAR-10 from ``data_dir`` (torchvision's python pickles); 10% of train held out as val."""
    if data_dir is None:
        raise DatasetError("cifar10 needs --data-dir pointing to a folder with cifar-10-batches-py/ "
                           "(torchvision layout)")
    root = Path(data_dir)
    d = _find(root, CIFAR_FILES, ["cifar-10-batches-py"], "CIFAR-10")

    def rd(n):
        return read_cifar_batch(d / n)
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

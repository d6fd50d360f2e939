"""Dataset loaders: digits split, MNIST/CIFAR-10 from small files in torchvision's layout, clear errors."""
from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from sanitas.data import load_dataset
from sanitas.errors import DatasetError


def test_digits_split_is_deterministic(digits):
    again = load_dataset("digits")
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1257, 270, 270)
    assert digits.in_shape == (1, 8, 8) and digits.num_classes == 10
    assert np.array_equal(digits.test.tensors[1].numpy(), again.test.tensors[1].numpy())
    x = digits.train.tensors[0]
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0


def _idx(path, arr, gz=False):
    head = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_folder(tmp_path, gz):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    xtr, ytr = rng.integers(0, 256, (50, 28, 28)), rng.integers(0, 10, 50)
    xte, yte = rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 10, 20)
    sfx = ".gz" if gz else ""
    _idx(raw / f"train-images-idx3-ubyte{sfx}", xtr, gz)
    _idx(raw / f"train-labels-idx1-ubyte{sfx}", ytr, gz)
    _idx(raw / f"t10k-images-idx3-ubyte{sfx}", xte, gz)
    _idx(raw / f"t10k-labels-idx1-ubyte{sfx}", yte, gz)
    s = load_dataset("mnist", tmp_path)
    assert s.in_shape == (1, 28, 28)
    assert (len(s.train), len(s.val), len(s.test)) == (45, 5, 20)
    assert np.allclose(s.test.tensors[0].numpy()[:, 0] * 255, xte)
    assert np.array_equal(s.test.tensors[1].numpy(), yte)


def test_cifar10_from_folder(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / n, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                         b"labels": list(rng.integers(0, 10, 10))}, f)
    s = load_dataset("cifar10", tmp_path)
    assert s.in_shape == (3, 32, 32)
    assert (len(s.train), len(s.val), len(s.test)) == (45, 5, 10)


def test_missing_folder_names_expected_files(tmp_path):
    with pytest.raises(DatasetError, match=r"MNIST not found under .*train-images-idx3-ubyte.*MNIST/raw"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DatasetError, match=r"CIFAR-10 not found under .*data_batch_1.*cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DatasetError, match="needs --data-dir"):
        load_dataset("mnist", None)
    with pytest.raises(DatasetError, match="unknown dataset 'svhn'"):
        load_dataset("svhn")


def test_malformed_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / n).write_bytes(b"garbage!")
    with pytest.raises(DatasetError, match="bad magic"):
        load_dataset("mnist", tmp_path)
    d = tmp_path / "c" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / n).write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="malformed CIFAR-10 batch"):
        load_dataset("cifar10", tmp_path / "c")

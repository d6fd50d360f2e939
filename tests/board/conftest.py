"""Shared fixtures of the board tests: a deterministic integer 'network' (one int8 GEMM) and its inputs."""
import numpy as np
import pytest

from sanitas.golden.gemm import gemm_int8

INPUT_SHAPE = (2, 6, 6)      # (C, H, W) int8 image
NUM_CLASSES = 10


class GemmNet:
    """logits = flatten(x) @ W, exact int32: a stand-in for the golden model (same calling convention)."""

    input_shape, num_classes = INPUT_SHAPE, NUM_CLASSES

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.w = rng.integers(-128, 128, (int(np.prod(INPUT_SHAPE)), NUM_CLASSES), dtype=np.int8)
        self.calls = 0

    def run_int(self, x):
        self.calls += 1
        return gemm_int8(np.asarray(x).reshape(len(x), -1), self.w)

    __call__ = run_int


@pytest.fixture
def net():
    return GemmNet()


@pytest.fixture
def images():
    rng = np.random.default_rng(1)
    return rng.integers(-128, 128, (5, *INPUT_SHAPE), dtype=np.int8)

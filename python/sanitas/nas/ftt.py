"""Fault-tolerant training (FTT, Ning et al. TODAES 2021 sec. 4.3) and faulty evaluation at the torch level.

FTT loss: ``L = (1 - beta) * CE(f(x), y) + beta * CE(f_faulty(x), y)`` with one faulty forward per batch, the
faults resampled on every forward by ``sanitas.faults.torch_inject`` (MiBB feature faults, adSAF stuck-at
weights, BER bit flips) from a seeded ``torch.Generator``. The same loss trains the supernet during the search
and the final derived nets and the zoo baselines (``train_model(..., loss_fn=FTTLoss(...))``).

``make_fault(name, rate)`` maps the space's fault model name to an injector instance with FTT-NAS' default
rates; ``evaluate_faulty`` measures accuracy under ``n_samples`` independent fault draws (mean, 95% CI).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..errors import SanitasError

# fault model name -> (default rate, FTT beta); rates are FTT-NAS' (MiBB 1e-4 per MAC, adSAF 8% of cells)
FAULT_DEFAULTS = {"mibb": (1e-4, 0.5), "adsaf": (0.08, 0.5), "bitflip": (1e-3, 0.5)}


def make_fault(name: str, rate: float | None = None):
    """Injector instance for fault model ``name`` in {mibb, adsaf, bitflip} at ``rate`` (None: default)."""
    from ..faults.torch_inject import ADSAF, BER, MiBB
    if name not in FAULT_DEFAULTS:
        raise SanitasError(f"unknown fault model '{name}' (choose from {', '.join(FAULT_DEFAULTS)})")
    p = FAULT_DEFAULTS[name][0] if rate is None else float(rate)
    if name == "mibb":
        return MiBB(p=p)
    if name == "adsaf":
        return ADSAF(p=p)
    return BER(p=p, site="weight")


def fault_to_dict(fm) -> dict:
    d = {"model": getattr(fm, "name", type(fm).__name__)}
    for k in ("p", "sa1_frac", "per_bit", "site", "bits"):
        if hasattr(fm, k):
            d[k] = getattr(fm, k)
    return d


class FTTLoss:
    """``(1 - beta) * CE_clean + beta * CE_faulty`` for ``train_model(loss_fn=...)`` and the supernet step.

    ``generator`` draws the faults (its state is part of a resumable search). ``last`` keeps the two CE terms
    of the latest call (floats) so tests and logs can see that the faulty pass really differs."""

    def __init__(self, faults, beta: float = 0.5, generator: torch.Generator | None = None):
        if not 0.0 <= beta <= 1.0:
            raise SanitasError(f"FTT beta={beta} must be in [0, 1]")
        self.faults = list(faults) if isinstance(faults, (list, tuple)) else [faults]
        self.beta = float(beta)
        self.generator = generator
        self.ce = nn.CrossEntropyLoss()
        self.last: dict = {}

    def __call__(self, model, x, y):
        from ..faults.torch_inject import inject
        clean = self.ce(model(x), y)
        if self.beta == 0.0:
            self.last = {"clean": float(clean.detach()), "faulty": None}
            return clean
        with inject(fault_scope(model), *self.faults, generator=self.generator):
            faulty = self.ce(model(x), y)
        self.last = {"clean": float(clean.detach()), "faulty": float(faulty.detach())}
        return (1.0 - self.beta) * clean + self.beta * faulty


def fault_scope(model):
    """What the injectors hook: a supernet's active sub-network (``fault_scope()``), else the model itself."""
    return model.fault_scope() if hasattr(model, "fault_scope") else model


def mean_ci(values, z: float = 1.96) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return float(v.mean()) if v.size else float("nan"), 0.0
    return float(v.mean()), float(z * v.std(ddof=1) / math.sqrt(v.size))


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / max(1, len(x))


@torch.no_grad()
def evaluate_faulty(model, ds, faults, n_samples: int = 10, seed: int = 0, device: str = "cpu",
                    batch_size: int = 512) -> dict:
    """Clean accuracy and accuracy under ``n_samples`` independent fault draws on TensorDataset ``ds``.

    Returns {"clean_acc", "faulty_acc" (mean), "faulty_ci" (95% half-width), "faulty_samples": [...]}."""
    from ..faults.torch_inject import inject
    model.eval()
    x, y = ds.tensors if hasattr(ds, "tensors") else ds
    x, y = x.to(device), y.to(device)
    clean = accuracy(model, x, y, batch_size)
    faults = list(faults) if isinstance(faults, (list, tuple)) else [faults]
    accs = []
    for s in range(n_samples):
        g = torch.Generator(device=device).manual_seed(seed * 100003 + s)
        with inject(model, *faults, generator=g):
            accs.append(accuracy(model, x, y, batch_size))
    m, ci = mean_ci(accs)
    return {"clean_acc": clean, "faulty_acc": m, "faulty_ci": ci, "faulty_samples": accs}


def loader(ds, batch_size: int, seed: int) -> DataLoader:
    """Shuffled DataLoader with its own generator (resumable: ``loader.generator.get_state()``)."""
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, generator=g, drop_last=False)

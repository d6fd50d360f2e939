"""Training of the Brevitas INT8 zoo (quantisation-aware from the first step) and checkpoint I/O.

Checkpoints are plain dicts of tensors and JSON-able values, loadable with ``torch.load(weights_only=True)``:
``{"format": "sanitas-ckpt-1", "spec": QNet.spec, "state_dict": ..., "dataset": ..., "metrics": {...}}``.
"""
from __future__ import annotations

import math
import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .errors import SanitasError
from .models import QNet, build, build_from_spec

CKPT_FORMAT = "sanitas-ckpt-1"


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate(model: nn.Module, ds, batch_size: int = 256, device: str = "cpu") -> float:
    """Top-1 accuracy of ``model`` on a TensorDataset."""
    model.eval()
    correct = 0
    for x, y in DataLoader(ds, batch_size=batch_size):
        correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    return correct / max(1, len(ds))


def train_model(model: QNet, splits, epochs: int = 15, batch_size: int = 64, lr: float = 2e-3,
                weight_decay: float = 0.0, seed: int = 0, device: str = "cpu", progress: bool = True,
                loss_fn=None) -> dict:
    """Quantisation-aware training with Adam + cosine decay; returns metrics (val/test accuracy per epoch).

    ``loss_fn(model, x, y) -> loss`` overrides plain cross-entropy (fault-tolerant training plugs in here).
    """
    seed_all(seed)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(splits.train, batch_size=batch_size, shuffle=True, generator=g)
    steps = max(1, epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    ce = nn.CrossEntropyLoss()
    hist = []
    bar = tqdm(total=steps, desc=f"train {model.spec.get('name', 'net')}", disable=not progress, leave=False)
    for ep in range(epochs):
        model.train()
        tot, n = 0.0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model, x, y) if loss_fn else ce(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(y)
            n += len(y)
            bar.update(1)
        va = evaluate(model, splits.val, device=device)
        hist.append({"epoch": ep + 1, "loss": tot / max(1, n), "val_acc": va})
        bar.set_postfix(loss=f"{tot / max(1, n):.3f}", val=f"{va:.3f}")
    bar.close()
    model.to("cpu").eval()
    return {"history": hist, "val_acc": evaluate(model, splits.val), "test_acc": evaluate(model, splits.test)}


def save_checkpoint(model: QNet, path, dataset: str, metrics: dict | None = None) -> Path:
    """Write a checkpoint atomically (temp file + rename: nothing half-written on a crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str))}
    obj = {"format": CKPT_FORMAT, "spec": dict(model.spec), "dataset": dataset, "metrics": m,
           "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path) -> tuple[QNet, dict]:
    """Load a checkpoint with ``weights_only=True``; returns (model in eval mode, checkpoint dict)."""
    p = Path(path)
    if not p.exists():
        raise SanitasError(f"checkpoint not found: {p}")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise SanitasError(f"{p}: cannot read checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
        raise SanitasError(f"{p}: not a sanitas checkpoint (format {ck.get('format') if isinstance(ck, dict) else '?'})")
    model = build_from_spec(ck["spec"])
    # A net saved before its first forward pass has no learned activation scales yet (Brevitas creates the
    # ``scaling_impl.value`` parameters from runtime statistics); those, and only those, may be missing.
    res = model.load_state_dict(ck["state_dict"], strict=False)
    bad = [k for k in res.missing_keys if not k.endswith("scaling_impl.value")] + list(res.unexpected_keys)
    if bad:
        raise SanitasError(f"{p}: checkpoint does not match its architecture ({len(bad)} keys differ, e.g. {bad[0]})")
    model.eval()
    return model, ck


__all__ = ["train_model", "evaluate", "save_checkpoint", "load_checkpoint", "seed_all", "build"]

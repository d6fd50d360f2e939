"""Training of the Brevitas INT8 zoo (quantisation-aware from the first step) and checkpoint I/O.

Checkpoints are plain dicts of tensors and JSON-able values, loadable with ``torch.load(weights_only=True)``:
``{"format": "sanitas-ckpt-2", "spec": QNet.spec, "state_dict": ..., "dataset": ..., "metrics": {...},
"sha256": ...}``. ``sha256`` is the content hash (``checkpoint_hash``: spec, dataset, metrics and every tensor's
dtype/shape/bytes in name order), written on save and verified on load, so a corrupted or edited file is refused.
Hash-less checkpoints of format 1 are refused with a line saying how to re-save them (``python -m sanitas.train
--rehash FILE``): accepting them would accept exactly the silent corruption the hash exists to catch.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .errors import SanitasError
from .models import QNet, build, build_from_spec

CKPT_FORMAT = "sanitas-ckpt-2"   # 2: with the content hash "sha256"
OLD_FORMAT = "sanitas-ckpt-1"    # no hash: refused (see load_checkpoint)


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


def _first_line(e: BaseException) -> str:
    """``Type: first line of the message`` (safe for empty messages), at most 160 characters."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:160]}" if lines else type(e).__name__


def read_torch_file(path, what: str = "file"):
    """``torch.load(path, weights_only=True)`` on CPU with one-line errors naming the file (no code runs from data)."""
    p = Path(path)
    if not p.is_file():
        raise SanitasError(f"{what} not found: {p}")
    if p.stat().st_size == 0:
        raise SanitasError(f"{p}: empty file (not a {what})")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a truncated or foreign file
        raise SanitasError(f"{p}: cannot read {what} ({_first_line(e)})") from None


def _tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw little-endian bytes of a tensor in C order (any dtype, 0-d included)."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def checkpoint_hash(ck: dict) -> str:
    """sha256 of a checkpoint's content: a canonical JSON of its format, spec, dataset and metrics, then each
    state_dict tensor (name order) as its name, dtype, shape and raw bytes, each field length-prefixed."""
    h = hashlib.sha256()

    def put(b: bytes) -> None:
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    head = {k: ck.get(k) for k in ("format", "spec", "dataset", "metrics")}
    put(json.dumps(head, sort_keys=True, separators=(",", ":"), default=repr).encode())
    for name in sorted(ck["state_dict"]):
        t = ck["state_dict"][name]
        put(name.encode())
        put(f"{t.dtype}|{tuple(t.shape)}".encode())
        put(_tensor_bytes(t))
    return h.hexdigest()


def save_checkpoint(model: QNet, path, dataset: str, metrics: dict | None = None) -> Path:
    """Write a checkpoint with its content hash, atomically (temp file, fsync, rename: nothing half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str))}
    obj = {"format": CKPT_FORMAT, "spec": dict(model.spec), "dataset": dataset, "metrics": m,
           "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    obj["sha256"] = checkpoint_hash(obj)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _check_layout(p: Path, ck) -> None:
    """Refuse anything that is not a well-formed, untampered sanitas checkpoint (one line naming the file)."""
    if not isinstance(ck, dict):
        raise SanitasError(f"{p}: not a sanitas checkpoint (a {type(ck).__name__}, not a dict)")
    fmt = ck.get("format")
    if fmt == OLD_FORMAT:
        raise SanitasError(f"{p}: checkpoint format {OLD_FORMAT} has no content hash; if you trust the file, "
                           f"re-save it with `python -m sanitas.train --rehash {p}` (or re-train it)")
    if fmt != CKPT_FORMAT:
        raise SanitasError(f"{p}: not a sanitas checkpoint (format {fmt!r}, expected {CKPT_FORMAT})")
    for key, typ in (("spec", dict), ("state_dict", dict), ("dataset", str), ("sha256", str)):
        if not isinstance(ck.get(key), typ):
            raise SanitasError(f"{p}: checkpoint has no valid '{key}' ({typ.__name__} expected)")
    if not all(isinstance(v, torch.Tensor) for v in ck["state_dict"].values()):
        raise SanitasError(f"{p}: checkpoint state_dict holds non-tensor values")
    if checkpoint_hash(ck) != ck["sha256"]:
        raise SanitasError(f"{p}: checkpoint content does not match its sha256 (corrupted or edited file)")


def _build(p: Path, ck: dict) -> QNet:
    spec = ck["spec"]
    shape = spec.get("in_shape")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise SanitasError(f"{p}: checkpoint spec has no valid in_shape (got {shape!r})")
    try:
        return build_from_spec(spec)
    except SanitasError as e:
        raise SanitasError(f"{p}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a spec is user data: any failure to build from it is bad input
        raise SanitasError(f"{p}: cannot build the network of its spec ({_first_line(e)})") from None


def _model_of(p: Path, ck) -> QNet:
    """Verify a loaded checkpoint dict and rebuild its model (eval mode); one-line errors naming ``p``."""
    _check_layout(p, ck)
    model = _build(p, ck)
    # A net saved before its first forward pass has no learned activation scales yet (Brevitas creates the
    # ``scaling_impl.value`` parameters from runtime statistics); those, and only those, may be missing.
    own = model.state_dict()
    for k, v in ck["state_dict"].items():
        if k in own and tuple(own[k].shape) != tuple(v.shape) and not k.endswith("scaling_impl.value"):
            raise SanitasError(f"{p}: tensor {k} has shape {tuple(v.shape)}, its architecture needs "
                               f"{tuple(own[k].shape)}")
    try:
        res = model.load_state_dict(ck["state_dict"], strict=False)
    except Exception as e:  # noqa: BLE001
        raise SanitasError(f"{p}: checkpoint does not match its architecture ({_first_line(e)})") from None
    bad = [k for k in res.missing_keys if not k.endswith("scaling_impl.value")] + list(res.unexpected_keys)
    if bad:
        raise SanitasError(f"{p}: checkpoint does not match its architecture ({len(bad)} keys differ, e.g. {bad[0]})")
    model.eval()
    return model


def load_checkpoint(path) -> tuple[QNet, dict]:
    """Load and verify a checkpoint (``weights_only=True``, content hash, architecture match).

    Returns (model in eval mode, checkpoint dict); every failure is a one-line ``SanitasError`` naming the file.
    """
    p = Path(path)
    ck = read_torch_file(p, "checkpoint")
    return _model_of(p, ck), ck


def check_input_shape(path, spec: dict, in_shape, dataset: str) -> None:
    """Refuse a checkpoint whose input shape is not the dataset's (before any work starts)."""
    want = tuple(int(v) for v in in_shape)
    got = tuple(spec.get("in_shape") or ())
    if got != want:
        raise SanitasError(f"{path}: checkpoint expects inputs of shape {got}, dataset {dataset} has {want}")


def rehash_checkpoint(path) -> Path:
    """Re-save an older (hash-less) or hand-edited checkpoint with its content hash, after the structure checks.

    Only for files you trust: the hash then vouches for the content as it is now.
    """
    p = Path(path)
    ck = read_torch_file(p, "checkpoint")
    known = isinstance(ck, dict) and ck.get("format") in (OLD_FORMAT, CKPT_FORMAT)
    if known and isinstance(ck.get("state_dict"), dict):
        ck = dict(ck, format=CKPT_FORMAT)
        if all(isinstance(v, torch.Tensor) for v in ck["state_dict"].values()):
            ck["sha256"] = checkpoint_hash(ck)
    model = _model_of(p, ck)
    return save_checkpoint(model, p, ck["dataset"], ck.get("metrics"))


def _main(argv=None) -> int:
    import argparse
    import sys
    ap = argparse.ArgumentParser(prog="python -m sanitas.train", description="checkpoint maintenance")
    ap.add_argument("--rehash", required=True, metavar="CKPT", help="re-save a trusted checkpoint with its hash")
    a = ap.parse_args(argv)
    try:
        print(rehash_checkpoint(a.rehash))
    except SanitasError as e:
        print(f"sanitas: error: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = [
    "build",
    "check_input_shape",
    "checkpoint_hash",
    "evaluate",
    "load_checkpoint",
    "read_torch_file",
    "rehash_checkpoint",
    "save_checkpoint",
    "seed_all",
    "train_model",
]

if __name__ == "__main__":
    raise SystemExit(_main())

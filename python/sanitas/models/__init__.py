"""Model zoo and builders: every net is a ``QNet`` rebuildable from its JSON-able ``spec``.

The graph, zoo and builders need torch (Brevitas modules) and are imported on first use, so that the op table
(``models.ops``) and the passes (``models.passes``) stay importable by the torch-free golden model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SanitasError

if TYPE_CHECKING:                                           # pragma: no cover
    from .graph import GraphBuilder, Node, QNet
    from .zoo import ZOO

_LAZY = {"QNet": "graph", "Node": "graph", "GraphBuilder": "graph", "ZOO": "zoo"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["QNet", "Node", "GraphBuilder", "ZOO", "build", "build_from_spec"]


def build(name: str, in_shape=(1, 8, 8), num_classes: int = 10, seed: int | None = None, **kwargs) -> QNet:
    """Build zoo model ``name`` for inputs of shape (C, H, W).

    With ``seed`` the initial weights are drawn from ``torch.manual_seed(seed)`` inside a forked RNG state, so
    they do not depend on what ran earlier in the process and the caller's RNG stream is left untouched."""
    from .zoo import ZOO
    if name not in ZOO:
        raise SanitasError(f"unknown model '{name}' (choose from {', '.join(sorted(ZOO))})")
    if seed is None:
        return ZOO[name](tuple(in_shape), num_classes, **kwargs)
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return ZOO[name](tuple(in_shape), num_classes, **kwargs)


def build_from_spec(spec: dict) -> QNet:
    """Rebuild a net from ``QNet.spec`` (as stored in checkpoints)."""
    spec = dict(spec)
    if "genotype" in spec:
        from ..nas.derive import build_from_genotype   # derived nets of the search
        return build_from_genotype(spec)
    name = spec.pop("name")
    in_shape = spec.pop("in_shape")
    num_classes = spec.pop("num_classes")
    return build(name, in_shape, num_classes, **spec)

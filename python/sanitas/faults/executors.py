"""Executors of ``Fault`` records: the golden integer model (exact reference) and the Brevitas model (torch).

* ``run_golden(gm, xq, faults)`` applies the records through ``GoldenModel.run_int(..., hook=...)``: each record
  changes exactly the addressed bits of the addressed element (per image for activation sites) and the model
  runs unchanged otherwise. This is the reference of every faulty result in sanitas.
* ``run_brevitas(qnet, gm, x, faults)`` applies the SAME records to the Brevitas ``QNet`` with forward hooks on
  its quantisers / layers (integer codes read as ``value * 2**-e`` with the golden exponents, modified with the
  same (AND, OR, XOR) masks, written back). It can express every site that lives in a Brevitas module: weight
  and bias (the weight / bias quantisers), acc and output of conv/linear/act/input nodes, and the input of
  module nodes. Outputs of module-less nodes (add, maxpool, concat, gsum, flatten) raise a one-line error.
  Modules shared by several nodes (the residual quantisers) are told apart by their call order in a forward.
  The 32-bit accumulator wrap is applied on layers with a bias fault. Brevitas accumulates in float32, so
  faulty accumulators beyond 2**24 LSBs are rounded there: records that need them (high bias bits) are exact
  only on the golden model.

Several records may be applied at once (a multi-fault scenario); both executors apply them in list order.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from ..errors import SanitasError
from ..models.ops import spec
from .fault import Fault, apply_fault_value, validate

IN_SITE = "input"          # the fault site (and golden hook site) of the value a layer reads


def _as_list(faults) -> list[Fault]:
    return [faults] if isinstance(faults, Fault) else list(faults)


# ------------------------------------------------------------------------------------------------ golden
def golden_hook(gm, faults):
    """A ``run_int`` hook applying ``faults`` (validated against ``gm``); arrays are copied, never modified."""
    by_key = defaultdict(list)
    for f in _as_list(faults):
        by_key[(f.layer, f.site)].append((f, validate(f, gm)))

    def hook(node, site, arr):
        todo = by_key.get((node.name, site))
        if not todo:
            return arr
        out = np.array(arr, dtype=np.int64, copy=True)
        for f, info in todo:
            idx = ((slice(None),) + f.index) if info.batched else f.index
            out[idx] = apply_fault_value(out[idx], f, info)
        return out

    return hook


def run_golden(gm, xq, faults=(), backend: str = "int", return_all: bool = False):
    """Integer logits (N, classes) of ``gm`` on int8 inputs ``xq`` (N, C, H, W) with ``faults`` applied."""
    faults = _as_list(faults)
    return gm.run_int(xq, hook=golden_hook(gm, faults) if faults else None, backend=backend, return_all=return_all)


# ------------------------------------------------------------------------------------------------ brevitas
def _codes(v: torch.Tensor, e: int) -> torch.Tensor:
    """Float values at exponent e -> int64 codes (exact for power-of-two scales)."""
    return torch.round(v.detach().double() * 2.0 ** -e).long()


def _wrap32(c: torch.Tensor) -> torch.Tensor:
    return ((c + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _patch(v: torch.Tensor, f: Fault, info, e: int) -> torch.Tensor:
    """Return ``v`` (float, (N, ...) when batched) with element ``f.index`` replaced by its faulty value."""
    idx = ((slice(None),) + f.index) if info.batched else f.index
    new = v.detach().clone()
    c = _codes(v[idx], e)
    new[idx] = (apply_fault_value(c, f, info).double() * 2.0 ** e).to(v.dtype)
    if v.requires_grad:   # keep the graph: clean path differentiable, faulty element a constant offset
        return v + (new - v.detach())
    return new


def run_brevitas(qnet, gm, x, faults=(), return_int: bool = True):
    """Logits of the Brevitas ``qnet`` on float images ``x`` (N, C, H, W) with ``faults`` applied via hooks.

    ``gm`` = ``export_golden(qnet)`` supplies exponents, widths and validation. Returns int64 logit codes
    (N, classes) as numpy when ``return_int`` (comparable with ``run_golden``), else the float logits."""
    from brevitas.quant_tensor import QuantTensor
    faults = _as_list(faults)
    infos = [validate(f, gm) for f in faults]
    key_nodes = defaultdict(list)               # module key -> node names calling it, in forward order
    for n in qnet.nodes:
        if spec(n.op).has_module:
            key_nodes[n.module_key].append(n.name)
    calls = defaultdict(int)
    handles = []

    def node_of(mod_key):
        names = key_nodes[mod_key]
        return names[min(calls[mod_key], len(names) - 1)]

    def val(t):
        return t.value if isinstance(t, QuantTensor) else t

    def rewrap(t, v):
        return t.set(value=v) if isinstance(t, QuantTensor) else v

    by_layer = defaultdict(list)
    for f, info in zip(faults, infos):
        node = gm.by_name[f.layer]
        if not spec(node.op).has_module:
            raise SanitasError(f"site '{f.site}' of {node.op} node '{f.layer}' cannot be expressed on the Brevitas "
                               f"model (no module); use the golden executor")
        by_layer[f.layer].append((f, info))

    qnodes = {n.name: n for n in qnet.nodes}
    seen_keys = set()
    for layer, items in by_layer.items():
        qn = qnodes[layer]
        mod = qnet.module_of(qn)
        gnode = gm.by_name[layer]
        key = qn.module_key
        for f, info in items:
            if f.site == "weight":
                handles.append(mod.weight_quant.register_forward_hook(
                    lambda m, a, out, f=f, info=info, e=gnode.e_w: rewrap(out, _patch(val(out), f, info, e))))
            elif f.site == "bias":
                handles.append(mod.bias_quant.register_forward_hook(
                    lambda m, a, out, f=f, info=info, e=gnode.e_out: rewrap(out, _patch(val(out), f, info, e))))
        wrap = spec(gnode.op).has_weights and any(f.site == "bias" for f, _ in items)
        if wrap or any(f.site in ("acc", "output") for f, _ in items):
            def out_hook(m, a, out, layer=layer, items=items, key=key, e=gnode.e_out, wrap=wrap):
                if node_of(key) != layer:
                    return out
                v = val(out)
                if wrap:      # the int32 accumulator wraps (a faulty bias can push it past 2**31)
                    w = _wrap32(_codes(v, e)).double() * 2.0 ** e
                    v = v + (w.to(v.dtype) - v.detach())
                for site in ("acc", "output"):        # the golden hook order: acc, then output
                    for f, info in items:
                        if f.site == site:
                            v = _patch(v, f, info, e)
                return rewrap(out, v)
            handles.append(mod.register_forward_hook(out_hook))
        reads = [(f, info) for f, info in items if f.site == IN_SITE]    # faults of the value the layer reads
        if reads:
            e_in = gm.by_name[gnode.inputs[0]].e_out

            def in_hook(m, args, layer=layer, reads=reads, key=key, e=e_in):
                if node_of(key) != layer:
                    return None
                t = args[0]
                v = val(t)
                for f, info in reads:
                    v = _patch(v, f, info, e)
                return (rewrap(t, v),) + tuple(args[1:])
            handles.append(mod.register_forward_pre_hook(in_hook))
        seen_keys.add(key)

    # call counters of shared modules: incremented after each call, reset before every forward of the net
    for key in seen_keys:
        if len(key_nodes[key]) > 1:
            mod = qnet.layers[key.replace(".", "__")]

            def count(m, a, out, key=key):
                calls[key] += 1
            handles.append(mod.register_forward_hook(count))
    handles.append(qnet.register_forward_pre_hook(lambda m, a: calls.clear()))
    try:
        x = torch.as_tensor(x, dtype=torch.float32)
        with torch.no_grad():
            out = qnet(x)
    finally:
        for h in handles:
            h.remove()
    if not return_int:
        return out
    return _codes(out, gm.out_exp).numpy()


__all__ = ["golden_hook", "run_golden", "run_brevitas"]

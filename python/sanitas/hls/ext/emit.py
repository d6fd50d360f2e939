"""The accelerator's C++ from a converted hls4ml ModelGraph: ``net_of`` + ``write_firmware_ext``.

``to_sanitas_hls4ml`` leaves in the ModelGraph (``HLSConfig["Model"]``) the QNet's node list as the network's
skeleton (``SanitasNet``: the net's spec, and per node its name, op, inputs and attributes; ``net_skeleton``) and
the ``ArrayConfig`` it lowered for (``SanitasArray``); the lowering passes leave one ``SanitasRecord`` per sanitas
layer. ``net_of(model_graph)`` rebuilds the network the firmware generator takes from them: it walks hls4ml's
layers in graph order, follows every tensor to the skeleton node it holds, and matches each sanitas layer to the
skeleton node of its op reading the same nodes (ties broken by the lowering's attributes); the numbers -- output
grids (exponent, width, sign, symmetric range), int8 weights, int32 biases, shapes -- come from the records and
the hls4ml types, the names and the wiring from the skeleton. What hls4ml has no sanitas layer for is rebuilt
from its layers: the input (``Input``: its precision), flattens (``Reshape``: its type, and the (H, W, C) order of
hls4ml's flatten, undone on the following linear layer's weight columns), layout ``Transpose``s (no node), the
partial concats of a QNet concat of n > 2 inputs (``hls.layout.binary_concats``: the last of the chain is the
node), the QNet's identity requantisations (a quantiser onto its input's own grid, which hls4ml's front end
removes: a skeleton ``act`` no layer maps to, on its input's grid) and the nodes the exporter merged with their
``twin`` (``hls.convert.merged_twins``: the twin's numbers). Anything else is refused with one line.

``write_firmware_ext(model_graph, out_dir, array, spec)`` = ``firmware.write_firmware(net_of(model_graph), ...)``:
byte-identical with the golden-driven emission of the same QNet (tests/hls/test_ext_emit.py).
"""
from __future__ import annotations

import numpy as np

from ...config import ArrayConfig
from ...errors import SanitasError
from ...golden.model import GNode, GoldenModel
from ..layout import PART
from .layers import GEMM_OPS
from .templates import array_config

#: record attributes the kernels read, which must equal the skeleton node's
_CHECKED = {"conv": ("stride", "padding", "groups", "dilation", "k"), "maxpool": ("k", "stride", "padding"),
            "act": ("relu",)}


def net_skeleton(model, twins: dict | None = None) -> dict:
    """The QNet's node list as JSON-able data (what ``to_sanitas_hls4ml`` stores as ``Model.SanitasNet``);
    ``twins`` (``hls.convert.merged_twins`` of its golden model) marks the nodes the exporter may merge."""
    twins = twins or {}
    return {"spec": dict(model.spec),
            "nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": dict(n.attrs)}
                      | ({"twin": twins[n.name]} if n.name in twins else {}) for n in model.nodes]}


def _model_cfg(model_graph) -> dict:
    return model_graph.config.config.get("HLSConfig", {}).get("Model", {})


def _grid(precision, what: str) -> tuple[int, int, bool, bool]:
    """(e, bits, signed, narrow) of an hls4ml fixed/integer type."""
    from .passes import _fix
    bits, e, signed, _, sat = _fix(precision, what)
    return e, bits, signed, sat == "SAT_SYM"


class _Matcher:
    """hls4ml tensors -> skeleton nodes (see the module doc)."""

    def __init__(self, skel: list[dict]):
        self.skel = skel
        self.by_name = {d["name"]: d for d in skel}
        self.node_of: dict[str, str] = {}      # hls4ml tensor -> skeleton node name
        self.parts: dict[str, list[str]] = {}  # partial concat tensor -> the skeleton nodes it concatenates
        self.matched: dict[str, object] = {}  # skeleton node name -> record / ("input"|"flatten", grid, hwc)

    def resolve(self, name: str) -> str:
        """The node whose tensor hls4ml holds for skeleton node ``name``: an act no layer has taken by the time
        its consumer comes (hls4ml's order is topological) is an identity hls4ml removed: its input's tensor."""
        d = self.by_name[name]
        if name not in self.matched and d.get("twin") in self.matched:   # merged by the exporter into its twin
            return self.resolve(d["twin"])
        if d["op"] == "act" and name not in self.matched:
            return self.resolve(d["inputs"][0])
        return name

    def sources(self, layer) -> list[str]:
        """The skeleton nodes ``layer`` reads, in order (a partial concat stands for the nodes it holds)."""
        return [s for t in layer.inputs for s in (self.parts[t] if t in self.parts else [self.node_of[t]])]

    def take(self, layer, op: str, rec=None) -> str:
        srcs = sorted(self.sources(layer))
        cands = [d for d in self.skel if d["op"] == op and d["name"] not in self.matched
                 and sorted(self.resolve(i) for i in d["inputs"]) == srcs]
        if rec is not None and op in _CHECKED:
            fit = [d for d in cands if all(d["attrs"].get(k, 1 if k in ("groups", "dilation") else None)
                                           == rec.attrs.get(k) for k in _CHECKED[op])]
            cands = fit or cands
        if not cands:
            raise SanitasError(f"{layer.name} ({layer.class_name}): no {op} node of the QNet reads "
                               f"{', '.join(srcs)}")
        return cands[0]["name"]


def net_of(model_graph) -> GoldenModel:
    """The network of a ModelGraph converted by ``to_sanitas_hls4ml`` as the node list ``firmware`` emits (see the
    module doc); raises ``SanitasError`` for a graph without the skeleton or with a layer it cannot place."""
    net = _model_cfg(model_graph).get("SanitasNet")
    if net is None:
        raise SanitasError("the hls4ml model has no SanitasNet skeleton (convert it with to_sanitas_hls4ml)")
    skel = net["nodes"]
    mt = _Matcher(skel)
    for layer in model_graph.get_layers():
        rec = layer.get_attr("record")
        if rec is not None and rec.op == "concat" and PART in layer.outputs[0]:
            mt.parts[layer.outputs[0]] = mt.sources(layer)       # a part of a QNet concat of > 2 inputs
            continue
        if rec is not None:
            name = mt.take(layer, rec.op, rec)
            if rec.op in _CHECKED:
                bad = [k for k in _CHECKED[rec.op] if mt.by_name[name]["attrs"].get(k, rec.attrs.get(k))
                       != rec.attrs.get(k)]
                if bad:
                    raise SanitasError(f"{layer.name}: {', '.join(bad)} differ from QNet node {name}")
            mt.matched[name] = rec
        elif layer.class_name == "Input":
            name = next(d["name"] for d in skel if d["op"] == "input")
            mt.matched[name] = ("input", _grid(layer.get_output_variable().type.precision, layer.name), None)
        elif layer.class_name == "Transpose":
            mt.node_of[layer.outputs[0]] = mt.node_of[layer.inputs[0]]      # layout only: the same node
            continue
        elif layer.class_name == "Reshape":
            name = mt.take(layer, "flatten")
            x = layer.get_input_variable()
            mt.matched[name] = ("flatten", _grid(layer.get_output_variable().type.precision, layer.name),
                                tuple(int(v) for v in x.shape))
        else:
            raise SanitasError(f"{layer.name}: hls4ml layer {layer.class_name} has no sanitas node")
        mt.node_of[layer.outputs[0]] = name
    return GoldenModel(_nodes(skel, mt), net["spec"]["in_shape"], int(net["spec"]["num_classes"]), net["spec"])


def _nodes(skel: list[dict], mt: _Matcher) -> list[GNode]:
    nodes: dict[str, GNode] = {}
    for d in skel:
        name, op, got = d["name"], d["op"], mt.matched.get(d["name"])
        attrs = dict(d["attrs"])
        if got is None and d.get("twin") in mt.matched:
            got = mt.matched[d["twin"]]                     # merged by the exporter: its twin's numbers
        if got is None:
            if op != "act":
                raise SanitasError(f"QNet node {name} ({op}): no hls4ml layer computes it")
            src = nodes[d["inputs"][0]]                     # an identity requantisation
            g = GNode(name, op, list(d["inputs"]), src.e_out, src.bits, src.signed, attrs, narrow=src.narrow)
        elif isinstance(got, tuple):                        # input / flatten
            (e, bits, signed, narrow), hwc = got[1], got[2]
            g = GNode(name, op, list(d["inputs"]), e, bits, signed, attrs, narrow=narrow)
            g.hwc = hwc
        else:
            g = GNode(name, op, list(d["inputs"]), int(got.e_out), int(got.bits), bool(got.signed), attrs,
                      narrow=bool(got.narrow))
            if op in GEMM_OPS:
                w = np.asarray(got.weight, dtype=np.int8)
                src = nodes[d["inputs"][0]]
                hwc = getattr(src, "hwc", None)
                if op == "linear" and hwc is not None and len(hwc) == 3:   # hls4ml flattened (H, W, C)
                    h, wd, c = hwc
                    w = w.reshape(w.shape[0], h, wd, c).transpose(0, 3, 1, 2).reshape(w.shape[0], -1)
                g.weight = np.ascontiguousarray(w)
                g.bias = np.asarray(got.bias, dtype=np.int32)
                g.e_w = g.e_out - src.e_out
        nodes[name] = g
    out = list(nodes.values())
    for g in out:
        g.__dict__.pop("hwc", None)
    return out


def write_firmware_ext(model_graph, out_dir, array: ArrayConfig | None = None, spec="none"):
    """``firmware.write_firmware`` of ``net_of(model_graph)`` (array default: the ModelGraph's ``SanitasArray``);
    returns the path of ``sanitas_net.cpp``."""
    from ..firmware import write_firmware
    return write_firmware(net_of(model_graph), out_dir, array or array_config(model_graph), spec)


__all__ = ["net_of", "net_skeleton", "write_firmware_ext"]

"""sanitas's channels-last conversion of a QONNX graph (what hls4ml's QONNX reader expects), in one linear pass.

qonnx's ``ConvertToChannelsLastAndClean`` inserts a Transpose pair around every layout-dependent node and then
moves / cancels them one at a time, re-scanning the graph (and re-sorting it, folding constants) after every
move: quadratic in the node count, and it moves no Transpose through a ``Concat``, so a searched cell network
(concats of its nodes) kept ~15 Transposes and took minutes (100 s for a 3-cell, 209-node searched net).

`ToChannelsLast` walks the (topologically sorted) graph once and decides per tensor whether it is held
channels-last (N, H, W, C):

* the 4-d graph input becomes channels-last (qonnx's ``MakeInputChannelsLast``);
* ``Conv`` / ``MaxPool`` reading a channels-last tensor move into the ``qonnx.custom_op.channels_last`` domain
  (hls4ml's QONNX handlers require it); a Conv's weights are transposed to (O, kh, kw, C/g) in their Quant
  initializers, as qonnx's ``FoldTransposeIntoQuantInit`` leaves them;
* element-wise nodes (``Quant``, ``Relu``, ``Add`` ...) whose tensor inputs are all channels-last (the others
  scalars) keep their output channels-last; ``Concat`` along the channel axis of channels-last tensors becomes
  a concat along axis 3;
* any other node reading a channels-last tensor (``Flatten`` / ``Reshape`` in front of the classifier, the
  global ``ReduceSum``) gets it back channels-first through one Transpose per tensor, and a flatten's Transpose
  is then folded into the following MatMul / Gemm weights by qonnx's ``AbsorbChanFirstIntoMatMul``;
* a 4-d graph output is transposed back to channels-first under its own name.

The result is what ``ConvertToChannelsLastAndClean(make_input_channels_last=True)`` produces for the zoo nets
(the same node types, weights and shapes), with no Transpose left around concats.

hls4ml's ONNX front end concatenates two tensors at a time, so `binary_concats` then splits a ``Concat`` of n > 2
inputs into a chain of n - 1 two-input ``Concat`` nodes; the partial results are named ``<out>`` + `PART` + k
(k = 1 .. n - 2), which is how ``hls.ext`` (its lowering pass and ``emit.net_of``) knows them for parts of one
QNet concat.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from ..errors import SanitasError

CL_DOMAIN = "qonnx.custom_op.channels_last"
TO_LAST = (0, 2, 3, 1)     # NCHW -> NHWC
TO_FIRST = (0, 3, 1, 2)    # NHWC -> NCHW
#: nodes with a channels-last form of their own (hls4ml reads them only in the channels-last domain)
LAYOUT_OPS = ("Conv", "MaxPool")
#: element-wise nodes: their output has the layout of their tensor inputs
ELEMENTWISE = ("Quant", "Relu", "Add", "Sub", "Mul", "Div", "Identity")
#: marker of the partial results of a split n-input Concat (`binary_concats`)
PART = "_sanitas_part"


def _shape_of(model, name):
    s = model.get_tensor_shape(name)
    return None if s is None else [int(d) for d in s]


def _is_scalar(model, name) -> bool:
    init = model.get_initializer(name)
    if init is not None:
        return int(np.asarray(init).size) == 1
    s = _shape_of(model, name)
    return s is not None and int(np.prod(s)) == 1


def _attr(node, name, default=None):
    a = next((a for a in node.attribute if a.name == name), None)
    return default if a is None else helper.get_attribute_value(a)


def _set_attr(node, name, value) -> None:
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))


def _permuted(shape):
    return [shape[i] for i in TO_LAST]


def _transpose_weight(model, name, producers, consumers) -> None:
    """Transpose a Conv weight (O, C/g, kh, kw) -> (O, kh, kw, C/g): its initializer or its Quant's."""
    init = model.get_initializer(name)
    if init is not None:
        if len(consumers.get(name, ())) != 1:
            raise SanitasError(f"conv weight {name} is shared (unshare the quantised constants first)")
        model.set_initializer(name, np.ascontiguousarray(np.asarray(init).transpose(TO_LAST)))
        return
    q = producers.get(name)
    if q is None or q.op_type != "Quant" or any(model.get_initializer(i) is None for i in q.input):
        raise SanitasError(f"conv weight {name} is not a quantised constant")
    if len(consumers.get(name, ())) != 1:
        raise SanitasError(f"conv weight {name} is shared (unshare the quantised constants first)")
    for i in q.input:
        t = np.asarray(model.get_initializer(i))
        if t.ndim == 4:
            model.set_initializer(i, np.ascontiguousarray(t.transpose(TO_LAST)))
    model.set_tensor_shape(name, _permuted(_shape_of(model, name)))


def _make_transformation():
    from qonnx.transformation.base import Transformation

    class ToChannelsLast(Transformation):
        """One linear pass to channels-last (see the module doc); never re-applied (returns unchanged)."""

        def apply(self, model):
            g = model.graph
            producers = {o: n for n in g.node for o in n.output}
            consumers: dict[str, list] = {}
            for n in g.node:
                for i in n.input:
                    consumers.setdefault(i, []).append(n)
            first_shape: dict[str, list] = {}          # channels-last tensor -> its NCHW shape
            back: dict[str, str] = {}                   # channels-last tensor -> its channels-first copy
            nodes = []

            def mark(name):
                s = _shape_of(model, name)
                if s is None or len(s) != 4:
                    raise SanitasError(f"tensor {name}: channels-last needs a known 4-d shape, got {s}")
                first_shape[name] = s

            def to_first(name) -> str:
                if name not in back:
                    out = f"{name}_nchw"
                    nodes.append(helper.make_node("Transpose", [name], [out], name=f"Transpose_{out}",
                                                  perm=list(TO_FIRST)))
                    g.value_info.append(helper.make_tensor_value_info(out, TensorProto.FLOAT,
                                                                      first_shape[name]))
                    back[name] = out
                return back[name]

            gin = g.input[0].name
            if len(_shape_of(model, gin) or ()) == 4:
                mark(gin)
            for n in g.node:
                last = [i in first_shape for i in n.input]
                op = n.op_type
                if not any(last):
                    nodes.append(n)
                    continue
                tensors = [i for i in n.input if i and not _is_scalar(model, i)]
                if op in LAYOUT_OPS and n.domain == "" and last[0] and not any(last[1:]):
                    n.domain = CL_DOMAIN
                    if op == "Conv":
                        _transpose_weight(model, n.input[1], producers, consumers)
                    mark(n.output[0])
                elif op in ELEMENTWISE and all(i in first_shape for i in tensors):
                    mark(n.output[0])
                elif (op == "Concat" and all(last) and _attr(n, "axis") in (1, -3)):
                    _set_attr(n, "axis", 3)
                    mark(n.output[0])
                else:                                   # layout-dependent: give it channels-first inputs
                    for k, i in enumerate(n.input):
                        if i in first_shape:
                            n.input[k] = to_first(i)
                nodes.append(n)
            for out in g.output:
                if out.name in first_shape:             # keep the graph's channels-first output under its name
                    src = producers[out.name]
                    inner = f"{out.name}_nhwc"
                    src.output[list(src.output).index(out.name)] = inner
                    for c in consumers.get(out.name, ()):
                        c.input[list(c.input).index(out.name)] = inner
                    first_shape[inner] = first_shape.pop(out.name)
                    nodes.append(helper.make_node("Transpose", [inner], [out.name], name=f"Transpose_{inner}",
                                                  perm=list(TO_FIRST)))
            for name, s in first_shape.items():
                model.set_tensor_shape(name, _permuted(s))
            del g.node[:]
            g.node.extend(nodes)
            if first_shape and CL_DOMAIN not in model.get_opset_imports():
                imports = model.get_opset_imports()
                model.model.opset_import.append(helper.make_opsetid(CL_DOMAIN, imports.get("", 11)))
            return model, False

    return ToChannelsLast


def binary_concats(model):
    """Split every ``Concat`` of n > 2 inputs into n - 1 two-input ``Concat`` nodes (same axis), left to right:
    ``cat(x0, x1, x2)`` -> ``p1 = cat(x0, x1)``, ``out = cat(p1, x2)`` (see the module doc), shapes inferred.
    Run it after the last qonnx cleanup (whose GiveReadableTensorNames would rename the parts). Returns the new
    ModelWrapper."""
    from qonnx.transformation.infer_shapes import InferShapes
    g = model.graph
    nodes = []
    for n in g.node:
        if n.op_type != "Concat" or len(n.input) <= 2:
            nodes.append(n)
            continue
        axis, out = _attr(n, "axis"), n.output[0]
        acc = n.input[0]
        for k, x in enumerate(n.input[1:], start=1):
            last = k == len(n.input) - 1
            y = out if last else f"{out}{PART}{k}"
            nodes.append(helper.make_node("Concat", [acc, x], [y], name=n.name if last else f"{n.name}{PART}{k}",
                                          axis=axis))
            acc = y
    del g.node[:]
    g.node.extend(nodes)
    return model.transform(InferShapes())


def to_channels_last(model):
    """``model`` (a qonnx ModelWrapper, shapes inferred, sorted) converted to channels-last (see the module doc),
    with flatten Transposes absorbed into the following MatMul / Gemm weights; returns the new ModelWrapper."""
    from qonnx.transformation.channels_last import AbsorbChanFirstIntoMatMul
    from qonnx.transformation.infer_shapes import InferShapes
    if not model.check_all_tensor_shapes_specified():
        raise SanitasError("channels-last conversion needs every tensor shape (run qonnx's InferShapes)")
    model = model.transform(_make_transformation()(), cleanup=False)
    model = model.transform(AbsorbChanFirstIntoMatMul(), cleanup=False)
    return model.transform(InferShapes())


__all__ = ["to_channels_last", "binary_concats", "CL_DOMAIN", "PART"]

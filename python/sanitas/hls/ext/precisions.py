"""Tensor types of a prepared QONNX graph from its Quant nodes, for every op of the zoo nets' QONNX graphs.

The same derivation as ``sanitas.hls.convert.derive_precisions`` (whose records and ``_fill_config`` it feeds),
extended to the residual ``Add`` of two quantised tensors (exact: one bit wider than the wider input, on their
common grid, which must be one), ``ReduceSum`` (the global sum: an int32 on the input's grid) and Quant nodes that
read a Conv / MatMul accumulator or another Quant's output directly (a linear requantisation). Raises
``SanitasError`` naming the node for any other op.
"""
from __future__ import annotations

import dataclasses

from ...errors import SanitasError
from ..convert import ACC_BITS, FixType, MacPrecision, Precisions, _quant_type


def derive(m) -> Precisions:
    """`Precisions` of a prepared QONNX ModelWrapper (see the module doc)."""
    quant_of = {n.name: _quant_type(m, n) for n in m.graph.node if n.op_type == "Quant"}
    gin = m.graph.input[0].name
    first = m.find_consumers(gin)
    if len(first) != 1 or first[0].op_type != "Quant":
        raise SanitasError("the QONNX input must feed exactly one Quant node (the input quantiser)")
    consts: dict[str, FixType] = {}
    tensors: dict[str, FixType] = {gin: quant_of[first[0].name]}
    layers: dict[str, MacPrecision] = {}
    acts: list[FixType] = []
    for n in m.graph.node:
        op = n.op_type
        if op == "Quant":
            t = quant_of[n.name]
            if m.get_initializer(n.input[0]) is not None:
                consts[n.output[0]] = t
            else:
                tensors[n.output[0]] = t
                acts.append(t)
            continue
        if n.input[0] not in tensors:
            raise SanitasError(f"{n.name} ({op}): input type unknown (unsupported graph pattern)")
        x = tensors[n.input[0]]
        if op in ("Conv", "MatMul"):
            w = consts.get(n.input[1])
            if w is None:
                raise SanitasError(f"{n.name}: weights are not a quantised constant")
            e_acc = x.e + w.e
            bias = consts[n.input[2]] if op == "Conv" and len(n.input) > 2 and n.input[2] else None
            layers[n.name] = MacPrecision(op, x.e, e_acc, FixType(ACC_BITS, e_acc, True, "TRN", "WRAP"), w, bias)
            tensors[n.output[0]] = layers[n.name].accum
        elif op == "Add":
            bias = next((consts[i] for i in n.input if i in consts), None)
            if bias is not None:
                prod = m.find_producer(n.input[0])
                if prod is None or prod.op_type != "MatMul":
                    raise SanitasError(f"{n.name}: a constant add not behind a MatMul")
                layers[prod.name] = dataclasses.replace(layers[prod.name], bias=bias)
                tensors[n.output[0]] = x
                continue
            if n.input[1] not in tensors:
                raise SanitasError(f"{n.name} (Add): second input type unknown")
            y = tensors[n.input[1]]
            if x.e != y.e:
                raise SanitasError(f"{n.name}: adds grids 2**{x.e} and 2**{y.e} (golden: one grid)")
            bits = max(x.width, y.width) + 1
            tensors[n.output[0]] = FixType(bits, x.e, True, "TRN", "WRAP")
        elif op == "Relu":
            cons = m.find_consumers(n.output[0])
            # hls4ml merges a following Quant into the ReLU: its result is the Quant's grid (requantisation)
            tensors[n.output[0]] = (quant_of[cons[0].name] if len(cons) == 1 and cons[0].op_type == "Quant"
                                    else x)
        elif op == "ReduceSum":
            tensors[n.output[0]] = FixType(ACC_BITS, x.e, True, "TRN", "WRAP")
        elif op in ("MaxPool", "Flatten", "Reshape", "Transpose"):
            tensors[n.output[0]] = x
        else:
            raise SanitasError(f"{n.name}: ONNX op {op} is not supported by the sanitas hls4ml flow")
    for name, rec in layers.items():
        if rec.bias is not None and rec.bias.e != rec.e_acc:
            raise SanitasError(f"{name}: bias exponent {rec.bias.e} != accumulator exponent {rec.e_acc}")
    return Precisions(tensors[gin], tensors, layers, tuple(acts))


__all__ = ["derive"]

"""ONNX ops hls4ml 1.3's QONNX front end has no handler for, added through its extension API
(``hls4ml.converters.register_onnx_layer_handler`` + ``register_layer``), so the graph parses at all.

* ``ReduceSum`` over the spatial axes (the QNet's global sum, exported by Brevitas as Transpose to NCHW +
  ReduceSum(axes=(2, 3), keepdims=0)): parsed into a `SanitasReduceSum` layer (exact sum: an int32 on the input's
  grid, ``ap_fixed<32, 32 + e_in>``), which the lowering pass ``sanitas_lower_gsum`` turns into a
  ``SanitasGlobalSum``. Its axes are read here; the axes Constant layer hls4ml makes of the initializer is
  removed by the pass ``sanitas_reduce_sum_axes``, registered into hls4ml's ``parse_qonnx`` flow (as hls4ml's
  own ``resize_remove_constants`` does for Resize).
* dilated ``Conv``: hls4ml's Conv handler sizes the output with an effective kernel of k * d instead of
  d * (k - 1) + 1 (one row and column short per dilation step above 1), and every layer after it inherits the
  wrong shape. `mark_dilated_convs` gives such nodes the op type ``SanitasDilatedConv`` just before hls4ml parses
  the graph; its handler is hls4ml's own Conv handler with the output size corrected
  (``models.ops.conv_out``, the golden's), so the layer is hls4ml's Conv with its dilation attributes, lowered to
  ``SanitasGemm`` like any other.
"""
from __future__ import annotations

from ...errors import SanitasError


def parse_reduce_sum(node, input_names, input_shapes, graph):
    """hls4ml ONNX handler of ReduceSum (spatial axes of a 4-d tensor only)."""
    from onnx import helper, numpy_helper
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if len(node.input) > 1 and node.input[1]:
        init = next((t for t in graph.initializer if t.name == node.input[1]), None)
        if init is None:
            raise SanitasError(f"{node.name}: ReduceSum axes must be a constant")
        axes = [int(a) for a in numpy_helper.to_array(init).reshape(-1)]
    else:
        axes = [int(a) for a in attrs.get("axes", [])]
    shape = input_shapes[0]
    axes = sorted(a % len(shape) for a in axes)
    if len(shape) != 4 or axes != [2, 3] or int(attrs.get("keepdims", 1)) != 0:
        raise SanitasError(f"{node.name}: ReduceSum over axes {axes} of a {len(shape)}-d tensor (keepdims "
                           f"{attrs.get('keepdims', 1)}): only the global sum over H, W (NCHW, keepdims 0)")
    return {"name": node.name, "class_name": "SanitasReduceSum", "inputs": list(input_names),
            "outputs": list(node.output), "n_chan": int(shape[1]), "in_height": int(shape[2]),
            "in_width": int(shape[3])}


DILATED = "SanitasDilatedConv"


def _dilations(node) -> list[int]:
    from onnx import helper
    a = next((a for a in node.attribute if a.name == "dilations"), None)
    return [] if a is None else [int(v) for v in helper.get_attribute_value(a)]


def mark_dilated_convs(model) -> int:
    """Give every dilated ``Conv`` of a prepared QONNX ModelWrapper the op type `DILATED` (parsed by
    `parse_dilated_conv`); returns how many."""
    n = 0
    for node in model.graph.node:
        if node.op_type == "Conv" and any(d > 1 for d in _dilations(node)):
            node.op_type = DILATED
            n += 1
    return n


def parse_dilated_conv(node, input_names, input_shapes, graph):
    """hls4ml's Conv handler, with the output height / width of a dilated 2-d conv corrected."""
    from hls4ml.converters.onnx.convolution import parse_conv_layer

    from ...models.ops import conv_out
    layer = parse_conv_layer(node, input_names, input_shapes, graph)
    if layer.get("n_dim") != 2:
        raise SanitasError(f"{node.name}: dilated {layer.get('n_dim')}-d conv (sanitas: 2-d only)")
    for side, pad_a, pad_b, axis in (("height", "pad_top", "pad_bottom", -3), ("width", "pad_left", "pad_right", -2)):
        k, s, d = (int(layer[f"{key}_{side}"]) for key in ("filt", "stride", "dilation"))
        if layer[pad_a] != layer[pad_b]:
            raise SanitasError(f"{node.name}: asymmetric padding {layer[pad_a]}/{layer[pad_b]} (golden: one value)")
        layer[f"out_{side}"] = conv_out(int(input_shapes[0][axis]), k, s, int(layer[pad_a]), d)
    return layer


def _make_reduce_sum_class():
    from hls4ml.model.layers import Layer

    class SanitasReduceSum(Layer):
        """Front-end layer: sum over H, W of an NCHW tensor (output (C,)); its exact int32 type is set by the
        lowering pass once the input's Quant-derived type is known."""

        def initialize(self):
            self.add_output_variable([int(self.get_attr("n_chan"))])

    return SanitasReduceSum


def _make_axes_pass():
    from hls4ml.model.layers import Constant
    from hls4ml.model.optimizer import OptimizerPass

    class SanitasReduceSumAxes(OptimizerPass):
        """Drop the axes Constant input of a SanitasReduceSum (the axes are attributes)."""

        def match(self, node):
            return node.class_name == "SanitasReduceSum" and len(node.inputs) > 1

        def transform(self, model, node):
            axes = node.get_input_node(node.inputs[1])
            if not isinstance(axes, Constant):
                raise SanitasError(f"{node.name}: ReduceSum axes must be a constant")
            node.inputs = node.inputs[:1]
            model.remove_node(axes)
            return True

    return SanitasReduceSumAxes


HANDLERS = {"ReduceSum": parse_reduce_sum, DILATED: parse_dilated_conv}
#: generic (backend-independent) passes -> the hls4ml flow they join
GENERIC_PASSES = {"sanitas_reduce_sum_axes": ("parse_qonnx", _make_axes_pass)}


def frontend_classes() -> dict:
    return {"SanitasReduceSum": _make_reduce_sum_class()}


__all__ = ["HANDLERS", "DILATED", "frontend_classes", "mark_dilated_convs", "parse_dilated_conv", "parse_reduce_sum"]

"""The lowering passes of the hls4ml extension: hls4ml layers -> sanitas layers (`sanitas.hls.ext.layers`).

They run in the flow ``vitis:sanitas_lower`` (registered by `sanitas.hls.ext.register`), after hls4ml's generic
``optimize`` flow (the QONNX front end has fused the Quant nodes into constants and activations, so every tensor
type is the one its Quant node gave it) and before the backend's ``init_layers`` / ``optimize`` / ``specific_types``
/ ``apply_templates`` flows. Each pass replaces one hls4ml layer by a sanitas layer that keeps its input and output
tensor names, and derives the sanitas layer's record and output precision from the hls4ml types alone:

* ``Conv2D`` / ``PointwiseConv2D`` / ``DepthwiseConv2D`` / ``Dense`` -> ``SanitasGemm``: integer weights
  ``w / 2**e_w`` (``e_w`` of the weight Quant), biases ``b / 2**e_acc``, output precision the golden's wrapping
  int32 accumulator ``ap_fixed<32, 32 + e_acc, TRN, WRAP>`` with ``e_acc = e_in + e_w``;
* ``Activation`` (ReLU or linear, with the following Quant merged into its result type) -> ``SanitasRequant``:
  ``shift = e_out - e_in``, range from the result type's width / sign / symmetric saturation; the type must round
  half to even and saturate (the golden's requantisation), anything else is refused;
* ``Pooling2D`` (max) -> ``SanitasMaxPool``; ``Merge`` (add) -> ``SanitasAdd`` (output: the wider input grid must
  equal the other's, as the golden's exact add);
* ``Concatenate`` (channel axis) -> ``SanitasConcat``: the inputs on one grid and sign, the output the widest
  input's width (``hls.convert.concat_type``, the golden's concat); a QNet concat of n > 2 tensors arrives as a
  chain of two-input concats (``hls.layout.binary_concats``), each lowered on its own;

Any layer a pass cannot express exactly raises ``SanitasError`` naming it, so no approximate kernel is ever kept.
"""
from __future__ import annotations

import numpy as np

from ...errors import SanitasError
from ...golden.rounding import int_range
from .layers import SanitasRecord


def _fix(precision, what: str):
    """(width, e, signed, rounding, saturation) of an hls4ml fixed/integer precision; e = LSB exponent."""
    from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType
    if isinstance(precision, IntegerPrecisionType):
        return precision.width, 0, bool(precision.signed), "TRN", "WRAP"
    if not isinstance(precision, FixedPrecisionType):
        raise SanitasError(f"{what}: precision {precision} is not a fixed-point type")
    rnd = getattr(precision.rounding_mode, "name", str(precision.rounding_mode))
    sat = getattr(precision.saturation_mode, "name", str(precision.saturation_mode))
    return int(precision.width), int(precision.integer) - int(precision.width), bool(precision.signed), rnd, sat


def acc_precision(e_acc: int):
    """The golden's int32 accumulator register at 2**e_acc (two's-complement wrap)."""
    from hls4ml.model.types import FixedPrecisionType
    return FixedPrecisionType(32, 32 + e_acc, True, "TRN", "WRAP")


def _ints(data, e: int, what: str) -> np.ndarray:
    v = np.asarray(data, dtype=np.float64) * 2.0 ** (-e)
    r = np.rint(v)
    if not np.array_equal(v, r):
        raise SanitasError(f"{what}: values are not integers at 2**{e}")
    return r.astype(np.int64)


def _chw(shape) -> tuple[int, ...]:
    """hls4ml channels-last (H, W, C) -> (C, H, W); vectors stay (F,)."""
    s = tuple(int(v) for v in shape)
    return (s[2], s[0], s[1]) if len(s) == 3 else s


def _one(node, keys: tuple[str, ...], what: str) -> int:
    vals = {int(node.get_attr(k)) for k in keys}
    if len(vals) != 1:
        raise SanitasError(f"{node.name}: asymmetric {what} {[node.get_attr(k) for k in keys]} (golden: one value)")
    return vals.pop()


def _replace(model, node, kind: str, rec: SanitasRecord, precision) -> None:
    new = model.make_node(kind, f"sanitas_{node.name}",
                          {"record": rec, "hls_shape": list(node.get_output_variable().shape),
                           "out_precision": precision},
                          list(node.inputs), list(node.outputs))
    model.replace_node(node, new)


def _pass_class(name: str, classes: tuple[str, ...], build):
    from hls4ml.model.optimizer import OptimizerPass

    def match(self, node):
        return node.class_name in classes

    def transform(self, model, node):
        kind, rec, prec = build(model, node)
        _replace(model, node, kind, rec, prec)
        return True

    return type(name, (OptimizerPass,), {"match": match, "transform": transform, "__doc__": build.__doc__})


def _build_gemm(model, node):
    """Conv2D / PointwiseConv2D / DepthwiseConv2D / Dense -> SanitasGemm (im2col + systolic GEMM)."""
    x = node.get_input_variable()
    wx, e_in, _, _, _ = _fix(x.type.precision, f"{node.name} input")
    if wx > 8:
        raise SanitasError(f"{node.name}: reads a {wx}-bit tensor; the array takes int8/uint8 operands")
    wvar, bvar = node.weights["weight"], node.weights.get("bias")
    _, e_w, _, _, _ = _fix(wvar.type.precision, f"{node.name} weight")
    e_acc = e_in + e_w
    w = _ints(wvar.data, e_w, f"{node.name} weight")
    out = _chw(node.get_output_variable().shape)
    if node.class_name == "Dense":
        op, attrs = "linear", {}
        w = w.reshape(int(node.get_attr("n_in")), int(node.get_attr("n_out"))).T       # (F, O) -> (O, F)
        in_shape = (int(node.get_attr("n_in")),)
    else:
        op = "conv"
        c = int(node.get_attr("n_chan"))
        groups = c if node.class_name == "DepthwiseConv2D" else 1
        kh, kw = int(node.get_attr("filt_height")), int(node.get_attr("filt_width"))
        # hls4ml keeps conv weights as (kh, kw, C/g, O) ((kh, kw, C, multiplier) for depthwise)
        w = w.reshape(kh, kw, c // groups, -1)
        w = w.transpose(3, 2, 0, 1) if groups == 1 else w.transpose(2, 3, 0, 1).reshape(-1, 1, kh, kw)
        attrs = {"stride": _one(node, ("stride_height", "stride_width"), "stride"),
                 "padding": _one(node, ("pad_top", "pad_bottom", "pad_left", "pad_right"), "padding"),
                 "dilation": _one(node, ("dilation_height", "dilation_width"), "dilation") if
                 node.get_attr("dilation_height") is not None else 1,
                 "groups": groups, "k": kh}
        in_shape = (c, int(node.get_attr("in_height")), int(node.get_attr("in_width")))
    o = int(w.shape[0])
    b = (_ints(bvar.data, e_acc, f"{node.name} bias").reshape(-1) if bvar is not None and bvar.data is not None
         else np.zeros(o, dtype=np.int64))
    if b.size == 1 and o > 1 and not b.any():
        b = np.zeros(o, dtype=np.int64)       # hls4ml's placeholder bias of a bias-free layer
    rec = SanitasRecord(name=node.name, op=op, inputs=tuple(node.inputs), in_shapes=(in_shape,), out_shape=out,
                        e_out=e_acc, bits=32, signed=True, attrs=attrs, weight=w.astype(np.int8),
                        bias=b.astype(np.int32))
    return "SanitasGemm", rec, acc_precision(e_acc)


def _build_requant(model, node):
    """Activation (ReLU / linear with its Quant merged into the result type) -> SanitasRequant."""
    act = str(node.get_attr("activation")).lower()
    if act not in ("relu", "linear"):
        raise SanitasError(f"{node.name}: activation {act} has no exact sanitas layer")
    x = node.get_input_variable()
    _, e_in, _, _, _ = _fix(x.type.precision, f"{node.name} input")
    prec = node.get_output_variable().type.precision
    bits, e_out, signed, rnd, sat = _fix(prec, f"{node.name} result")
    if rnd != "RND_CONV" or sat not in ("SAT", "SAT_SYM"):
        raise SanitasError(f"{node.name}: result type {prec} is not a rounding (half to even), saturating "
                           "requantisation")
    narrow = sat == "SAT_SYM"
    lo, hi = int_range(bits, signed, narrow)
    if act == "relu":
        lo = max(lo, 0)
    n = int(np.prod(x.shape))
    rec = SanitasRecord(name=node.name, op="act", inputs=tuple(node.inputs), in_shapes=(_chw(x.shape),),
                        out_shape=_chw(node.get_output_variable().shape), e_out=e_out, bits=bits, signed=signed,
                        narrow=narrow, attrs={"relu": act == "relu", "shift": e_out - e_in, "lo": lo, "hi": hi,
                                              "n": n})
    return "SanitasRequant", rec, prec


def _build_maxpool(model, node):
    """Pooling2D (max) -> SanitasMaxPool (padding -inf)."""
    if str(node.get_attr("pool_op")).lower() != "max":
        raise SanitasError(f"{node.name}: {node.get_attr('pool_op')} pooling: hls4ml's average divides and "
                           "rounds; the QNet's exact average pool is a global sum + requantisation")
    x = node.get_input_variable()
    bits, e, signed, _, _ = _fix(x.type.precision, f"{node.name} input")
    k = _one(node, ("pool_height", "pool_width"), "pool size")
    attrs = {"k": k, "stride": _one(node, ("stride_height", "stride_width"), "stride"),
             "padding": _one(node, ("pad_top", "pad_bottom", "pad_left", "pad_right"), "padding")}
    rec = SanitasRecord(name=node.name, op="maxpool", inputs=tuple(node.inputs), in_shapes=(_chw(x.shape),),
                        out_shape=_chw(node.get_output_variable().shape), e_out=e, bits=bits, signed=signed,
                        attrs=attrs)
    return "SanitasMaxPool", rec, x.type.precision


def _build_add(model, node):
    """Merge (add) of two tensors on one grid -> SanitasAdd (exact, one bit wider)."""
    from hls4ml.model.types import FixedPrecisionType
    if str(node.get_attr("op")).lower() != "add":
        raise SanitasError(f"{node.name}: merge op {node.get_attr('op')} has no sanitas layer")
    a, b = (node.get_input_variable(i) for i in node.inputs)
    wa, ea, sa, _, _ = _fix(a.type.precision, f"{node.name} input 0")
    wb, eb, sb, _, _ = _fix(b.type.precision, f"{node.name} input 1")
    if ea != eb:
        raise SanitasError(f"{node.name}: adds grids 2**{ea} and 2**{eb} (golden: one grid)")
    bits = max(wa, wb) + 1
    prec = FixedPrecisionType(bits, bits + ea, True, "TRN", "WRAP")
    rec = SanitasRecord(name=node.name, op="add", inputs=tuple(node.inputs),
                        in_shapes=(_chw(a.shape), _chw(b.shape)), out_shape=_chw(node.get_output_variable().shape),
                        e_out=ea, bits=bits, signed=True, attrs={"n": int(np.prod(a.shape))})
    return "SanitasAdd", rec, prec


def _build_concat(model, node):
    """Concatenate of two tensors along the channel axis (the last of hls4ml's layout) -> SanitasConcat (a copy)."""
    from hls4ml.model.types import FixedPrecisionType

    from ..convert import FixType, concat_type
    a, b = (node.get_input_variable(i) for i in node.inputs)
    rank = len(a.shape)
    if int(node.get_attr("axis")) not in (rank, -1):
        raise SanitasError(f"{node.name}: concat along axis {node.get_attr('axis')} of a {rank}-d tensor (golden: "
                           "the channel axis)")
    types = []
    for k, v in enumerate((a, b)):
        width, e, signed, _, _ = _fix(v.type.precision, f"{node.name} input {k}")
        types.append(FixType(width, e, signed))
    t = concat_type(node.name, types)
    prec = FixedPrecisionType(t.width, t.width + t.e, t.signed, "TRN", "WRAP")
    rec = SanitasRecord(name=node.name, op="concat", inputs=tuple(node.inputs),
                        in_shapes=(_chw(a.shape), _chw(b.shape)), out_shape=_chw(node.get_output_variable().shape),
                        e_out=t.e, bits=t.width, signed=t.signed,
                        attrs={"hw": int(np.prod(a.shape[:-1])), "ca": int(a.shape[-1]), "cb": int(b.shape[-1])})
    return "SanitasConcat", rec, prec


def _build_gsum(model, node):
    """SanitasReduceSum (front-end layer of ONNX ReduceSum over H, W of NCHW) -> SanitasGlobalSum (exact)."""
    x = node.get_input_variable()
    _, e, signed, _, _ = _fix(x.type.precision, f"{node.name} input")
    c, h, w = (int(node.get_attr(k)) for k in ("n_chan", "in_height", "in_width"))
    rec = SanitasRecord(name=node.name, op="gsum", inputs=tuple(node.inputs), in_shapes=((c, h, w),),
                        out_shape=(c,), e_out=e, bits=32, signed=signed, attrs={"chw": 1})
    return "SanitasGlobalSum", rec, acc_precision(e)


#: pass name -> (hls4ml classes it lowers, record builder)
LOWERING = {
    "sanitas_lower_gemm": (("Conv2D", "PointwiseConv2D", "DepthwiseConv2D", "Dense"), _build_gemm),
    "sanitas_lower_requant": (("Activation",), _build_requant),
    "sanitas_lower_maxpool": (("Pooling2D",), _build_maxpool),
    "sanitas_lower_add": (("Merge",), _build_add),
    "sanitas_lower_concat": (("Concatenate",), _build_concat),
    "sanitas_lower_gsum": (("SanitasReduceSum",), _build_gsum),
}


def pass_classes() -> dict:
    """pass name -> OptimizerPass class (one per LOWERING entry)."""
    return {name: _pass_class("".join(p.title() for p in name.split("_")), classes, build)
            for name, (classes, build) in LOWERING.items()}

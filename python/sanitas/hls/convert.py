"""Brevitas ``QNet`` -> QONNX -> hls4ml 1.3 (Vitis backend) project, compiled with g++, bit-exact with the golden.

The flow (hls4ml's QONNX front end, as in its ``test_qonnx.py`` Brevitas path):

1. ``export_qonnx``: ``brevitas.export.export_qonnx`` writes Quant nodes (scale 2**e, int8/uint8/int32) around
   float Conv/Gemm/Relu/MaxPool/Reshape nodes.
2. ``prepare_qonnx``: qonnx ``cleanup`` -> ``ConvertToChannelsLastAndClean(make_input_channels_last=True)``
   (hls4ml's conv kernels are channels-last) -> ``GemmToMatMul`` -> ``cleanup``.  The NCHW flatten in front of
   fc1 is handled by qonnx' ``AbsorbChanFirstIntoMatMul``: the transpose back to channels-first is folded into a
   row permutation of fc1's weights, so the HWC flatten of hls4ml feeds the right weights (checked bit-exactly
   by ``check_bitexact``/``trace_compare``).
3. ``derive_precisions``: every hls4ml type is computed from the Quant nodes, never left at a default:
   * activations/input: ``ap_(u)fixed<bits, bits+e, AP_RND_CONV, AP_SAT>`` (``AP_SAT_SYM`` for narrow range) =
     exactly the int8/uint8 grid at 2**e with round-half-to-even (``golden.rounding``) and saturation;
   * conv/dense accumulator and result: ``ap_fixed<32, 32+e_acc, AP_TRN, AP_WRAP>`` with ``e_acc = e_in + e_w``:
     the golden's int32 accumulator register (two's-complement wrap, ``golden.model.wrap32``) at scale
     2**e_acc; sums of int8 x uint8 products are exact in it, and wrap-around is modular so even overflowing
     (faulty) nets agree with the golden;
   * the input layer gets the type of the input Quant node, so the float -> ap_fixed conversion in the
     compiled bridge *is* the input quantisation (round half to even, saturate) with no double rounding.
   The derived exponents are cross-checked against ``export_golden`` and every type of the converted graph is
   checked against the derivation after conversion (``SanitasError`` on any difference).
4. ``to_hls4ml``: ``config_from_onnx_model(granularity="name", backend="Vitis")`` filled with those types,
   ``convert_from_onnx_model`` and ``compile()`` (g++ only, no Vitis needed).

io_parallel is used: every tensor is a plain array, conv/pool use the im2col "latency" kernels, and it is the
io type that hls4ml's QONNX tests run for conv + max-pool + flatten nets (io_stream with a channels-last
flatten after max-pool is skipped there as unsupported).  Latency strategy with reuse factor 1 compiles
LeNet-5 with g++ -O3 in ~10-20 s (2 cores).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SanitasError
from ..models.ops import spec
from .meta import META_FILE, AccumulatorMeta, HlsMeta, LayerTypes

ACC_BITS = 32                    # the golden's accumulator register width (int32, wraps)


@dataclass(frozen=True)
class FixType:
    """A fixed-point type on the grid 2**e: ``width`` bits, LSB weight 2**e (ap_fixed<width, width+e>)."""
    width: int
    e: int
    signed: bool
    rounding: str = "TRN"      # TRN | RND_CONV
    saturation: str = "WRAP"   # WRAP | SAT | SAT_SYM

    def hls(self):
        """The hls4ml ``FixedPrecisionType``."""
        from hls4ml.model.types import FixedPrecisionType
        return FixedPrecisionType(self.width, self.width + self.e, self.signed, self.rounding, self.saturation)

    def __str__(self) -> str:   # hls4ml's own notation, e.g. "ufixed<8,1,RND_CONV,SAT,0>"
        return str(self.hls())


@dataclass(frozen=True)
class MacPrecision:
    """Derived types of one Conv/MatMul node: int32 accumulator at 2**e_acc, e_acc = e_in + weight.e."""
    op: str                  # QONNX op: Conv | MatMul
    e_in: int                # exponent of the input tensor's grid
    e_acc: int               # exponent of the accumulator (and of the bias, checked)
    accum: FixType           # ap_fixed<32, 32 + e_acc, TRN, WRAP>: the golden's wrapping int32 register
    weight: FixType          # the weight Quant node's type
    bias: FixType | None     # the bias Quant node's type (None: no bias)


@dataclass(frozen=True)
class Precisions:
    """Result of `derive_precisions`: every tensor type of a prepared QONNX model."""
    input: FixType                      # the input quantiser's type (the graph input's)
    tensors: dict[str, FixType]         # QONNX tensor name -> type
    layers: dict[str, MacPrecision]     # Conv/MatMul node name -> its types
    acts: tuple[FixType, ...]           # activation Quant node types in graph order ([0]: the input quantiser)


# ----------------------------------------------------------------------------------------------- QONNX export
def export_qonnx(model, out_path, input_shape=None) -> Path:
    """Export a Brevitas ``QNet`` to QONNX at ``out_path`` (input (1, C, H, W) float); returns the path."""
    import torch
    from brevitas.export import export_qonnx as _bv_export

    shape = tuple(input_shape or model.spec["in_shape"])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            _bv_export(model, torch.zeros((1,) + shape), export_path=str(out_path))
    finally:
        model.train(was_training)
    return out_path


def prepare_qonnx(onnx_path, out_path=None):
    """qonnx cleanup + channels-last (`hls.layout`, one linear pass) + Gemm->MatMul + two-input concats (what
    hls4ml's QONNX reader expects); returns a ModelWrapper."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    from .layout import binary_concats, to_channels_last

    m = cleanup_model(ModelWrapper(str(onnx_path)))
    m = _unshare_quant_constants(m)
    m = to_channels_last(m)
    m = m.transform(GemmToMatMul())
    m = binary_concats(cleanup_model(m))
    if out_path is not None:
        m.save(str(out_path))
    return m


def _unshare_quant_constants(m):
    """Give every consumer of a quantised constant its own Quant node (and parameter tensors); returns the copies.

    torch's ONNX exporter deduplicates equal initializers, so layers with equal weights or biases (all-zero
    biases of a freshly initialised net, equal seed-0 weights) read one shared ``Quant`` output. qonnx's
    channels-last conversion then transposes that constant for its first consumer only and leaves a dangling
    ``Transpose`` for the others; hls4ml folds a shared constant into its first consumer only. Returns the
    (topologically re-sorted) model."""
    from onnx import helper
    copies = 0
    for q in [n for n in m.graph.node if n.op_type == "Quant" and m.get_initializer(n.input[0]) is not None]:
        for k, cons in enumerate(m.find_consumers(q.output[0])[1:], start=1):
            ins = []
            for name in q.input:
                new = f"{name}_u{k}"
                m.set_initializer(new, np.array(m.get_initializer(name)))
                ins.append(new)
            out = f"{q.output[0]}_u{k}"
            m.graph.node.append(helper.make_node("Quant", ins, [out], name=f"{q.name}_u{k}", domain=q.domain,
                                                 **{a.name: helper.get_attribute_value(a) for a in q.attribute}))
            m.set_tensor_shape(out, m.get_tensor_shape(q.output[0]))
            for i, name in enumerate(cons.input):
                if name == q.output[0]:
                    cons.input[i] = out
            copies += 1
    if copies:
        from qonnx.transformation.general import SortGraph
        m = m.transform(SortGraph())
    return m


# ----------------------------------------------------------------------------------------------- precisions
def _quant_type(m, node) -> FixType:
    """FixType of a QONNX Quant node: scale must be one power of two, zero point 0, scalar bit width."""
    attrs = {a.name: a for a in node.attribute}
    from onnx import helper
    get = lambda k, d: helper.get_attribute_value(attrs[k]) if k in attrs else d  # noqa: E731
    scale = m.get_initializer(node.input[1])
    zeropt = m.get_initializer(node.input[2])
    bits = m.get_initializer(node.input[3])
    if scale is None or zeropt is None or bits is None:
        raise SanitasError(f"{node.name}: Quant with non-constant scale/zero point/bit width")
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    if not np.all(scale == scale[0]):
        raise SanitasError(f"{node.name}: per-channel scales are not supported (integer contract: one 2**e)")
    mant, exp = np.frexp(scale[0])
    if mant != 0.5:
        raise SanitasError(f"{node.name}: scale {scale[0]} is not a power of two")
    if np.any(np.asarray(zeropt) != 0):
        raise SanitasError(f"{node.name}: non-zero zero point")
    b = float(np.asarray(bits).reshape(-1)[0])
    if b != int(b):
        raise SanitasError(f"{node.name}: fractional bit width {b}")
    rmode = get("rounding_mode", b"ROUND")
    rmode = rmode.decode() if isinstance(rmode, bytes) else rmode
    rnd = {"ROUND": "RND_CONV", "FLOOR": "TRN"}.get(rmode)
    if rnd is None:
        raise SanitasError(f"{node.name}: rounding mode {rmode} has no ap_fixed equivalent")
    signed, narrow = bool(get("signed", 1)), bool(get("narrow", 0))
    if narrow and not signed:
        raise SanitasError(f"{node.name}: narrow unsigned Quant is not supported by hls4ml")
    return FixType(int(b), int(exp) - 1, signed, rnd, "SAT_SYM" if narrow else "SAT")


def concat_type(name: str, types: list) -> FixType:
    """The type of a channel concat of tensors of ``types`` (the golden's ``concat``: one grid, one sign, the
    widest input's width; values are copied, never rounded)."""
    if any(t is None for t in types):
        raise SanitasError(f"{name} (Concat): input type unknown")
    grids = sorted({(t.e, t.signed) for t in types})
    if len(grids) != 1:
        said = ", ".join(f"2**{e} {'signed' if s else 'unsigned'}" for e, s in grids)
        raise SanitasError(f"{name}: concatenates grids {said} (golden: one grid and sign)")
    e, signed = grids[0]
    return FixType(max(t.width for t in types), e, signed, "TRN", "WRAP")


def derive_precisions(m, sanitas_layers: bool = False) -> Precisions:
    """Derive every tensor type of a prepared QONNX model from its Quant nodes (a `Precisions` record).

    ``sanitas_layers``: the graph is lowered onto sanitas layers (``hls.ext``), which also take the residual ``Add``
    of two quantised tensors (exact: one bit wider than the wider input, on their common grid, which must be one),
    ``ReduceSum`` (the global sum: an int32 on the input's grid) and ``Concat`` (`concat_type`); hls4ml's own
    kernels take none of them exactly."""
    consts: dict[str, FixType] = {}   # outputs of Quant nodes applied to initializers (weights, biases)
    tensors: dict[str, FixType] = {}
    layers: dict[str, MacPrecision] = {}
    acts: list[FixType] = []
    quant_of: dict[str, FixType] = {}
    for n in m.graph.node:
        if n.op_type == "Quant":
            quant_of[n.name] = _quant_type(m, n)
    gin = m.graph.input[0].name
    first = m.find_consumers(gin)
    if len(first) != 1 or first[0].op_type != "Quant":
        raise SanitasError("the QONNX input must feed exactly one Quant node (the input quantiser)")
    in_type = quant_of[first[0].name]
    tensors[gin] = in_type

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
        missing = [i for i in n.input[:1] if i not in tensors]
        if missing:
            raise SanitasError(f"{n.name} ({op}): input type unknown (unsupported graph pattern)")
        x = tensors[n.input[0]]
        if op in ("Conv", "MatMul"):
            w = consts.get(n.input[1])
            if w is None:
                raise SanitasError(f"{n.name}: weights are not a quantised constant")
            e_acc = x.e + w.e
            acc = FixType(ACC_BITS, e_acc, True, "TRN", "WRAP")   # int32 at 2**e_acc, wraps like golden wrap32
            bias = consts[n.input[2]] if op == "Conv" and len(n.input) > 2 and n.input[2] else None
            layers[n.name] = MacPrecision(op, x.e, e_acc, acc, w, bias)
            tensors[n.output[0]] = acc
        elif op == "Add":
            # bias add behind a MatMul (GemmToMatMul); hls4ml fuses it into the Dense layer
            bias = next((consts[i] for i in n.input if i in consts), None)
            if bias is None and sanitas_layers:                   # a residual add of two tensors
                if n.input[1] not in tensors:
                    raise SanitasError(f"{n.name} (Add): second input type unknown")
                y = tensors[n.input[1]]
                if x.e != y.e:
                    raise SanitasError(f"{n.name}: adds grids 2**{x.e} and 2**{y.e} (golden: one grid)")
                tensors[n.output[0]] = FixType(max(x.width, y.width) + 1, x.e, True, "TRN", "WRAP")
                continue
            prod = m.find_producer(n.input[0])
            if bias is None or prod is None or prod.op_type != "MatMul":
                raise SanitasError(f"{n.name}: only bias adds behind MatMul are supported")
            layers[prod.name] = dataclasses.replace(layers[prod.name], bias=bias)
            tensors[n.output[0]] = x
        elif op == "Relu":
            cons = m.find_consumers(n.output[0])
            # hls4ml merges a following Quant into the ReLU: its result is the Quant's grid (requantisation)
            if len(cons) == 1 and cons[0].op_type == "Quant":
                tensors[n.output[0]] = quant_of[cons[0].name]
            else:
                tensors[n.output[0]] = x
        elif op == "ReduceSum" and sanitas_layers:
            tensors[n.output[0]] = FixType(ACC_BITS, x.e, True, "TRN", "WRAP")
        elif op == "Concat" and sanitas_layers:
            tensors[n.output[0]] = concat_type(n.name, [tensors.get(i) for i in n.input])
        elif op in ("MaxPool", "Flatten", "Reshape", "Transpose"):
            tensors[n.output[0]] = x
        else:
            raise SanitasError(f"{n.name}: ONNX op {op} is not supported by the sanitas hls4ml flow")
    for name, rec in layers.items():
        if rec.bias is not None and rec.bias.e != rec.e_acc:
            raise SanitasError(f"{name}: bias exponent {rec.bias.e} != accumulator exponent {rec.e_acc}")
    return Precisions(in_type, tensors, layers, tuple(acts))


def merged_twins(golden) -> dict[str, str]:
    """Nodes the ONNX exporter may merge: node -> the first earlier node computing the same thing (the same op,
    attributes, output grid and, for conv / linear, weights and biases, reading the same nodes or their twins).
    torch's exporter removes such common subexpressions (a searched cell's ReLU + quantiser, max pool or average
    pool -- a constant depthwise conv -- of one tensor, repeated by two of its edges), so QONNX holds one node
    for both."""
    first: dict[tuple, str] = {}
    twins: dict[str, str] = {}
    for n in golden.nodes:
        if n.op == "input":
            continue
        key = (n.op, tuple(twins.get(i, i) for i in n.inputs), repr(sorted(n.attrs.items())), n.e_out, n.bits,
               n.signed, bool(n.narrow))
        if n.weight is not None:
            w, b = np.asarray(n.weight), np.asarray(n.bias)
            key += (w.shape, w.tobytes(), b.tobytes())
        if key in first:
            twins[n.name] = first[key]
        else:
            first[key] = n.name
    return twins


def _cross_check_golden(d: Precisions, golden) -> None:
    """Exponents derived from the QONNX Quant nodes must equal the golden model's (same net, same scales; the
    golden's `merged_twins` may be merged into one Quant)."""
    gin = golden.input_node
    if d.input.e != gin.e_out or d.input.width != gin.bits or d.input.signed != gin.signed:
        raise SanitasError(f"input type {d.input} disagrees with golden (e={gin.e_out}, {gin.bits} bits)")
    twins = merged_twins(golden)
    q = sorted(r.e_acc for r in d.layers.values())
    g = sorted(n.e_out for n in golden.layers())
    if q not in (g, sorted(n.e_out for n in golden.layers() if n.name not in twins)):
        raise SanitasError(f"accumulator exponents {q} (QONNX) != {g} (golden)")
    qa = sorted((t.e, t.width, t.signed) for t in d.acts[1:])   # [0] is the input quantiser
    ga = sorted((n.e_out, n.bits, n.signed) for n in golden.nodes if spec(n.op).requant)
    merged = sorted((n.e_out, n.bits, n.signed) for n in golden.nodes if spec(n.op).requant and n.name not in twins)
    if qa not in (ga, merged):
        raise SanitasError(f"activation types {qa} (QONNX) != {ga} (golden)")


def _fill_config(cfg: dict, m, d: Precisions, trace: bool) -> None:
    """Write the derived types into an hls4ml name-granularity config (keys are the QONNX node names)."""
    ln = cfg["LayerName"]
    gin = m.graph.input[0].name
    ln.setdefault(gin, {}).setdefault("Precision", {})["result"] = str(d.input)
    by_node = {n.name: n for n in m.graph.node}
    for name, lc in ln.items():
        if trace:
            lc["Trace"] = True
        node = by_node.get(name)
        if node is None:
            continue                              # graph input / folded Quant parameters (removed by hls4ml)
        prec = lc.setdefault("Precision", {})
        out = node.output[0]
        if node.op_type == "Quant" and m.get_initializer(node.input[0]) is not None:
            res = None                            # weight/bias quantiser: folded into the layer's weight_t/bias_t
        else:
            res = d.tensors.get(out)
        if res is not None and "result" in prec:
            # a MatMul's result stays "auto": hls4ml fuses the following bias Add (ApplyAlpha) into the Dense
            # only if the Dense output type is unspecified; it then infers result = accum (checked below)
            if node.op_type != "MatMul":
                prec["result"] = str(res)
        if "accum" in prec:
            if node.name in d.layers:
                prec["accum"] = str(d.layers[node.name].accum)
            elif res is not None:                 # max pool: the max of exact values is exact in the input type
                prec["accum"] = str(res)


def _acc_by_out(m, d: Precisions) -> dict[str, MacPrecision]:
    """Conv/MatMul records keyed by the tensor their hls4ml layer outputs (a Dense keeps the MatMul's name
    or takes the bias Add's, depending on the fusion path: both are registered)."""
    out: dict[str, MacPrecision] = {}
    for n in m.graph.node:
        if n.name in d.layers:
            rec = d.layers[n.name]
            out[n.output[0]] = rec
            cons = m.find_consumers(n.output[0])
            if n.op_type == "MatMul" and len(cons) == 1 and cons[0].op_type == "Add":
                out[cons[0].output[0]] = rec
    return out


def _pin_dense_results(hm, m, d: Precisions) -> None:
    """Set the result type of fused Dense layers to their int32 accumulator type.

    After fusing the bias add, hls4ml infers ``result = accum + 1 bit`` for the bias it thinks is still to be
    added; the bias is already inside the 32-bit wrapping accumulator (as in the golden), so the result is
    that accumulator, bit for bit.
    """
    recs = _acc_by_out(m, d)
    for layer in hm.get_layers():
        if layer.class_name != "Dense":
            continue
        rec = recs.get(layer.outputs[0])
        if rec is None:
            raise SanitasError(f"{layer.name}: output {layer.outputs[0]} has no MatMul in the QONNX graph")
        # mutate in place: the object is already the backend's ap_fixed definition class
        prec, acc = layer.get_output_variable().type.precision, rec.accum
        prec.width, prec.integer, prec.signed = acc.width, acc.width + acc.e, acc.signed
        prec.rounding_mode, prec.saturation_mode = acc.rounding, acc.saturation


def _verify_types(hm, m, d: Precisions) -> tuple[LayerTypes, ...]:
    """Compare every type of the converted hls4ml graph with the derivation; returns the per-layer table."""
    acc_by_out = _acc_by_out(m, d)
    table, errors = [], []
    for layer in hm.get_layers():
        out = layer.outputs[0]
        exp = {"result_t": d.tensors.get(out)}
        if out in acc_by_out:
            rec = acc_by_out[out]
            exp.update(accum_t=rec.accum, weight_t=rec.weight, bias_t=rec.bias)
        elif "accum_t" in layer.types:
            exp["accum_t"] = exp["result_t"]
        types: dict[str, str] = {}
        for tname, t in layer.types.items():
            if tname in ("table_t", "index_t"):
                continue                          # lookup tables / sparse indices: unused by ReLU, linear, dense
            got = str(t.precision)
            want = exp.get(tname)
            if want is None or got != str(want):
                errors.append(f"{layer.name}.{tname} = {got}, derived {want}")
            types[tname] = got
        table.append(LayerTypes(layer.name, layer.class_name, out,
                                tuple(int(s) for s in layer.get_output_variable().shape), types))
    if errors:
        raise SanitasError("hls4ml types differ from the derived ones: " + "; ".join(errors))
    return tuple(table)


# ----------------------------------------------------------------------------------------------- conversion
def to_hls4ml(model, out_dir, input_shape=None, backend: str = "Vitis", io_type: str = "io_parallel",
              golden=None, trace: bool = False, compile: bool = True):
    """Convert a trained Brevitas ``QNet`` into an hls4ml project in ``out_dir`` and compile it with g++.

    ``golden`` (default: ``export_golden(model)``) cross-checks the derived exponents. ``trace=True`` builds the
    per-layer trace hooks used by ``trace_compare``. Returns the compiled hls4ml ``ModelGraph``.
    """
    import hls4ml

    from ..golden.model import export_golden

    if io_type != "io_parallel":
        raise SanitasError("only io_parallel is supported (see module docstring)")
    shape = tuple(input_shape or model.spec["in_shape"])
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    golden = golden if golden is not None else export_golden(model, shape)
    t0 = time.time()
    raw = export_qonnx(model, out_dir / "model_qonnx.onnx", shape)
    m = prepare_qonnx(raw, out_dir / "model_qonnx_clean.onnx")
    d = derive_precisions(m)
    _cross_check_golden(d, golden)

    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        cfg = hls4ml.utils.config_from_onnx_model(m.model, granularity="name", backend=backend,
                                                  default_reuse_factor=1)
        cfg["Model"]["Strategy"] = "Latency"
        cfg["Model"]["TraceOutput"] = bool(trace)
        _fill_config(cfg, m, d, trace)
        hm = hls4ml.converters.convert_from_onnx_model(m.model, hls_config=cfg, output_dir=str(out_dir),
                                                       backend=backend, io_type=io_type)
    t_convert = time.time() - t0
    _pin_dense_results(hm, m, d)
    table = _verify_types(hm, m, d)

    in_shape_hls = [int(s) for s in hm.get_input_variables()[0].shape]
    c, h, w = shape
    channels_last = len(shape) == 3 and in_shape_hls == [h, w, c]
    if not channels_last and in_shape_hls != [c, h, w]:
        raise SanitasError(f"unexpected hls input shape {in_shape_hls} for input (C,H,W)={shape}")
    out_type = d.tensors[m.graph.output[0].name]   # the logits: int32 accumulators of the last layer
    meta = HlsMeta(
        model=dict(model.spec), backend=backend, io_type=io_type, strategy="Latency", reuse_factor=1,
        in_shape=tuple(shape), hls_input_shape=tuple(in_shape_hls), channels_last=channels_last,
        input_type=str(d.input), in_exp=d.input.e, out_exp=out_type.e, output_type=str(out_type),
        golden_out_exp=golden.out_exp, layers=table, convert_s=round(t_convert, 2), compile_s=None,
        trace=bool(trace),
        accumulators={k: AccumulatorMeta(v.e_in, v.e_acc, str(v.accum), str(v.weight), str(v.bias))
                      for k, v in d.layers.items()})
    if meta.out_exp != golden.out_exp:
        raise SanitasError(f"output exponent {meta.out_exp} != golden {golden.out_exp}")
    # the sanitas extension (hls.ext), once registered in this process, adds its headers to the backend's sources,
    # which hls4ml's writer copies into every project without making their directories
    from .ext import SOURCES
    for dest in set(SOURCES.values()):
        (Path(out_dir) / "firmware" / dest).mkdir(parents=True, exist_ok=True)
    if compile:
        t1 = time.time()
        try:
            with contextlib.redirect_stdout(log):   # g++ output is printed (here: logged) only on failure
                hm.compile()
        except Exception as e:  # noqa: BLE001
            raise SanitasError(f"g++ build of {out_dir} failed ({e}); see {out_dir / 'convert.log'}") from None
        finally:
            (out_dir / "convert.log").write_text(log.getvalue())
        meta = dataclasses.replace(meta, compile_s=round(time.time() - t1, 2))
    else:
        (out_dir / "convert.log").write_text(log.getvalue())
    meta.save(out_dir)
    return hm


def _meta(hls_model) -> HlsMeta:
    return HlsMeta.load(hls_model.config.get_output_dir())


def _to_hls_layout(meta: HlsMeta, x_float) -> np.ndarray:
    """Float images (N, C, H, W) -> float64, channels-last if the project expects it, C-contiguous."""
    x = np.asarray(x_float, dtype=np.float32)   # the golden quantises float32 inputs
    if x.ndim != 4 or tuple(x.shape[1:]) != meta.in_shape:
        raise SanitasError(f"input must have shape (N, {', '.join(map(str, meta.in_shape))}), got {x.shape}")
    if meta.channels_last:
        x = x.transpose(0, 2, 3, 1)
    # float64 selects the bridge's double entry point: outputs come back as doubles, which hold the
    # 32-bit accumulators exactly (float32 would round logits above 2**24 units)
    return np.ascontiguousarray(x, dtype=np.float64)


def hls_predict(hls_model, x_float) -> np.ndarray:
    """Run the compiled project on float images (N, C, H, W); returns int64 logits in golden integer units."""
    meta = _meta(hls_model)
    y = np.asarray(hls_model.predict(_to_hls_layout(meta, x_float)), dtype=np.float64)
    y = y.reshape(len(np.asarray(x_float)), -1) * 2.0 ** (-meta.out_exp)
    yi = np.rint(y)
    if not np.array_equal(y, yi):
        raise SanitasError(f"hls outputs are not integers at 2**{meta.out_exp} (max off-grid "
                           f"{np.abs(y - yi).max():.3g} units): wrong output precision")
    return yi.astype(np.int64)


def check_bitexact(hls_model, golden, x_float) -> dict:
    """Compare ``hls_predict`` with ``golden.predict``: images whose logits all match, total, largest difference."""
    h = hls_predict(hls_model, x_float)
    g = golden.predict(x_float)
    diff = np.abs(h - g)
    return {"bit_exact": int(np.all(diff == 0, axis=1).sum()), "total": int(len(g)),
            "max_abs_diff": int(diff.max(initial=0)), "mismatched_logits": int((diff != 0).sum())}


_OP_OF_CLASS = {"Conv2D": "conv", "Dense": "linear", "Pooling2D": "maxpool", "Reshape": "flatten"}


def trace_compare(hls_model, golden, x_float) -> list[dict]:
    """Per-layer comparison with ``golden.run_int(..., return_all=True)`` through hls4ml's trace.

    hls layers are matched to golden nodes of the same op in order (conv, linear, act, maxpool, flatten; the
    input quantiser to ``input``). Returns rows ``{hls, golden, max_abs_diff, n}`` (difference in integer units).
    Note: ``hls_model.trace`` recompiles the project with tracing enabled.
    """
    meta = _meta(hls_model)
    x = _to_hls_layout(meta, x_float)
    with contextlib.redirect_stdout(io.StringIO()):
        _, tr = hls_model.trace(x)
    env = golden.run_int(golden.quantize_input(x_float), return_all=True)
    queues: dict[str, list] = {}
    for n in golden.nodes:
        queues.setdefault(n.op, []).append(n)
    rows = []
    for layer in hls_model.get_layers():
        if layer.name not in tr:
            continue
        cls = layer.class_name
        if cls == "Input":
            continue
        if cls == "Activation":
            op = "act" if str(layer.get_attr("activation")).lower() == "relu" else "input"
        else:
            op = _OP_OF_CLASS.get(cls)
        if op is None or not queues.get(op):
            raise SanitasError(f"trace: no golden node for hls layer {layer.name} ({cls})")
        g = queues[op].pop(0)
        ref = env[g.name]
        if ref.ndim == 4 and meta.channels_last:
            ref = ref.transpose(0, 2, 3, 1)       # golden NCHW -> hls HWC
        got = tr[layer.name].reshape(ref.shape) * 2.0 ** (-g.e_out)
        rows.append({"hls": layer.name, "golden": g.name, "n": int(ref.size),
                     "max_abs_diff": float(np.abs(got - ref).max(initial=0))})
    return rows


def hls_report(out_dir) -> dict:
    """Summary of a project built by ``to_hls4ml``: backend, io type, layers with their types, timings, files."""
    out_dir = Path(out_dir)
    if not (out_dir / META_FILE).exists():
        raise SanitasError(f"{out_dir}: not a sanitas hls4ml project ({META_FILE} missing)")
    meta = HlsMeta.load(out_dir)
    fw = out_dir / "firmware"
    defines = (fw / "defines.h").read_text() if (fw / "defines.h").exists() else ""
    typedefs = [ln.strip() for ln in defines.splitlines() if ln.strip().startswith("typedef")]
    return {
        "out_dir": str(out_dir), "model": meta.model.get("name"), "backend": meta.backend,
        "io_type": meta.io_type, "strategy": meta.strategy, "reuse_factor": meta.reuse_factor,
        "input_type": meta.input_type, "in_exp": meta.in_exp, "out_exp": meta.out_exp,
        "output_type": meta.output_type, "channels_last": meta.channels_last,
        "layers": [{"name": r.name, "class": r.class_name, "shape": list(r.shape), **r.types} for r in meta.layers],
        "accumulators": {k: dataclasses.asdict(v) for k, v in meta.accumulators.items()},
        "n_typedefs": len(typedefs), "compiled": any(fw.glob("*.so")),
        "convert_s": meta.convert_s, "compile_s": meta.compile_s,
    }


__all__ = ["FixType", "MacPrecision", "Precisions", "LayerTypes", "AccumulatorMeta", "HlsMeta", "export_qonnx",
           "prepare_qonnx", "derive_precisions", "to_hls4ml", "hls_predict",
           "check_bitexact", "trace_compare", "hls_report", "META_FILE"]

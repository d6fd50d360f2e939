"""Config and function-call templates of the sanitas hls4ml layers (registered with ``register_template``).

Every template formats from the layer's `SanitasRecord` only: the config template writes ``struct config<index>``
(geometry, node index for the fault port and, for GEMM layers, the ``gemm`` struct of the systolic array rendered
from the ``ArrayConfig`` in the hls4ml config's ``Model.SanitasArray``, with the model-wide row / reduction tile
sizes ``gemm_geometry`` computes, as ``firmware.py`` does); the function template writes one call into
``sanitas/hls4ml_glue.h`` (``sanitas::glue::conv / requantize / max_pool / add2 / concat2 / global_sum``).
"""
from __future__ import annotations

import numpy as np

from ...config import ArrayConfig, clog2
from ...errors import SanitasError
from .layers import GEMM_OPS, records

INCLUDE = ["sanitas/hls4ml_glue.h"]
M_TILE = 256     # largest GEMM row tile held on chip (as firmware.M_TILE)


def array_config(model) -> ArrayConfig:
    """The ArrayConfig the hls4ml config carries (``HLSConfig.Model.SanitasArray``; defaults if absent)."""
    d = model.config.config.get("HLSConfig", {}).get("Model", {}).get("SanitasArray") or {}
    return ArrayConfig(**d)


def gemm_geometry(model) -> tuple[int, int]:
    """(max_m, max_k) of the one GEMM engine: the largest row tile (a multiple of rows, <= M_TILE) and K tile."""
    array = array_config(model)
    gemms = [r.gemm for r in records(model) if r.op in GEMM_OPS]
    if not gemms:
        raise SanitasError("no GEMM layer in the model")
    max_m = min(max(m for m, _, _ in gemms), M_TILE)
    max_m = -(-max_m // array.rows) * array.rows
    return max_m, min(max(k for _, k, _ in gemms), array.max_k)


def _gemm_struct(model) -> str:
    a = array_config(model)
    max_m, max_k = gemm_geometry(model)
    return ("    struct gemm {\n"
            f"        static const unsigned rows = {a.rows};\n        static const unsigned cols = {a.cols};\n"
            f"        static const unsigned max_m = {max_m};\n        static const unsigned max_k = {max_k};\n"
            f"        static const int data_w = {a.data_width};\n"
            f"        typedef ap_int<{a.data_width + 1}> a_t;   // int8 or uint8 activation\n"
            f"        typedef ap_int<{a.data_width}> w_t;\n        typedef ap_int<{a.acc_width}> acc_t;\n"
            f"        typedef ap_int<{a.data_width + clog2(a.cols) + 1}> csum_t;\n"
            f"        typedef ap_int<{a.acc_width}> sacc_t;\n    }};\n")


def _config(node) -> str:
    rec = node.get_attr("record")
    i = node.index
    fields: dict[str, int] = {"node": i}
    extra = ""
    if rec.op in GEMM_OPS:
        o = int(rec.weight.shape[0])
        if rec.op == "conv":
            c, h, w = rec.in_shapes[0]
            _, ho, wo = rec.out_shape
            a = rec.attrs
            fields.update(C=c, H=h, W=w, O=o, kh=int(rec.weight.shape[2]), kw=int(rec.weight.shape[3]),
                          stride=a["stride"], pad=a["padding"], dil=a["dilation"], groups=a["groups"], Ho=ho, Wo=wo)
        else:
            fields.update(C=rec.in_shapes[0][0], H=1, W=1, O=o, kh=1, kw=1, stride=1, pad=0, dil=1, groups=1,
                          Ho=1, Wo=1)
        fields["n_w"] = int(np.asarray(rec.weight).size)
        extra = _gemm_struct(node.model)
    elif rec.op == "act":
        fields.update(n=rec.attrs["n"], shift=rec.attrs["shift"], lo=rec.attrs["lo"], hi=rec.attrs["hi"])
    elif rec.op == "maxpool":
        c, h, w = rec.in_shapes[0]
        _, ho, wo = rec.out_shape
        fields.update(C=c, H=h, W=w, k=rec.attrs["k"], stride=rec.attrs["stride"], pad=rec.attrs["padding"],
                      Ho=ho, Wo=wo)
    elif rec.op == "add":
        fields["n"] = rec.attrs["n"]
    elif rec.op == "concat":
        fields.update(HW=rec.attrs["hw"], Ca=rec.attrs["ca"], Cb=rec.attrs["cb"])
    elif rec.op == "gsum":
        c, h, w = rec.in_shapes[0]
        fields.update(C=c, HW=h * w, chw=rec.attrs.get("chw", 0))
    body = "".join(f"    static const int {k} = {v};\n" for k, v in fields.items())
    head = f"// {rec.name}: sanitas {rec.op} {rec.in_shapes} -> {rec.out_shape}\n"
    return f"{head}struct config{i} {{\n{body}{extra}}};\n"


def _call(node) -> str:
    rec = node.get_attr("record")
    i = node.index
    ins = [node.get_input_variable(n) for n in node.inputs]
    out = node.get_output_variable()
    cfg = f"config{i}"
    if rec.op in GEMM_OPS:
        w, b = node.weights["weight"], node.weights["bias"]
        return (f"sanitas::glue::conv<{ins[0].type.name}, {out.type.name}, {w.type.name}, {b.type.name}, {cfg}>"
                f"({ins[0].name}, {out.name}, {w.name}, {b.name});")
    fn = {"act": "requantize", "maxpool": "max_pool", "gsum": "global_sum", "add": "add2", "concat": "concat2"}[rec.op]
    types = ", ".join(v.type.name for v in ins)
    args = ", ".join(v.name for v in ins)
    return f"sanitas::glue::{fn}<{types}, {out.type.name}, {cfg}>({args}, {out.name});"


def template_classes(layer_classes: dict) -> list:
    """A config template and a function template per sanitas layer class."""
    from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
    classes = tuple(layer_classes.values())

    class SanitasConfigTemplate(LayerConfigTemplate):
        def __init__(self):
            super().__init__(classes)

        def format(self, node):
            return _config(node)

    class SanitasFunctionTemplate(FunctionCallTemplate):
        def __init__(self):
            super().__init__(classes, include_header=INCLUDE)

        def format(self, node):
            return _call(node)

    return [SanitasConfigTemplate, SanitasFunctionTemplate]

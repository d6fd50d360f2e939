"""The sanitas hls4ml extension: QONNX -> hls4ml ModelGraph -> sanitas layers -> an hls4ml project whose
firmware calls the sanitas kernels (``hls/include/sanitas/layers.h`` through ``hls4ml_glue.h``).

`register()` (idempotent) plugs into hls4ml 1.3's extension API, on the Vitis backend:

* ``register_onnx_layer_handler`` + ``register_layer``: ONNX ops hls4ml has no handler for (`frontend`:
  ReduceSum, the QNet's global sum; SanitasDilatedConv, a dilated Conv hls4ml's own handler would mis-size);
* ``register_layer``: the sanitas layer classes (`layers`: SanitasGemm, SanitasRequant, SanitasMaxPool,
  SanitasAdd, SanitasConcat, SanitasGlobalSum), each carrying one typed `SanitasRecord`;
* ``register_pass`` + ``register_flow``: the lowering passes (`passes`) in the flow ``vitis:sanitas_lower``, and
  the flow ``vitis:sanitas`` = hls4ml's ``vitis:ip`` with ``sanitas_lower`` inserted after the generic
  ``optimize`` flow (select it with ``HLSConfig["Flows"] = ["vitis:sanitas"]``);
* ``register_template``: config and function-call templates (`templates`);
* ``register_source``: the kernel headers, written by hls4ml's writer into the project's
  ``firmware/sanitas/`` (``hls4ml_glue.h``, ``layers.h``; ``systolic_gemm.h`` under ``firmware/sanitas/sanitas/``
  where layers.h's ``#include "sanitas/systolic_gemm.h"`` finds it without extra include paths).

`convert.to_sanitas_hls4ml` is the front end (Brevitas QNet -> compiled project).
"""
from __future__ import annotations

from ...paths import REPO_ROOT

BACKEND = "Vitis"
FLOW = "vitis:sanitas"
LOWER_FLOW = "vitis:sanitas_lower"
HEADERS = REPO_ROOT / "hls" / "include" / "sanitas"
#: header -> destination directory inside the project's firmware/
SOURCES = {"hls4ml_glue.h": "sanitas", "layers.h": "sanitas", "systolic_gemm.h": "sanitas/sanitas"}

_registered = False


def register() -> str:
    """Register the extension with hls4ml (once per process); returns the flow name to select."""
    global _registered
    if _registered:
        return FLOW
    import hls4ml
    from hls4ml.model.flow import get_flow, register_flow

    from .layers import layer_classes
    from .passes import pass_classes
    from .templates import template_classes

    from hls4ml.converters.onnx_to_hls import get_supported_onnx_layers, register_onnx_layer_handler

    from hls4ml.model.flow import update_flow
    from hls4ml.model.optimizer import register_pass

    from .frontend import GENERIC_PASSES, HANDLERS, frontend_classes

    classes = layer_classes()
    for name, cls in {**classes, **frontend_classes()}.items():
        hls4ml.model.layers.register_layer(name, cls)
    for op, handler in HANDLERS.items():
        if op not in get_supported_onnx_layers():
            register_onnx_layer_handler(op, handler)
    for name, (flow_name, make) in GENERIC_PASSES.items():
        update_flow(flow_name, add_optimizers=[register_pass(name, make())])
    backend = hls4ml.backends.get_backend(BACKEND)
    names = []
    for name, cls in pass_classes().items():
        backend.register_pass(name, cls)
        names.append(f"{BACKEND.lower()}:{name}")
    register_flow("sanitas_lower", names, requires=["optimize"], backend=BACKEND)
    reqs = list(get_flow("vitis:ip").requires)
    reqs.insert(reqs.index("optimize") + 1, LOWER_FLOW)
    register_flow("sanitas", None, requires=reqs, backend=BACKEND)
    for tcls in template_classes(classes):
        backend.register_template(tcls)
    for header, dest in SOURCES.items():
        backend.register_source(HEADERS / header, destination_dir=dest)
    _registered = True
    return FLOW


__all__ = ["register", "FLOW", "LOWER_FLOW", "BACKEND"]

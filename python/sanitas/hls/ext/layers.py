"""The sanitas layers of the hls4ml extension: one typed record per layer (`SanitasRecord`) and the hls4ml layer
classes that carry it (registered with ``hls4ml.model.layers.register_layer`` by `sanitas.hls.ext.register`).

A `SanitasRecord` says everything the accelerator needs to run one layer, in the golden model's vocabulary (the
same fields a ``golden.model.Node`` has): the op of the QNet op table (``conv``, ``linear``, ``act``, ``maxpool``,
``add``, ``concat``, ``gsum``), its attributes (stride, padding, dilation, groups, k, relu), the integer grid of
its output (``e_out``, ``bits``, ``signed``, ``narrow``), the int8 weights in (O, C/g, kh, kw) / (O, F) order
and the int32 biases, and the shapes of its input(s) and output in the kernels' (C, H, W) / (F,) layout. The
lowering passes (`sanitas.hls.ext.passes`) build it from the hls4ml layer they replace; the templates
(`sanitas.hls.ext.templates`) render the layer's config struct and its call into ``sanitas/hls4ml_glue.h`` from
it and nothing else; ``records(hls_model)`` returns the network's records in graph order, the input a
record-driven generator (``firmware.py``) can take instead of golden nodes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import SanitasError

#: ops that run on the systolic array (im2col + GEMM)
GEMM_OPS = ("conv", "linear")


@dataclass(frozen=True)
class SanitasRecord:
    """One layer of the accelerator (see the module doc); shapes exclude the batch axis."""
    name: str                        # the hls4ml layer name
    op: str                          # QNet op: conv | linear | act | maxpool | add | concat | gsum
    inputs: tuple[str, ...]          # hls4ml tensor names read (graph wiring)
    in_shapes: tuple[tuple[int, ...], ...]   # (C, H, W) or (F,) per input
    out_shape: tuple[int, ...]       # (O, Ho, Wo) or (F,)
    e_out: int                       # output grid exponent: value = integer * 2**e_out
    bits: int                        # output width (32 for GEMM accumulators)
    signed: bool
    narrow: bool = False             # symmetric range (-2**(b-1) + 1 ...)
    attrs: dict = field(default_factory=dict)   # stride, padding, dilation, groups, k, relu, shift, lo, hi, hw..
    weight: np.ndarray | None = None  # int8 (O, C/g, kh, kw) or (O, F)
    bias: np.ndarray | None = None    # int32 (O,)

    def __post_init__(self):
        if self.op in GEMM_OPS:
            if self.weight is None or self.bias is None:
                raise SanitasError(f"{self.name}: a {self.op} record needs weights and biases")
            w = np.asarray(self.weight)
            if w.min(initial=0) < -128 or w.max(initial=0) > 127:
                raise SanitasError(f"{self.name}: weights outside int8")

    @property
    def size(self) -> int:
        """Elements of one image's output tensor."""
        return int(np.prod(self.out_shape))

    @property
    def gemm(self) -> tuple[int, int, int]:
        """(M, K, N) of the layer's GEMM per group: output pixels, reduction length, output channels / groups."""
        w = np.asarray(self.weight)
        m = int(np.prod(self.out_shape[1:])) if len(self.out_shape) == 3 else 1
        return m, int(np.prod(w.shape[1:])), int(w.shape[0]) // int(self.attrs.get("groups", 1))


def _layer_base():
    from hls4ml.model.layers import Layer
    return Layer


def _make_classes():
    """The hls4ml layer classes (built lazily: importing sanitas must not import hls4ml)."""
    from hls4ml.model.attributes import Attribute
    from hls4ml.model.types import IntegerPrecisionType

    Layer = _layer_base()

    class SanitasLayer(Layer):
        """Base: the output variable has the record's shape in hls4ml's layout and the precision the pass set."""
        _expected_attributes = [Attribute("record", value_type=SanitasRecord),
                                Attribute("hls_shape", value_type=list)]

        def initialize(self):
            self.add_output_variable(list(self.get_attr("hls_shape")), precision=self.get_attr("out_precision"))

    class SanitasGemm(SanitasLayer):
        """conv / linear / depthwise: im2col + systolic GEMM (int8 weights, int32 biases, int32 wrapping acc)."""

        def initialize(self):
            super().initialize()
            rec: SanitasRecord = self.get_attr("record")
            self.add_weights_variable(name="weight", var_name="w{index}", type_name="sanitas_w{index}_t",
                                      precision=IntegerPrecisionType(8, signed=True),
                                      data=np.asarray(rec.weight, dtype=np.int64).reshape(-1))
            self.add_weights_variable(name="bias", var_name="b{index}", type_name="sanitas_b{index}_t",
                                      precision=IntegerPrecisionType(32, signed=True),
                                      data=np.asarray(rec.bias, dtype=np.int64).reshape(-1))

    class SanitasRequant(SanitasLayer):
        """Requantisation (the ``act`` op): shift with round half to even, saturation, optional ReLU."""

    class SanitasMaxPool(SanitasLayer):
        """k x k max pool, padding -inf."""

    class SanitasAdd(SanitasLayer):
        """Exact residual add (its requantisation is the following SanitasRequant)."""

    class SanitasConcat(SanitasLayer):
        """Channel concat of two tensors on one grid (a copy; a QNet concat of n inputs is a chain of n - 1)."""

    class SanitasGlobalSum(SanitasLayer):
        """Exact sum over H, W (the 1/(H*W) of an average pool is folded into the next requantisation)."""

    return {c.__name__: c for c in (SanitasGemm, SanitasRequant, SanitasMaxPool, SanitasAdd, SanitasConcat,
                                          SanitasGlobalSum)}


_CLASSES: dict = {}

#: record op -> hls4ml layer class name
CLASS_OF_OP = {"conv": "SanitasGemm", "linear": "SanitasGemm", "act": "SanitasRequant",
               "maxpool": "SanitasMaxPool", "add": "SanitasAdd", "concat": "SanitasConcat",
               "gsum": "SanitasGlobalSum"}


def layer_classes() -> dict:
    """name -> class of the sanitas hls4ml layers (created once)."""
    if not _CLASSES:
        _CLASSES.update(_make_classes())
    return _CLASSES


def records(hls_model) -> list[SanitasRecord]:
    """The `SanitasRecord` of every sanitas layer of a converted model, in graph order."""
    return [layer.get_attr("record") for layer in hls_model.get_layers() if layer.get_attr("record") is not None]

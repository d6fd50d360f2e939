"""Brevitas INT8 layer presets of sanitas (the integer contract of docs/architecture.md).

* weights: int8, narrow range [-127, 127], per-tensor power-of-two scale (``Int8WeightPerTensorFixedPoint``);
* activations: uint8 after ReLU / int8 otherwise, per-tensor learned power-of-two scale;
* bias: int32 at the accumulator scale ``s_in * s_w`` (``Int32Bias``);
* rounding: round half to even everywhere (Brevitas ``ROUND``; see ``sanitas.golden.rounding``).

Every layer returns Brevitas ``QuantTensor``s so the scale of each edge is known and exportable.
"""
from __future__ import annotations

from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int32Bias,
                            Uint8ActPerTensorFixedPoint)

WEIGHT_QUANT = Int8WeightPerTensorFixedPoint   # int8 narrow, 2^k scale
ACT_U8_QUANT = Uint8ActPerTensorFixedPoint     # uint8, 2^k scale (after ReLU)
ACT_I8_QUANT = Int8ActPerTensorFixedPoint      # int8, 2^k scale
BIAS_QUANT = Int32Bias                         # int32 at the accumulator scale


def qconv(c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0, groups: int = 1,
          dilation: int = 1) -> QuantConv2d:
    """INT8 conv with int32 bias; its output is the int32 accumulator as a QuantTensor."""
    return QuantConv2d(c_in, c_out, k, stride=stride, padding=padding, groups=groups, dilation=dilation,
                       bias=True, weight_quant=WEIGHT_QUANT, bias_quant=BIAS_QUANT, return_quant_tensor=True)


def qlinear(c_in: int, c_out: int) -> QuantLinear:
    """INT8 fully connected layer with int32 bias; returns the int32 accumulator as a QuantTensor."""
    return QuantLinear(c_in, c_out, bias=True, weight_quant=WEIGHT_QUANT, bias_quant=BIAS_QUANT,
                       return_quant_tensor=True)


def qrelu() -> QuantReLU:
    """ReLU + requantisation to uint8 (power-of-two scale)."""
    return QuantReLU(act_quant=ACT_U8_QUANT, return_quant_tensor=True)


def qident() -> QuantIdentity:
    """Requantisation to int8 (power-of-two scale), no non-linearity."""
    return QuantIdentity(act_quant=ACT_I8_QUANT, return_quant_tensor=True)

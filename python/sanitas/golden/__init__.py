"""Golden integer model: the bit-exact reference of every sanitas level (see rounding.py for the rule)."""
from .model import GNode, GoldenModel, conv2d_int, export_golden, wrap32
from .rounding import int_range, quantize_float, requantize, shift_round_half_even

__all__ = ["GNode", "GoldenModel", "export_golden", "conv2d_int", "wrap32", "int_range", "quantize_float",
           "requantize", "shift_round_half_even"]

"""sanitas.rtl: Python-generated Verilog for the sanitas accelerator and its area estimate.

`generate` renders the jinja2 templates in `templates/` (INT8 output-stationary systolic array with one ABFT
total-checksum column, Huang & Abraham 1984) into build/, and runs the cocotb/Icarus bench of
rtl_tests/systolic_array once (`run_cocotb_smoke`); `area` synthesises generated Verilog with yosys
(`synth_xilinx`) and reports LUT/FF/DSP/CARRY counts.
"""
from sanitas.rtl.area import estimate_area
from sanitas.rtl.generate import SystolicArrayParams, generate_systolic_array, run_cocotb_smoke

__all__ = ["SystolicArrayParams", "estimate_area", "generate_systolic_array", "run_cocotb_smoke"]

"""sanitas.rtl: Python-generated Verilog for the sanitas accelerator, its fault-port adapter and area estimate.

`generate` renders the jinja2 templates in `templates/` (INT8 output-stationary systolic array with one ABFT
total-checksum column, Huang & Abraham 1984) for one `sanitas.config.ArrayConfig` into build/, and runs the
cocotb/Icarus bench of rtl_tests/systolic_array (`run_cocotb_smoke`, `run_cocotb_replay`); `faults` drives the
array's fault-injection ports from `sanitas.faults.Fault` records; `area` synthesises generated Verilog with yosys
(`synth_xilinx`) and reports LUT/FF/DSP/CARRY counts.
"""
from sanitas.rtl.area import estimate_area
from sanitas.rtl.generate import generate_systolic_array, run_cocotb_replay, run_cocotb_smoke, verilog_parameters

__all__ = ["estimate_area", "generate_systolic_array", "run_cocotb_replay", "run_cocotb_smoke", "verilog_parameters"]

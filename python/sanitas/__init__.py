"""sanitas: a fault-tolerant CNN accelerator co-design flow.

Search (FTT-NAS) -> Brevitas INT8 -> bit-exact integer golden model -> fault campaigns ->
Sanity ABFT + input DMR -> hls4ml/HLS -> generated RTL (cocotb-verified) -> PYNQ.
See docs/architecture.md for the layout and the integer contract between levels.
"""
__version__ = "0.1.0"

"""sanitas.hls: HLS C++ side of the flow — C-simulation driver of the hls/ kernels (csim.py) and the hls4ml conversion."""

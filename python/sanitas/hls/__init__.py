"""sanitas.hls: HLS C++ side of the flow.

`csim` drives the C simulation of the hls/ kernels for one ArrayConfig (and their HLS fault adapter), `convert`
lowers a Brevitas network through QONNX to a compiled hls4ml project, `meta` is that project's metadata record.
"""

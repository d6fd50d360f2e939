"""sanitas.board: run the accelerator from Python -- real PYNQ board, emulated board, or golden-model sim.

``open_board("pynq" | "fake" | "sim", compute=..., ...)`` returns an object with ``infer(x_int8) -> (logits,
counters)`` and ``status()`` (boards also ``inject(fault)``, ``reload(layer)``). driver.py is the PYNQ driver of
``sanitas_top`` (register map: ``sanitas.hls.regmap``); fake.py the fake ``pynq.Device`` (registers, DDR, IP
model); engine.py what computes behind the fake IP (the csim library through its C ABI, the protected golden
model, a callback); overlay.py the board data and the .bit/.hwh/.json writer; bd.py the Vivado block design and
HLS export tcl of a real overlay; sim.py the backends; demo.py the board notebook's steps. Names are imported
lazily so ``import sanitas.board`` stays cheap.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "open_board": "sim", "SimAccelerator": "sim", "FakeBoard": "sim", "BACKENDS": "sim",
    "SanitasIP": "driver", "SanitasOverlay": "driver", "REGISTERS": "driver", "VLNV": "driver",
    "BoardError": "driver", "BoardInputError": "driver", "BoardTimeout": "driver", "BoardUnavailable": "driver",
    "FakeDevice": "fake", "write_overlay": "overlay", "load_board": "overlay", "make_hwh": "overlay",
    "CsimEngine": "engine", "GoldenEngine": "engine", "render_block_design": "bd", "write_design": "bd",
}
__all__ = ["BACKENDS", "VLNV", "BoardError", "BoardInputError", "BoardTimeout", "BoardUnavailable", "CsimEngine",
           "FakeBoard", "FakeDevice", "GoldenEngine", "REGISTERS", "SanitasIP", "SanitasOverlay", "SimAccelerator",
           "load_board", "make_hwh", "open_board", "render_block_design", "write_design", "write_overlay"]
# __all__ = the keys of _EXPORTS (tests/board/test_exports.py checks)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

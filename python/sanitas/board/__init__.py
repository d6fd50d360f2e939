"""sanitas.board: run the accelerator from Python -- real PYNQ board, emulated board, or golden-model sim.

``open_board("pynq" | "fake" | "sim", compute=..., ...)`` returns an object with ``infer(x_int8)`` and
``status()``. driver.py is the PYNQ driver and the register map of ``sanitas_top``; fake.py the fake
``pynq.Device`` (registers, DDR, IP model); overlay.py the board data and the .bit/.hwh/.json writer; sim.py the
backends. Names are imported lazily so ``import sanitas.board`` stays cheap.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "open_board": "sim", "SimAccelerator": "sim", "FakeBoard": "sim", "BACKENDS": "sim",
    "SanitasIP": "driver", "SanitasOverlay": "driver", "REGISTERS": "driver", "VLNV": "driver",
    "BoardError": "driver", "BoardInputError": "driver", "BoardTimeout": "driver", "BoardUnavailable": "driver",
    "FakeDevice": "fake", "write_overlay": "overlay", "load_board": "overlay", "make_hwh": "overlay",
}
__all__ = ["BACKENDS", "VLNV", "BoardError", "BoardInputError", "BoardTimeout", "BoardUnavailable", "FakeBoard",
           "FakeDevice", "REGISTERS", "SanitasIP", "SanitasOverlay", "SimAccelerator", "load_board", "make_hwh",
           "open_board", "write_overlay"]   # = the keys of _EXPORTS (tests/board/test_exports.py checks)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

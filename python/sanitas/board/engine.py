"""What computes behind the fake board's ``sanitas_top`` registers: the compiled accelerator, or a Python callback.

The fake IP (``fake.FakeSanitasTop``) reads the images from the fake DDR and hands them, with its register file,
to an engine's ``run(x, regs) -> (int32 logits (N, classes), {counter: int})``:

* ``CsimEngine`` -- the csim build of ``sanitas_top`` as a shared library (``sanitas.hls.top.build_top_library``),
  loaded with ctypes and called through its one C entry point
  ``int sanitas_top_axi(const int8_t *in, int32_t *out, uint32_t *regs)``: ``regs`` is a copy of the IP's
  s_axilite register file (uint32 words at byte offset / 4, ``sanitas.hls.regmap``), so the batch size ``n`` and
  the fault-injection registers the driver wrote reach the C++ exactly as the HLS top would see them, and the
  counters it writes into ``regs`` become the IP's counter registers. Off-board runs execute the accelerator's
  own code.
* ``GoldenEngine`` -- the golden model, under protection ``spec`` (``sanitas.protect.ProtectedModel``), behind
  the same registers: the fi_* words are decoded the way the C++ top reads them (site code, node index, flat
  element index, AND/OR/XOR masks on the site's bit pattern; ``sanitas.hls.faultport``) into a ``run_int`` hook,
  and the ``Report``'s counters become the counter registers. It stands in for a protected csim while
  ``sanitas_top`` generates the unprotected accelerator only.
* ``CallbackEngine`` -- ``compute(x) -> logits | (logits, counters)`` (a golden model's ``run_int`` or any
  callable): registers other than ``n`` are not seen, so it refuses a run with ``fi_enable`` set.

``ENGINES`` maps the ``ip`` names (what ``sanitas board --json`` reports) to the classes.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
from pathlib import Path

import numpy as np

from ..hls import regmap
from .driver import STATUS_COUNTERS, BoardError, BoardUnavailable, split_result, to_logits


class CallbackEngine:
    """A Python callable as the IP's computation (no register besides ``n`` reaches it)."""

    kind = "callback"

    def __init__(self, compute, input_shape, num_classes: int):
        self.compute, self.input_shape, self.num_classes = compute, tuple(input_shape), int(num_classes)

    def run(self, x: np.ndarray, regs: np.ndarray) -> tuple[np.ndarray, dict]:
        if regs[regmap.word("fi_enable")] & 1:
            raise BoardError("this fake sanitas_top runs a Python callback: it has no fault-injection port "
                             "(open the fake board with ip='csim')")
        logits, counters = split_result(self.compute(x))
        return to_logits(logits, len(x), self.num_classes), counters


class CsimEngine:
    """``libsanitas_top.so`` (the csim of sanitas_top) called through ``sanitas_top_axi``."""

    kind = "csim"
    SYMBOL = "sanitas_top_axi"

    def __init__(self, library, input_shape, num_classes: int):
        self.path = Path(library)
        if not self.path.is_file():
            raise BoardUnavailable(f"no csim library at {self.path} (sanitas.hls.top.build_top_library builds it)")
        self.input_shape, self.num_classes = tuple(input_shape), int(num_classes)
        # dlopen keeps one library per path for the process: a rebuilt library at the same path (another
        # network, same folder) would silently be the old one, so load a copy named by its content
        data = self.path.read_bytes()
        self.loaded = self.path.with_name(f".{self.path.stem}-{hashlib.sha256(data).hexdigest()[:16]}.so")
        if not self.loaded.is_file():
            tmp = self.loaded.with_name(f"{self.loaded.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(self.loaded)
        try:
            lib = ctypes.CDLL(str(self.loaded))
            fn = getattr(lib, self.SYMBOL)
        except (OSError, AttributeError) as e:
            raise BoardUnavailable(f"{self.path} does not load as the csim of sanitas_top: {e}") from None
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._lib, self._fn = lib, fn
        self.calls = 0

    def run(self, x: np.ndarray, regs: np.ndarray) -> tuple[np.ndarray, dict]:
        """int8 (N, *input_shape) and the register file (uint32 words) -> (int32 logits, counters)."""
        x = np.ascontiguousarray(x, dtype=np.int8)
        if x.shape[1:] != self.input_shape:
            raise BoardError(f"csim input shape {x.shape[1:]} is not the network's {self.input_shape}")
        words = np.array(regs[:regmap.REG_WORDS], dtype=np.uint32)    # the C++ reads and writes its own copy
        words[regmap.word("n")] = len(x)
        y = np.zeros((len(x), self.num_classes), dtype=np.int32)      # (N, classes) int32, C-order
        rc = self._fn(x.ctypes.data, y.ctypes.data, words.ctypes.data)
        self.calls += 1
        if rc != 0:
            raise BoardError(f"{self.SYMBOL} returned {rc} (internal error of the csim)")
        return y, {k: int(words[regmap.word(k)]) for k in STATUS_COUNTERS}


class GoldenEngine:
    """The golden model (protected by ``spec``) behind the register file, fault port included (module doc)."""

    kind = "golden"

    def __init__(self, gm, spec="none"):
        from ..protect.model import ProtectedModel
        self.gm, self.spec = gm, spec
        self.input_shape, self.num_classes = tuple(gm.input_shape), int(gm.num_classes)
        self.protected = ProtectedModel(gm, spec) if spec not in (None, "none") else None
        self.calls = 0

    def reset(self) -> None:
        """A PL configuration: every parameter memory back to its trusted image."""
        if self.protected is not None:
            self.protected.reset()

    def register_hook(self, regs: np.ndarray):
        """The ``run_int`` hook the fi_* words describe (None when fi_enable is clear)."""
        from ..faults.fault import apply_masks, site_info
        from ..hls.faultport import SITE_CODES
        w = {k: int(regs[regmap.word(k)]) for k, _ in regmap.FAULT_REGISTERS}
        if not w["fi_enable"] & 1:
            return None
        sites = {v: k for k, v in SITE_CODES.items()}
        if w["fi_site"] not in sites or w["fi_layer"] >= len(self.gm.nodes):
            raise BoardError(f"fault registers name no site of this network (fi_site={w['fi_site']}, "
                             f"fi_layer={w['fi_layer']})")
        site, layer = sites[w["fi_site"]], self.gm.nodes[w["fi_layer"]].name
        info = site_info(self.gm, site, layer)
        if w["fi_index"] >= max(1, int(np.prod(info.shape))):
            raise BoardError(f"fi_index {w['fi_index']} is outside {site} of {layer} {tuple(info.shape)}")
        index = tuple(int(i) for i in np.unravel_index(w["fi_index"], info.shape)) if info.shape else ()
        masks = (w["fi_and"], w["fi_or"], w["fi_xor"])

        def hook(node, s, arr):
            if node.name != layer or s != site:
                return arr
            out = np.array(arr, dtype=np.int64, copy=True)
            idx = ((slice(None),) + index) if info.batched else index
            out[idx] = apply_masks(out[idx], *masks, info.bits, info.signed)
            return out
        return hook

    def run(self, x: np.ndarray, regs: np.ndarray) -> tuple[np.ndarray, dict]:
        hook = self.register_hook(regs)
        self.calls += 1
        reloaded = 0
        if int(regs[regmap.word("reload")]) & 1:   # the per-layer reload port (as sanitas_top: escalations)
            i = int(regs[regmap.word("reload_layer")])
            if 0 <= i < len(self.gm.nodes) and self.gm.nodes[i].weight is not None:
                reloaded = 1
                mem = self.protected.memory(self.gm.nodes[i].name) if self.protected is not None else None
                if mem is not None:
                    mem.reload()
        if len(x) == 0:
            return (np.zeros((0, self.num_classes), np.int32),
                    dict.fromkeys(STATUS_COUNTERS, 0) | {"escalations": reloaded})
        if self.protected is None:
            return (to_logits(self.gm.run_int(x, hook=hook), len(x), self.num_classes),
                    dict.fromkeys(STATUS_COUNTERS, 0) | {"escalations": reloaded})
        y, rep = self.protected.run(x, hook)
        rep.escalations += reloaded
        return to_logits(y, len(x), self.num_classes), {k: int(getattr(rep, k)) for k in STATUS_COUNTERS}


ENGINES = {"csim": CsimEngine, "golden": GoldenEngine, "callback": CallbackEngine}

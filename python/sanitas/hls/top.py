"""Build and drive ``sanitas_top`` as a shared library: the csim of the accelerator behind the board's ABI.

``build_top_library(gm, spec, out_dir, array=None, fault_port=False) -> Path`` writes the network's C++
(``firmware.write_firmware``) into ``out_dir`` and compiles it with g++ (``-shared -fPIC``, one translation unit,
``-O1``) against the ap_types headers inside hls4ml into ``libsanitas_top.so``, exporting

    extern "C" int sanitas_top_axi(const int8_t *in, int32_t *out, uint32_t *regs);

``regs`` is the s_axilite register file as uint32 words at byte offset / 4 (``regmap.REGISTERS``): the call reads
``n`` and the fi_* registers, runs n images, writes int32 logits (n, classes) and the counters. Builds are cached
by content hash (sources, kernel headers, flags) under ``build/hls/top/``; a hit costs no compile.
``TopLibrary`` loads a built library with ctypes and runs it (``run(xq, fault=None, persistent=False) -> (logits,
counters)``; ``reload(layer)``: the per-layer reload port); ``faultport.fault_registers`` turns a ``Fault`` into
the fi_* words (protection-state records need the ``ProtectedModel``: ``TopLibrary(path, gm, pm)``).
``compile_net_csim`` builds the network testbench binary (``-DSANITAS_TB``) for ``make -C hls csim``.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from ..config import ArrayConfig
from ..errors import SanitasError
from ..paths import REPO_ROOT
from . import regmap
from .csim import ap_types_include
from .firmware import CPP, write_firmware

LIB = "libsanitas_top.so"
CXXFLAGS = ("-std=c++14", "-O1", "-Wall", "-Wno-unknown-pragmas", "-Wno-unused-label", "-Wno-unused-variable",
            "-Wno-maybe-uninitialized", "-Wno-uninitialized")
HLS_INCLUDE = REPO_ROOT / "hls" / "include"
CACHE = REPO_ROOT / "build" / "hls" / "top"


def check_spec(gm, spec) -> None:
    """Refuse a protection spec that asks for a scheme this top does not generate yet (one line)."""
    from ..protect.model import resolve_map
    from .firmware import BUILT_SCHEMES
    used = sorted({repr(s) for ss in resolve_map(gm, spec or "none").values() for s in ss} - set(BUILT_SCHEMES))
    if used:
        raise SanitasError(f"sanitas_top generates the schemes none, {', '.join(BUILT_SCHEMES)} only; "
                           f"asked for {', '.join(used)}")


def _digest(src_dir: Path, flags: tuple) -> str:
    h = hashlib.sha256(" ".join(flags).encode())
    for p in sorted(src_dir.glob("*.h")) + [src_dir / CPP] + sorted(HLS_INCLUDE.glob("sanitas/*.h")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:20]


def _compile(src_dir: Path, flags: tuple, target: str, extra: tuple, fresh: bool = False) -> tuple[Path, float]:
    """Compile ``src_dir/sanitas_net.cpp`` (cached by content hash; ``fresh``: compile even on a hit, to time
    it); returns (artefact in the cache, seconds)."""
    if shutil.which("g++") is None:
        raise SanitasError("g++ not found: the HLS C simulation needs a C++ compiler")
    key = _digest(src_dir, flags + extra)
    cdir = CACHE / key
    art = cdir / target
    if art.exists() and not fresh:
        return art, 0.0
    cdir.mkdir(parents=True, exist_ok=True)
    tmp = cdir / f".{target}.{os.getpid()}.tmp"
    cmd = ["g++", *flags, *extra, f"-I{HLS_INCLUDE}", f"-I{src_dir}", "-isystem", str(ap_types_include()),
           str(src_dir / CPP), "-o", str(tmp)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = next((ln for ln in r.stderr.splitlines() if "error" in ln), r.stderr.strip()[:300])
        raise SanitasError(f"g++ failed on {src_dir / CPP}: {first}")
    tmp.replace(art)
    return art, time.monotonic() - t0


def build_top_library(gm, spec="none", out_dir=None, *, array: ArrayConfig | None = None,
                      fault_port: bool = False) -> Path:
    """Generate and compile ``sanitas_top`` of ``gm`` as ``out_dir/libsanitas_top.so`` (module doc)."""
    path, _ = build_top(gm, spec, out_dir, array=array, fault_port=fault_port)
    return path


def source_dir(gm, out_dir=None) -> Path:
    """The folder the top's C++ of ``gm`` is written to: ``out_dir``, else ``build/hls/top/src/<net name>``."""
    return Path(out_dir) if out_dir is not None else CACHE / "src" / gm.spec.get("name", "net")


def build_top(gm, spec="none", out_dir=None, *, array=None, fault_port=False, fresh=False,
              model_graph=None) -> tuple[Path, float]:
    """``build_top_library`` that also returns the g++ seconds (0.0 on a cache hit; ``fresh``: always compile).
    ``model_graph``: a ModelGraph of ``gm``'s QNet converted by ``ext.convert.to_sanitas_hls4ml``: the C++ is
    written from it (``ext.emit.write_firmware_ext``) instead of from ``gm``."""
    check_spec(gm, spec)
    out = source_dir(gm, out_dir)
    if model_graph is not None:
        from .ext.emit import write_firmware_ext
        write_firmware_ext(model_graph, out, array, spec)
    else:
        write_firmware(gm, out, array, spec)
    extra = ("-shared", "-fPIC", "-fvisibility=hidden", "-fvisibility-inlines-hidden", "-DSANITAS_TOP_AXI")
    extra += ("-DSANITAS_FAULT_PORT",) if fault_port else ()
    art, secs = _compile(out, CXXFLAGS, LIB, extra, fresh)
    dst = out / LIB
    tmp = out / f".{LIB}.tmp"
    shutil.copyfile(art, tmp)
    tmp.replace(dst)
    return dst, secs


def compile_net_csim(gm, out_dir, *, array=None, spec="none") -> tuple[Path, float]:
    """The network testbench binary (``-DSANITAS_TB``) of protection ``spec`` in ``out_dir/csim``; returns (path,
    g++ seconds)."""
    check_spec(gm, spec)
    out = Path(out_dir)
    write_firmware(gm, out, array, spec)
    art, secs = _compile(out, CXXFLAGS, "csim", ("-DSANITAS_TB",))
    dst = out / "csim"
    shutil.copyfile(art, out / ".csim.tmp")
    os.chmod(out / ".csim.tmp", 0o755)
    (out / ".csim.tmp").replace(dst)
    return dst, secs


class TopLibrary:
    """A loaded ``libsanitas_top.so``: ``run(xq, fault=None)`` -> (int32 logits (N, classes), counters dict)."""

    def __init__(self, path, gm, pm=None):
        self.path, self.gm, self.pm = Path(path), gm, pm   # pm: the ProtectedModel of state-site records
        self.lib = ctypes.CDLL(str(self.path))
        self.lib.sanitas_top_axi.restype = ctypes.c_int
        self.lib.sanitas_top_axi.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.sanitas_top_stats.argtypes = [ctypes.c_void_p]
        self.lib.sanitas_node_output.restype = ctypes.c_int
        self.lib.sanitas_node_output.argtypes = [ctypes.c_int, ctypes.c_void_p]

    def run(self, xq, fault=None, registers: dict | None = None, persistent: bool = False) -> tuple[np.ndarray, dict]:
        """One ap_start on the images ``xq`` (may be empty); ``fault`` replayed at every read (``persistent``: an
        upset written once into the parameter memory, ``faultport.fault_registers``); ``registers``: more words."""
        from .faultport import fault_registers
        x = np.ascontiguousarray(np.asarray(xq), dtype=np.int8)
        if x.ndim == 1 and x.size == 0:
            x = x.reshape((0,) + tuple(self.gm.input_shape))
        if x.shape[1:] != tuple(self.gm.input_shape):
            raise SanitasError(f"input must have shape (N, {', '.join(map(str, self.gm.input_shape))}), "
                               f"got {x.shape}")
        y = np.zeros((len(x), self.gm.num_classes), dtype=np.int32)
        regs = np.zeros(regmap.REG_WORDS, dtype=np.uint32)
        regs[regmap.word("n")] = len(x)
        words = dict(registers or {})
        if fault is not None:
            words.update(fault_registers(fault, self.gm, self.pm, persistent))
        for k, v in words.items():
            regs[regmap.word(k)] = np.uint32(int(v) & 0xFFFFFFFF)
        rc = self.lib.sanitas_top_axi(x.ctypes.data, y.ctypes.data, regs.ctypes.data)
        if rc != 0:
            raise SanitasError(f"sanitas_top_axi returned {rc}")
        return y, {k: int(regs[regmap.word(k)]) for k in regmap.STATUS_COUNTERS}

    def reload(self, layer: str) -> dict:
        """The per-layer reload port: rewrite ``layer``'s parameter memory from the trusted image (one ap_start with
        n = 0); returns the counters (``escalations``: 1 when the layer has parameter memory)."""
        names = [n.name for n in self.gm.nodes]
        if layer not in names:
            raise SanitasError(f"layer '{layer}' does not exist")
        return self.run(np.zeros((0,) + tuple(self.gm.input_shape), np.int8),
                        registers={"reload_layer": names.index(layer), "reload": 1})[1]

    def node_output(self, name: str) -> np.ndarray:
        """Output of node ``name`` for the last image of the last run, in its (C, H, W) / (F,) shape."""
        i = [n.name for n in self.gm.nodes].index(name)
        size = self.lib.sanitas_node_output(i, None)
        out = np.zeros(size, dtype=np.int32)
        self.lib.sanitas_node_output(i, out.ctypes.data)
        return out.reshape(self.gm.shapes()[name][1:])

    def stats(self) -> dict:
        """Engine statistics of the last run: cycles (estimate), data MACs, flagged GEMM rows (all images)."""
        out = np.zeros(3, dtype=np.int64)
        self.lib.sanitas_top_stats(out.ctypes.data)
        return {"cycles": int(out[0]), "macs": int(out[1]), "flagged": int(out[2])}

"""Board backends without a board: ``SimAccelerator`` (direct call) and ``FakeBoard`` (full PYNQ stack, fake device).

All backends serve ``infer(x_int8) -> (int32 logits, counters)`` and ``status() -> counters``; the board ones
(``fake``, ``pynq``) also ``inject(fault)`` through the fault-injection registers and ``reload(layer)``:

* ``sim``  -- ``SimAccelerator(compute, input_shape, num_classes)``: validates like the driver and calls
  ``compute`` (a golden model's ``run_int``, or any ``compute(x_int8) -> logits | (logits, counters)``).
* ``fake`` -- ``FakeBoard(compute, ...)``: writes the overlay (.bit/.hwh/.json) under ``build/board/<board>/``,
  installs a ``fake.FakeDevice`` as ``pynq.Device.active_device``, loads ``SanitasOverlay`` through pynq and
  talks to the emulated IP through registers and DDR (fake.py); restores pynq's state on ``close``. For a golden
  model the IP is the csim of ``sanitas_top`` (``ip="csim"``: the library ``sanitas.hls.top.build_top_library``
  compiles, with the fault port, called through its C ABI by engine.py); for a plain callable it is the callable.
* ``pynq`` -- the real board (``open_board("pynq", bitfile=...)``), only on a PYNQ image.

``compute`` may be a golden model (``sanitas.golden.export_golden(...)``): its ``run_int``, ``input_shape``
and ``num_classes`` are used. ``pynq`` is not needed by this module unless the fake/pynq backends are opened.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..paths import REPO_ROOT
from .driver import (STATUS_COUNTERS, VLNV, BoardError, BoardUnavailable, check_input, split_result,
                     to_logits)
from .engine import ENGINES, CallbackEngine, CsimEngine, GoldenEngine
from .overlay import load_board

BACKENDS = ("pynq", "fake", "sim")


def _resolve(compute, input_shape, num_classes):
    """(callable, input_shape, num_classes) from a callable or a golden model (``run_int`` + shapes)."""
    if compute is None:
        raise BoardError("a compute callable (or golden model) is needed for this backend")
    fn = compute.run_int if hasattr(compute, "run_int") else compute
    if not callable(fn):
        raise BoardError(f"compute must be callable or have run_int, got {type(compute).__name__}")
    input_shape = input_shape if input_shape is not None else getattr(compute, "input_shape", None)
    num_classes = num_classes if num_classes is not None else getattr(compute, "num_classes", None)
    if input_shape is None or num_classes is None:
        raise BoardError("input_shape and num_classes are needed (or pass a golden model that has them)")
    return fn, tuple(int(s) for s in input_shape), int(num_classes)


class SimAccelerator:
    """The accelerator's calls served by a Python callable: same checks, same int32 contract, no pynq."""

    def __init__(self, compute, input_shape=None, num_classes=None):
        self.compute, self.input_shape, self.num_classes = _resolve(compute, input_shape, num_classes)
        self._status = {k: 0 for k in STATUS_COUNTERS}
        self.runs = 0

    def infer(self, x_int8: np.ndarray, timeout_s: float | None = None) -> tuple[np.ndarray, dict]:
        """int8 (N, *input_shape) or input_shape -> (int32 logits (N, classes) or (classes,), counters)."""
        x, single = check_input(x_int8, self.input_shape)
        logits, counters = split_result(self.compute(x))
        y = to_logits(logits, x.shape[0], self.num_classes)
        self._status = counters
        self.runs += 1
        return (y[0] if single else y), dict(counters)

    def status(self) -> dict:
        """Counters of the last run (what the IP's STATUS_COUNTERS registers would hold)."""
        return dict(self._status)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FakeBoard:
    """A board emulated under pynq: ``with FakeBoard(compute, shape, classes) as b: b.accel.infer(x)``.

    ``board``: a name in ``boards/`` (pynq-z2, zcu104, kv260). ``out_dir``: where the overlay files go
    (default ``build/board/<board>``). ``latency_s``/``stall``: IP timing (see ``fake.FakeSanitasTop``).
    ``ddr_size``/``ddr_base``: the fake DDR pool. ``ip``: what computes behind the registers, ``"csim"`` (the
    default for a golden model: ``sanitas_top`` compiled for protection ``spec`` with the fault port, or
    ``library``, an already built ``libsanitas_top.so``), ``"golden"`` (the golden model protected by ``spec``
    behind the registers, fault port included) or ``"callback"`` (the default for a plain callable).
    After ``open()``: ``.device``, ``.overlay``, ``.accel``, ``.ip`` (the IP model), ``.ip_kind``.
    """

    def __init__(self, compute, input_shape=None, num_classes=None, board: str = "pynq-z2", out_dir=None,
                 name: str = "sanitas", latency_s: float = 0.0, stall: bool = False, ddr_size: int = 32 << 20,
                 ddr_base: int | None = None, ip: str | None = None, spec="none", library=None):
        self.model = compute if hasattr(compute, "nodes") else None      # a golden model (layers, fault encoding)
        self.compute, self.input_shape, self.num_classes = _resolve(compute, input_shape, num_classes)
        self.ip_kind = ip if ip is not None else ("csim" if self.model is not None or library else "callback")
        if self.ip_kind not in ENGINES:
            raise BoardError(f"unknown fake IP {self.ip_kind!r}; choose one of {', '.join(ENGINES)}")
        if self.ip_kind == "csim" and self.model is None and library is None:
            raise BoardError("ip 'csim' compiles sanitas_top from a golden model: pass one (or library=...)")
        self.spec, self.library = spec, library
        load_board(board)                                  # an unknown board fails here, before any build
        self.board, self.name = board, name
        self.out_dir = Path(out_dir) if out_dir is not None else REPO_ROOT / "build" / "board" / str(board)
        self.latency_s, self.stall, self.ddr_size, self.ddr_base = latency_s, stall, ddr_size, ddr_base
        self.device = self.overlay = self.bitfile = None
        self._saved = None

    # ---- pynq global state: the active device and the Clocks singleton
    @staticmethod
    def _snapshot():
        from pynq import Clocks, Device
        return {"device": Device.__dict__.get("_active_device"), "clocks": Clocks.__dict__.get("device"),
                "clocks_instance": Clocks.__dict__.get("_real_instance")}

    def _install(self) -> None:
        from pynq import Clocks, Device
        self._saved = self._snapshot()
        Device.active_device = self.device
        Clocks.device = self.device
        if "_real_instance" in Clocks.__dict__:     # the cached Clocks talks to the previous device
            del Clocks._real_instance

    def _restore(self) -> None:
        from pynq import Clocks, Device
        saved, self._saved = self._saved, None
        for cls, attr, value in ((Device, "_active_device", saved["device"]),
                                 (Clocks, "_real_instance", saved["clocks_instance"])):
            if value is not None:
                setattr(cls, attr, value)
            elif attr in cls.__dict__:
                delattr(cls, attr)                  # there was none: pynq probes/creates lazily again
        Clocks.device = saved["clocks"]

    # ---- lifecycle
    def _engine(self):
        """The IP's computation (engine.py); ``csim`` builds the library on first use (cached by content)."""
        if self.ip_kind == "callback":
            return CallbackEngine(self.compute, self.input_shape, self.num_classes)
        if self.ip_kind == "golden":
            if self.model is None:
                raise BoardError("ip 'golden' runs the golden model behind the registers: pass one")
            return GoldenEngine(self.model, self.spec)
        if self.library is None:
            try:
                from ..hls.top import build_top_library
            except ImportError:
                raise BoardUnavailable("ip 'csim' needs sanitas.hls.top (the csim build of sanitas_top)") from None
            self.library = build_top_library(self.model, self.spec, self.out_dir / "top", fault_port=True)
        return CsimEngine(self.library, self.input_shape, self.num_classes)

    def open(self) -> "FakeBoard":
        from .driver import SanitasOverlay
        from .fake import FakeDevice, FakeSanitasTop, write_overlay
        if self._saved is not None:
            raise BoardUnavailable("FakeBoard is already open")
        engine = self._engine()
        layers = tuple(n.name for n in self.model.nodes) if self.model is not None else ()
        self.bitfile = write_overlay(self.board, self.out_dir, self.name, self.input_shape, self.num_classes,
                                     fault_port=self.ip_kind != "callback", layers=layers,
                                     spec=self.spec if self.ip_kind != "callback" else None)
        self.device = FakeDevice(self.board, ddr_size=self.ddr_size, ddr_base=self.ddr_base)
        self.device.register_model(VLNV, lambda dev, desc: FakeSanitasTop(dev, desc, engine, self.latency_s,
                                                                          self.stall))
        self._install()
        try:   # through pynq, on the active (fake) device
            self.overlay = SanitasOverlay(str(self.bitfile), model=self.model)
        except BaseException:
            self._restore()
            raise
        return self

    def close(self) -> None:
        if self._saved is not None:
            if self.overlay is not None:
                self.overlay.close()                  # free the driver's DDR buffers
            self._restore()

    def __enter__(self) -> "FakeBoard":
        return self if self._saved is not None else self.open()   # open_board("fake") returns it open

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the calls
    def _need_open(self):
        if self._saved is None:
            raise BoardUnavailable("FakeBoard is not open: use `with FakeBoard(...) as board:` or board.open()")

    @property
    def accel(self):
        """The ``SanitasIP`` driver bound by pynq to the emulated IP."""
        self._need_open()
        return self.overlay.accel

    @property
    def ip(self):
        """The emulated IP model (``fake.FakeSanitasTop``) behind the registers."""
        self._need_open()
        models = list(self.device.ip_models.values())
        return models[0] if models else None

    def infer(self, x_int8: np.ndarray, timeout_s: float | None = None) -> tuple[np.ndarray, dict]:
        return self.accel.infer(x_int8, timeout_s)

    def inject(self, fault, model=None) -> dict:
        self._need_open()
        return self.overlay.inject(fault, model)

    def reload(self, layer: str) -> None:
        self._need_open()
        self.overlay.reload(layer)

    def status(self) -> dict:
        return self.accel.status()


def open_board(backend: str, compute=None, input_shape=None, num_classes=None, board: str = "pynq-z2",
               bitfile: str | None = None, **kwargs):
    """Open a backend serving ``infer``/``status``: "pynq" (real board), "fake" (emulated board), "sim".

    ``pynq``: ``bitfile`` (default ``sanitas.bit``, found the pynq way) with ``<bitfile>.json`` or explicit
    shapes. ``fake``/``sim``: ``compute`` (callable or golden model). Close with ``.close()`` or ``with``.
    """
    if backend == "sim":
        return SimAccelerator(compute, input_shape, num_classes)
    if backend == "fake":
        return FakeBoard(compute, input_shape, num_classes, board=board, **kwargs).open()
    if backend == "pynq":
        from . import driver
        if driver.pynq is None:
            raise BoardUnavailable("backend 'pynq' needs the pynq package (pip install 'sanitas[board]')")
        from pynq.ps import ON_TARGET
        if not ON_TARGET:
            raise BoardUnavailable("backend 'pynq' needs a PYNQ board (no /proc/device-tree/chosen/pynq_board); "
                                   "use backend 'fake' or 'sim'")
        return driver.SanitasOverlay(bitfile or "sanitas.bit", input_shape, num_classes, **kwargs)
    raise BoardError(f"unknown board backend {backend!r}; choose one of {', '.join(BACKENDS)}")

"""PYNQ driver of the sanitas accelerator IP ``sanitas_top`` (its register map: ``sanitas.hls.regmap``).

The IP (produced by HLS; docs/architecture.md) is an AXI4-Lite-controlled block with the standard Vitis HLS
``ap_ctrl_hs`` protocol: the host writes the DDR addresses of an int8 input tensor (N, C, H, W) and of an
int32 logits buffer (N, classes), the batch size ``n``, then sets ``ap_start`` and polls ``ap_done``.
``REGISTERS`` (``sanitas.hls.regmap``, re-exported here) is the register map, written once: this driver,
the fake device (fake.py) and the generated ``.hwh`` (overlay.py) all read it. The HLS top exports that map::

    void sanitas_top(const int8_t *in, int32_t *out, int n,
                     int *detected, ..., int *scrubbed, [fi_* inputs])   // s_axilite bundle=control
    config_export -vendor sanitas.org -library hls -ipname sanitas_top -version 1.0

(Vitis renames ``in``/``out`` to ``in_r``/``out_r``, reserved words in VHDL, and splits a 64-bit pointer into
``_1`` (bits 31..0) and ``_2`` (bits 63..32) registers; output scalars get a data word and an ``ap_vld`` word.)

``pynq`` is optional: without it this module still gives the register table, input checks and error types
(used by sim.py); ``SanitasIP`` / ``SanitasOverlay`` then raise a one-line error when instantiated.

The driver's calls: ``infer(images) -> (logits, counters)`` (buffers from ``pynq.allocate``, flushed before
ap_start and invalidated after ap_done), ``inject(fault)`` (the fi_* registers: a ``Fault`` encoded by
``sanitas.hls.faultport`` for the network's golden model, a dict of words, or None to clear), ``status()``,
and on the overlay ``reload(layer)`` (an escalation: the layer's memory rewritten through the reload port).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import SanitasError
from ..hls.regmap import (ADDR_RANGE, ADDR_WIDTH, AP_DONE, AP_IDLE, AP_READY, AP_START, AUTO_RESTART,  # noqa: F401 (re-exported)
                          CONTROL_INTERFACE, DATA_WIDTH, IP_NAME, MEMORY_INTERFACE, OFFSET, REG, REGISTERS,
                          FAULT_REGISTERS, STATUS_COUNTERS, VLNV, Field, Reg, registers_dict)

try:  # optional: the real-board and fake-board backends need it, the sim backend does not
    import pynq
    from pynq import DefaultIP as _DefaultIP
    from pynq import Overlay as _Overlay
except ImportError:  # pragma: no cover - exercised only where pynq is not installed
    pynq = None

    class _Missing:
        def __init__(self, *args, **kwargs):
            raise BoardUnavailable("pynq is not installed: pip install 'sanitas[board]' (or use backend 'sim')")

    _DefaultIP = _Overlay = _Missing


# ----------------------------------------------------------------------------------------------- errors
class BoardError(SanitasError):
    """A board-level failure (one line)."""


class BoardInputError(BoardError, ValueError):
    """A tensor handed to ``infer`` has the wrong dtype or shape."""


class BoardTimeout(BoardError, TimeoutError):
    """The IP did not assert ``ap_done`` in time."""


class BoardUnavailable(BoardError, RuntimeError):
    """The requested backend cannot run here (no board, no pynq, IP busy or not configured)."""


# ------------------------------------------------------------------------------------- input checks
def check_input(x, input_shape) -> tuple[np.ndarray, bool]:
    """Validate an int8 tensor: ``input_shape`` (one image) or ``(N,) + input_shape``.

    Returns (C-contiguous int8 array (N, *input_shape), single) where ``single`` says one image was given.
    """
    if input_shape is None:
        raise BoardUnavailable("accelerator input shape unknown: pass input_shape/num_classes or an overlay .json")
    shape = tuple(int(s) for s in input_shape)
    if not isinstance(x, np.ndarray):
        raise BoardInputError(f"input must be a numpy int8 array, got {type(x).__name__}")
    if x.dtype != np.int8:
        raise BoardInputError(f"input dtype must be int8, got {x.dtype} (quantise first, then .astype(np.int8))")
    if tuple(x.shape) == shape:
        return np.ascontiguousarray(x[None]), True
    if x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape:
        if x.shape[0] == 0:
            raise BoardInputError("input batch is empty (N = 0)")
        return np.ascontiguousarray(x), False
    want = ", ".join(map(str, shape))
    raise BoardInputError(f"input shape must be ({want}) or (N, {want}), got {tuple(x.shape)}")


def to_logits(y, n: int, num_classes: int) -> np.ndarray:
    """Check a compute result and return it as int32 (n, num_classes); int32 overflow is an error, not a wrap."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise BoardError(f"compute must return integer logits, got {y.dtype}")
    if y.shape != (n, num_classes):
        raise BoardError(f"compute returned shape {y.shape}, expected ({n}, {num_classes})")
    if y.size and (y.max() > np.iinfo(np.int32).max or y.min() < np.iinfo(np.int32).min):
        raise BoardError("compute returned logits outside int32 (the accelerator's output type)")
    return y.astype(np.int32)


def split_result(result) -> tuple[np.ndarray, dict]:
    """A compute callable returns logits, or (logits, {counter: int} over STATUS_COUNTERS)."""
    if isinstance(result, tuple):
        logits, counters = result
        unknown = set(counters) - set(STATUS_COUNTERS)
        if unknown:
            raise BoardError(f"unknown status counters {sorted(unknown)}; known: {list(STATUS_COUNTERS)}")
        return logits, {k: int(counters.get(k, 0)) for k in STATUS_COUNTERS}
    return result, {k: 0 for k in STATUS_COUNTERS}


def load_overlay_config(bitfile) -> dict:
    """Accelerator configuration stored beside a bitstream: ``<name>.json`` (``overlay.write_overlay``).

    ``input_shape``, ``num_classes``; optional ``fault_port`` (the IP has the fi_* registers), ``layers`` (the
    network's node names, in the order the IP numbers them) and ``spec`` (its protection plan).
    """
    path = Path(bitfile).with_suffix(".json")
    if not path.is_file():
        return {}
    cfg = json.loads(path.read_text())
    return {"input_shape": tuple(cfg["input_shape"]), "num_classes": int(cfg["num_classes"]),
            "fault_port": bool(cfg.get("fault_port", False)), "layers": tuple(cfg.get("layers", ())),
            "spec": cfg.get("spec")}


def fault_words(fault, model) -> dict:
    """The fi_* register words of one fault: a ``sanitas.faults.Fault`` (encoded for ``model``, the network's
    golden model, by ``sanitas.hls.faultport``), a {fi_* register: word} dict, or None (fi_enable = 0)."""
    names = [k for k, _ in FAULT_REGISTERS]
    if fault is None:
        return dict.fromkeys(names, 0)
    if isinstance(fault, dict):
        unknown = sorted(set(fault) - set(names))
        if unknown:
            raise BoardInputError(f"unknown fault-injection registers {unknown}; known: {', '.join(names)}")
        return {k: int(fault.get(k, 0)) & 0xFFFFFFFF for k in names}
    if model is None:
        raise BoardUnavailable("injecting a Fault record needs the network's golden model "
                               "(SanitasOverlay(..., model=gm) or inject(fault, model=gm))")
    from ..hls.faultport import fault_registers
    return {k: int(v) & 0xFFFFFFFF for k, v in fault_registers(fault, model).items()}


# ------------------------------------------------------------------------------------------ driver
class SanitasIP(_DefaultIP):
    """PYNQ driver of ``sanitas_top``: bound by VLNV, so ``overlay.sanitas_top_0`` is one of these.

    ``configure(input_shape, num_classes, fault_port)`` (done by ``SanitasOverlay`` from ``<bitfile>.json``),
    then ``infer(x) -> (logits, counters)`` with int8 ``x`` of shape ``input_shape`` or ``(N,) + input_shape``;
    ``inject(fault)`` programs the fault-injection registers (they hold until the next ``inject`` or a
    download), ``status()`` reads the counters of the last run.
    """

    bindto = [VLNV]

    def __init__(self, description):
        super().__init__(description)
        self.input_shape: tuple[int, ...] | None = None
        self.num_classes: int | None = None
        self.fault_port = False
        self.fault = None         # what the fi_* registers hold now (None: fi_enable = 0)
        self.timeout_s = 10.0     # default ap_done timeout of infer()
        self._buffers = None      # (n, in buffer, out buffer), reused while the batch size is unchanged

    def configure(self, input_shape, num_classes: int, fault_port: bool = False) -> "SanitasIP":
        """Set the compile-time facts of the IP (they are not readable from its registers)."""
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.fault_port = bool(fault_port)
        self._buffers = None
        return self

    # ------------------------------------------------------------------ host side
    def _get_buffers(self, n: int):
        if self._buffers is None or self._buffers[0] != n:
            self._buffers = None  # drop (and free) the old pair first
            inb = pynq.allocate((n, *self.input_shape), dtype=np.int8, target=self.device)
            outb = pynq.allocate((n, self.num_classes), dtype=np.int32, target=self.device)
            self._buffers = (n, inb, outb)
        return self._buffers[1], self._buffers[2]

    def infer(self, x_int8: np.ndarray, timeout_s: float | None = None) -> tuple[np.ndarray, dict]:
        """Run the accelerator: int8 (N, C, H, W) or (C, H, W) -> (int32 logits (N, classes) or (classes,),
        {counter: int} of this run)."""
        x, single = check_input(x_int8, self.input_shape)
        if self.num_classes is None:
            raise BoardUnavailable("accelerator num_classes unknown: call configure(input_shape, num_classes)")
        n = x.shape[0]
        inb, outb = self._get_buffers(n)
        inb[:] = x
        inb.sync_to_device()                      # flush the CPU cache: the IP reads DDR
        self.start(inb.device_address, outb.device_address, n)
        self.wait(self.timeout_s if timeout_s is None else timeout_s)
        outb.sync_from_device()                   # invalidate: the IP wrote DDR behind the cache
        y = np.array(outb, dtype=np.int32)        # copy out of the reusable buffer
        return (y[0] if single else y), self.status()

    def inject(self, fault, model=None) -> dict:
        """Program the fault-injection registers with ``fault`` (see ``fault_words``; None clears it) for every
        following run; returns the words written. Needs an IP built with the debug port."""
        if not self.fault_port:
            raise BoardUnavailable("this sanitas_top has no fault-injection port (built without fault_port)")
        words = fault_words(fault, model)
        for k, v in words.items():            # fi_enable last: the other words are in place when it rises
            if k != "fi_enable":
                self.write(OFFSET[k], v)
        self.write(OFFSET["fi_enable"], words["fi_enable"])
        self.fault = fault if words["fi_enable"] & 1 else None
        return words

    # ------------------------------------------------------------------ register protocol
    def start(self, in_addr: int, out_addr: int, n: int) -> None:
        """Program the buffer addresses and batch size, then pulse ap_start."""
        if not self.read(OFFSET["CTRL"]) & AP_IDLE:
            raise BoardUnavailable("sanitas_top is busy (ap_idle = 0): a previous run has not finished")
        self.write(OFFSET["in_r_1"], in_addr & 0xFFFFFFFF)
        self.write(OFFSET["in_r_2"], in_addr >> 32)
        self.write(OFFSET["out_r_1"], out_addr & 0xFFFFFFFF)
        self.write(OFFSET["out_r_2"], out_addr >> 32)
        self.write(OFFSET["n"], int(n))
        self.write(OFFSET["CTRL"], AP_START)

    def wait(self, timeout_s: float) -> None:
        """Poll CTRL until ap_done (clear on read: the read that sees it consumes it) or the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            ctrl = self.read(OFFSET["CTRL"])
            if ctrl & AP_DONE:
                return
            if time.monotonic() > deadline:
                raise BoardTimeout(f"sanitas_top did not assert ap_done within {timeout_s:g} s (CTRL=0x{ctrl:02x})")

    def status(self) -> dict:
        """Protection counters of the last run: {name: int} over STATUS_COUNTERS."""
        return {k: int(self.read(OFFSET[k])) for k in STATUS_COUNTERS}

    def reload(self, layer: int, timeout_s: float | None = None) -> dict:
        """The per-layer reload port: one ap_start with n = 0 and ``reload`` set rewrites node ``layer``'s parameter
        memory (weights, biases, sanity rows and seals) from the trusted image; returns the counters of that run
        (``escalations`` 1 when the layer has parameter memory)."""
        if self.num_classes is None:
            raise BoardUnavailable("accelerator num_classes unknown: call configure(input_shape, num_classes)")
        inb, outb = self._get_buffers(1)
        self.write(OFFSET["reload_layer"], int(layer))
        self.write(OFFSET["reload"], 1)
        try:
            self.start(inb.device_address, outb.device_address, 0)
            self.wait(self.timeout_s if timeout_s is None else timeout_s)
        finally:
            self.write(OFFSET["reload"], 0)
        return self.status()


class SanitasOverlay(_Overlay):
    """A PYNQ overlay holding one ``sanitas_top``; ``.accel`` is its configured ``SanitasIP``.

    Shapes come from the arguments or from ``<bitfile>.json`` (``load_overlay_config``). ``model``: the
    network's golden model, needed to encode ``Fault`` records for ``inject``. ``infer``, ``inject``,
    ``status`` go to the IP; ``reload(layer)`` answers an escalation through the IP's per-layer reload port.
    """

    def __init__(self, bitfile_name, input_shape=None, num_classes=None, model=None, **kwargs):
        super().__init__(bitfile_name, **kwargs)
        cfg = load_overlay_config(self.bitfile_name)
        self.model = model
        self.reloads = 0
        layers = cfg.get("layers") or tuple(n.name for n in getattr(model, "nodes", ()))
        self.sanitas_config = {"input_shape": tuple(input_shape) if input_shape is not None
                               else cfg.get("input_shape"),
                               "num_classes": num_classes if num_classes is not None else cfg.get("num_classes"),
                               "fault_port": cfg.get("fault_port", False), "layers": tuple(layers),
                               "spec": cfg.get("spec")}

    def download(self, dtbo=None):
        """pynq's download, after filling Zynq-7000 PL clock frequencies that pynq 4.0 leaves at None.

        pynq programs each enabled PL clock with ``clock_dict[i]["frequency"]``, which pynqmetadata takes
        from the ZynqMP parameter ``PSU__CRL_APB__PL{i}_REF_CTRL__ACT_FREQMHZ``; a Zynq-7000 PS has
        ``PCW_ACT_FPGA{i}_PERIPHERAL_FREQMHZ`` instead, so the frequency is None and download raises TypeError.
        """
        ps = getattr(self.parser, "ps_name", None)
        params = self.ip_dict.get(ps, {}).get("parameters", {}) if ps else {}
        for i, clk in self.clock_dict.items():
            act = params.get(f"PCW_ACT_FPGA{i}_PERIPHERAL_FREQMHZ")
            if clk.get("enable") and clk.get("frequency") is None and act is not None:
                clk["frequency"] = float(act)
        super().download(dtbo)

    def close(self) -> None:
        """Free the driver's DDR buffers (the PL stays configured)."""
        for v in list(vars(self._ip_map).values()):
            if isinstance(v, SanitasIP):
                v._buffers = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def accel(self) -> SanitasIP:
        """The accelerator driver (found by VLNV, whatever the block-design instance name)."""
        names = [k for k, v in self.ip_dict.items() if v.get("type") == VLNV]
        if len(names) != 1:
            raise BoardUnavailable(f"overlay has {len(names)} {VLNV} instances, expected exactly 1")
        ip = self._hier_ip(names[0])
        if not isinstance(ip, SanitasIP):
            raise BoardUnavailable(f"{names[0]} is bound to {type(ip).__name__}, not SanitasIP (driver not imported?)")
        cfg = self.sanitas_config
        if ip.input_shape is None and cfg["input_shape"] is not None and cfg["num_classes"] is not None:
            ip.configure(cfg["input_shape"], cfg["num_classes"], cfg["fault_port"])
        return ip

    def _hier_ip(self, path: str):
        """The driver of an IP at a block-design path such as ``sanitas_top_0`` or ``accel/sanitas_top_0``."""
        obj = self
        for part in path.split("/"):
            obj = getattr(obj, part)
        return obj

    def infer(self, x_int8: np.ndarray, timeout_s: float | None = None) -> tuple[np.ndarray, dict]:
        return self.accel.infer(x_int8, timeout_s)

    def inject(self, fault, model=None) -> dict:
        return self.accel.inject(fault, model if model is not None else self.model)

    def status(self) -> dict:
        return self.accel.status()

    def reload(self, layer: str) -> dict:
        """Escalation: restore ``layer``'s parameters from the trusted image through sanitas_top's reload port
        (``SanitasIP.reload``: the layer's on-chip memory rewritten, counted in ``escalations``; no PL
        reconfiguration, the driver's DDR buffers stay valid). The fault-injection registers are cleared first:
        the injected memory fault is gone with the rewrite. Returns the counters of the reload run."""
        layers = self.sanitas_config["layers"]
        if not layers or layer not in layers:
            raise BoardInputError(f"unknown layer {layer!r}; the network's layers: {', '.join(layers)}")
        ip = self.accel
        if ip.fault_port:
            ip.inject(None)
        counters = ip.reload(list(layers).index(layer))
        self.reloads += 1
        return counters

"""PYNQ driver of the sanitas accelerator IP ``sanitas_top`` and its register map (the one table of it).

The IP (produced by HLS; docs/architecture.md) is an AXI4-Lite-controlled block with the standard Vitis HLS
``ap_ctrl_hs`` protocol: the host writes the DDR addresses of an int8 input tensor (N, C, H, W) and of an
int32 logits buffer (N, classes), the batch size ``n``, then sets ``ap_start`` and polls ``ap_done``.
``REGISTERS`` below is the register map, written once: this driver, the fake device (fake.py) and the
generated ``.hwh`` (fake.py) all read it. The HLS top must export the same map, i.e.::

    void sanitas_top(const int8_t *in, int32_t *out, int n,
                     int *detected, int *corrected, int *rollbacks)   // s_axilite bundle=control
    config_export -vendor sanitas.org -library hls -ipname sanitas_top -version 1.0

(Vitis renames ``in``/``out`` to ``in_r``/``out_r``, reserved words in VHDL, and splits a 64-bit pointer into
``_1`` (bits 31..0) and ``_2`` (bits 63..32) registers; output scalars get a data word and an ``ap_vld`` word.)

``pynq`` is optional: without it this module still gives the register table, input checks and error types
(used by sim.py); ``SanitasIP`` / ``SanitasOverlay`` then raise a one-line error when instantiated.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SanitasError

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


# -------------------------------------------------------------------------------------- register map
VLNV = "sanitas.org:hls:sanitas_top:1.0"
IP_NAME = "sanitas_top"          # module type; the block-design instance is ``sanitas_top_0``
CONTROL_INTERFACE = "s_axi_control"
MEMORY_INTERFACE = "m_axi_gmem"
ADDR_RANGE = 0x10000             # bytes of PL address space Vivado assigns to s_axi_control (64 KiB)
DATA_WIDTH = 32                  # AXI4-Lite data width of s_axi_control (bits)


@dataclass(frozen=True)
class Field:
    """One bit field of a register: bits [offset, offset + width)."""
    name: str
    offset: int          # LSB position
    width: int           # bits
    access: str          # "read-write" | "read-only" | "write-only"
    description: str


@dataclass(frozen=True)
class Reg:
    """One 32-bit register of ``s_axi_control``."""
    name: str            # name as Vitis HLS writes it into component.xml / the .hwh
    offset: int          # byte offset from the IP base address
    access: str          # "read-write" | "read-only" | "write-only"
    description: str
    fields: tuple[Field, ...] = field(default_factory=tuple)
    size: int = 32       # bits

    def fields_or_whole(self) -> tuple[Field, ...]:
        """The bit fields; a plain data register is one field spanning all 32 bits (as Vitis writes it)."""
        return self.fields or (Field(self.name, 0, self.size, self.access, f"Bit 31 to 0 {self.description}"),)


def _data(name: str, offset: int, access: str, text: str) -> Reg:
    return Reg(name, offset, access, text)


def _vld(name: str, offset: int) -> Reg:
    return Reg(f"{name}_ctrl", offset, "read-only", f"Control signal of {name}",
               (Field(f"{name}_ap_vld", 0, 1, "read-only", f"{name} was written by the last run (clear on read)"),
                Field("RESERVED", 1, 31, "read-only", "Reserved. 0s on read.")))


# ap_ctrl_hs control bits (CTRL, offset 0x00)
AP_START, AP_DONE, AP_IDLE, AP_READY, AUTO_RESTART = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 7

#: The register map of sanitas_top, s_axi_control (all 32-bit, little endian).
#:
#: ======  ===============  ======  =====================================================================
#: offset  name             access  meaning
#: ======  ===============  ======  =====================================================================
#: 0x00    CTRL             rw      bit0 ap_start (W1, self-clearing), bit1 ap_done (COR), bit2 ap_idle,
#:                                  bit3 ap_ready (COR), bit7 auto_restart (unused by this driver)
#: 0x04    GIER             rw      bit0 global interrupt enable
#: 0x08    IP_IER           rw      bit0 ap_done interrupt enable, bit1 ap_ready interrupt enable
#: 0x0C    IP_ISR           rw      bit0 ap_done, bit1 ap_ready interrupt status (toggle on write 1)
#: 0x10    in_r_1           w       input tensor address, bits 31..0   (int8 (N, C, H, W), C-order)
#: 0x14    in_r_2           w       input tensor address, bits 63..32
#: 0x1C    out_r_1          w       logits address, bits 31..0         (int32 (N, classes), C-order)
#: 0x20    out_r_2          w       logits address, bits 63..32
#: 0x28    n                w       batch size N (images per ap_start)
#: 0x30    detected         r       ABFT checksum mismatches detected during the last run
#: 0x34    detected_ctrl    r       bit0 detected_ap_vld (COR)
#: 0x40    corrected        r       errors located and corrected by ABFT during the last run
#: 0x44    corrected_ctrl   r       bit0 corrected_ap_vld (COR)
#: 0x50    rollbacks        r       DMR checkpoint rollbacks (re-executions) during the last run
#: 0x54    rollbacks_ctrl   r       bit0 rollbacks_ap_vld (COR)
#: ======  ===============  ======  =====================================================================
REGISTERS: tuple[Reg, ...] = (
    Reg("CTRL", 0x00, "read-write", "Control signals", (
        Field("AP_START", 0, 1, "read-write", "Control signal Register for 'ap_start'."),
        Field("AP_DONE", 1, 1, "read-only", "Control signal Register for 'ap_done'."),
        Field("AP_IDLE", 2, 1, "read-only", "Control signal Register for 'ap_idle'."),
        Field("AP_READY", 3, 1, "read-only", "Control signal Register for 'ap_ready'."),
        Field("RESERVED_1", 4, 3, "read-only", "Reserved. 0s on read."),
        Field("AUTO_RESTART", 7, 1, "read-write", "Control signal Register for 'auto_restart'."),
        Field("RESERVED_2", 8, 24, "read-only", "Reserved. 0s on read."))),
    Reg("GIER", 0x04, "read-write", "Global Interrupt Enable Register", (
        Field("Enable", 0, 1, "read-write", "Master enable for the device interrupt output"),
        Field("RESERVED", 1, 31, "read-only", "Reserved. 0s on read."))),
    Reg("IP_IER", 0x08, "read-write", "IP Interrupt Enable Register", (
        Field("CHAN0_INT_EN", 0, 1, "read-write", "Enable Channel 0 (ap_done) Interrupt."),
        Field("CHAN1_INT_EN", 1, 1, "read-write", "Enable Channel 1 (ap_ready) Interrupt."),
        Field("RESERVED", 2, 30, "read-only", "Reserved. 0s on read."))),
    Reg("IP_ISR", 0x0C, "read-write", "IP Interrupt Status Register", (
        Field("CHAN0_INT_ST", 0, 1, "read-write", "Channel 0 (ap_done) Interrupt Status (toggle on write 1)."),
        Field("CHAN1_INT_ST", 1, 1, "read-write", "Channel 1 (ap_ready) Interrupt Status (toggle on write 1)."),
        Field("RESERVED", 2, 30, "read-only", "Reserved. 0s on read."))),
    _data("in_r_1", 0x10, "write-only", "Data signal of in_r (input tensor address, low word)"),
    _data("in_r_2", 0x14, "write-only", "Data signal of in_r (input tensor address, high word)"),
    _data("out_r_1", 0x1C, "write-only", "Data signal of out_r (logits address, low word)"),
    _data("out_r_2", 0x20, "write-only", "Data signal of out_r (logits address, high word)"),
    _data("n", 0x28, "write-only", "Data signal of n (batch size)"),
    _data("detected", 0x30, "read-only", "Data signal of detected (ABFT mismatches in the last run)"),
    _vld("detected", 0x34),
    _data("corrected", 0x40, "read-only", "Data signal of corrected (ABFT corrections in the last run)"),
    _vld("corrected", 0x44),
    _data("rollbacks", 0x50, "read-only", "Data signal of rollbacks (DMR rollbacks in the last run)"),
    _vld("rollbacks", 0x54),
)
REG = {r.name: r for r in REGISTERS}
OFFSET = {r.name: r.offset for r in REGISTERS}
STATUS_COUNTERS = ("detected", "corrected", "rollbacks")
#: s_axi_control address width HLS would generate: enough bits for the highest register
ADDR_WIDTH = max(r.offset for r in REGISTERS).bit_length()


def registers_dict() -> dict:
    """The map in pynq's ``ip_dict[...]["registers"]`` form (what pynq parses out of the .hwh)."""
    return {
        r.name: {
            "address_offset": r.offset, "size": r.size, "access": r.access, "description": r.description,
            "fields": {f.name: {"bit_offset": f.offset, "bit_width": f.width, "access": f.access,
                                "description": f.description} for f in r.fields_or_whole()},
        }
        for r in REGISTERS
    }


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
    """A compute callable returns logits, or (logits, {"detected": int, "corrected": int, "rollbacks": int})."""
    if isinstance(result, tuple):
        logits, counters = result
        unknown = set(counters) - set(STATUS_COUNTERS)
        if unknown:
            raise BoardError(f"unknown status counters {sorted(unknown)}; known: {list(STATUS_COUNTERS)}")
        return logits, {k: int(counters.get(k, 0)) for k in STATUS_COUNTERS}
    return result, {k: 0 for k in STATUS_COUNTERS}


def load_overlay_config(bitfile) -> dict:
    """Accelerator configuration stored beside a bitstream: ``<name>.json`` with input_shape, num_classes."""
    path = Path(bitfile).with_suffix(".json")
    if not path.is_file():
        return {}
    cfg = json.loads(path.read_text())
    return {"input_shape": tuple(cfg["input_shape"]), "num_classes": int(cfg["num_classes"])}


# ------------------------------------------------------------------------------------------ driver
class SanitasIP(_DefaultIP):
    """PYNQ driver of ``sanitas_top``: bound by VLNV, so ``overlay.sanitas_top_0`` is one of these.

    ``configure(input_shape, num_classes)`` (done by ``SanitasOverlay`` from ``<bitfile>.json``), then
    ``infer(x)`` with int8 ``x`` of shape ``input_shape`` or ``(N,) + input_shape``.
    """

    bindto = [VLNV]

    def __init__(self, description):
        super().__init__(description)
        self.input_shape: tuple[int, ...] | None = None
        self.num_classes: int | None = None
        self.timeout_s = 10.0     # default ap_done timeout of infer()
        self._buffers = None      # (n, in buffer, out buffer), reused while the batch size is unchanged

    def configure(self, input_shape, num_classes: int) -> "SanitasIP":
        """Set the compile-time shapes of the IP (they are not readable from its registers)."""
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
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

    def infer(self, x_int8: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        """Run the accelerator: int8 (N, C, H, W) or (C, H, W) -> int32 logits (N, classes) or (classes,)."""
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
        return y[0] if single else y

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
        """ABFT/DMR counters of the last run: {"detected", "corrected", "rollbacks"} (ints)."""
        return {k: int(self.read(OFFSET[k])) for k in STATUS_COUNTERS}


class SanitasOverlay(_Overlay):
    """A PYNQ overlay holding one ``sanitas_top``; ``.accel`` is its configured ``SanitasIP``.

    Shapes come from the arguments or from ``<bitfile>.json`` (``{"input_shape": [...], "num_classes": k}``).
    """

    def __init__(self, bitfile_name, input_shape=None, num_classes=None, **kwargs):
        super().__init__(bitfile_name, **kwargs)
        cfg = load_overlay_config(self.bitfile_name)
        self.sanitas_config = {"input_shape": tuple(input_shape) if input_shape is not None
                               else cfg.get("input_shape"),
                               "num_classes": num_classes if num_classes is not None else cfg.get("num_classes")}

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
            ip.configure(cfg["input_shape"], cfg["num_classes"])
        return ip

    def _hier_ip(self, path: str):
        """The driver of an IP at a block-design path such as ``sanitas_top_0`` or ``accel/sanitas_top_0``."""
        obj = self
        for part in path.split("/"):
            obj = getattr(obj, part)
        return obj

    def infer(self, x_int8: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        return self.accel.infer(x_int8, timeout_s)

    def status(self) -> dict:
        return self.accel.status()

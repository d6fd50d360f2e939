"""A fake PYNQ board: a ``pynq.Device`` with emulated AXI register space, emulated DDR and a ``sanitas_top`` model.

It lets the real PYNQ stack (``Overlay`` parsing a ``.hwh`` through pynqmetadata, driver binding by VLNV,
``MMIO``, ``RegisterMap``, ``pynq.allocate``, ``Clocks``) run without a board, the way PYNQ's own tests run
``Overlay`` against a generated design. What is emulated, and how:

* **Bitstream + metadata** -- ``write_overlay`` (overlay.py, re-exported here) writes ``<name>.bit``,
  ``<name>.hwh`` and ``<name>.json`` for a board of ``boards/``.
* **Download** -- ``FakeDevice.download`` checks the .bit header part against the board, then "configures the
  PL": every IP of the .hwh with a registered model (by VLNV) gets a register window at its address.
* **Registers** -- MEMORY_MAPPED capability: ``mmap`` hands out numpy views of bytearray-backed windows whose
  element reads/writes call the IP model (ap_start side effects, clear-on-read ap_done, toggle-on-write ISR).
  The PS clock registers (Zynq SLCR or ZynqMP CRL/CRF) are windows too, seeded with the board's PLLs.
* **DDR** -- a bytearray at a physical address inside the board's DDR; ``allocate`` carves page-aligned
  buffers from it. Cacheable buffers (the default) have a separate host copy, so a driver that forgets
  ``sync_to_device``/``sync_from_device`` reads and writes stale data, as on a Zynq.
* **The IP** -- ``FakeSanitasTop``: on ap_start it reads ``n`` int8 images from DDR at ``in_r``, runs its
  engine (engine.py: the compiled csim of ``sanitas_top`` through its C ABI, or a Python callback) on them and
  the register file (``n``, the fault-injection registers), writes int32 logits to ``out_r``, sets the status
  counters and ap_done/ap_idle, optionally after ``latency_s`` or never (``stall``).

Board data (part, PS, PLLs, PL clocks, AXI ports and widths, DDR) comes from ``boards/<board>/board.json``
(``overlay.load_board``).
"""
from __future__ import annotations

import time
from math import prod
from pathlib import Path

import numpy as np

from .driver import AP_DONE, AP_IDLE, AP_READY, AP_START, AUTO_RESTART, OFFSET, REGISTERS, STATUS_COUNTERS, BoardError
from .overlay import (BOARDS_DIR, SYNC_WORD, bit_part, clock_divisors, is_zynq7, load_board, make_bit, make_hwh,
                      pll_mhz, write_overlay)

try:
    import pynq
    from pynq.buffer import PynqBuffer
    _DeviceBase = pynq.Device
except ImportError:  # pragma: no cover
    pynq = None
    _DeviceBase = object

PAGE = 4096                      # allocation alignment of the fake DDR (bytes)
DDR_FILL = 0xA5                  # power-on contents of the fake DDR (so unwritten data is not zeros)

__all__ = ["BOARDS_DIR", "DDR_FILL", "PAGE", "SYNC_WORD", "FakeBusError", "FakeDevice", "FakeMemory",
           "FakeSanitasTop", "clock_divisors", "load_board", "make_bit", "make_hwh", "pll_mhz", "write_overlay"]


class FakeBusError(BoardError):
    """An access to an address no slave decodes (an AXI DECERR on hardware)."""


# ------------------------------------------------------------------------------------------ register windows
class _Window:
    """A slave's register space on the fake AXI bus: bytes at a physical base, optionally backed by a model."""

    def __init__(self, base: int, size: int, model=None, ps: bool = False):
        self.base, self.size, self.model, self.ps = base, size, model, ps   # ps: survives PL reconfiguration
        self.mem = bytearray(size)
        self.root = np.frombuffer(self.mem, dtype=np.uint8)
        self.ptr = self.root.__array_interface__["data"][0]

    def u32(self, offset: int) -> int:
        return int.from_bytes(self.mem[offset:offset + 4], "little")

    def set_u32(self, offset: int, value: int) -> None:
        self.mem[offset:offset + 4] = (int(value) & 0xFFFFFFFF).to_bytes(4, "little")


class _MMIOArray(np.ndarray):
    """A numpy view of a register window whose scalar reads and writes notify the slave model.

    pynq's MMIO and RegisterMap index ``mmio.array`` (or ``.view``s and slices of it): every element access
    becomes one bus transaction of ``itemsize`` bytes, as a load/store through /dev/mem would be.
    """

    def __array_finalize__(self, obj):
        self._win = getattr(obj, "_win", None)

    def _offset(self, idx) -> tuple[int, int]:
        start = self.__array_interface__["data"][0] - self._win.ptr
        if isinstance(idx, (int, np.integer)) and self.ndim == 1:
            i = int(idx) % self.shape[0]
            return start + i * self.strides[0], self.itemsize
        return start, self.nbytes

    def __getitem__(self, idx):
        win = self._win
        if win is None or win.model is None or not isinstance(idx, (int, np.integer)):
            return super().__getitem__(idx)
        off, n = self._offset(idx)
        win.model.before_read(off, n)
        value = super().__getitem__(idx)
        win.model.after_read(off, n)
        return value

    def __setitem__(self, idx, value):
        super().__setitem__(idx, value)
        win = self._win
        if win is not None and win.model is not None:
            win.model.after_write(*self._offset(idx))


# ------------------------------------------------------------------------------------------ DDR
class _Bo:
    """One allocation in the fake DDR: offset/size in the DDR array and the host (CPU-cache) copy."""

    def __init__(self, offset: int, size: int, host):
        self.offset, self.size, self.host = offset, size, host


class FakeMemory:
    """The fake DDR allocator (first fit, page aligned) behind ``pynq.allocate`` on a ``FakeDevice``."""

    def __init__(self, device: "FakeDevice"):
        self.device = device
        self.allocations: dict[int, _Bo] = {}   # offset -> allocation

    def _find(self, size: int) -> int:
        cursor = 0
        for off in sorted(self.allocations):
            if off - cursor >= size:
                return cursor
            cursor = off + -(-self.allocations[off].size // PAGE) * PAGE
        if self.device.ddr_size - cursor >= size:
            return cursor
        raise MemoryError(f"fake DDR exhausted: {size} bytes requested, {self.device.ddr_size} in total")

    def allocate(self, shape, dtype, cacheable: bool = True, **kwargs):
        dtype = np.dtype(dtype)
        size = max(1, prod((shape,) if isinstance(shape, int) else tuple(shape)) * dtype.itemsize)
        off = self._find(size)
        ddr = self.device.ddr
        if cacheable:   # host sees its own copy until flush/invalidate
            host = bytearray(ddr[off:off + size])
        else:           # uncached mapping: the host array aliases DDR
            host = memoryview(ddr)[off:off + size]
        bo = _Bo(off, size, host)
        self.allocations[off] = bo
        buf = PynqBuffer(shape, dtype, buffer=host, device=self.device, device_address=self.device.ddr_base + off,
                         bo=bo, coherent=not cacheable)
        buf.memory, buf.pointer, buf.return_to = self, bo, self   # freebuffer() -> return_pointer(bo)
        return buf

    def return_pointer(self, bo: _Bo) -> None:
        self.allocations.pop(bo.offset, None)


# ------------------------------------------------------------------------------------------ device
class FakeDevice(_DeviceBase):
    """A ``pynq.Device`` for one board of ``boards/``: emulated registers, DDR and PL configuration.

    It has no ``_probe_``, so pynq never enumerates it: install it with ``pynq.Device.active_device = dev``
    (``sim.FakeBoard`` does that and restores the previous device) or pass ``device=dev``.
    ``register_model(vlnv, factory)`` says which IP the fake PL implements: at download every .hwh IP of that
    type gets ``factory(device, description)`` as the model behind its register window.
    """

    def __init__(self, board="pynq-z2", ddr_size: int = 32 << 20, ddr_base: int | None = None):
        if pynq is None:
            raise BoardError("pynq is not installed: the fake device emulates a pynq.Device")
        self.board = load_board(board)
        super().__init__(f"fake_{self.board['name']}")
        self.name = self.board["name"]
        self.capabilities = {"MEMORY_MAPPED": True, "REGISTER_RW": False, "CALLABLE": False}
        self.arch = self.board["ps"]["cpu_arch"]      # read by pynq.Clocks
        self.bitfile_name = None
        self.timestamp = ""
        self.models: dict[str, object] = {}          # vlnv -> factory
        self.ip_models: dict[str, object] = {}       # instance name -> model (after download)
        self.downloads = 0
        # DDR: by default the top ddr_size bytes of the board's highest DDR region (a CMA-like pool)
        region = self.board["ddr"][-1]
        self.ddr_size = int(ddr_size)
        self.ddr_base = region["base"] + region["size"] - self.ddr_size if ddr_base is None else int(ddr_base)
        if not any(d["base"] <= self.ddr_base and self.ddr_base + self.ddr_size <= d["base"] + d["size"]
                   for d in self.board["ddr"]):
            raise BoardError(f"fake DDR 0x{self.ddr_base:x}+0x{self.ddr_size:x} is outside the DDR of {self.name}")
        self.ddr = bytearray([DDR_FILL]) * self.ddr_size
        self._memory = FakeMemory(self)
        self.windows: list[_Window] = []
        self._seed_ps_clock_registers()

    # ---- PS clock registers (what pynq.Clocks reads and programs)
    def _seed_ps_clock_registers(self) -> None:
        b = self.board
        if is_zynq7(b):
            slcr = self.add_window(0xF8000000, 0x200, ps=True)
            for off, pll in ((0x100, "ARM_PLL"), (0x104, "DDR_PLL"), (0x108, "IO_PLL")):
                slcr.set_u32(off, b["ps"]["plls"][pll]["fbdiv"] << 12)        # PLL_FDIV [18:12]
            cpu_div = round(pll_mhz(b, "ARM_PLL") / b["ps"]["cpu_mhz"])
            slcr.set_u32(0x120, cpu_div << 8)                                 # ARM_CLK_CTRL: ARM PLL / div
            for i in range(4):  # boot state: every FCLK at IO PLL / 20 (50 MHz); download reprograms
                slcr.set_u32(0x170 + 0x10 * i, (1 << 20) | (20 << 8))
        else:
            crl, crf = self.add_window(0xFF5E0000, 0x100, ps=True), self.add_window(0xFD1A0000, 0x100, ps=True)
            for win, off, pll in ((crl, 0x20, "IOPLL"), (crl, 0x30, "RPLL"), (crf, 0x20, "APLL"),
                                  (crf, 0x2C, "DPLL"), (crf, 0x38, "VPLL")):
                p = b["ps"]["plls"][pll]
                win.set_u32(off, (p.get("div2", 0) << 16) | (p["fbdiv"] << 8))   # FBDIV [14:8], DIV2 [16]
            crf.set_u32(0x60, round(pll_mhz(b, "APLL") / b["ps"]["cpu_mhz"]) << 8)  # ACPU_CTRL: APLL / div
            for i in range(4):
                crl.set_u32(0xC0 + 4 * i, (1 << 24) | (1 << 16) | (30 << 8))     # boot: IOPLL / 30 (50 MHz)

    def add_window(self, base: int, size: int, model=None, ps: bool = False) -> _Window:
        for w in self.windows:
            if base < w.base + w.size and w.base < base + size:
                raise BoardError(f"register window 0x{base:x}+0x{size:x} overlaps 0x{w.base:x}+0x{w.size:x}")
        win = _Window(base, size, model, ps)
        self.windows.append(win)
        return win

    def window_at(self, addr: int, length: int) -> _Window:
        for w in self.windows:
            if w.base <= addr and addr + length <= w.base + w.size:
                return w
        raise FakeBusError(f"no AXI slave decodes 0x{addr:x}+0x{length:x} on the fake {self.name}")

    # ---- pynq.Device interface
    def mmap(self, base_addr: int, length: int):
        win = self.window_at(base_addr, length)
        off = base_addr - win.base
        arr = np.frombuffer(win.mem, np.uint32, length >> 2, off).view(_MMIOArray)
        arr._win = win
        return arr

    @property
    def default_memory(self) -> FakeMemory:
        return self._memory

    def flush(self, bo: _Bo, offset: int, ptr: int, size: int) -> None:
        """Write back the host copy to DDR (cache clean)."""
        if isinstance(bo.host, bytearray):
            self.ddr[bo.offset + offset:bo.offset + offset + size] = bo.host[offset:offset + size]

    def invalidate(self, bo: _Bo, offset: int, ptr: int, size: int) -> None:
        """Refill the host copy from DDR (cache invalidate)."""
        if isinstance(bo.host, bytearray):
            bo.host[offset:offset + size] = self.ddr[bo.offset + offset:bo.offset + offset + size]

    def get_bitfile_metadata(self, bitfile_name: str, partial: bool = False):
        from pynqmetadata.frontends import Metadata
        from pynqmetadata.views.runtime import RuntimeMetadataParser
        hwh = Path(bitfile_name).with_suffix(".hwh")
        if not hwh.is_file():
            raise RuntimeError(f"Unable to find metadata for bitstream: no {hwh}")
        return RuntimeMetadataParser(Metadata(input=str(hwh)))

    def register_model(self, vlnv: str, factory) -> None:
        self.models[vlnv] = factory

    def download(self, bitstream, parser=None) -> None:
        """The fake FPGA manager: check the .bit, then instantiate the PL described by the metadata."""
        from pynq.pl_server.embedded_device import bit2bin, parse_bit_header
        data = Path(bitstream.bitfile_name).read_bytes()
        header = parse_bit_header(data)
        if header["part"] != bit_part(self.board["part"]):
            raise BoardError(f"bitstream is for part {header['part']}, this board ({self.name}) is "
                             f"{bit_part(self.board['part'])}")
        if SYNC_WORD[::-1] not in bit2bin(data):       # .bin is the payload with 32-bit words byte-swapped
            raise BoardError("bitstream payload has no sync word")
        if parser is None:
            parser = self.get_bitfile_metadata(bitstream.bitfile_name)
        # reconfiguring the PL replaces every IP; a register window at the same address and size keeps its
        # mapping (a driver's MMIO stays valid across a download, as /dev/mem mappings do) but is reset
        old = {(w.base, w.size): w for w in self.windows if not w.ps}
        self.windows = [w for w in self.windows if w.ps]
        self.ip_models = {}
        for name, desc in parser.ip_dict.items():
            factory = self.models.get(desc.get("type"))
            if factory is not None and "phys_addr" in desc:
                model = factory(self, desc)
                win = old.pop((desc["phys_addr"], desc["addr_range"]), None)
                if win is None:
                    win = self.add_window(desc["phys_addr"], desc["addr_range"], model)
                else:
                    win.model, win.mem[:] = model, bytes(win.size)
                    self.windows.append(win)
                model.window = win
                model.reset()
                self.ip_models[name] = model
        self.downloads += 1
        self.post_download(bitstream, parser, self.name)

    # ---- DMA from the PL masters
    def dma_read(self, addr: int, nbytes: int) -> bytes:
        off = self._ddr_offset(addr, nbytes)
        return bytes(self.ddr[off:off + nbytes])

    def dma_write(self, addr: int, data: bytes) -> None:
        off = self._ddr_offset(addr, len(data))
        self.ddr[off:off + len(data)] = data

    def _ddr_offset(self, addr: int, nbytes: int) -> int:
        off = addr - self.ddr_base
        if off < 0 or off + nbytes > self.ddr_size:
            raise FakeBusError(f"PL master access 0x{addr:x}+0x{nbytes:x} is outside the fake DDR "
                               f"0x{self.ddr_base:x}+0x{self.ddr_size:x}")
        return off


# ------------------------------------------------------------------------------------------ the IP model
class FakeSanitasTop:
    """Register-level model of ``sanitas_top`` (Vitis HLS ap_ctrl_hs semantics on the REGISTERS map).

    ``engine`` (engine.py) computes a run: ``engine.run(x, regs)`` gets int8 (n, *input_shape) read from DDR and
    the register file (uint32 words) and returns (int32 logits (n, num_classes), {counter: int} over
    ``STATUS_COUNTERS``) -- the csim of the HLS top (``CsimEngine``) or a Python callback (``CallbackEngine``).
    ``latency_s``: ap_done rises that long after ap_start (seen by polling reads); ``stall``: the run never
    finishes (a hung IP, for timeout tests).
    """

    def __init__(self, device: FakeDevice, description: dict, engine, latency_s: float = 0.0, stall: bool = False):
        self.device, self.description, self.engine = device, description, engine
        self.input_shape, self.num_classes = tuple(engine.input_shape), int(engine.num_classes)
        self.latency_s, self.stall = float(latency_s), bool(stall)
        self.window: _Window | None = None
        self.runs = 0
        self._pending = None      # (finish time, out address, int32 logits bytes, counters)

    # ---- state
    def reset(self) -> None:
        if hasattr(self.engine, "reset"):          # configuring the PL restores on-chip memories too
            self.engine.reset()
        for r in REGISTERS:
            self.window.set_u32(r.offset, 0)
        self._ctrl = AP_IDLE      # authoritative CTRL (bits the host cannot write)
        self._isr = 0
        self._ro = {k: 0 for k in STATUS_COUNTERS} | {f"{k}_ctrl": 0 for k in STATUS_COUNTERS}
        self._pending = None
        self._publish()

    def _publish(self) -> None:
        w = self.window
        w.set_u32(OFFSET["CTRL"], self._ctrl)
        w.set_u32(OFFSET["IP_ISR"], self._isr)
        for k, v in self._ro.items():
            w.set_u32(OFFSET[k], v)

    def _u64(self, lo: str, hi: str) -> int:
        return self.window.u32(OFFSET[lo]) | (self.window.u32(OFFSET[hi]) << 32)

    # ---- bus hooks (offsets are bytes into the window)
    def _regs_in(self, off: int, n: int):
        return [r for r in REGISTERS if off <= r.offset < off + n or r.offset <= off < r.offset + 4]

    def before_read(self, off: int, n: int) -> None:
        if self._pending is not None and not self.stall and time.monotonic() >= self._pending[0]:
            self._finish()

    def after_read(self, off: int, n: int) -> None:
        regs = {r.name for r in self._regs_in(off, n)}
        if "CTRL" in regs:                        # ap_done and ap_ready are clear-on-read
            self._ctrl &= ~(AP_DONE | AP_READY)
        for k in STATUS_COUNTERS:                 # ap_vld bits are clear-on-read
            if f"{k}_ctrl" in regs:
                self._ro[f"{k}_ctrl"] = 0
        self._publish()

    def after_write(self, off: int, n: int) -> None:
        w = self.window
        for r in self._regs_in(off, n):
            value = w.u32(r.offset)
            if r.name == "CTRL":
                self._ctrl = (self._ctrl & ~AUTO_RESTART) | (value & AUTO_RESTART)
                if value & AUTO_RESTART:
                    raise BoardError("fake sanitas_top does not model auto_restart (the driver never sets it)")
                if value & AP_START and self._ctrl & AP_IDLE:
                    self._start()
            elif r.name == "IP_ISR":
                self._isr ^= value & 0x3          # toggle on write
            elif r.name == "GIER":
                w.set_u32(r.offset, value & 1)
            elif r.name == "IP_IER":
                w.set_u32(r.offset, value & 3)
        self._publish()

    # ---- the computation
    def _start(self) -> None:
        n = self.window.u32(OFFSET["n"])
        in_addr, out_addr = self._u64("in_r_1", "in_r_2"), self._u64("out_r_1", "out_r_2")
        per_image = prod(self.input_shape)
        x = np.frombuffer(self.device.dma_read(in_addr, n * per_image), dtype=np.int8)
        x = x.reshape((n, *self.input_shape))
        y, counters = self.engine.run(x, np.frombuffer(self.window.mem, dtype=np.uint32))
        self.device.dma_read(out_addr, y.nbytes)       # the logits buffer must be DDR too (a DECERR otherwise)
        self._ctrl = (self._ctrl & ~AP_IDLE) | AP_START
        self._pending = (time.monotonic() + self.latency_s, out_addr, y.astype("<i4").tobytes(), counters)
        self.runs += 1
        if self.latency_s == 0 and not self.stall:
            self._finish()

    def _finish(self) -> None:
        _, out_addr, data, counters = self._pending
        self._pending = None
        self.device.dma_write(out_addr, data)
        for k, v in counters.items():
            self._ro[k] = v & 0xFFFFFFFF
            self._ro[f"{k}_ctrl"] = 1
        self._ctrl = (self._ctrl & ~AP_START) | AP_DONE | AP_IDLE | AP_READY
        ier = self.window.u32(OFFSET["IP_IER"])
        self._isr |= ier & 0x3                    # ap_done (bit0) / ap_ready (bit1) interrupt status
        self._publish()

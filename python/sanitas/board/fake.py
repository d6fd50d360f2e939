"""A fake PYNQ board: a ``pynq.Device`` with emulated AXI register space, emulated DDR and a ``sanitas_top`` model.

It lets the real PYNQ stack (``Overlay`` parsing a ``.hwh`` through pynqmetadata, driver binding by VLNV,
``MMIO``, ``RegisterMap``, ``pynq.allocate``, ``Clocks``) run without a board, the way PYNQ's own tests run
``Overlay`` against a generated design. What is emulated, and how:

* **Bitstream + metadata** -- ``write_overlay`` writes ``<name>.bit`` (a valid Xilinx .bit header and a
  configuration-packet payload starting with the sync word), ``<name>.hwh`` (a minimal Vivado hardware
  handoff: the processing system of the board with its PL clock settings and one ``sanitas_top`` on the
  control port, register map from ``driver.REGISTERS``) and ``<name>.json`` (input shape, classes).
* **Download** -- ``FakeDevice.download`` checks the .bit header part against the board, then "configures the
  PL": every IP of the .hwh with a registered model (by VLNV) gets a register window at its address.
* **Registers** -- MEMORY_MAPPED capability: ``mmap`` hands out numpy views of bytearray-backed windows whose
  element reads/writes call the IP model (ap_start side effects, clear-on-read ap_done, toggle-on-write ISR).
  The PS clock registers (Zynq SLCR or ZynqMP CRL/CRF) are windows too, seeded with the board's PLLs.
* **DDR** -- a bytearray at a physical address inside the board's DDR; ``allocate`` carves page-aligned
  buffers from it. Cacheable buffers (the default) have a separate host copy, so a driver that forgets
  ``sync_to_device``/``sync_from_device`` reads and writes stale data, as on a Zynq.
* **The IP** -- ``FakeSanitasTop``: on ap_start it reads ``n`` int8 images from DDR at ``in_r``, runs the
  user ``compute(x_int8) -> logits | (logits, counters)`` callback, writes int32 logits to ``out_r``, sets the
  status counters and ap_done/ap_idle, optionally after ``latency_s`` or never (``stall``).

Board data (part, PS, PLLs, PL clocks, AXI ports and widths, DDR) comes from ``boards/<board>/board.json``.
"""
from __future__ import annotations

import datetime
import json
import struct
import time
import xml.etree.ElementTree as ET
from math import prod
from pathlib import Path

import numpy as np

from .driver import (ADDR_RANGE, ADDR_WIDTH, AP_DONE, AP_IDLE, AP_READY, AP_START, AUTO_RESTART,
                     CONTROL_INTERFACE, DATA_WIDTH, IP_NAME, MEMORY_INTERFACE, OFFSET, REGISTERS,
                     STATUS_COUNTERS, VLNV, BoardError, split_result, to_logits)

try:
    import pynq
    from pynq.buffer import PynqBuffer
    _DeviceBase = pynq.Device
except ImportError:  # pragma: no cover
    pynq = None
    _DeviceBase = object

REPO_ROOT = Path(__file__).resolve().parents[3]
BOARDS_DIR = REPO_ROOT / "boards"
PAGE = 4096                      # allocation alignment of the fake DDR (bytes)
SYNC_WORD = bytes.fromhex("AA995566")
DDR_FILL = 0xA5                  # power-on contents of the fake DDR (so unwritten data is not zeros)


class FakeBusError(BoardError):
    """An access to an address no slave decodes (an AXI DECERR on hardware)."""


# ------------------------------------------------------------------------------------------ board data
def load_board(board) -> dict:
    """``boards/<name>/board.json`` (or a path, or an already loaded dict) with hex strings turned into ints."""
    if isinstance(board, dict):
        return board
    path = Path(board)
    if not path.suffix:
        path = BOARDS_DIR / str(board) / "board.json"
    if not path.is_file():
        known = sorted(p.name for p in BOARDS_DIR.iterdir() if (p / "board.json").is_file()) \
            if BOARDS_DIR.is_dir() else []
        raise BoardError(f"unknown board {board!r}: no {path} (known: {', '.join(known)})")
    cfg = json.loads(path.read_text())

    def ints(obj):
        if isinstance(obj, dict):
            return {k: (int(v, 16) if isinstance(v, str) and v.startswith("0x") else ints(v)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [ints(v) for v in obj]
        return obj
    return ints(cfg)


def _is_zynq7(board: dict) -> bool:
    return board["ps"]["modtype"] == "processing_system7"


def pll_mhz(board: dict, pll: str) -> float:
    """Output frequency of a PS PLL from the board's reference clock and feedback divider (MHz)."""
    p = board["ps"]["plls"][pll]
    return board["ps"]["ref_clk_mhz"] * p["fbdiv"] / (2 if p.get("div2") else 1)


def clock_divisors(src_mhz: float, want_mhz: float) -> tuple[int, int]:
    """Two 6-bit PL clock dividers (div0, div1) giving the frequency closest to ``want_mhz``; smallest div1 wins."""
    best = min(((abs(src_mhz / (d0 * d1) - want_mhz), d1, d0) for d0 in range(1, 64) for d1 in range(1, 64)))
    return best[2], best[1]


def _bit_part(part: str) -> str:
    """The part as Vivado writes it into a .bit header for 7-series (``xc7z020clg400-1`` -> ``7z020clg400``)."""
    p = part.lower()
    p = p[2:] if p.startswith("xc") else p
    return p.split("-")[0] if p.startswith("7") else part.lower()


# ------------------------------------------------------------------------------------------ .bit file
def make_bit(board: dict, design: str) -> bytes:
    """A .bit file: the Xilinx header (fields a..e) and a configuration payload (dummy words, bus width
    detection pattern, sync word, NOOPs). It is not a real configuration of any PL; it is what pynq's
    ``parse_bit_header``/``bit2bin`` and the fake FPGA manager check."""
    def field_(key: bytes, text: str) -> bytes:
        data = text.encode() + b"\0"
        return key + struct.pack(">H", len(data)) + data

    now = datetime.datetime.now()
    payload = (b"\xff" * 32 + bytes.fromhex("000000BB11220044") + b"\xff" * 8 + SYNC_WORD
               + bytes.fromhex("20000000") * 8)
    return (struct.pack(">H", 9) + bytes.fromhex("0FF00FF00FF00FF000") + struct.pack(">H", 1)
            + field_(b"a", f"{design};UserID=0XFFFFFFFF;Version=2023.2")
            + field_(b"b", _bit_part(board["part"]))
            + field_(b"c", now.strftime("%Y/%m/%d"))
            + field_(b"d", now.strftime("%H:%M:%S"))
            + b"e" + struct.pack(">I", len(payload)) + payload)


# ------------------------------------------------------------------------------------------ .hwh file
def _sub(parent, tag, **attrs):
    return ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})


def _params(parent, params: dict):
    el = _sub(parent, "PARAMETERS")
    for k, v in params.items():
        _sub(el, "PARAMETER", NAME=k, VALUE=v)


def _ps_parameters(board: dict) -> dict:
    """PS parameters pynqmetadata reads: PL clock enables, dividers, sources, frequencies; AXI widths."""
    ps, pl = board["ps"], {c["index"]: c for c in board["clocks"]["pl"]}
    ctrl_w, mem_w = board["axi"]["control"]["data_width"], board["axi"]["memory"]["data_width"]
    params = {}
    for i in range(4):
        c = pl.get(i)
        src = c["source"] if c else ("IO_PLL" if _is_zynq7(board) else "IOPLL")
        d0, d1 = clock_divisors(pll_mhz(board, src), c["mhz"]) if c else (1, 1)
        act = pll_mhz(board, src) / (d0 * d1) if c else 0.0
        if _is_zynq7(board):
            params |= {f"PCW_FPGA_FCLK{i}_ENABLE": int(c is not None),
                       f"PCW_FCLK{i}_PERIPHERAL_DIVISOR0": d0, f"PCW_FCLK{i}_PERIPHERAL_DIVISOR1": d1,
                       f"PCW_FCLK{i}_PERIPHERAL_CLKSRC": src.replace("_", " "),
                       f"PCW_FPGA{i}_PERIPHERAL_FREQMHZ": c["mhz"] if c else 50,
                       f"PCW_ACT_FPGA{i}_PERIPHERAL_FREQMHZ": f"{act:.6f}"}
        else:
            params |= {f"PSU__FPGA_PL{i}_ENABLE": int(c is not None),
                       f"PSU__CRL_APB__PL{i}_REF_CTRL__DIVISOR0": d0,
                       f"PSU__CRL_APB__PL{i}_REF_CTRL__DIVISOR1": d1,
                       f"PSU__CRL_APB__PL{i}_REF_CTRL__SRCSEL": src,
                       f"PSU__CRL_APB__PL{i}_REF_CTRL__FREQMHZ": c["mhz"] if c else 100,
                       f"PSU__CRL_APB__PL{i}_REF_CTRL__ACT_FREQMHZ": f"{act:.6f}"}
    if _is_zynq7(board):
        params |= {"PCW_CRYSTAL_PERIPHERAL_FREQMHZ": ps["ref_clk_mhz"], "C_M_AXI_GP0_DATA_WIDTH": ctrl_w,
                   "PCW_S_AXI_HP0_DATA_WIDTH": mem_w, "PCW_USE_M_AXI_GP0": 1, "PCW_USE_S_AXI_HP0": 1}
    else:
        params |= {"PSU__PSS_REF_CLK__FREQMHZ": ps["ref_clk_mhz"],
                   "C_MAXIGP0_DATA_WIDTH": ctrl_w, "PSU__MAXIGP0__DATA_WIDTH": ctrl_w,
                   "C_SAXIGP2_DATA_WIDTH": mem_w, "PSU__SAXIGP2__DATA_WIDTH": mem_w,
                   "PSU__USE__M_AXI_GP0": 1, "PSU__USE__S_AXI_GP2": 1}
        for pll, p in ps["plls"].items():
            params |= {f"PSU__CR{'L' if pll in ('IOPLL', 'RPLL') else 'F'}_APB__{pll}_CTRL__FBDIV": p["fbdiv"],
                       f"PSU__CR{'L' if pll in ('IOPLL', 'RPLL') else 'F'}_APB__{pll}_CTRL__DIV2": p.get("div2", 0)}
    return params


def _clock_ports(board: dict) -> tuple[str, str]:
    return ("FCLK_CLK0", "FCLK_RESET0_N") if _is_zynq7(board) else ("pl_clk0", "pl_resetn0")


def make_hwh(board: dict, design: str = "sanitas") -> str:
    """A minimal, valid Vivado .hwh: the board's PS and one ``sanitas_top_0`` on its control port.

    The IP's register map is ``driver.REGISTERS``; its ``m_axi_gmem`` master reaches every DDR region of the
    board through the PS memory port. pynq's pynqmetadata parses it into ip_dict / clock_dict / mem_dict.
    """
    ps, axi, acc = board["ps"], board["axi"], board["accel"]
    psi, ipi = ps["instance"], f"{IP_NAME}_0"
    clk_port, rst_port = _clock_ports(board)
    clk_hz = int(round(next(c["mhz"] for c in board["clocks"]["pl"] if c["index"] == acc["clock"]) * 1e6))
    aximm = "xilinx.com:interface:aximm:1.0"

    root = ET.Element("EDKSYSTEM", EDWVERSION="1.2", TIMESTAMP=datetime.datetime.now().strftime("%a %b %d %H:%M:%S %Y"),
                      VIVADOVERSION="2023.2")
    dev = board["device"]
    _sub(root, "SYSTEMINFO", ARCH=dev["arch"], DEVICE=dev["device"], NAME=design, PACKAGE=dev["package"],
         SPEEDGRADE=dev["speedgrade"])
    _sub(root, "EXTERNALPORTS")
    _sub(root, "EXTERNALINTERFACES")
    modules = _sub(root, "MODULES")

    # ---- processing system: clock/reset out, control master, memory slave, its address map
    m = _sub(modules, "MODULE", CONFIGURABLE="TRUE", FULLNAME=f"/{psi}", INSTANCE=psi, IPTYPE="PERIPHERAL",
             IS_ENABLE=1, IS_PL="FALSE", MODTYPE=ps["modtype"], VLNV=ps["vlnv"])
    _params(m, _ps_parameters(board))
    ports = _sub(m, "PORTS")
    for name, sig, sigis, extra in ((clk_port, f"{psi}_{clk_port}", "clk", {"CLKFREQUENCY": clk_hz}),
                                    (rst_port, f"{psi}_{rst_port}", "rst", {})):
        p = _sub(ports, "PORT", DIR="O", NAME=name, SIGIS=sigis, SIGNAME=sig, **extra)
        _sub(_sub(p, "CONNECTIONS"), "CONNECTION", INSTANCE=ipi, PORT="ap_clk" if sigis == "clk" else "ap_rst_n")
    bifs = _sub(m, "BUSINTERFACES")
    _sub(bifs, "BUSINTERFACE", BUSNAME=f"{psi}_{axi['control']['port']}", DATAWIDTH=axi["control"]["data_width"],
         NAME=axi["control"]["port"], TYPE="MASTER", VLNV=aximm)
    _sub(bifs, "BUSINTERFACE", BUSNAME=f"{ipi}_{MEMORY_INTERFACE}", DATAWIDTH=axi["memory"]["data_width"],
         NAME=axi["memory"]["port"], TYPE="SLAVE", VLNV=aximm)
    mm = _sub(m, "MEMORYMAP")
    _sub(mm, "MEMRANGE", ADDRESSBLOCK="Reg", BASENAME="C_S_AXI_CONTROL_BASEADDR", BASEVALUE=f"0x{acc['base']:08X}",
         HIGHNAME="C_S_AXI_CONTROL_HIGHADDR", HIGHVALUE=f"0x{acc['base'] + ADDR_RANGE - 1:08X}", INSTANCE=ipi,
         IS_DATA="TRUE", IS_INSTRUCTION="TRUE", MASTERBUSINTERFACE=axi["control"]["port"], MEMTYPE="REGISTER",
         SLAVEBUSINTERFACE=CONTROL_INTERFACE)

    # ---- sanitas_top_0: the HLS IP
    m = _sub(modules, "MODULE", COREREVISION=1, FULLNAME=f"/{ipi}", HWVERSION="1.0", INSTANCE=ipi,
             IPTYPE="PERIPHERAL", IS_ENABLE=1, MODCLASS="PERIPHERAL", MODTYPE=IP_NAME, VLNV=VLNV)
    blk = _sub(_sub(_sub(m, "ADDRESSBLOCKS"), "ADDRESSBLOCK", ACCESS="read-write", INTERFACE=CONTROL_INTERFACE,
                    NAME="Reg", RANGE=ADDR_RANGE, USAGE="register"), "REGISTERS")
    for r in REGISTERS:
        reg = _sub(blk, "REGISTER", NAME=r.name)
        for k, v in (("DESCRIPTION", r.description), ("ADDRESS_OFFSET", r.offset), ("SIZE", r.size),
                     ("ACCESS", r.access), ("IS_ENABLED", "true"), ("RESET_VALUE", AP_IDLE if r.name == "CTRL" else 0)):
            _sub(reg, "PROPERTY", NAME=k, VALUE=v)
        flds = _sub(reg, "FIELDS")
        for f in r.fields_or_whole():
            fe = _sub(flds, "FIELD", NAME=f.name)
            for k, v in (("DESCRIPTION", f.description), ("ADDRESS_OFFSET", f.offset), ("ACCESS", f.access),
                         ("BIT_OFFSET", f.offset), ("BIT_WIDTH", f.width)):
                _sub(fe, "PROPERTY", NAME=k, VALUE=v)
    _params(m, {"C_S_AXI_CONTROL_ADDR_WIDTH": ADDR_WIDTH, "C_S_AXI_CONTROL_DATA_WIDTH": DATA_WIDTH,
                "C_M_AXI_GMEM_ADDR_WIDTH": 32 if _is_zynq7(board) else 64,
                "C_M_AXI_GMEM_DATA_WIDTH": axi["memory"]["data_width"], "Component_Name": f"{design}_{ipi}",
                "clk_period": f"{1e9 / clk_hz:g}", "machine": 64, "EDK_IPTYPE": "PERIPHERAL"})
    ports = _sub(m, "PORTS")
    for name, sigis, src in (("ap_clk", "clk", clk_port), ("ap_rst_n", "rst", rst_port)):
        extra = {"CLKFREQUENCY": clk_hz} if sigis == "clk" else {}
        p = _sub(ports, "PORT", DIR="I", NAME=name, SIGIS=sigis, SIGNAME=f"{psi}_{src}", **extra)
        _sub(_sub(p, "CONNECTIONS"), "CONNECTION", INSTANCE=psi, PORT=src)
    _sub(ports, "PORT", DIR="O", NAME="interrupt", SENSITIVITY="LEVEL_HIGH", SIGIS="INTERRUPT")
    bifs = _sub(m, "BUSINTERFACES")
    b = _sub(bifs, "BUSINTERFACE", BUSNAME=f"{psi}_{axi['control']['port']}", DATAWIDTH=DATA_WIDTH,
             NAME=CONTROL_INTERFACE, TYPE="SLAVE", VLNV=aximm)
    _params(b, {"ADDR_WIDTH": ADDR_WIDTH, "DATA_WIDTH": DATA_WIDTH, "PROTOCOL": "AXI4LITE",
                "READ_WRITE_MODE": "READ_WRITE", "FREQ_HZ": clk_hz})
    b = _sub(bifs, "BUSINTERFACE", BUSNAME=f"{ipi}_{MEMORY_INTERFACE}", DATAWIDTH=axi["memory"]["data_width"],
             NAME=MEMORY_INTERFACE, TYPE="MASTER", VLNV=aximm)
    _params(b, {"DATA_WIDTH": axi["memory"]["data_width"], "PROTOCOL": "AXI4", "FREQ_HZ": clk_hz})
    mm = _sub(m, "MEMORYMAP")
    hp = axi["memory"]["port"].replace("S_AXI_", "").replace("_FPD", "")
    for d in board["ddr"]:
        _sub(mm, "MEMRANGE", ADDRESSBLOCK=f"{hp}_{d['name']}", BASENAME="C_BASEADDR", BASEVALUE=f"0x{d['base']:08X}",
             HIGHNAME="C_HIGHADDR", HIGHVALUE=f"0x{d['base'] + d['size'] - 1:08X}", INSTANCE=psi, IS_DATA="TRUE",
             IS_INSTRUCTION="TRUE", MASTERBUSINTERFACE=MEMORY_INTERFACE, MEMTYPE="MEMORY",
             SLAVEBUSINTERFACE=axi["memory"]["port"])
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_overlay(board, out_dir, name: str = "sanitas", input_shape=None, num_classes=None) -> Path:
    """Write ``<name>.bit``, ``<name>.hwh`` and (if shapes are given) ``<name>.json`` into ``out_dir``."""
    board = load_board(board)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bit = out / f"{name}.bit"
    bit.write_bytes(make_bit(board, name))
    bit.with_suffix(".hwh").write_text(make_hwh(board, name))
    if input_shape is not None and num_classes is not None:
        bit.with_suffix(".json").write_text(json.dumps(
            {"board": board["name"], "vlnv": VLNV, "input_shape": list(input_shape), "num_classes": int(num_classes)},
            indent=2) + "\n")
    return bit


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
        if _is_zynq7(b):
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
        if header["part"] != _bit_part(self.board["part"]):
            raise BoardError(f"bitstream is for part {header['part']}, this board ({self.name}) is "
                             f"{_bit_part(self.board['part'])}")
        if SYNC_WORD[::-1] not in bit2bin(data):       # .bin is the payload with 32-bit words byte-swapped
            raise BoardError("bitstream payload has no sync word")
        if parser is None:
            parser = self.get_bitfile_metadata(bitstream.bitfile_name)
        # reconfiguring the PL removes every previous IP window
        self.windows = [w for w in self.windows if w.ps]
        self.ip_models = {}
        for name, desc in parser.ip_dict.items():
            factory = self.models.get(desc.get("type"))
            if factory is not None and "phys_addr" in desc:
                model = factory(self, desc)
                model.window = self.add_window(desc["phys_addr"], desc["addr_range"], model)
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

    ``compute(x)`` gets int8 (n, *input_shape) read from DDR and returns integer logits (n, num_classes)
    or (logits, {"detected", "corrected", "rollbacks"}). ``latency_s``: ap_done rises that long after
    ap_start (seen by polling reads); ``stall``: the run never finishes (a hung IP, for timeout tests).
    """

    def __init__(self, device: FakeDevice, description: dict, compute, input_shape, num_classes: int,
                 latency_s: float = 0.0, stall: bool = False):
        self.device, self.description = device, description
        self.compute, self.input_shape, self.num_classes = compute, tuple(input_shape), int(num_classes)
        self.latency_s, self.stall = float(latency_s), bool(stall)
        self.window: _Window | None = None
        self.runs = 0
        self._pending = None      # (finish time, out address, int32 logits bytes, counters)

    # ---- state
    def reset(self) -> None:
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
        logits, counters = split_result(self.compute(x))
        y = to_logits(logits, n, self.num_classes)
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

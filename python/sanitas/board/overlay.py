"""Board data and overlay files of the fake PYNQ board: ``boards/<board>/board.json``, ``.bit``, ``.hwh``, ``.json``.

``write_overlay`` writes what a PYNQ ``Overlay`` loads, for a board of ``boards/`` and one ``sanitas_top``:

* ``<name>.bit`` -- a valid Xilinx .bit header (design, part, date, time) and a configuration-packet payload
  starting with the sync word; it configures no real PL, it is what pynq's ``parse_bit_header``/``bit2bin`` and
  the fake FPGA manager (``fake.FakeDevice.download``) check;
* ``<name>.hwh`` -- a minimal Vivado hardware handoff: the board's processing system with its PL clock settings
  (dividers computed from the PS PLLs) and one ``sanitas_top_0`` on the control port, its register map taken from
  ``driver.REGISTERS``, its memory master reaching every DDR region (pynqmetadata parses it);
* ``<name>.json`` -- input shape and classes of the network.

Board data (part, PS, PLLs, PL clocks, AXI ports and widths, DDR) comes from ``boards/<board>/board.json`` in the
repository (``sanitas.paths.REPO_ROOT``); hex strings there become ints.
"""
from __future__ import annotations

import datetime
import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

from ..paths import REPO_ROOT
from .driver import (ADDR_RANGE, ADDR_WIDTH, AP_IDLE, CONTROL_INTERFACE, DATA_WIDTH, IP_NAME, MEMORY_INTERFACE,
                     REGISTERS, VLNV, BoardError)

BOARDS_DIR = REPO_ROOT / "boards"
SYNC_WORD = bytes.fromhex("AA995566")   # configuration sync word: the start of every .bit payload


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


def is_zynq7(board: dict) -> bool:
    return board["ps"]["modtype"] == "processing_system7"


def pll_mhz(board: dict, pll: str) -> float:
    """Output frequency of a PS PLL from the board's reference clock and feedback divider (MHz)."""
    p = board["ps"]["plls"][pll]
    return board["ps"]["ref_clk_mhz"] * p["fbdiv"] / (2 if p.get("div2") else 1)


def clock_divisors(src_mhz: float, want_mhz: float) -> tuple[int, int]:
    """Two 6-bit PL clock dividers (div0, div1) giving the frequency closest to ``want_mhz``; smallest div1 wins."""
    best = min(((abs(src_mhz / (d0 * d1) - want_mhz), d1, d0) for d0 in range(1, 64) for d1 in range(1, 64)))
    return best[2], best[1]


def bit_part(part: str) -> str:
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
            + field_(b"b", bit_part(board["part"]))
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
        src = c["source"] if c else ("IO_PLL" if is_zynq7(board) else "IOPLL")
        d0, d1 = clock_divisors(pll_mhz(board, src), c["mhz"]) if c else (1, 1)
        act = pll_mhz(board, src) / (d0 * d1) if c else 0.0
        if is_zynq7(board):
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
    if is_zynq7(board):
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
    return ("FCLK_CLK0", "FCLK_RESET0_N") if is_zynq7(board) else ("pl_clk0", "pl_resetn0")


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
                "C_M_AXI_GMEM_ADDR_WIDTH": 32 if is_zynq7(board) else 64,
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
        seg = d.get("segment", f"{hp}_{d['name']}")      # the PS's address segment, as Vivado names it
        _sub(mm, "MEMRANGE", ADDRESSBLOCK=seg, BASENAME="C_BASEADDR", BASEVALUE=f"0x{d['base']:08X}",
             HIGHNAME="C_HIGHADDR", HIGHVALUE=f"0x{d['base'] + d['size'] - 1:08X}", INSTANCE=psi, IS_DATA="TRUE",
             IS_INSTRUCTION="TRUE", MASTERBUSINTERFACE=MEMORY_INTERFACE, MEMTYPE="MEMORY",
             SLAVEBUSINTERFACE=axi["memory"]["port"])
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_overlay(board, out_dir, name: str = "sanitas", input_shape=None, num_classes=None, *,
                  fault_port: bool = False, layers=(), spec=None) -> Path:
    """Write ``<name>.bit``, ``<name>.hwh`` and (if shapes are given) ``<name>.json`` into ``out_dir``.

    The .json (``driver.load_overlay_config``) also says whether the IP has the fault-injection port, the
    network's layer names and its protection spec.
    """
    board = load_board(board)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bit = out / f"{name}.bit"
    bit.write_bytes(make_bit(board, name))
    bit.with_suffix(".hwh").write_text(make_hwh(board, name))
    if input_shape is not None and num_classes is not None:
        bit.with_suffix(".json").write_text(json.dumps(
            {"board": board["name"], "vlnv": VLNV, "input_shape": list(input_shape), "num_classes": int(num_classes),
             "fault_port": bool(fault_port), "layers": list(layers), "spec": spec}, indent=2) + "\n")
    return bit

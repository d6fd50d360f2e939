"""Vivado block design and Vitis HLS export of one board's PYNQ overlay, rendered from ``boards/<board>/board.json``.

``render_block_design(board)`` writes the Vivado tcl (``templates/block_design.tcl.j2``) of the overlay that
``SanitasOverlay`` loads: the board's processing system (``processing_system7`` or ``zynq_ultra_ps_e``) with the
PL clock, control port and memory port enabled at the widths of ``board.json`` (plus the vendor board preset where
the board files are installed), ``sanitas_top_0`` on the control port through a SmartConnect, its ``m_axi_gmem``
to the HP port through a second one, a ``proc_sys_reset`` on the PL clock, and the address map (the IP's
registers at ``accel.base``, 64 KiB; every DDR region of ``board.json`` in the IP's master space) -- the same map
the fake board's ``.hwh`` holds (overlay.py). ``render_hls_export(board)`` writes the Vitis HLS tcl that packages
``sanitas_top`` as the IP the design instantiates (VLNV ``sanitas.org:hls:sanitas_top:1.0``, the board's part,
the PL clock's period). ``boards/common.mk`` (``make -C boards/<board> overlay``) runs both where the tools are.

Port names differ between the two processing systems; ``PS_KINDS`` holds them, one record per PS type.
``python -m sanitas.board.bd BOARD OUT_DIR`` writes ``sanitas_bd.tcl`` and ``hls_export.tcl`` into OUT_DIR.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ..errors import SanitasError
from .driver import ADDR_RANGE, CONTROL_INTERFACE, IP_NAME, MEMORY_INTERFACE, VLNV, BoardError
from .overlay import load_board

TEMPLATES = Path(__file__).resolve().parent / "templates"
DESIGN_NAME = "sanitas"           # the block design, hence sanitas.bit / sanitas.hwh
IP_INSTANCE = f"{IP_NAME}_0"


@dataclass(frozen=True)
class PsKind:
    """Pin, interface and CONFIG names of one processing-system IP type (as Vivado names them)."""
    automation: str                     # apply_bd_automation rule (board preset)
    clk_pin: str                        # PL clock i: format with i
    rst_pin: str                        # PL reset i (active low)
    clk_enable: tuple[str, ...]         # CONFIG keys set to 1 to enable PL clock i
    clk_mhz: str                        # CONFIG key of PL clock i's requested frequency
    clk_src: str                        # CONFIG key of PL clock i's source PLL
    port_enable: dict                   # AXI port -> CONFIG key enabling it
    port_width: dict                    # AXI port -> CONFIG key of its data width (absent: fixed width)
    aclk: dict                          # AXI port -> its clock pin
    segment_intf: dict                  # slave AXI port -> interface name in its address segments
    disable: tuple[str, ...]            # CONFIG keys set to 0 (ports enabled by default that the design leaves open)
    external: tuple[tuple[str, str], ...]   # (PS interface, VLNV of the external port) made external
    src_value: dict                     # board.json PLL name -> CONFIG value of the source


PS_KINDS = {
    "processing_system7": PsKind(
        automation="xilinx.com:bd_rule:processing_system7",
        clk_pin="FCLK_CLK{i}", rst_pin="FCLK_RESET{i}_N",
        clk_enable=("PCW_EN_CLK{i}_PORT", "PCW_FPGA_FCLK{i}_ENABLE"),
        clk_mhz="PCW_FPGA{i}_PERIPHERAL_FREQMHZ", clk_src="PCW_FCLK{i}_PERIPHERAL_CLKSRC",
        port_enable={"M_AXI_GP0": "PCW_USE_M_AXI_GP0", "M_AXI_GP1": "PCW_USE_M_AXI_GP1",
                     **{f"S_AXI_HP{k}": f"PCW_USE_S_AXI_HP{k}" for k in range(4)}},
        port_width={f"S_AXI_HP{k}": f"PCW_S_AXI_HP{k}_DATA_WIDTH" for k in range(4)},
        aclk={"M_AXI_GP0": "M_AXI_GP0_ACLK", "M_AXI_GP1": "M_AXI_GP1_ACLK",
              **{f"S_AXI_HP{k}": f"S_AXI_HP{k}_ACLK" for k in range(4)}},
        segment_intf={f"S_AXI_HP{k}": f"S_AXI_HP{k}" for k in range(4)},
        disable=(),
        external=(("DDR", "xilinx.com:interface:ddrx_rtl:1.0"),
                  ("FIXED_IO", "xilinx.com:display_processing_system7:fixedio_rtl:1.0")),
        src_value={"IO_PLL": "IO PLL", "ARM_PLL": "ARM PLL", "DDR_PLL": "DDR PLL"}),
    "zynq_ultra_ps_e": PsKind(
        automation="xilinx.com:bd_rule:zynq_ultra_ps_e",
        clk_pin="pl_clk{i}", rst_pin="pl_resetn{i}",
        clk_enable=("PSU__FPGA_PL{i}_ENABLE",),
        clk_mhz="PSU__CRL_APB__PL{i}_REF_CTRL__FREQMHZ", clk_src="PSU__CRL_APB__PL{i}_REF_CTRL__SRCSEL",
        port_enable={"M_AXI_HPM0_FPD": "PSU__USE__M_AXI_GP0", "M_AXI_HPM1_FPD": "PSU__USE__M_AXI_GP1",
                     "M_AXI_HPM0_LPD": "PSU__USE__M_AXI_GP2",
                     **{f"S_AXI_HP{k}_FPD": f"PSU__USE__S_AXI_GP{k + 2}" for k in range(4)}},
        port_width={"M_AXI_HPM0_FPD": "PSU__MAXIGP0__DATA_WIDTH", "M_AXI_HPM1_FPD": "PSU__MAXIGP1__DATA_WIDTH",
                     "M_AXI_HPM0_LPD": "PSU__MAXIGP2__DATA_WIDTH",
                     **{f"S_AXI_HP{k}_FPD": f"PSU__SAXIGP{k + 2}__DATA_WIDTH" for k in range(4)}},
        aclk={"M_AXI_HPM0_FPD": "maxihpm0_fpd_aclk", "M_AXI_HPM1_FPD": "maxihpm1_fpd_aclk",
              "M_AXI_HPM0_LPD": "maxihpm0_lpd_aclk",
              **{f"S_AXI_HP{k}_FPD": f"saxihp{k}_fpd_aclk" for k in range(4)}},
        segment_intf={f"S_AXI_HP{k}_FPD": f"SAXIGP{k + 2}" for k in range(4)},
        disable=("PSU__USE__M_AXI_GP0", "PSU__USE__M_AXI_GP1", "PSU__USE__M_AXI_GP2"),
        external=(),
        src_value={"IOPLL": "IOPLL", "RPLL": "RPLL", "DPLL": "DPLL"}),
}


def _range(size: int) -> str:
    """A Vivado address range: ``64K``, ``512M``, ``2G``."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    raise BoardError(f"address range 0x{size:x} is not a whole number of KiB")


def design_context(board) -> dict:
    """Everything the block-design template needs, from the board data (checked: ports this PS has)."""
    b = load_board(board)
    modtype = b["ps"]["modtype"]
    if modtype not in PS_KINDS:
        raise BoardError(f"board {b['name']}: unknown processing system {modtype!r}; known: {', '.join(PS_KINDS)}")
    kind = PS_KINDS[modtype]
    ctrl, mem = b["axi"]["control"], b["axi"]["memory"]
    for role, port, table in (("control", ctrl["port"], kind.aclk), ("memory", mem["port"], kind.segment_intf)):
        if port not in table:
            raise BoardError(f"board {b['name']}: {role} port {port!r} is not an AXI port of {modtype} "
                             f"(one of {', '.join(table)})")
    clocks = {c["index"]: c for c in b["clocks"]["pl"]}
    ci = b["accel"]["clock"]
    if ci not in clocks:
        raise BoardError(f"board {b['name']}: accel clock {ci} is not a PL clock of clocks.pl")
    config: dict[str, object] = dict.fromkeys(kind.disable, 0)
    for c in clocks.values():
        i = c["index"]
        config |= {k.format(i=i): 1 for k in kind.clk_enable}
        config[kind.clk_mhz.format(i=i)] = f"{c['mhz']:g}"
        config[kind.clk_src.format(i=i)] = kind.src_value[c["source"]]
    for port, spec in ((ctrl["port"], ctrl), (mem["port"], mem)):
        config[kind.port_enable[port]] = 1
        if port in kind.port_width:
            config[kind.port_width[port]] = spec["data_width"]
    ps = b["ps"]["instance"]
    return {
        "board": b["name"], "part": b["part"], "board_part": b.get("block_design", {}).get("board_part", ""),
        "design": DESIGN_NAME, "ps": ps, "ps_vlnv": b["ps"]["vlnv"], "automation": kind.automation,
        "config": config, "external": kind.external,
        "ip": IP_INSTANCE, "ip_vlnv": VLNV, "ctrl_intf": CONTROL_INTERFACE, "mem_intf": MEMORY_INTERFACE,
        "ctrl_port": ctrl["port"], "mem_port": mem["port"],
        "clk": kind.clk_pin.format(i=ci), "rst": kind.rst_pin.format(i=ci), "clk_mhz": clocks[ci]["mhz"],
        "aclks": [kind.aclk[ctrl["port"]], kind.aclk[mem["port"]]],
        "accel_base": f"0x{b['accel']['base']:08X}", "accel_range": _range(ADDR_RANGE),
        "ddr": [{"segment": f"{ps}/{kind.segment_intf[mem['port']]}/{d['segment']}", "base": f"0x{d['base']:08X}",
                 "range": _range(d["size"])} for d in b["ddr"]],
    }


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def render_block_design(board) -> str:
    """The Vivado tcl of the overlay (``vivado -mode batch -source T -tclargs IP_REPO OUT_DIR``)."""
    return _env().get_template("block_design.tcl.j2").render(**design_context(board))


def render_hls_export(board) -> str:
    """The Vitis HLS tcl packaging sanitas_top for this board (``vitis_hls -f T -tclargs SRC_DIR INCLUDE_DIR``)."""
    b = load_board(board)
    mhz = {c["index"]: c["mhz"] for c in b["clocks"]["pl"]}[b["accel"]["clock"]]
    vendor, library, name, version = VLNV.split(":")
    return _env().get_template("hls_export.tcl.j2").render(
        board=b["name"], part=b["part"], top=IP_NAME, period_ns=f"{1e3 / mhz:g}", vendor=vendor, library=library,
        ipname=name, version=version)


def write_design(board, out_dir) -> tuple[Path, Path]:
    """Write ``sanitas_bd.tcl`` and ``hls_export.tcl`` into ``out_dir``; returns their paths."""
    bd, hls = render_block_design(board), render_hls_export(board)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "sanitas_bd.tcl", out / "hls_export.tcl")
    for p, text in zip(paths, (bd, hls)):
        p.write_text(text)
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sanitas.board.bd", description=__doc__.split("\n")[0])
    p.add_argument("board", help="board folder name under boards/ (pynq-z2, zcu104, kv260)")
    p.add_argument("out_dir", help="folder for sanitas_bd.tcl and hls_export.tcl")
    args = p.parse_args(argv)
    try:
        write_design(args.board, args.out_dir)
    except SanitasError as e:
        print(f"sanitas: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

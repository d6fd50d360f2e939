"""The generated Vivado block design and Vitis HLS export (board/bd.py), run in a Tcl interpreter whose Vivado
commands only record what they are asked to do; and ``make -C boards/<board> overlay`` without the tools.

The recorded design is checked against ``boards/<board>/board.json`` (part, processing system, PL clock, ports,
widths, addresses) and against the ``.hwh`` of the fake board (the same base address, range and clock).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sanitas.board import bd
from sanitas.board.driver import ADDR_RANGE, VLNV, BoardError
from sanitas.board.overlay import load_board, make_hwh

tkinter = pytest.importorskip("tkinter", reason="tkinter (Tcl) not available")

ROOT = Path(__file__).resolve().parents[2]
BOARDS = ("pynq-z2", "zcu104", "kv260")

# Vivado / Vitis HLS commands the scripts may use: each records its arguments in ::calls and returns a value.
_STUBS = r"""
set ::calls {}
proc rec {args} { lappend ::calls $args }
rename unknown _tcl_unknown
proc unknown {args} { error "not a Vivado command: [lindex $args 0]" }
foreach cmd {create_project update_ip_catalog create_bd_design apply_bd_automation validate_bd_design
             save_bd_design make_wrapper add_files launch_runs wait_on_run connect_bd_intf_net connect_bd_net
             assign_bd_address set_property open_project set_top open_solution set_part create_clock csynth_design
             export_design exit} {
    proc $cmd {args} "rec $cmd {*}\$args; return {}"
}
rename exec _tcl_exec
proc exec {args} { rec exec {*}$args; return {} }
proc create_bd_cell {args} { rec create_bd_cell {*}$args; return [lindex $args end] }
proc create_bd_intf_port {args} { rec create_bd_intf_port {*}$args; return [lindex $args end] }
foreach cmd {get_bd_intf_pins get_bd_pins get_bd_addr_spaces get_bd_addr_segs get_files get_runs} {
    proc $cmd {args} { return [lindex $args end] }
}
proc get_bd_intf_ports {name} { return "port:$name" }
proc get_board_parts {args} { if {$::board_files} { return [lindex $args end] }; return {} }
proc current_project {} { return project }
proc current_fileset {} { return sources_1 }
proc get_property {name obj} {
    switch $name {
        PROGRESS { return 100% }
        FILE_NAME { return [file join $::proj_dir x.srcs sources_1 bd sanitas sanitas.bd] }
        DIRECTORY { return $::run_dir }
    }
    error "get_property $name"
}
"""


def _run_tcl(script: str, argv: list[str], tmp_path: Path, board_files: bool = False) -> list[tuple[str, ...]]:
    """Source ``script`` with the recording stubs; returns the recorded calls (command, *args)."""
    tcl = tkinter.Tcl()
    tcl.tk.wantobjects(False)          # every value comes back as its Tcl string
    tcl.eval(_STUBS)
    proj = tmp_path / "out" / "project"
    run_dir = proj / "x.runs" / "impl_1"
    hwh_dir = proj / "x.gen" / "sources_1" / "bd" / "sanitas" / "hw_handoff"
    for d, f in ((run_dir, "sanitas_wrapper.bit"), (hwh_dir, "sanitas.hwh")):
        d.mkdir(parents=True, exist_ok=True)
        (d / f).write_text(f"made by vivado: {f}\n")
    tcl.setvar("::proj_dir", str(proj))
    tcl.setvar("::run_dir", str(run_dir))
    tcl.setvar("::board_files", int(board_files))
    tcl.setvar("argv", tcl.call("list", *argv))
    path = tmp_path / "script.tcl"
    path.write_text(script)
    tcl.call("source", str(path))
    return [tcl.splitlist(c) for c in tcl.splitlist(tcl.getvar("::calls"))]


def _calls(calls, name):
    return [c[1:] for c in calls if c[0] == name]


def _opt(args, flag):
    return args[args.index(flag) + 1]


def _design(board, tmp_path, board_files=False):
    calls = _run_tcl(bd.render_block_design(board), [str(tmp_path / "ip"), str(tmp_path / "out")], tmp_path,
                     board_files)
    return calls, load_board(board)


@pytest.mark.parametrize("board", BOARDS)
def test_block_design_part_cells_and_ps_settings(board, tmp_path):
    calls, b = _design(board, tmp_path)
    (proj,) = _calls(calls, "create_project")
    assert proj[:2] == ("-force", f"sanitas_{board}") and _opt(proj, "-part") == b["part"]
    cells = {a[-1]: _opt(a, "-vlnv") for a in _calls(calls, "create_bd_cell")}
    assert cells == {b["ps"]["instance"]: b["ps"]["vlnv"], "sanitas_top_0": VLNV,
                     "ctrl_interconnect": "xilinx.com:ip:smartconnect:1.0",
                     "mem_interconnect": "xilinx.com:ip:smartconnect:1.0",
                     "pl_reset": "xilinx.com:ip:proc_sys_reset:5.0"}
    ps_cfg = {}
    for a in _calls(calls, "set_property"):
        if a[0] == "-dict" and a[2] == b["ps"]["instance"]:
            items = tkinter.Tcl().splitlist(a[1])
            ps_cfg |= dict(zip(items[::2], items[1::2]))
    mem_w, ctrl_w = b["axi"]["memory"]["data_width"], b["axi"]["control"]["data_width"]
    if b["ps"]["modtype"] == "processing_system7":
        assert ps_cfg == {"CONFIG.PCW_EN_CLK0_PORT": "1", "CONFIG.PCW_FPGA_FCLK0_ENABLE": "1",
                          "CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ": "100", "CONFIG.PCW_FCLK0_PERIPHERAL_CLKSRC": "IO PLL",
                          "CONFIG.PCW_USE_M_AXI_GP0": "1", "CONFIG.PCW_USE_S_AXI_HP0": "1",
                          "CONFIG.PCW_S_AXI_HP0_DATA_WIDTH": str(mem_w)}
        assert [(a[-1], _opt(a, "-vlnv")) for a in _calls(calls, "create_bd_intf_port")] == [
            ("DDR", "xilinx.com:interface:ddrx_rtl:1.0"),
            ("FIXED_IO", "xilinx.com:display_processing_system7:fixedio_rtl:1.0")]
    else:
        assert ps_cfg == {"CONFIG.PSU__USE__M_AXI_GP0": "1", "CONFIG.PSU__USE__M_AXI_GP1": "0",
                          "CONFIG.PSU__USE__M_AXI_GP2": "0", "CONFIG.PSU__FPGA_PL0_ENABLE": "1",
                          "CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ": "100",
                          "CONFIG.PSU__CRL_APB__PL0_REF_CTRL__SRCSEL": "IOPLL",
                          "CONFIG.PSU__MAXIGP0__DATA_WIDTH": str(ctrl_w), "CONFIG.PSU__USE__S_AXI_GP2": "1",
                          "CONFIG.PSU__SAXIGP2__DATA_WIDTH": str(mem_w)}
        assert _calls(calls, "create_bd_intf_port") == []
    assert _calls(calls, "apply_bd_automation") == []            # no board files here: board.json only


@pytest.mark.parametrize("board", BOARDS)
def test_block_design_nets_reach_the_ip(board, tmp_path):
    calls, b = _design(board, tmp_path)
    ps, ctrl, mem = b["ps"]["instance"], b["axi"]["control"]["port"], b["axi"]["memory"]["port"]
    intf = [a for a in _calls(calls, "connect_bd_intf_net") if not a[0].startswith("port:")]
    assert intf == [(f"{ps}/{ctrl}", "ctrl_interconnect/S00_AXI"),
                    ("ctrl_interconnect/M00_AXI", "sanitas_top_0/s_axi_control"),
                    ("sanitas_top_0/m_axi_gmem", "mem_interconnect/S00_AXI"),
                    ("mem_interconnect/M00_AXI", f"{ps}/{mem}")]
    clk, rst, periph = _calls(calls, "connect_bd_net")
    zynq7 = b["ps"]["modtype"] == "processing_system7"
    aclks = {"pynq-z2": ["M_AXI_GP0_ACLK", "S_AXI_HP0_ACLK"]}.get(board, ["maxihpm0_fpd_aclk", "saxihp0_fpd_aclk"])
    assert clk == (f"{ps}/{'FCLK_CLK0' if zynq7 else 'pl_clk0'}", *(f"{ps}/{p}" for p in aclks), "sanitas_top_0/ap_clk",
                   "ctrl_interconnect/aclk", "mem_interconnect/aclk", "pl_reset/slowest_sync_clk")
    assert rst == (f"{ps}/{'FCLK_RESET0_N' if zynq7 else 'pl_resetn0'}", "pl_reset/ext_reset_in")
    assert periph == ("pl_reset/peripheral_aresetn", "sanitas_top_0/ap_rst_n", "ctrl_interconnect/aresetn",
                      "mem_interconnect/aresetn")


@pytest.mark.parametrize("board", BOARDS)
def test_block_design_address_map_matches_board_and_fake_hwh(board, tmp_path):
    calls, b = _design(board, tmp_path)
    addrs = [(_opt(a, "-offset"), _opt(a, "-range"), _opt(a, "-target_address_space"), a[-2])
             for a in _calls(calls, "assign_bd_address")]
    ps = b["ps"]["instance"]
    hp = {"pynq-z2": "S_AXI_HP0"}.get(board, "SAXIGP2")
    sizes = {0x20000000: "512M", 0x80000000: "2G"}
    assert addrs == [(f"0x{b['accel']['base']:08X}", "64K", f"{ps}/Data", "sanitas_top_0/s_axi_control/Reg")] + [
        (f"0x{d['base']:08X}", sizes[d["size"]], "sanitas_top_0/Data_m_axi_gmem", f"{ps}/{hp}/{d['segment']}")
        for d in b["ddr"]]
    assert len(addrs) == {"kv260": 3}.get(board, 2)
    # the fake board's .hwh (what pynq parses off-board) places and clocks the IP the same way
    from pynqmetadata.frontends import Metadata
    from pynqmetadata.views.runtime import RuntimeMetadataParser
    hwh = tmp_path / "sanitas.hwh"
    hwh.write_text(make_hwh(b, "sanitas"))
    parser = RuntimeMetadataParser(Metadata(input=str(hwh)))
    ip = parser.ip_dict["sanitas_top_0"]
    assert (ip["phys_addr"], ip["addr_range"], ip["type"]) == (b["accel"]["base"], ADDR_RANGE, VLNV)
    assert ADDR_RANGE == 64 << 10
    import xml.etree.ElementTree as ET
    ranges = [(m.get("BASEVALUE"), m.get("ADDRESSBLOCK")) for m in ET.parse(hwh).iter("MEMRANGE")
              if m.get("MASTERBUSINTERFACE") == "m_axi_gmem"]
    assert ranges == [(off, seg.rsplit("/", 1)[1]) for off, _, _, seg in addrs[1:]]   # the tcl's DDR segments
    assert parser.clock_dict[0]["enable"] == 1


@pytest.mark.parametrize("board", BOARDS)
def test_block_design_writes_the_overlay_pair(board, tmp_path):
    calls, b = _design(board, tmp_path)
    out = tmp_path / "out"
    assert (out / "sanitas.bit").read_text() == "made by vivado: sanitas_wrapper.bit\n"
    assert (out / "sanitas.hwh").read_text() == "made by vivado: sanitas.hwh\n"
    assert _calls(calls, "launch_runs") == [("impl_1", "-to_step", "write_bitstream", "-jobs", "4")]
    assert ("ip_repo_paths", str(tmp_path / "ip"), "project") in _calls(calls, "set_property")


def test_block_design_applies_the_board_preset_where_installed(tmp_path):
    calls, b = _design("zcu104", tmp_path, board_files=True)
    assert ("board_part", "xilinx.com:zcu104:part0:1.1", "project") in _calls(calls, "set_property")
    assert _calls(calls, "apply_bd_automation") == [("-rule", "xilinx.com:bd_rule:zynq_ultra_ps_e", "-config",
                                                     'apply_board_preset "1"', "zynq_ultra_ps_e_0")]
    names = [c[0] for c in calls]        # the preset comes first, board.json's settings override it
    first_dict = [i for i, c in enumerate(calls) if c[:2] == ("set_property", "-dict")][0]
    assert names.index("apply_bd_automation") < first_dict


def test_block_design_usage_error(tmp_path):
    with pytest.raises(tkinter.TclError, match="usage: vivado -mode batch -source sanitas_bd.tcl -tclargs IP_REPO"):
        _run_tcl(bd.render_block_design("pynq-z2"), [], tmp_path)


@pytest.mark.parametrize("board,period", [("pynq-z2", "10"), ("kv260", "10")])
def test_hls_export_part_clock_and_vlnv(board, period, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "sanitas_top.cpp").write_text("// top\n")
    calls = _run_tcl(bd.render_hls_export(board), [str(src), str(ROOT / "hls" / "include"), str(tmp_path / "ip")],
                     tmp_path)
    b = load_board(board)
    assert _calls(calls, "set_top") == [("sanitas_top",)]
    assert _calls(calls, "set_part") == [(b["part"],)]
    assert _calls(calls, "create_clock") == [("-period", period, "-name", "default")]
    (add,) = _calls(calls, "add_files")
    assert add[0] == str(src / "sanitas_top.cpp") and f"-I{ROOT / 'hls' / 'include'}" in add[2]
    (exp,) = _calls(calls, "export_design")
    assert ":".join(_opt(exp, f) for f in ("-vendor", "-library", "-ipname", "-version")) == VLNV
    assert _calls(calls, "exit") == [()]


def test_hls_export_refuses_an_empty_source_folder(tmp_path):
    with pytest.raises(tkinter.TclError, match="no C\\+\\+ sources of sanitas_top in"):
        _run_tcl(bd.render_hls_export("pynq-z2"), [str(tmp_path), str(tmp_path), str(tmp_path / "ip")], tmp_path)


def test_board_data_errors_are_one_line():
    b = load_board("pynq-z2")
    bad = {**b, "axi": {**b["axi"], "control": {**b["axi"]["control"], "port": "M_AXI_HPM0_FPD"}}}
    with pytest.raises(BoardError, match=r"^board pynq-z2: control port 'M_AXI_HPM0_FPD' is not an AXI port of "
                                         r"processing_system7 \(one of M_AXI_GP0, M_AXI_GP1, S_AXI_HP0"):
        bd.render_block_design(bad)
    with pytest.raises(BoardError, match=r"^board pynq-z2: accel clock 3 is not a PL clock of clocks.pl$"):
        bd.render_block_design({**b, "accel": {**b["accel"], "clock": 3}})


def test_make_overlay_without_tools_stops_with_one_line(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    env = {**os.environ, "PATH": os.pathsep.join(sorted({str(Path(shutil.which("make")).parent), "/usr/bin", "/bin"}))}
    if any(shutil.which(t, path=env["PATH"]) for t in ("vitis_hls", "vivado")):
        pytest.skip("Vitis HLS / Vivado installed: make overlay would build")
    r = subprocess.run(["make", "-s", "-C", str(ROOT / "boards" / "zcu104"), "overlay", f"BUILD={tmp_path}",
                        f"PYTHON={sys.executable}"], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0] == (f"sanitas: overlay needs Vitis HLS and Vivado (vitis_hls not on PATH); block design written "
                        f"to {tmp_path}/sanitas_bd.tcl")
    assert all(line.startswith("make") for line in lines[1:])      # make's own "Error 2" trailer
    assert (tmp_path / "sanitas_bd.tcl").read_text() == bd.render_block_design("zcu104")
    assert (tmp_path / "hls_export.tcl").read_text() == bd.render_hls_export("zcu104")

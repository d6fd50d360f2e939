"""The register table of sanitas_top (driver.REGISTERS) against itself, Vitis HLS conventions and the .hwh."""
import json

import pytest

from sanitas.board import driver
from sanitas.hls import regmap
from sanitas.board.driver import OFFSET, REGISTERS, registers_dict

pynq = pytest.importorskip("pynq", reason="pynq not installed")
from pynqmetadata.frontends import Metadata  # noqa: E402
from pynqmetadata.views.runtime import RuntimeMetadataParser  # noqa: E402

from sanitas.board import fake  # noqa: E402

BOARDS = ("pynq-z2", "zcu104", "kv260")


def test_offsets_are_unique_aligned_and_in_range():
    offs = [r.offset for r in REGISTERS]
    assert len(set(offs)) == len(offs) == (9 + 2 * len(driver.STATUS_COUNTERS) + len(regmap.RELOAD_REGISTERS)
                                           + len(driver.FAULT_REGISTERS))
    assert all(o % 4 == 0 for o in offs)
    assert max(offs) + 4 <= driver.ADDR_RANGE
    assert max(offs) < 1 << driver.ADDR_WIDTH          # the s_axi_control address bus reaches every register
    assert [OFFSET[k] for k in ("CTRL", "GIER", "IP_IER", "IP_ISR")] == [0x00, 0x04, 0x08, 0x0C]


def test_fields_tile_each_register_exactly():
    for r in REGISTERS:
        bits = [0] * r.size
        for f in r.fields_or_whole():
            for b in range(f.offset, f.offset + f.width):
                bits[b] += 1
        assert bits == [1] * r.size, r.name


def test_ap_ctrl_hs_bits_and_vitis_layout():
    ctrl = {f.name: f.offset for f in driver.REG["CTRL"].fields}
    assert (1 << ctrl["AP_START"], 1 << ctrl["AP_DONE"], 1 << ctrl["AP_IDLE"], 1 << ctrl["AP_READY"],
            1 << ctrl["AUTO_RESTART"]) == (driver.AP_START, driver.AP_DONE, driver.AP_IDLE, driver.AP_READY,
                                           driver.AUTO_RESTART)
    # 64-bit pointers: low word, high word next to it, 12-byte stride per argument
    assert OFFSET["in_r_2"] - OFFSET["in_r_1"] == OFFSET["out_r_2"] - OFFSET["out_r_1"] == 4
    assert OFFSET["out_r_1"] - OFFSET["in_r_1"] == OFFSET["n"] - OFFSET["out_r_1"] == 0x0C
    # output scalars: data word, ap_vld word after it, 16-byte stride
    for k in driver.STATUS_COUNTERS:
        assert OFFSET[f"{k}_ctrl"] == OFFSET[k] + 4
        assert driver.REG[k].access == "read-only"
    assert [OFFSET[k] for k in driver.STATUS_COUNTERS] == [0x30 + 0x10 * i for i in range(8)]


@pytest.mark.parametrize("board", BOARDS)
def test_generated_hwh_register_map_is_the_table(board, tmp_path):
    bit = fake.write_overlay(board, tmp_path, "sanitas", (1, 8, 8), 10)
    parser = RuntimeMetadataParser(Metadata(input=str(bit.with_suffix(".hwh"))))
    cfg = fake.load_board(board)
    ip = parser.ip_dict["sanitas_top_0"]
    assert ip["type"] == driver.VLNV
    assert ip["phys_addr"] == cfg["accel"]["base"] and ip["addr_range"] == driver.ADDR_RANGE
    assert ip["registers"] == registers_dict()
    assert ip["parameters"]["C_S_AXI_CONTROL_ADDR_WIDTH"] == str(driver.ADDR_WIDTH)
    assert ip["parameters"]["C_M_AXI_GMEM_DATA_WIDTH"] == str(cfg["axi"]["memory"]["data_width"])
    assert ip["mem_id"] == driver.CONTROL_INTERFACE
    assert json.loads(bit.with_suffix(".json").read_text())["input_shape"] == [1, 8, 8]


@pytest.mark.parametrize("board", BOARDS)
def test_generated_hwh_processing_system_and_clocks(board, tmp_path):
    cfg = fake.load_board(board)
    bit = fake.write_overlay(board, tmp_path)
    parser = RuntimeMetadataParser(Metadata(input=str(bit.with_suffix(".hwh"))))
    assert parser.family_ps == cfg["ps"]["modtype"]
    assert parser.ip_dict[cfg["ps"]["instance"]]["type"] == cfg["ps"]["vlnv"]
    clk = parser.clock_dict[0]
    assert clk["enable"] == 1 and [parser.clock_dict[i]["enable"] for i in (1, 2, 3)] == [0, 0, 0]
    src = fake.pll_mhz(cfg, cfg["clocks"]["pl"][0]["source"])
    assert src / (clk["divisor0"] * clk["divisor1"]) == pytest.approx(cfg["clocks"]["pl"][0]["mhz"], rel=1e-4)
    if cfg["ps"]["modtype"] == "processing_system7":
        assert (clk["divisor0"], clk["divisor1"]) == (10, 1)            # 1000 MHz IO PLL / 10
        assert clk["frequency"] is None                                 # the pynq 4.0 gap download() fills
    else:
        assert (clk["divisor0"], clk["divisor1"]) == (15, 1)            # 1500 MHz IOPLL / 15
        assert clk["frequency"] == pytest.approx(99.999, abs=1e-3)


@pytest.mark.parametrize("board,part", [("pynq-z2", "7z020clg400"), ("zcu104", "xczu7ev-ffvc1156-2-e"),
                                        ("kv260", "xck26-sfvc784-2lv-c")])
def test_bit_header_parses_with_pynq(board, part, tmp_path):
    from pynq.pl_server.embedded_device import bit2bin, parse_bit_header
    data = fake.write_overlay(board, tmp_path).read_bytes()
    h = parse_bit_header(data)
    assert h["part"] == part and h["design"] == "sanitas"
    assert fake.SYNC_WORD[::-1] in bit2bin(data)       # .bin = byte-swapped words, as fpga_manager wants


def test_board_json_is_complete():
    for b in BOARDS:
        cfg = fake.load_board(b)
        assert cfg["name"] == b
        for key in ("part", "device", "ps", "clocks", "axi", "accel", "ddr"):
            assert key in cfg, (b, key)
        ctrl = cfg["axi"]["control"]
        assert ctrl["base"] <= cfg["accel"]["base"] < ctrl["base"] + ctrl["size"]
    with pytest.raises(driver.BoardError, match="unknown board 'nope'"):
        fake.load_board("nope")

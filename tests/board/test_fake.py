"""The PYNQ driver on the fake board: pynq's Overlay/MMIO/allocate path against the emulated IP, DDR, clocks."""
import numpy as np
import pytest

pynq = pytest.importorskip("pynq", reason="pynq not installed")

from sanitas.board import driver, fake  # noqa: E402
from sanitas.board.engine import CallbackEngine  # noqa: E402
from sanitas.board.driver import AP_DONE, AP_IDLE, OFFSET, STATUS_COUNTERS, BoardError, BoardTimeout, BoardUnavailable  # noqa: E402
from sanitas.board.sim import REPO_ROOT, FakeBoard, SimAccelerator  # noqa: E402



def _pynq_state():
    return (pynq.Device.__dict__.get("_active_device"), pynq.Clocks.__dict__.get("device"),
            pynq.Clocks.__dict__.get("_real_instance"))


@pytest.mark.parametrize("board", ["pynq-z2", "zcu104", "kv260"])
def test_fake_equals_sim_equals_direct(board, net, images, tmp_path):
    direct = net(images)                                    # (5, 10) int32
    sim, _ = SimAccelerator(net, net.input_shape, net.num_classes).infer(images)
    with FakeBoard(net, net.input_shape, net.num_classes, board=board, out_dir=tmp_path) as b:
        y, _ = b.accel.infer(images)
        assert isinstance(b.accel, driver.SanitasIP)        # bound by VLNV through pynq's driver registry
        assert b.ip.runs == 1 and net.calls == 3
        y1, c1 = b.accel.infer(images[2])                   # one image -> (classes,)
        assert c1 == dict.fromkeys(STATUS_COUNTERS, 0)
    assert y.dtype == sim.dtype == np.int32 and y.shape == (5, net.num_classes)
    np.testing.assert_array_equal(y, direct)
    np.testing.assert_array_equal(sim, direct)
    np.testing.assert_array_equal(y1, direct[2])


def test_default_files_under_build_and_state_restored(net, images):
    before = _pynq_state()
    with FakeBoard(net, net.input_shape, net.num_classes) as b:
        assert b.bitfile == REPO_ROOT / "build" / "board" / "pynq-z2" / "sanitas.bit"
        assert b.bitfile.with_suffix(".hwh").is_file() and b.bitfile.with_suffix(".json").is_file()
        assert pynq.Device.active_device is b.device
        assert pynq.Clocks.fclk0_mhz == 100.0             # download reprogrammed FCLK0 from the 50 MHz boot value
        assert pynq.Clocks.cpu_mhz == 650.0
        buf = pynq.allocate((3,), np.int32)                 # plain pynq.allocate lands in the fake DDR
        assert b.device.ddr_base <= buf.device_address < b.device.ddr_base + b.device.ddr_size
    assert _pynq_state() == before
    with pytest.raises(ZeroDivisionError):                  # restored on an exception inside the block too
        with FakeBoard(net, net.input_shape, net.num_classes):
            raise ZeroDivisionError("inside the block")
    assert _pynq_state() == before


def test_high_ddr_addresses_use_both_words(net, images, tmp_path):
    with FakeBoard(net, net.input_shape, net.num_classes, board="kv260", out_dir=tmp_path) as b:
        assert b.device.ddr_base >= 1 << 32                # KV260 pool in DDR_HIGH (0x8_0000_0000)
        y, _ = b.infer(images)
        regs = b.ip.window
        in_addr = regs.u32(OFFSET["in_r_1"]) | regs.u32(OFFSET["in_r_2"]) << 32
        assert in_addr == b.accel._buffers[1].device_address and in_addr >> 32 == 0x8
    np.testing.assert_array_equal(y, net(images))


def test_batch_change_reallocates_and_frees(net, images, tmp_path):
    with FakeBoard(net, net.input_shape, net.num_classes, out_dir=tmp_path) as b:
        for n in (5, 2, 2, 4):
            np.testing.assert_array_equal(b.infer(images[:n])[0], net(images[:n]))
            assert len(b.device.default_memory.allocations) == 2       # old pair returned to the pool
        assert b.ip.runs == 4
    assert b.device.default_memory.allocations == {}                    # close() frees the driver buffers


def test_status_counters_round_trip(net, images, tmp_path):
    def compute(x):
        s = int(x.astype(np.int64).sum())
        counters = {"detected": len(x), "corrected": 1, "rolled_back": 7}
        return np.full((len(x), net.num_classes), s, dtype=np.int64), counters

    with FakeBoard(compute, net.input_shape, net.num_classes, out_dir=tmp_path) as b:
        y, counters = b.infer(images[:3])
        want = dict.fromkeys(STATUS_COUNTERS, 0) | {"detected": 3, "corrected": 1, "rolled_back": 7}
        assert counters == b.status() == want
        assert b.accel.register_map.detected_ctrl.detected_ap_vld == 1
        assert b.accel.register_map.detected_ctrl.detected_ap_vld == 0   # clear on read
    assert (y == int(images[:3].astype(np.int64).sum())).all()
    sim = SimAccelerator(compute, net.input_shape, net.num_classes)
    np.testing.assert_array_equal(sim.infer(images[:3])[0], y)
    assert sim.status() == dict.fromkeys(STATUS_COUNTERS, 0) | {"detected": 3, "corrected": 1, "rolled_back": 7}


def test_ap_ctrl_hs_semantics(net, images, tmp_path):
    with FakeBoard(net, net.input_shape, net.num_classes, out_dir=tmp_path) as b:
        acc = b.accel
        assert acc.register_map.CTRL.AP_IDLE == 1 and acc.read(OFFSET["CTRL"]) == AP_IDLE
        acc.write(OFFSET["IP_IER"], 1)                      # ap_done interrupt status enabled
        b.infer(images[:1])                                 # consumes ap_done (clear on read)
        assert acc.read(OFFSET["CTRL"]) == AP_IDLE
        assert acc.read(OFFSET["IP_ISR"]) == 1
        acc.write(OFFSET["IP_ISR"], 1)                      # toggle on write
        assert acc.read(OFFSET["IP_ISR"]) == 0
        inb, outb = acc._buffers[1], acc._buffers[2]
        acc.start(inb.device_address, outb.device_address, 1)
        assert acc.read(OFFSET["CTRL"]) == AP_IDLE | AP_DONE | driver.AP_READY
        assert acc.read(OFFSET["CTRL"]) == AP_IDLE          # the first read consumed done/ready
        acc.write(OFFSET["detected"], 99)                   # read-only: ignored
        assert acc.read(OFFSET["detected"]) == 0


def test_missing_cache_maintenance_is_caught(net, images, tmp_path, monkeypatch):
    """Cacheable buffers: without sync_to_device the IP reads stale DDR, as on a Zynq."""
    with FakeBoard(net, net.input_shape, net.num_classes, out_dir=tmp_path) as b:
        monkeypatch.setattr(pynq.buffer.PynqBuffer, "sync_to_device", lambda self: None)
        y, _ = b.infer(images[:2])
        stale = np.full((2, *net.input_shape), np.int8(np.uint8(fake.DDR_FILL).view(np.int8)), dtype=np.int8)
        np.testing.assert_array_equal(y, net(stale))
        assert not (y == net(images[:2])).all()


def test_timeouts_and_busy(net, images, tmp_path):
    with FakeBoard(net, net.input_shape, net.num_classes, out_dir=tmp_path, stall=True) as b:
        with pytest.raises(TimeoutError, match=r"did not assert ap_done within 0.05 s") as e:
            b.infer(images[:1], timeout_s=0.05)
        assert isinstance(e.value, BoardTimeout) and "\n" not in str(e.value)
        with pytest.raises(BoardUnavailable, match="busy"):
            b.infer(images[:1])
    with FakeBoard(net, net.input_shape, net.num_classes, out_dir=tmp_path, latency_s=0.2) as b:
        with pytest.raises(BoardTimeout):
            b.infer(images[:2], timeout_s=0.01)
        b.accel.wait(5.0)                                   # the slow run does finish
        y, _ = b.infer(images[:2], timeout_s=5.0)
        np.testing.assert_array_equal(y, net(images[:2]))


def test_bus_errors(net, tmp_path):
    with FakeBoard(net, net.input_shape, net.num_classes, out_dir=tmp_path) as b:
        with pytest.raises(fake.FakeBusError, match="outside the fake DDR"):
            b.accel.start(0x0, b.device.ddr_base, 1)       # input pointer outside the pool
        with pytest.raises(fake.FakeBusError, match="no AXI slave decodes"):
            pynq.MMIO(0x50000000, 4, device=b.device)


def test_overlay_config_json_and_part_check(net, images, tmp_path):
    bit = fake.write_overlay("pynq-z2", tmp_path / "z2", "sanitas", net.input_shape, net.num_classes)
    dev = fake.FakeDevice("pynq-z2")
    engine = CallbackEngine(net, net.input_shape, net.num_classes)
    dev.register_model(driver.VLNV, lambda d, desc: fake.FakeSanitasTop(d, desc, engine))
    before = _pynq_state()
    ol = driver.SanitasOverlay(str(bit), device=dev)         # no active-device change needed
    assert ol.accel.input_shape == net.input_shape and ol.accel.num_classes == net.num_classes   # from sanitas.json
    np.testing.assert_array_equal(ol.infer(images)[0], net(images))
    assert dev.downloads == 1 and ol.is_loaded()
    ol.close()
    bit_zu = fake.write_overlay("zcu104", tmp_path / "zu")
    with pytest.raises(BoardError, match=r"bitstream is for part xczu7ev-ffvc1156-2-e, this board \(pynq-z2\)"):
        driver.SanitasOverlay(str(bit_zu), device=fake.FakeDevice("pynq-z2"))
    assert _pynq_state()[0] is before[0]


def test_unconfigured_accel_and_closed_board(net, images, tmp_path):
    bit = fake.write_overlay("pynq-z2", tmp_path)           # no shapes -> no sanitas.json
    dev = fake.FakeDevice("pynq-z2")
    engine = CallbackEngine(net, net.input_shape, net.num_classes)
    dev.register_model(driver.VLNV, lambda d, desc: fake.FakeSanitasTop(d, desc, engine))
    ol = driver.SanitasOverlay(str(bit), device=dev)
    with pytest.raises(BoardUnavailable, match="input shape unknown"):
        ol.infer(images)
    ol.accel.configure(net.input_shape, net.num_classes)
    np.testing.assert_array_equal(ol.infer(images)[0], net(images))
    b = FakeBoard(net, net.input_shape, net.num_classes, out_dir=tmp_path)
    with pytest.raises(BoardUnavailable, match="not open"):
        b.infer(images)

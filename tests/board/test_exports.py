"""Public names of sanitas.board: the lazy package exports and the names fake.py kept after its split."""
import importlib

import pytest

import sanitas.board as board


def test_package_all_is_the_export_table_and_every_name_resolves():
    assert sorted(board.__all__) == sorted(board._EXPORTS)
    assert len(board.__all__) == len(set(board.__all__)) == 20
    for name, module in board._EXPORTS.items():
        if module != "driver":
            pytest.importorskip("pynq", reason="pynq not installed")
        assert getattr(board, name) is getattr(importlib.import_module(f"sanitas.board.{module}"), name)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = board.nope


def test_fake_keeps_its_public_names_after_the_split():
    pytest.importorskip("pynq", reason="pynq not installed")
    from sanitas.board import fake, overlay
    for name in ("BOARDS_DIR", "SYNC_WORD", "clock_divisors", "load_board", "make_bit", "make_hwh", "pll_mhz",
                 "write_overlay"):
        assert getattr(fake, name) is getattr(overlay, name), name
    assert sorted(fake.__all__) == sorted(set(fake.__all__))
    assert all(hasattr(fake, name) for name in fake.__all__)
    assert fake.SYNC_WORD == bytes.fromhex("AA995566") and fake.DDR_FILL == 0xA5 and fake.PAGE == 4096
    assert (overlay.BOARDS_DIR / "pynq-z2" / "board.json").is_file()

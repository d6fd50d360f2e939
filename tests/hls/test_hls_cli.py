"""``sanitas hls`` on the sanitas accelerator: the --json fields, fault agreement, the C++ written through the hls4ml
extension (byte-identical with the golden-driven emitter), and the one-line refusals."""
from __future__ import annotations

import json
import shutil

import pytest

from sanitas.cli import main

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


def test_hls_json_fields(lenet5_ckpt, tmp_path, capsys):
    rc = main(["hls", "--checkpoint", str(lenet5_ckpt), "--out", str(tmp_path / "acc"), "--limit", "40",
               "--faults", "12", "--json"])
    cap = capsys.readouterr()
    out = cap.out
    assert rc == 0, out
    assert len(out.splitlines()) == 1                   # --json: the summary alone on stdout, progress on stderr
    s = json.loads(out.strip().splitlines()[-1])
    assert (s["ok"], s["bit_exact"], s["total"], s["faults"], s["fault_agreement"]) == (True, 40, 40, 12, 12)
    assert s["extra_macs"] == s["extra_macs_golden"] == 0 and s["counters_zero"] and s["flagged"] == 0
    assert s["compile_s"] >= 0 and s["images_per_s"] > 0 and s["golden_images_per_s"] > 0
    assert (tmp_path / "acc" / "libsanitas_top.so").is_file() and (tmp_path / "acc" / "sanitas_net.cpp").is_file()
    assert any(line.startswith("bit-exact: 40/40, fault agreement: 12/12, csim ") for line in cap.err.splitlines())
    # the C++ came through the hls4ml extension (project in acc/hls4ml) and is the golden-driven emitter's
    assert s["emitter"] == "hls4ml-ext" and s["convert_s"] > 0 and (tmp_path / "acc" / "hls4ml").is_dir()
    from sanitas.golden import export_golden
    from sanitas.hls.firmware import write_firmware
    from sanitas.train import load_checkpoint
    write_firmware(export_golden(load_checkpoint(lenet5_ckpt)[0]), tmp_path / "ref")
    for f in ("sanitas_net.cpp", "weights.h", "sanitas_regmap.h"):
        assert (tmp_path / "acc" / f).read_bytes() == (tmp_path / "ref" / f).read_bytes(), f


def test_hls_sanity_dmr_json(lenet5_ckpt, tmp_path, capsys):
    rc = main(["hls", "--checkpoint", str(lenet5_ckpt), "--out", str(tmp_path / "acc"), "--limit", "20",
               "--scheme", "sanity+dmr", "--faults", "15", "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    s = json.loads(out.strip().splitlines()[-1])
    assert (s["ok"], s["bit_exact"], s["total"], s["faults"], s["fault_agreement"]) == (True, 20, 20, 15, 15)
    assert s["extra_macs"] == s["extra_macs_golden"] > 0 and s["counters_zero"] and s["counters_equal"]
    assert s["scrubbed"] > 0 and s["flagged"] == 0


def test_hls_refuses_unbuilt_scheme_and_bad_map(lenet5_ckpt, tmp_path, capsys):
    rc = main(["hls", "--checkpoint", str(lenet5_ckpt), "--out", str(tmp_path / "a"), "--scheme", "tmr+dmr"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [("sanitas: error: sanitas_top generates the schemes none, dmr, sanity, sanity:eager "
                               "only; asked for tmr")]
    assert not (tmp_path / "a").exists()
    m = tmp_path / "map.json"
    m.write_text(json.dumps({"default": "none", "fc9": "tmr"}))
    rc = main(["hls", "--checkpoint", str(lenet5_ckpt), "--out", str(tmp_path / "b"), "--per-layer", str(m)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["sanitas: error: per-layer scheme map: no layer named 'fc9'"]
    rc = main(["hls", "--checkpoint", str(lenet5_ckpt), "--out", str(tmp_path / "c"), "--faults", "-1"])
    assert rc == 2 and "argument --faults" in capsys.readouterr().err


def test_hls_net_the_extension_cannot_lower(lenet5_ckpt, tmp_path, capsys, monkeypatch):
    """A net the hls4ml extension refuses (as searched nets with concat are today): the same C++ from the golden node
    list, said on stderr and in --json."""
    from sanitas.errors import SanitasError
    from sanitas.hls.ext import convert

    def refuse(*a, **k):
        raise SanitasError("Concat_0: no sanitas layer")
    monkeypatch.setattr(convert, "to_sanitas_hls4ml", refuse)
    rc = main(["hls", "--checkpoint", str(lenet5_ckpt), "--out", str(tmp_path / "acc"), "--limit", "10", "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.out
    s = json.loads(cap.out.strip().splitlines()[-1])
    assert (s["ok"], s["bit_exact"], s["emitter"], s["convert_s"], s["ext_error"]) == \
           (True, 10, "golden", None, "Concat_0: no sanitas layer")
    assert ("sanitas: note: the hls4ml extension cannot lower this net (Concat_0: no sanitas layer); C++ from the "
            "golden node list") in cap.err.splitlines()

"""``sanitas hls`` on the sanitas accelerator: the --json fields, fault agreement, and the one-line refusals."""
from __future__ import annotations

import json
import shutil

import pytest

from sanitas.cli import main

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


def test_hls_json_fields(lenet5_ckpt, tmp_path, capsys):
    rc = main(["hls", "--checkpoint", str(lenet5_ckpt), "--out", str(tmp_path / "acc"), "--limit", "40",
               "--faults", "12", "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    s = json.loads(out.strip().splitlines()[-1])
    assert (s["ok"], s["bit_exact"], s["total"], s["faults"], s["fault_agreement"]) == (True, 40, 40, 12, 12)
    assert s["extra_macs"] == s["extra_macs_golden"] == 0 and s["counters_zero"] and s["flagged"] == 0
    assert s["compile_s"] >= 0 and s["images_per_s"] > 0 and s["golden_images_per_s"] > 0
    assert (tmp_path / "acc" / "libsanitas_top.so").is_file() and (tmp_path / "acc" / "sanitas_net.cpp").is_file()
    assert out.splitlines()[0].startswith("bit-exact: 40/40, fault agreement: 12/12, csim ")


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

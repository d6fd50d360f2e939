"""The typed metadata of an hls4ml project (sanitas.hls.meta.HlsMeta): JSON round trip in the on-disk layout the
earlier dict had, and one-line errors for a malformed file."""
from __future__ import annotations

import json

import pytest

from sanitas.errors import SanitasError
from sanitas.hls.meta import META_FILE, AccumulatorMeta, HlsMeta, LayerTypes


def _meta() -> HlsMeta:
    return HlsMeta(
        model={"name": "lenet5"}, backend="Vitis", io_type="io_parallel", strategy="Latency", reuse_factor=1,
        in_shape=(1, 8, 8), hls_input_shape=(8, 8, 1), channels_last=True, input_type="fixed<8,1,RND_CONV,SAT,0>",
        in_exp=-7, out_exp=-12, output_type="fixed<32,20,TRN,WRAP,0>", golden_out_exp=-12,
        layers=(LayerTypes("conv1", "Conv2D", "t1", (8, 8, 6), {"result_t": "fixed<32,22,TRN,WRAP,0>"}),),
        convert_s=1.5, compile_s=None, trace=False,
        accumulators={"Conv_0": AccumulatorMeta(-7, -10, "fixed<32,22,TRN,WRAP,0>", "fixed<8,5,RND_CONV,SAT_SYM,0>",
                                                "None")})


def test_round_trip_keeps_the_file_layout(tmp_path):
    m = _meta()
    d = m.to_dict()
    assert d["layers"] == [{"name": "conv1", "class": "Conv2D", "output": "t1", "shape": [8, 8, 6],
                            "types": {"result_t": "fixed<32,22,TRN,WRAP,0>"}}]
    assert d["accumulators"]["Conv_0"] == {"e_in": -7, "e_acc": -10, "accum": "fixed<32,22,TRN,WRAP,0>",
                                           "weight": "fixed<8,5,RND_CONV,SAT_SYM,0>", "bias": "None"}
    assert d["in_shape"] == [1, 8, 8] and d["compile_s"] is None
    m.save(tmp_path)
    assert json.loads((tmp_path / META_FILE).read_text()) == d
    assert HlsMeta.load(tmp_path) == m


def test_malformed_and_missing_files(tmp_path):
    with pytest.raises(SanitasError, match=f"{META_FILE} missing"):
        HlsMeta.load(tmp_path)
    d = _meta().to_dict()
    del d["out_exp"]
    (tmp_path / META_FILE).write_text(json.dumps(d))
    with pytest.raises(SanitasError, match=f"malformed {META_FILE} \\(KeyError: 'out_exp'\\)"):
        HlsMeta.load(tmp_path)

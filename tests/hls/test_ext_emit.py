"""The accelerator's C++ from the hls4ml extension's ModelGraph (sanitas.hls.ext.emit): ``net_of`` rebuilds the
golden node list from the sanitas layer records (+ the QNet skeleton the converter leaves in the hls4ml config) and
``write_firmware_ext`` writes files byte-identical with the golden-driven ``firmware.write_firmware``.

The session's cached LeNet-5 (on a non-default 3 x 5 array, which the ModelGraph carries) and VGG checkpoints are
converted without the g++ build (~15 s together on 2 cores); every scheme sanitas_top generates and a per-layer map
are compared file by file; so are ResNet-20 (identity shortcut quantisers that hls4ml removes) and MobileNet-V2
(depthwise convs, layout transposes, the global sum): ~17 s and ~9 s to convert with sanitas's linear
channels-last pass (hls/layout.py; ~2 min each with qonnx's).
"""
from __future__ import annotations

import filecmp
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sanitas.config import ArrayConfig
from sanitas.errors import SanitasError
from sanitas.golden import export_golden
from sanitas.train import load_checkpoint
from ..conftest import trained_checkpoint

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "hls4ml" / "test_ext_emit"
FILES = ("sanitas_net.cpp", "weights.h", "sanitas_regmap.h")
SCHEMES = ("none", "dmr", "sanity", "sanity:eager", "sanity+dmr")


def _convert(name: str, array: ArrayConfig | None = None):
    from sanitas.hls.ext.convert import to_sanitas_hls4ml
    model, _ = load_checkpoint(trained_checkpoint(name))
    gm = export_golden(model)
    return gm, to_sanitas_hls4ml(model, OUT / name, array=array, golden=gm, compile=False)


def _same_files(gm, hm, tmp_path, spec, array: ArrayConfig) -> list[str]:
    from sanitas.hls.ext.emit import write_firmware_ext
    from sanitas.hls.firmware import write_firmware
    tag = spec if isinstance(spec, str) else "map"
    gold, ext = tmp_path / tag / "golden", tmp_path / tag / "ext"
    write_firmware(gm, gold, array, spec)
    assert write_firmware_ext(hm, ext, spec=spec) == ext / "sanitas_net.cpp"
    return [f for f in FILES if not filecmp.cmp(gold / f, ext / f, shallow=False)]


def _node_fields(n):
    return (n.name, n.op, list(n.inputs), n.e_out, n.bits, n.signed, n.narrow, n.attrs)


@pytest.fixture(scope="module")
def lenet():
    array = ArrayConfig(rows=3, cols=5)
    gm, hm = _convert("lenet5", array)
    return SimpleNamespace(gm=gm, hm=hm, array=array)


def test_net_of_is_the_golden_node_list(lenet):
    from sanitas.hls.ext.emit import net_of
    net = net_of(lenet.hm)
    assert [_node_fields(n) for n in net.nodes] == [_node_fields(n) for n in lenet.gm.nodes]
    assert [n.op for n in net.nodes] == ["input", "conv", "act", "maxpool", "conv", "act", "maxpool", "flatten",
                                         "linear", "act", "linear", "act", "linear"]
    for a, b in zip(net.nodes, lenet.gm.nodes):
        if b.weight is not None:       # fc1's columns back in the golden (C, H, W) order
            assert a.weight.dtype == np.int8 and np.array_equal(a.weight, b.weight)
            assert np.array_equal(a.bias, b.bias) and a.e_w == b.e_w
    assert (net.input_shape, net.num_classes, net.spec) == (lenet.gm.input_shape, 10, lenet.gm.spec)
    assert net.shapes() == lenet.gm.shapes()


@pytest.mark.parametrize("spec", SCHEMES + ({"default": "dmr", "conv1": "sanity:eager", "conv2": "sanity+dmr",
                                             "fc*": "sanity:eager"},))
def test_lenet_firmware_byte_identical(lenet, spec, tmp_path):
    assert _same_files(lenet.gm, lenet.hm, tmp_path, spec, lenet.array) == []
    assert "max_m 66, max_k 150" in (tmp_path / (spec if isinstance(spec, str) else "map") / "ext" /
                                     "sanitas_net.cpp").read_text().splitlines()[1]   # the 3 x 5 array's tiles


def test_vgg_firmware_byte_identical(tmp_path):
    gm, hm = _convert("vgg")
    for spec in ("none", "sanity+dmr"):
        assert _same_files(gm, hm, tmp_path, spec, ArrayConfig()) == [], spec


def test_untrained_vgg_converts_byte_identical(tmp_path):
    """A freshly initialised net: torch's exporter shares its equal (all-zero) bias constants between layers,
    which made hls4ml's infer_precision fail (IndexError) until hls.convert unshares them."""
    from sanitas.hls.ext.convert import to_sanitas_hls4ml
    from sanitas.models import build
    model = build("vgg", (1, 28, 28), 10, seed=0)
    gm = export_golden(model)
    hm = to_sanitas_hls4ml(model, OUT / "vgg-untrained", golden=gm, compile=False)
    assert _same_files(gm, hm, tmp_path, "sanity+dmr", ArrayConfig()) == []


@pytest.mark.parametrize("net", ["resnet20", "mobilenetv2"])
def test_resnet_mobilenet_firmware_byte_identical(net, tmp_path):
    gm, hm = _convert(net)
    for spec in ("none", "sanity+dmr"):
        assert _same_files(gm, hm, tmp_path, spec, ArrayConfig()) == [], spec


class _Layer(SimpleNamespace):
    def get_attr(self, key, default=None):
        return self.attrs.get(key, default)


def _graph(layers, net):
    return SimpleNamespace(config=SimpleNamespace(config={"HLSConfig": {"Model": {"SanitasNet": net}}}),
                           get_layers=lambda: layers)


def test_net_of_errors():
    from sanitas.hls.ext.emit import net_of
    with pytest.raises(SanitasError, match=r"^the hls4ml model has no SanitasNet skeleton \(convert it with "
                                           r"to_sanitas_hls4ml\)$"):
        net_of(SimpleNamespace(config=SimpleNamespace(config={"HLSConfig": {"Model": {}}})))
    net = {"spec": {"in_shape": [1, 4, 4], "num_classes": 2},
           "nodes": [{"name": "input", "op": "input", "inputs": [], "attrs": {}},
                     {"name": "fc", "op": "linear", "inputs": ["input"], "attrs": {}}]}
    dense = _Layer(name="Dense_0", class_name="Dense", inputs=["x"], outputs=["y"], attrs={})
    with pytest.raises(SanitasError, match=r"^Dense_0: hls4ml layer Dense has no sanitas node$"):
        net_of(_graph([dense], net))
    with pytest.raises(SanitasError, match=r"^QNet node fc \(linear\): no hls4ml layer computes it$"):
        net_of(_graph([], {**net, "nodes": net["nodes"][1:]}))

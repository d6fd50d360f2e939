"""``hls.convert._unshare_quant_constants``: every consumer of a quantised constant gets its own Quant node.

torch's ONNX exporter deduplicates equal initializers (equal weights, the all-zero biases of an untrained net), and
a shared weight Quant made qonnx's channels-last conversion leave a dangling ``Transpose`` (the searched net's
"input type unknown"). A two-conv graph sharing one weight Quant and one bias Quant is unshared exactly."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper


def _shared_model():
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model
    dom = "qonnx.custom_op.general"
    inits = {"w": np.arange(18, dtype=np.float32).reshape(2, 1, 3, 3) * 0.25, "b": np.zeros(2, np.float32),
             "s": np.float32(0.25), "z": np.float32(0.0), "bw": np.float32(8.0), "sb": np.float32(2.0 ** -8),
             "bb": np.float32(32.0)}
    nodes = [helper.make_node("Quant", ["w", "s", "z", "bw"], ["wq"], name="qw", domain=dom, signed=1, narrow=0,
                              rounding_mode="ROUND"),
             helper.make_node("Quant", ["b", "sb", "z", "bb"], ["bq"], name="qb", domain=dom, signed=1, narrow=0,
                              rounding_mode="ROUND"),
             helper.make_node("Conv", ["x", "wq", "bq"], ["y0"], name="c0", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Conv", ["y0", "wq", "bq"], ["y1"], name="c1", kernel_shape=[3, 3], pads=[1] * 4)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [helper.make_tensor_value_info("y1", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor(k, TensorProto.FLOAT, np.shape(v), np.ravel(v))
                           for k, v in inits.items()])
    return ModelWrapper(qonnx_make_model(g))


def test_unshare_gives_every_consumer_its_own_quant():
    from sanitas.hls.convert import _unshare_quant_constants
    m = _unshare_quant_constants(_shared_model())
    quants = [n for n in m.graph.node if n.op_type == "Quant"]
    assert sorted(n.name for n in quants) == ["qb", "qb_u1", "qw", "qw_u1"]
    assert [len(m.find_consumers(n.output[0])) for n in quants] == [1, 1, 1, 1]
    c0, c1 = (m.get_node_from_name(n) for n in ("c0", "c1"))
    assert list(c0.input[1:]) == ["wq", "bq"] and list(c1.input[1:]) == ["wq_u1", "bq_u1"]
    np.testing.assert_array_equal(m.get_initializer("w_u1"), m.get_initializer("w"))
    assert {a.name: helper.get_attribute_value(a) for a in m.get_node_from_name("qw_u1").attribute} == \
        {"signed": 1, "narrow": 0, "rounding_mode": b"ROUND"}
    assert [n.name for n in m.graph.node].index("qw_u1") < [n.name for n in m.graph.node].index("c1")   # sorted
    again = _unshare_quant_constants(m)
    assert len([n for n in again.graph.node if n.op_type == "Quant"]) == 4               # idempotent

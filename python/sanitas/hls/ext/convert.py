"""Front end of the sanitas hls4ml extension: a Brevitas ``QNet`` -> QONNX -> hls4ml (flow ``vitis:sanitas``) ->
a compiled hls4ml project whose firmware calls the sanitas kernels; bit-exact with ``export_golden(model)``.

Steps: ``sanitas.hls.convert``'s QONNX export / preparation / precision derivation (every tensor type from its
Quant node, cross-checked against the golden model, written into hls4ml's name-granularity config), then
``convert_from_onnx_model`` with ``Flows = ["vitis:sanitas"]`` and ``Model.SanitasArray`` = the ArrayConfig: the
extension's passes replace hls4ml's conv / dense / activation / pool layers by sanitas layers *inside* hls4ml's
flow (nothing is edited after conversion), and hls4ml's writer writes the project with the sanitas headers.
`check_records` compares the records with the golden node list (op, grid, weights, biases) before anything is
compiled; `predict` runs the compiled project and returns golden integer logits.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from pathlib import Path

import numpy as np

from ...config import ArrayConfig
from ...errors import SanitasError
from ..convert import (_cross_check_golden, _fill_config, derive_precisions, export_qonnx, merged_twins,
                       prepare_qonnx)
from . import SOURCES, register
from .emit import net_skeleton
from .frontend import mark_dilated_convs
from .layers import GEMM_OPS, records


def _identity(golden, n) -> bool:
    """A requantisation onto its input's own grid and range (a QNet shortcut quantiser on an already int8 tensor):
    an exact no-op, which hls4ml's front end removes (eliminate_linear_activation)."""
    if n.op != "act":
        return False
    src = golden.by_name[n.inputs[0]]
    same = (src.e_out, src.bits, src.signed, getattr(src, "narrow", False)) == \
           (n.e_out, n.bits, n.signed, getattr(n, "narrow", False))
    return same and (not n.attrs.get("relu") or not src.signed)


def check_records(hm, golden) -> int:
    """The sanitas records must be the golden's nodes: per op the same count; every conv / linear record equals
    one golden node of its op in grid, biases and (conv) weights; act / maxpool / add / gsum records have the
    golden's multiset of output grids (hls4ml's graph order may differ from the golden's topological order;
    golden identity requantisations, which hls4ml removes, are not counted, nor, when the exporter merged them,
    the golden's `merged_twins`).
    Returns the number of records checked."""
    recs = records(hm)
    errors = []
    twins = merged_twins(golden)
    for op in ("conv", "linear", "act", "maxpool", "add", "gsum"):
        mine = [r for r in recs if r.op == op]
        gold = [n for n in golden.nodes if n.op == op and not _identity(golden, n)]
        if len(mine) == len(gold) - sum(n.name in twins for n in gold):
            gold = [n for n in gold if n.name not in twins]
        if len(mine) != len(gold):
            errors.append(f"{op}: {len(mine)} sanitas layers, {len(gold)} golden nodes")
            continue
        if op in GEMM_OPS:
            free = list(gold)
            for r in mine:
                hit = next((n for n in free if (n.e_out, n.bits) == (r.e_out, r.bits)
                            and np.array_equal(n.bias, r.bias)
                            and (op == "linear" or np.array_equal(n.weight, r.weight))), None)
                if hit is None:
                    errors.append(f"{r.name}: no golden {op} node with its grid 2**{r.e_out}, weights and biases")
                else:
                    free.remove(hit)
        else:
            got = sorted((r.e_out, r.bits, r.signed) for r in mine)
            want = sorted((n.e_out, n.bits, n.signed) for n in gold)
            if got != want:
                errors.append(f"{op}: grids {got} != golden {want}")
    if errors:
        raise SanitasError("sanitas layers disagree with the golden model: " + "; ".join(errors))
    return len(recs)


def to_sanitas_hls4ml(model, out_dir, array: ArrayConfig | None = None, golden=None, compile: bool = True):
    """Convert a trained Brevitas ``QNet`` through hls4ml into a sanitas-kernel project in ``out_dir``.

    Returns the hls4ml ``ModelGraph`` (compiled with g++ if ``compile``). Raises ``SanitasError`` when a layer
    has no exact sanitas lowering or the records disagree with ``golden`` (default ``export_golden(model)``).
    """
    import hls4ml

    from ...golden.model import export_golden

    flow = register()
    array = array or ArrayConfig()
    shape = tuple(model.spec["in_shape"])
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    golden = golden if golden is not None else export_golden(model, shape)
    t0 = time.time()
    m = prepare_qonnx(export_qonnx(model, out_dir / "model_qonnx.onnx", shape), out_dir / "model_qonnx_clean.onnx")
    d = derive_precisions(m, sanitas_layers=True)
    _cross_check_golden(d, golden)
    mark_dilated_convs(m)              # hls4ml's Conv handler mis-sizes dilated convs (ext.frontend)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        cfg = hls4ml.utils.config_from_onnx_model(m.model, granularity="name", backend="Vitis",
                                                  default_reuse_factor=1)
        cfg["Model"]["Strategy"] = "Latency"
        cfg["Model"]["SanitasArray"] = {k: (v.value if hasattr(v, "value") else v)
                                        for k, v in dataclasses.asdict(array).items()}
        cfg["Model"]["SanitasNet"] = net_skeleton(model, merged_twins(golden))   # names, wiring for ext.emit.net_of
        cfg["Flows"] = [flow]
        _fill_config(cfg, m, d, trace=False)
        hm = hls4ml.converters.convert_from_onnx_model(m.model, hls_config=cfg, output_dir=str(out_dir),
                                                       backend="Vitis", io_type="io_parallel")
    left = [f"{layer.name} ({layer.class_name})" for layer in hm.get_layers()
            if layer.class_name in ("Conv2D", "PointwiseConv2D", "DepthwiseConv2D", "Dense", "Activation",
                                    "Pooling2D", "Merge")]
    if left:
        raise SanitasError("hls4ml layers left unlowered: " + ", ".join(left))
    check_records(hm, golden)
    hm.sanitas_convert_s = round(time.time() - t0, 2)
    for dest in set(SOURCES.values()):         # hls4ml's writer copies sources but makes no directories
        (out_dir / "firmware" / dest).mkdir(parents=True, exist_ok=True)
    if compile:
        t1 = time.time()
        try:
            with contextlib.redirect_stdout(log):
                hm.compile()
        except Exception as e:  # noqa: BLE001
            raise SanitasError(f"g++ build of {out_dir} failed ({e}); see {out_dir / 'convert.log'}") from None
        finally:
            (out_dir / "convert.log").write_text(log.getvalue())
        hm.sanitas_compile_s = round(time.time() - t1, 2)
    return hm


def out_exp(hm) -> int:
    """Grid exponent of the project's output (the last GEMM's int32 accumulator)."""
    last = [r for r in records(hm) if r.op in GEMM_OPS][-1]
    return last.e_out


def predict(hm, x_float) -> np.ndarray:
    """Run the compiled project on float images (N, C, H, W) -> int64 logits in golden integer units."""
    x = np.asarray(x_float, dtype=np.float32)
    if x.ndim != 4:
        raise SanitasError(f"input must be (N, C, H, W), got shape {x.shape}")
    xin = np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float64)   # hls4ml: channels-last
    y = np.asarray(hm.predict(xin), dtype=np.float64).reshape(len(x), -1) * 2.0 ** (-out_exp(hm))
    yi = np.rint(y)
    if not np.array_equal(y, yi):
        raise SanitasError("project outputs are not integers on the output grid")
    return yi.astype(np.int64)


__all__ = ["to_sanitas_hls4ml", "predict", "check_records", "out_exp"]

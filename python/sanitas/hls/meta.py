"""The metadata of a sanitas hls4ml project: typed records written by `sanitas.hls.convert.to_hls4ml` into
``META_FILE`` of the project folder and read back by `hls_predict`, `trace_compare` and `hls_report`.

The JSON layout on disk is the one the earlier plain dict had, so existing projects still load.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import SanitasError

META_FILE = "sanitas_hls.json"   # written into every project dir: derived types + layout, read by hls_predict


@dataclass(frozen=True)
class LayerTypes:
    """One converted hls4ml layer and its types (checked against the derivation by `_verify_types`)."""
    name: str                 # hls4ml layer name
    class_name: str           # hls4ml layer class (Conv2D, Dense, Activation, ...); "class" in the JSON file
    output: str               # output tensor name
    shape: tuple[int, ...]    # output shape, channels-last
    types: dict[str, str]     # hls4ml type name (result_t, accum_t, weight_t, bias_t) -> hls4ml type string


@dataclass(frozen=True)
class AccumulatorMeta:
    """A MacPrecision as written into META_FILE (types as hls4ml strings)."""
    e_in: int
    e_acc: int
    accum: str
    weight: str
    bias: str                 # "None" where the layer has no bias


@dataclass(frozen=True)
class HlsMeta:
    """The project metadata `to_hls4ml` writes into META_FILE and `hls_predict` / `hls_report` read back."""
    model: dict               # the QNet spec (sanitas.models), as saved in the checkpoint
    backend: str              # hls4ml backend (Vitis)
    io_type: str              # io_parallel
    strategy: str             # Latency
    reuse_factor: int         # 1
    in_shape: tuple[int, ...]        # (C, H, W) of the network input
    hls_input_shape: tuple[int, ...]  # the hls4ml input variable's shape ((H, W, C) when channels_last)
    channels_last: bool       # the project expects channels-last images
    input_type: str           # hls4ml type string of the input
    in_exp: int               # input grid exponent
    out_exp: int              # logits grid exponent (int32 accumulators of the last layer)
    output_type: str          # hls4ml type string of the logits
    golden_out_exp: int       # the golden model's output exponent (== out_exp, checked)
    layers: tuple[LayerTypes, ...]             # every converted layer with its types
    convert_s: float          # QONNX export + conversion time, s
    compile_s: float | None   # g++ compile time, s (None: not compiled)
    trace: bool               # built with per-layer trace hooks
    accumulators: dict[str, AccumulatorMeta]   # Conv/MatMul node name -> its types

    def to_dict(self) -> dict:
        """The JSON layout of META_FILE (unchanged from the dict it replaces)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["in_shape"], d["hls_input_shape"] = list(self.in_shape), list(self.hls_input_shape)
        d["layers"] = [{"name": r.name, "class": r.class_name, "output": r.output, "shape": list(r.shape),
                        "types": dict(r.types)} for r in self.layers]
        d["accumulators"] = {k: dataclasses.asdict(v) for k, v in self.accumulators.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HlsMeta:
        try:
            kw = {f.name: d[f.name] for f in dataclasses.fields(cls)}
            kw["in_shape"], kw["hls_input_shape"] = tuple(d["in_shape"]), tuple(d["hls_input_shape"])
            kw["layers"] = tuple(LayerTypes(r["name"], r["class"], r["output"], tuple(r["shape"]), dict(r["types"]))
                                 for r in d["layers"])
            kw["accumulators"] = {k: AccumulatorMeta(**v) for k, v in d["accumulators"].items()}
        except (KeyError, TypeError) as e:
            raise SanitasError(f"malformed {META_FILE} ({type(e).__name__}: {e})") from None
        return cls(**kw)

    @classmethod
    def load(cls, out_dir) -> HlsMeta:
        p = Path(out_dir) / META_FILE
        if not p.exists():
            raise SanitasError(f"{p} missing: build the project with sanitas.hls.convert.to_hls4ml")
        return cls.from_dict(json.loads(p.read_text()))

    def save(self, out_dir) -> Path:
        p = Path(out_dir) / META_FILE
        p.write_text(json.dumps(self.to_dict(), indent=1))
        return p

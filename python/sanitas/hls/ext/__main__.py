"""``python -m sanitas.hls.ext --checkpoint P --out DIR [--rows R --cols C]``: lower a trained checkpoint through
the hls4ml extension (`sanitas.hls.ext.convert.to_sanitas_hls4ml`), run the compiled project on the checkpoint's
test split and print one strict-JSON line: bit_exact, total, the sanitas kernel calls and hls4ml kernels left in
the written firmware, convert_s, compile_s. Bad input: one line ``sanitas: error: ...``, exit 2.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from ...commands._common import existing_file, output_dir, positive_int
from ...errors import SanitasError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"sanitas: error: hls.ext: {message}", file=sys.stderr)
        raise SystemExit(2)


def _count(pattern: str, text: str) -> dict[str, int]:
    names = re.findall(pattern, text)
    return {k: names.count(k) for k in sorted(set(names))}


def main(argv=None) -> int:
    p = _Parser(prog="python -m sanitas.hls.ext", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, type=existing_file)
    p.add_argument("--out", required=True, type=output_dir)
    p.add_argument("--rows", type=positive_int, default=None)
    p.add_argument("--cols", type=positive_int, default=None)
    a = p.parse_args(argv)
    try:
        from ...commands._common import load_model_data_golden
        from ...config import ArrayConfig
        from .convert import predict, to_sanitas_hls4ml
        model, splits, gm = load_model_data_golden(a.checkpoint)
        array = ArrayConfig(**{k: v for k, v in (("rows", a.rows), ("cols", a.cols)) if v is not None})
        t0 = time.time()
        hm = to_sanitas_hls4ml(model, a.out, array=array, golden=gm)
        total_s = time.time() - t0
        x = splits.test.tensors[0].numpy()
        exact = int((predict(hm, x) == gm.run_int(gm.quantize_input(x))).all(axis=1).sum())
    except SanitasError as e:
        print(f"sanitas: error: hls.ext: {e}", file=sys.stderr)
        return 2
    src = Path(hm.config.get_output_dir()) / "firmware" / "myproject.cpp"
    body = src.read_text().split("// hls-fpga-machine-learning insert layers")[-1]
    print(json.dumps({"model": model.spec.get("name"), "bit_exact": exact, "total": len(x),
                      "sanitas_calls": _count(r"sanitas::glue::(\w+)<", body),
                      "hls4ml_kernels": _count(r"nnet::(\w+)<", body),
                      "convert_s": round(total_s - hm.sanitas_compile_s, 2), "compile_s": hm.sanitas_compile_s}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

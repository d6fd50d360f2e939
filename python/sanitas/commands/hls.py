"""``sanitas hls``: generate the sanitas INT8 accelerator (``sanitas_top``: im2col + systolic GEMM, HLS C++) of a
trained checkpoint, compile its C simulation with g++ and check it against the golden model on the test split.
The C++ comes through the hls4ml extension: the checkpoint's QNet is converted by hls4ml (QONNX front end, the
sanitas lowering passes of flow ``vitis:sanitas``; project in ``DIR/hls4ml``) and ``hls.ext.emit`` writes
``sanitas_top`` from the ModelGraph's sanitas records (``--json``: ``emitter`` "hls4ml-ext", ``convert_s``); a net
the extension cannot lower (a layer it has no exact sanitas form for) gets the same C++ from the golden node list,
said on stderr and in ``--json`` (``emitter`` "golden", ``ext_error``). Checked:
bit-exact logits, the fault-free counters (no alarm; the patrol's ``scrubbed`` words equal the golden ones), and
with ``--faults N`` the agreement of logits and counters with
``ProtectedModel`` for N fault records. ``--hls4ml`` instead lowers the net through QONNX to a plain hls4ml (Vitis)
project and checks that.

    sanitas hls --checkpoint P [--scheme S] [--per-layer F] [--faults N] --out DIR [--json]
"""
from __future__ import annotations

import sys

from ..errors import SanitasError
from ._common import (existing_dir, existing_file, limit_threads, load_model_data_golden, non_negative_int,
                      output_dir, positive_int, scheme)
from ._config import configure


def add_parser(sub):
    p = sub.add_parser("hls", help="generate + csim the sanitas accelerator (or --hls4ml) and check it vs golden")
    p.add_argument("--checkpoint", type=existing_file, required=True)
    p.add_argument("--out", type=output_dir, default=None, help="folder of the generated C++ (or hls4ml project)")
    p.add_argument("--data-dir", type=existing_dir, default=None)
    p.add_argument("--limit", type=positive_int, default=None, help="check only the first N test images")
    p.add_argument("--scheme", type=scheme, default=None, help="protection scheme (sanitas.protect specs)")
    p.add_argument("--per-layer", type=existing_file, default=None,
                   help="JSON/YAML per-layer scheme map (default entry: --scheme)")
    p.add_argument("--faults", type=non_negative_int, default=None,
                   help="fault records compared with ProtectedModel (fault port compiled in)")
    p.add_argument("--seed", type=non_negative_int, default=None, help="seed of the fault sample")
    p.add_argument("--hls4ml", action="store_true", help="lower through QONNX to a plain hls4ml project instead")
    p.set_defaults(func=run)
    return configure(p, "hls", "data")


def _spec(args, gm):
    from ..protect.model import load_scheme_map, resolve_map
    if not args.per_layer:
        return args.scheme
    m = dict(load_scheme_map(args.per_layer))
    m.setdefault("default", args.scheme)
    resolve_map(gm, m)                       # bad layer names fail before any work
    return m


def run(args) -> dict:
    limit_threads()
    model, splits, gm = load_model_data_golden(args.checkpoint, args.data_dir)
    x = splits.test.tensors[0].numpy()[: args.limit]
    if args.hls4ml:
        from ..hls.convert import check_bitexact, hls_report, to_hls4ml
        hm = to_hls4ml(model, args.out, golden=gm)
        r = check_bitexact(hm, gm, x)
        print(f"bit-exact: {r['bit_exact']}/{r['total']}")
        rep = hls_report(args.out)
        return {"ok": r["bit_exact"] == r["total"], "bit_exact": r["bit_exact"], "total": r["total"],
                "project": args.out, "layers": len(rep.get("layers", []))}
    from ..hls.check import check_top
    from ..hls.ext.convert import to_sanitas_hls4ml
    from ..hls.top import check_spec, source_dir
    spec = _spec(args, gm)
    check_spec(gm, spec)
    out = source_dir(gm, args.out)
    try:
        hm = to_sanitas_hls4ml(model, out / "hls4ml", golden=gm, compile=False)   # hls4ml + the sanitas passes
        emitter, convert_s, why = "hls4ml-ext", hm.sanitas_convert_s, None
    except SanitasError as e:      # a net the extension cannot lower: said, not hidden
        hm, emitter, convert_s, why = None, "golden", None, str(e)
        print(f"sanitas: note: the hls4ml extension cannot lower this net ({why}); C++ from the golden node list",
              file=sys.stderr)
    r = check_top(gm, gm.quantize_input(x), spec, out, faults=args.faults, seed=args.seed, model_graph=hm)
    print(f"bit-exact: {r['bit_exact']}/{r['total']}, fault agreement: {r['fault_agreement']}/{r['faults']}, "
          f"csim {r['images_per_s']} images/s (golden {r['golden_images_per_s']}), g++ {r['compile_s']} s")
    ok = (r["bit_exact"] == r["total"] and r["counters_zero"] and r["counters_equal"]
          and r["fault_agreement"] == r["faults"])
    return {"ok": ok, **r, "emitter": emitter, "convert_s": convert_s, "ext_error": why, "out": args.out}

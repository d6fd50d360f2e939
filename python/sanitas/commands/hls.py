"""``sanitas hls``: lower a trained checkpoint through QONNX to an hls4ml (Vitis) project, compile it with g++,
and check its predictions bit-exactly against the golden model on the test split."""
from __future__ import annotations

from ._common import existing_dir, existing_file, limit_threads, load_model_data_golden, output_dir, positive_int
from ._config import configure


def add_parser(sub):
    p = sub.add_parser("hls", help="Brevitas -> QONNX -> hls4ml project; compile() + predict() vs golden")
    p.add_argument("--checkpoint", type=existing_file, required=True)
    p.add_argument("--out", type=output_dir, default=None, help="hls4ml project folder")
    p.add_argument("--data-dir", type=existing_dir, default=None)
    p.add_argument("--limit", type=positive_int, default=None, help="check only the first N test images")
    p.set_defaults(func=run)
    return configure(p, "hls", "data")


def run(args) -> dict:
    from ..hls.convert import check_bitexact, hls_report, to_hls4ml
    limit_threads()
    model, splits, gm = load_model_data_golden(args.checkpoint, args.data_dir)
    hm = to_hls4ml(model, args.out, golden=gm)
    x = splits.test.tensors[0].numpy()[: args.limit]
    r = check_bitexact(hm, gm, x)
    print(f"bit-exact: {r['bit_exact']}/{r['total']}")
    rep = hls_report(args.out)
    return {"ok": r["bit_exact"] == r["total"], "bit_exact": r["bit_exact"], "total": r["total"],
            "project": args.out, "layers": len(rep.get("layers", []))}

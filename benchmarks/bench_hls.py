"""The sanitas accelerator in HLS C simulation, per zoo net and scheme: bit-exactness, fault agreement, costs, speed
(issue 13).

For LeNet-5, ResNet-20, MobileNet-V2 and VGG (the test suite's trained digits checkpoints from build/test-cache when
present, else the seed-0 initialised nets) and a searched net holding every adsaf primitive (``searched``), and each
scheme (none, dmr, sanity, sanity+dmr) the generated ``sanitas_top`` is compiled fresh (g++ seconds, one translation
unit, ``-O1``, fault port in), run on the 270 digits test images against the golden numpy executor in the same
process (bit-exact K/N, images/s of both), and driven with ``--faults`` fault records over every site of the fault
port (``check.sample_records``: the golden sites of every kind and the protection's own state: sanity rows, seals,
accumulators, layer-wide sums, checkpoints ...), each compared on ``--fault-images`` images with
``ProtectedModel(gm, scheme)`` (logits and counters: fault agreement M/M). Extra MACs are counted inside the kernels
(MACs issued - the op table's data MACs) beside ``sanitas.protect.overhead``'s figure; cycles/image is the engine's
estimate at the configured ArrayConfig geometry (``cycles.cycle_model``, checked equal to the kernels' count:
``cycles_equal``), "vs none"
its ratio to the unprotected accelerator's, and ``cycles.cycle_breakdown`` says where the protected cycles go:
the sanity unit's check unit runs concurrently with each layer's GEMM (only what exceeds the GEMM, the compares
after it and depthwise parameter seals show), DMR's elementwise duplicates run as a second lane of the same pass
(0 cycles), its duplicated convs/linears twice on the array. ``--faults 0`` prints the cycles without a fault run.

Run: ``.venv/bin/python benchmarks/bench_hls.py [--faults 1000] [--nets lenet5,resnet20] [--schemes none,dmr]``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from sanitas.config import ArrayConfig  # noqa: E402
from sanitas.golden import export_golden  # noqa: E402
from sanitas.hls.check import check_top  # noqa: E402
from sanitas.hls.cycles import cycle_breakdown, cycle_model  # noqa: E402
from sanitas.hls.netcsim import golden_of  # noqa: E402
from sanitas.train import load_checkpoint  # noqa: E402

NETS = ("lenet5", "resnet20", "mobilenetv2", "vgg", "searched")
SCHEMES = ("none", "dmr", "sanity", "sanity+dmr")
COLS = ("net", "scheme", "bit-exact", "fault agreement", "logits hit", "extra MACs (kernels)", "extra MACs (overhead)",
        "g++ s", "csim img/s", "golden img/s", "cycles/img", "vs none")


def searched_net(in_shape, num_classes):
    """A net derived from a genotype holding every primitive of the adsaf space (hence mibb's), seed-0 weights:
    separable / dilated / depthwise convs, avg / max pools, skip connections, concat (tests/hls/test_top.py's)."""
    import torch

    from sanitas.nas.derive import build_derived
    from sanitas.nas.space import WEIGHT_PRIMITIVES, Genotype, SpaceConfig
    g = Genotype(
        normal=(("sep_conv_3x3", 0), ("max_pool_3x3", 1), ("avg_pool_3x3", 2), ("dil_conv_5x5", 1),
                ("skip_connect", 3), ("relu_conv_bn_5x5", 2), ("conv_1x1", 4), ("sep_conv_5x5", 0)),
        reduce=(("avg_pool_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 1), ("dil_conv_3x3", 2),
                ("relu_conv_bn_3x3", 0), ("conv_1x1", 3), ("sep_conv_3x3", 4), ("none", 2)))
    space = SpaceConfig(primitives=WEIGHT_PRIMITIVES, cells=3, nodes=4, channels=2, stem_multiplier=2,
                        reductions=(1,))
    torch.manual_seed(0)
    return export_golden(build_derived(g, space, in_shape, num_classes))


def golden(net: str):
    if net == "searched":
        gm, splits = golden_of("lenet5")
        return searched_net(splits.in_shape, splits.num_classes), splits, "seed-0 init (every adsaf primitive)"
    hits = sorted((ROOT / "build" / "test-cache").glob(f"{net}-e*.pt"))
    gm, splits = golden_of(net)
    if hits:
        gm = export_golden(load_checkpoint(hits[0])[0])
    return gm, splits, ("trained " + hits[0].name) if hits else "seed-0 init"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faults", type=int, default=1000)
    ap.add_argument("--fault-images", type=int, default=2)
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--json", default=None, help="also write the records to this file")
    a = ap.parse_args()
    rows, recs, notes = [], {}, []
    for net in a.nets.split(","):
        gm, splits, src = golden(net)
        x = gm.quantize_input(splits.test.tensors[0].numpy())
        base = cycle_model(gm, ArrayConfig())
        for scheme in a.schemes.split(","):
            r = check_top(gm, x, scheme, ROOT / "build" / "bench_hls" / f"{net}-{scheme.replace('+', '_')}",
                          faults=a.faults, seed=0, fault_images=a.fault_images, fresh=True)
            r["weights"] = src
            r["cycle_breakdown"] = cycle_breakdown(gm, ArrayConfig(), scheme)
            recs[f"{net}/{scheme}"] = r
            rows.append((net, scheme, f"{r['bit_exact']}/{r['total']}", f"{r['fault_agreement']}/{r['faults']}",
                         str(r["faults_changing_logits"]), str(r["extra_macs"]), str(r["extra_macs_golden"]),
                         f"{r['compile_s']:.1f}", f"{r['images_per_s']:.1f}", f"{r['golden_images_per_s']:.1f}",
                         str(r["cycles_per_image"]), f"{r['cycles_per_image'] / base - 1:+.2%}"))
            print(f"{net} {scheme}: {json.dumps(r)}", flush=True)
            if scheme != "none":
                b = r["cycle_breakdown"]
                notes.append(f"{net} {scheme}: +{b['gemm_passes']} GEMM-pass, +{b['sanity_unit']} sanity-unit, "
                             f"+{b['duplicate_lane']} duplicate-lane cycles/img over none ({base})")
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLS)]
    print(f"\n{a.faults} fault records x {a.fault_images} images per net and scheme")
    print(" | ".join(c.ljust(w) for c, w in zip(COLS, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths)))
    print("\nwhere the protected cycles go (cycles.cycle_breakdown):")
    for line in notes:
        print("  " + line)
    if a.json:
        Path(a.json).write_text(json.dumps(recs, indent=2) + "\n")
    ok = all(r["bit_exact"] == r["total"] and r["fault_agreement"] == r["faults"] and r["counters_equal"]
             and r["extra_macs"] == r["extra_macs_golden"] and r["cycles_equal"] for r in recs.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

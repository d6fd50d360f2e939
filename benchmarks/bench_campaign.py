"""Campaign speed: sanitas' batched exact engine vs PyTorchFI 0.6.0 on INT8 ResNet-20 and LeNet-5 (issue 3).

Both tools get the SAME single-bit-flip fault list (sampled by ``sanitas.faults.sample_faults``) on weights (int8
weight memory of every conv/linear) and on activations (the int8/uint8 outputs of the input quantiser and of every
requantisation node), and the same K test images; they run one after the other in this process with the same
torch thread count. Printed: faults/s of both, the ratio, and the agreement of the outcome classes (masked /
SDC-benign / critical per (fault, image)) on the shared faults.

How the comparison is made fair and exact for PyTorchFI:

* PyTorchFI flips bits of float tensors, and its own ``single_bit_flip_func`` re-quantises with a per-layer
  max range (not the model's INT8 codes); its hooks also only attach to leaf modules, which Brevitas layers are
  not. So PyTorchFI runs on ``IntTwin``: a plain-PyTorch twin of the golden integer model whose tensors hold the
  INT8 / INT32 integer codes in float64 (``nn.Conv2d``/``nn.Linear`` with integer weights and biases, a leaf
  ``Requant`` module per requantisation: x * 2**k, round half to even, saturate). The twin is asserted
  bit-exact with the golden model before timing. This is PyTorchFI's best case: plain modules (cheap deepcopy,
  no quantiser overhead), exact integer arithmetic.
* Faults use PyTorchFI's documented custom-function API: ``declare_weight_fi(function=...)`` (one corrupted
  model per fault, as PyTorchFI builds it) and ``declare_neuron_fi(function=...)`` with the same element on
  every image of the batch; the functions flip exactly bit b of the int8 (two's complement) / uint8 code.
* PyTorchFI evaluates one fault per forward pass of the K images (its model: one corrupted model per weight
  fault; neuron faults are also declared per fault so that each image sees the one fault).
* sanitas is timed end to end from the fault list (fault-free pass, all chunks; the engine is built in the
  warm-up), both in memory and with the SQLite store that ``sanitas inject`` writes. Its default CPU engine is
  the concurrent sparse-delta propagation (``sanitas.faults.sparse``); ``--ablation`` also times the dense
  batched path and each optimisation switched off.
* Both tools run with ``--threads`` intra-op threads (default 1; PyTorchFI gains nothing from a second one
  on this workload).

Run: ``.venv/bin/python benchmarks/bench_campaign.py [--faults N] [--inputs K] [--models lenet5,resnet20]``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "bench-cache"
RECIPES = {"lenet5": dict(lr=5e-3, epochs=6), "resnet20": dict(lr=2e-3, epochs=3)}


# ------------------------------------------------------------------------------------------------ the INT twin
class Requant(nn.Module):
    """Leaf requantisation: integer codes at exponent e_in -> ``bits`` codes at e_out (round half even, saturate)."""

    def __init__(self, mul: float, lo: int, hi: int):
        super().__init__()
        self.mul, self.lo, self.hi = mul, lo, hi
        self.register_buffer("weight", torch.zeros(0))   # PyTorchFI profiles `.weight.shape` of hooked layers

    def forward(self, x):
        return torch.round(x * self.mul).clamp(self.lo, self.hi)


class IntTwin(nn.Module):
    """Plain-PyTorch twin of a ``GoldenModel`` (tensors hold exact integer codes) in ``dtype``: float32, the
    dtype sanitas' engine computes in, is exact here because every partial sum stays below 2**24 (checked
    per layer by the engine's bound and asserted bit-exact against the golden model)."""

    def __init__(self, gm, dtype=torch.float32):
        super().__init__()
        self.dtype = dtype
        from types import SimpleNamespace

        from sanitas.golden import int_range
        self.mods = nn.ModuleDict()
        self.order = []          # (node description without arrays, module key or None): cheap to deepcopy
        for g in gm.nodes:
            n = SimpleNamespace(name=g.name, op=g.op, inputs=list(g.inputs), attrs=dict(g.attrs), bits=g.bits,
                                signed=g.signed, narrow=g.narrow, e_out=g.e_out, weight=g.weight, bias=g.bias)
            key = None
            if n.op == "input":
                key = n.name
                lo, hi = int_range(n.bits, n.signed)
                self.mods[key] = Requant(1.0, lo, hi)
            elif n.op == "conv":
                a = n.attrs
                m = nn.Conv2d(n.weight.shape[1] * a["groups"], n.weight.shape[0], n.weight.shape[2:], a["stride"],
                              a["padding"], a["dilation"], a["groups"], bias=True).to(dtype)
                m.weight.data = torch.tensor(n.weight.astype(np.float64), dtype=dtype)
                m.bias.data = torch.tensor(n.bias.astype(np.float64), dtype=dtype)
                key = n.name
                self.mods[key] = m
            elif n.op == "linear":
                m = nn.Linear(n.weight.shape[1], n.weight.shape[0]).to(dtype)
                m.weight.data = torch.tensor(n.weight.astype(np.float64), dtype=dtype)
                m.bias.data = torch.tensor(n.bias.astype(np.float64), dtype=dtype)
                key = n.name
                self.mods[key] = m
            elif n.op == "act":
                lo, hi = int_range(n.bits, n.signed, n.narrow)
                key = n.name
                self.mods[key] = Requant(2.0 ** (gm.by_name[n.inputs[0]].e_out - n.e_out), lo, hi)
            n.weight = n.bias = None
            self.order.append((n, key))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        env = {}
        for n, key in self.order:
            ins = [env[i] for i in n.inputs]
            if n.op == "input":
                y = self.mods[key](x)
            elif key is not None:
                y = self.mods[key](ins[0])
            elif n.op == "add":
                y = ins[0] + ins[1]
            elif n.op == "concat":
                y = torch.cat(ins, 1)
            elif n.op == "maxpool":
                y = F.max_pool2d(ins[0], n.attrs["k"], n.attrs["stride"], n.attrs["padding"])
            elif n.op == "gsum":
                y = ins[0].sum((2, 3))
            elif n.op == "flatten":
                y = ins[0].reshape(ins[0].shape[0], -1)
            env[n.name] = y
        return env[self.order[-1][0].name]


def flip(v: float, bit: int, bits: int, signed: bool) -> float:
    """Exact single-bit flip of an integer code held in a float."""
    u = (int(v) & ((1 << bits) - 1)) ^ (1 << bit)
    if signed and u >= 1 << (bits - 1):
        u -= 1 << bits
    return float(u)


# ------------------------------------------------------------------------------------------------ PyTorchFI runs
def pytorchfi_campaign(twin: IntTwin, gm, xq: torch.Tensor, faults, site: str):
    """Outcome (F, K) and top-1 of each fault with PyTorchFI 0.6.0 on the twin; returns (outcome, pred, seconds)."""
    from pytorchfi.core import fault_injection
    from sanitas.faults.engine import classify
    logging.disable(logging.CRITICAL)            # PyTorchFI logs every injection at INFO
    k = len(xq)
    t0 = time.perf_counter()
    c0 = time.process_time()
    if site == "weight":
        layers = [n.name for n in gm.nodes if n.op in ("conv", "linear")]
        pfi = fault_injection(twin, k, input_shape=list(xq.shape[1:]), layer_types=[nn.Conv2d, nn.Linear],
                              use_cuda=False)
    else:
        layers = [n.name for n in gm.nodes if n.op in ("input", "act")]
        pfi = fault_injection(twin, k, input_shape=list(xq.shape[1:]), layer_types=[Requant], use_cuda=False)
    lnum = {name: i for i, name in enumerate(layers)}
    with torch.no_grad():
        clean = twin(xq).numpy().astype(np.int64)
    ocs, prs = [], []
    for f in faults:
        if site == "weight":
            idx = list(f.index) + [None] * (4 - len(f.index))

            def wfn(w, loc, bit=f.bit):
                return flip(w[loc].item(), bit, 8, True)
            model = pfi.declare_weight_fi(function=wfn, layer_num=[lnum[f.layer]], k=[idx[0]], dim1=[idx[1]],
                                          dim2=[idx[2]], dim3=[idx[3]])
        else:
            node = gm.by_name[f.layer]
            idx = list(f.index) + [None] * (3 - len(f.index))

            def nfn(module, inp, out, bit=f.bit, bits=node.bits, signed=node.signed):
                # PyTorchFI's custom-neuron protocol (as its single_bit_flip_func): act on this layer's entries
                cur = pfi.get_current_layer()
                for i in range(len(pfi.corrupt_layer)):
                    if pfi.corrupt_layer[i] == cur:
                        b, c, h, w = pfi.corrupt_batch[i], pfi.corrupt_dim1[i], pfi.corrupt_dim2[i], pfi.corrupt_dim3[i]
                        loc = (b, c) if h is None else (b, c, h, w)
                        out[loc] = flip(out[loc].item(), bit, bits, signed)
                pfi.updateLayer()
                if pfi.get_current_layer() >= pfi.get_total_layers():
                    pfi.reset_current_layer()
            model = pfi.declare_neuron_fi(function=nfn, layer_num=[lnum[f.layer]] * k, batch=list(range(k)),
                                          dim1=[idx[0]] * k, dim2=[idx[1]] * k, dim3=[idx[2]] * k)
        with torch.no_grad():
            out = model(xq).numpy().astype(np.int64)
        oc, pr = classify(out, clean)
        ocs.append(oc)
        prs.append(pr)
    dt = time.perf_counter() - t0
    dc = time.process_time() - c0
    logging.disable(logging.NOTSET)
    return np.stack(ocs), np.stack(prs), dt, dc


def pytorchfi_batched_neurons(twin: IntTwin, gm, xq: torch.Tensor, faults, per_batch: int = 16):
    """PyTorchFI's batched neuron mode (as its ``random_neuron_inj_batched``): one corrupted model per batch of
    ``per_batch`` faults, the K images replicated once per fault, fault f on its own copy of the images.
    Returns (outcome (F, K), seconds)."""
    from pytorchfi.core import fault_injection
    from sanitas.faults.engine import classify
    logging.disable(logging.CRITICAL)
    k = len(xq)
    t0 = time.perf_counter()
    layers = [n.name for n in gm.nodes if n.op in ("input", "act")]
    lnum = {name: i for i, name in enumerate(layers)}
    pfi = fault_injection(twin, k * per_batch, input_shape=list(xq.shape[1:]), layer_types=[Requant],
                          use_cuda=False)
    with torch.no_grad():
        clean = twin(xq).numpy().astype(np.int64)
    ocs = []
    for i in range(0, len(faults), per_batch):
        fs = faults[i:i + per_batch]
        spec = {"layer_num": [], "batch": [], "dim1": [], "dim2": [], "dim3": []}
        bits = []
        for j, f in enumerate(fs):
            idx = list(f.index) + [None] * (3 - len(f.index))
            node = gm.by_name[f.layer]
            for b in range(k):
                spec["layer_num"].append(lnum[f.layer])
                spec["batch"].append(j * k + b)
                spec["dim1"].append(idx[0])
                spec["dim2"].append(idx[1])
                spec["dim3"].append(idx[2])
                bits.append((f.bit, node.bits, node.signed))

        def nfn(module, inp, out, bits=bits):   # bound now: the hook runs in this iteration only
            cur = pfi.get_current_layer()
            for e in range(len(pfi.corrupt_layer)):
                if pfi.corrupt_layer[e] == cur:
                    b, c, h, w = pfi.corrupt_batch[e], pfi.corrupt_dim1[e], pfi.corrupt_dim2[e], pfi.corrupt_dim3[e]
                    loc = (b, c) if h is None else (b, c, h, w)
                    out[loc] = flip(out[loc].item(), *bits[e])
            pfi.updateLayer()
            if pfi.get_current_layer() >= pfi.get_total_layers():
                pfi.reset_current_layer()
        model = pfi.declare_neuron_fi(function=nfn, **spec)
        x = xq.repeat(len(fs), 1, 1, 1)
        if len(fs) < per_batch:                        # PyTorchFI's batch size is fixed: pad with clean copies
            x = torch.cat([x, xq.repeat(per_batch - len(fs), 1, 1, 1)])
        with torch.no_grad():
            out = model(x).numpy().astype(np.int64)
        for j in range(len(fs)):
            ocs.append(classify(out[j * k:(j + 1) * k], clean)[0])
    dt = time.perf_counter() - t0
    logging.disable(logging.NOTSET)
    return np.stack(ocs), dt


def ablation(gm, xq_np, faults, repeat: int) -> list[dict]:
    """faults/s and work fraction of the engine with one optimisation switched off at a time (exact in all)."""
    from sanitas.faults.campaign import make_chunks
    from sanitas.faults.engine import EngineStats, FastGolden
    k = len(xq_np)
    cfgs = {"all optimisations (sparse)": ({}, 4096), "dense propagation": ({"propagate": "dense"}, 4096),
            "dense, no early stop": ({"early_stop": False}, 4096),
            "sparse, no prefix reuse": ({"prefix_reuse": False}, 4096),
            "dense, incremental conv on": ({"sparse_delta": True}, 4096),
            "sparse, one fault per chunk": ({}, k)}
    out = []
    for name, (kw, rows) in cfgs.items():
        fg = FastGolden(gm, **kw)
        env = fg.run(xq_np)
        chunks = make_chunks(faults, k, rows)
        best, st = float("inf"), None
        for _ in range(repeat):
            st = EngineStats()
            t0 = time.perf_counter()
            for c in chunks:
                fg.run_faults(env, c, k, st, validated=True)
            best = min(best, time.perf_counter() - t0)
        out.append({"config": name, "faults_per_s": len(faults) / best, "work_fraction": st.to_dict()["work_fraction"]})
    return out


def sanitas_campaign(gm, xq_np, faults, store: bool):
    """The same list on sanitas' batched engine (optionally writing the SQLite store per chunk)."""
    from sanitas.faults.campaign import exec_fault_chunk, make_chunks
    from sanitas.faults.store import AsyncWriter, Store
    t0 = time.perf_counter()
    c0 = time.process_time()
    k = len(xq_np)
    payload = {"gm": gm, "xq": xq_np}
    pos = {f.id: i for i, f in enumerate(faults)}
    oc_all = np.zeros((len(faults), k), np.int8)
    pr_all = np.zeros((len(faults), k), np.int64)
    tmp = tempfile.TemporaryDirectory() if store else None
    if store:
        Store(Path(tmp.name) / "r.sqlite").close()                  # schema, as `sanitas inject` creates it
    st = AsyncWriter(Path(tmp.name) / "r.sqlite", range(k)) if store else None
    key = f"bench-{id(gm)}-{store}"
    for c in make_chunks(faults, k, 4096):
        ids, oc, pr, _ = exec_fault_chunk(key, payload, [f.to_dict() for f in c])
        if st is not None:
            st.put(ids, oc, pr)
        for fid, o, p in zip(ids, oc, pr):
            oc_all[pos[fid]], pr_all[pos[fid]] = o, p
    if st is not None:
        st.close()                    # every result committed before the clock stops
    dt = time.perf_counter() - t0
    dc = time.process_time() - c0
    if tmp is not None:
        with Store(Path(tmp.name) / "r.sqlite", readonly=True) as chk:
            assert chk.n_results() == len(faults) * k
        tmp.cleanup()
    return oc_all, pr_all, dt, dc


def load_model(name: str):
    from sanitas.data import load_dataset
    from sanitas.models import build
    from sanitas.train import load_checkpoint, save_checkpoint, train_model
    path = CACHE / f"{name}.pt"
    splits = load_dataset("digits")
    if not path.exists():
        m = build(name, splits.in_shape, splits.num_classes, seed=0)
        met = train_model(m, splits, progress=False, **RECIPES[name])
        save_checkpoint(m, path, "digits", met)
    return load_checkpoint(path)[0], splits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,resnet20")
    ap.add_argument("--faults", type=int, default=300, help="faults per site (the shared list)")
    ap.add_argument("--inputs", type=int, default=32, help="test images per fault")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the rows as JSON to this path")
    ap.add_argument("--repeat", type=int, default=2, help="timed repetitions per tool (best is kept)")
    ap.add_argument("--ablation", action="store_true", help="also time the engine with each optimisation off")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from sanitas.faults import sample_faults
    from sanitas.golden import export_golden
    rows = []
    for name in args.models.split(","):
        qnet, splits = load_model(name)
        gm = export_golden(qnet)
        x = splits.test.tensors[0][: args.inputs].numpy()
        xq_np = gm.quantize_input(x)
        from sanitas.faults.engine import FastGolden
        f32 = all(v["acc_dtype"] == torch.float32 for v in FastGolden(gm).p.values() if "acc_dtype" in v)
        twin = IntTwin(gm, torch.float32 if f32 else torch.float64).eval()
        xq = torch.tensor(xq_np, dtype=twin.dtype)
        with torch.no_grad():
            assert np.array_equal(twin(xq).numpy().astype(np.int64), gm.run_int(xq_np)), "twin is not bit-exact"
        for site, gsite in (("weight", "weight"), ("activation", "output")):
            faults = sample_faults(gm, args.faults, sites=(gsite,), kinds=("bitflip",), seed=args.seed)
            warm = sample_faults(gm, 4, sites=(gsite,), kinds=("bitflip",), seed=args.seed + 1)
            pytorchfi_campaign(twin, gm, xq, warm, gsite)              # warm-up (allocators, kernels) for both
            sanitas_campaign(gm, xq_np, warm, store=False)
            runs_p = [pytorchfi_campaign(twin, gm, xq, faults, gsite) for _ in range(args.repeat)]
            runs_s = [sanitas_campaign(gm, xq_np, faults, store=False) for _ in range(args.repeat)]
            runs_ss = [sanitas_campaign(gm, xq_np, faults, store=True) for _ in range(args.repeat)]
            n_f = len(faults)
            oc_p, pr_p = runs_p[0][:2]
            oc_s, pr_s = runs_s[0][:2]
            t_p, c_p = min(r[2] for r in runs_p), min(r[3] for r in runs_p)      # best of --repeat (noise)
            t_s, c_s = min(r[2] for r in runs_s), min(r[3] for r in runs_s)
            t_ss, c_ss = min(r[2] for r in runs_ss), min(r[3] for r in runs_ss)
            extra = ""
            if gsite == "output":
                oc_b, t_b = pytorchfi_batched_neurons(twin, gm, xq, faults)
                assert np.array_equal(oc_b, oc_s), "PyTorchFI batched mode disagrees"
                extra = f"  [PyTorchFI batched-neuron mode {n_f / t_b:7.1f} f/s -> speedup {t_b / t_s:5.1f}x]"
            if args.ablation:
                for a in ablation(gm, xq_np, faults, args.repeat):
                    print(f"  ablation {name} {site}: {a['config']:28s} {a['faults_per_s']:9.1f} faults/s  "
                          f"work fraction {a['work_fraction']:.3f}", flush=True)
            agree = float((oc_p == oc_s).mean())
            agree_pred = float((pr_p == pr_s).mean())
            n = len(faults)
            r = {"model": name, "site": site, "faults": n, "inputs": args.inputs,
                 "pytorchfi_faults_per_s": n / t_p, "sanitas_faults_per_s": n / t_s,
                 "sanitas_store_faults_per_s": n / t_ss, "speedup": t_p / t_s, "speedup_with_store": t_p / t_ss,
                 "speedup_cpu": c_p / c_s, "speedup_cpu_with_store": c_p / c_ss,
                 "outcome_agreement": agree, "top1_agreement": agree_pred,
                 "outcomes": np.bincount(oc_s.reshape(-1), minlength=3).tolist()}
            if gsite == "output":
                r["pytorchfi_batched_neuron_faults_per_s"] = n_f / t_b
                r["speedup_vs_batched_neuron"] = t_b / t_s
            rows.append(r)
            print(f"{name:9s} {site:10s} faults={n} K={args.inputs}  PyTorchFI {r['pytorchfi_faults_per_s']:7.1f} f/s"
                  f"  sanitas {r['sanitas_faults_per_s']:8.1f} f/s (+store {r['sanitas_store_faults_per_s']:8.1f})"
                  f"  speedup wall {r['speedup']:5.1f}x (+store {r['speedup_with_store']:5.1f}x)"
                  f"  cpu {r['speedup_cpu']:5.1f}x (+store {r['speedup_cpu_with_store']:5.1f}x)"
                  f"  agreement {agree:.4f}  [masked, sdc, critical] = {r['outcomes']}{extra}", flush=True)
    for key in ("speedup", "speedup_with_store", "speedup_cpu", "speedup_cpu_with_store"):
        g = float(np.exp(np.mean([np.log(r[key]) for r in rows])))
        print(f"{key:24s} geometric mean {g:6.1f}x  min {min(r[key] for r in rows):6.1f}x")
    print(f"all outcome classes agree: {all(r['outcome_agreement'] == 1.0 for r in rows)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

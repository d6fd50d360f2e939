"""The batched, exact fault-campaign executor: many single-fault experiments per forward pass.

``FastGolden`` is the golden integer model (``sanitas.golden``) compiled to torch ops on integers held in float
tensors, so it runs on CPU/GPU at BLAS/cuDNN speed while staying bit-exact with ``GoldenModel.run_int``:

* activations (int8/uint8, add outputs) are float32 — exact integers;
* conv/linear run in float32 when every partial sum provably stays below 2**24 LSBs (bound per layer:
  ``B = (max_o sum|w_o| + 128) * 2**in_bits``, the 128 covering any single faulty weight), else in float64
  (exact below 2**53); on CUDA always float64 (cuDNN may pick inexact Winograd/FFT kernels for fp32);
* accumulators (conv/linear outputs incl. the int32 bias) are float32 when ``B + max|bias| < 2**24``, else
  float64; faulty accumulators (bias/acc/int32 sites) are float64 and wrapped to 32 bits (two's complement)
  as in golden;
* requantisation is ``round_half_even(x * 2**(e_in - e_out))`` (``torch.round``) then saturation — exactly
  ``golden.rounding.requantize``, since scaling by a power of two is exact in binary floating point.

``FastGolden.run_faults(clean, faults)`` evaluates a chunk of faults that share one (site, layer) on I inputs as
R = F x I rows ("faults along the batch dimension"):

1. **prefix reuse**: the fault-free activations of every node (``clean``, computed once per campaign) feed the
   faulted node directly; nothing upstream of it is recomputed. Weight/bias faults do not even recompute the
   faulted layer: a weight fault (o, c, kh, kw) changes only output channel o by ``dw * x[c, shifted window]``
   (a gather), a bias fault adds ``db`` to channel o.
2. **propagation** through the downstream nodes only, with the rows' other inputs taken from ``clean``.
3. **early stop**: the rows whose live faulty tensors (those still to be consumed) all equal the fault-free
   ones are MASKED for sure and dropped from the batch (compaction); if none is left, stop. Until the first
   compaction the rows are an (F, I) grid and fault-free tensors are broadcast, after it they are gathered.
   A row's "may differ" flag is inherited from the node's inputs (exact: equal inputs give equal outputs) and
   re-checked element-wise at the fault and after the ops that can absorb a change (requantisation,
   max-pooling) — adaptively: a check that proves < 5 % of the rows masked doubles the number of such ops
   skipped before the next check, because a check costs a pass over the tensor.
4. **incremental conv** (large feature maps): only outputs whose receptive field holds a changed input are
   recomputed (an im2col GEMM over those positions). Off by default on maps below 16x16, where one dense
   GEMM is cheaper than the bookkeeping (measured: ``benchmarks/bench_campaign.py --ablation``).

5. **concurrent propagation** (default on CPU, ``propagate="sparse"``): after the faulted node, each row carries
   only the elements that differ from the fault-free run, and the numba kernels of ``faults.sparse`` update
   just those (conv fused with its requantisation). A single activation flip of INT8 ResNet-20 leaves 2-16 %
   of each downstream tensor different, so this does ~3 % of the naive MACs where 1-4 do ~57 %. Steps 3-4
   are the dense torch path (GPU, ablations, ``propagate="dense"``).

Files: this one (the compiled model: per-layer parameters, the ``dense`` kernel of every op in the op table of
``sanitas.models.ops``, the faulted node per fault site), ``faults.dense`` (steps 2-4: the batched dense
propagation) and ``faults.sparse`` (step 5; ``faults.sparse.propagate`` drives one chunk).

The result per (fault, input): outcome 0 masked (logits bit-identical), 1 SDC-benign (other logits, same top-1),
2 critical (top-1 changed; top-1 = first maximal logit), and the faulty top-1. ``stats`` counts the work done
(row-MACs) against the naive cost (every row through the whole net), which is how the speed is measured.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SanitasError
from ..golden.rounding import int_range
from ..models.ops import OPS, kernels, spec
from . import dense as _dense
from . import sparse as _sp
from .dense import wrap32_f
from .fault import Fault, fault_masks, validate
from .sparse.propagate import ELEMENT_SITES, run_sparse

MASKED, SDC, CRITICAL = 0, 1, 2
MASKING_OPS = tuple(k for k, v in OPS.items() if v.masking)   # a changed input may give an unchanged output
OUTCOMES = ("masked", "sdc", "critical")
@dataclass
class EngineStats:
    """Work counters: row-MACs actually computed vs. the naive cost (all rows through the whole network)."""
    rows: int = 0                  # fault x input experiments evaluated
    macs_done: int = 0             # conv/linear MACs computed (rows x MACs of each computed layer)
    macs_naive: int = 0            # rows x MACs of the whole network
    stopped_early: int = 0         # rows proven masked before reaching the output
    node_rows: dict = field(default_factory=lambda: defaultdict(int))

    def merge(self, o: "EngineStats"):
        self.rows += o.rows
        self.macs_done += o.macs_done
        self.macs_naive += o.macs_naive
        self.stopped_early += o.stopped_early
        for k, v in o.node_rows.items():
            self.node_rows[k] += v

    def to_dict(self) -> dict:
        return {"rows": self.rows, "macs_done": self.macs_done, "macs_naive": self.macs_naive,
                "work_fraction": self.macs_done / max(1, self.macs_naive), "stopped_early": self.stopped_early}


class MacParams(NamedTuple):
    """A conv/linear layer on the engine's device (see the module doc for the dtypes)."""
    w: torch.Tensor            # weights in the conv/matmul dtype
    w_int: torch.Tensor        # int64 weights (weight faults)
    b: torch.Tensor            # bias in the accumulator dtype
    b_int: torch.Tensor        # int64 bias (bias faults)
    dtype: torch.dtype         # conv/matmul dtype
    acc_dtype: torch.dtype     # accumulator dtype (float32 only if provably exact)
    may_wrap: bool             # the 32-bit accumulator may wrap


class ActParams(NamedTuple):
    mul: float                 # 2**(e_in - e_out)
    lo: int
    hi: int


# the dense engine's op kernels: kernel(engine, node, inputs) on rows of integer-valued float tensors
DENSE = kernels("dense")


@DENSE.register("input")
def _d_input(eng, n, ins):
    return ins[0]


@DENSE.register("conv")
def _d_conv(eng, n, ins):
    pr, a = eng.p[n.name], n.attrs
    y = F.conv2d(ins[0].to(pr.dtype), pr.w, None, a["stride"], a["padding"], a["dilation"], a["groups"])
    y = y.to(pr.acc_dtype).add_(pr.b[None, :, None, None])
    return wrap32_f(y) if pr.may_wrap else y


@DENSE.register("linear")
def _d_linear(eng, n, ins):
    pr = eng.p[n.name]
    y = (ins[0].to(pr.dtype) @ pr.w.T).to(pr.acc_dtype).add_(pr.b[None, :])
    return wrap32_f(y) if pr.may_wrap else y


@DENSE.register("act")
def _d_act(eng, n, ins):
    # x * 2**k is exact in float32/64; round half to even, then saturate (golden.rounding.requantize)
    pr = eng.p[n.name]
    y = (ins[0] * pr.mul).round_().clamp_(pr.lo, pr.hi)
    return y if y.dtype == torch.float32 else y.float()


@DENSE.register("add")
def _d_add(eng, n, ins):
    return ins[0] + ins[1]


@DENSE.register("concat")
def _d_concat(eng, n, ins):
    return torch.cat(ins, dim=1)


@DENSE.register("maxpool")
def _d_maxpool(eng, n, ins):
    a = n.attrs
    return F.max_pool2d(ins[0], a["k"], a["stride"], a["padding"])


@DENSE.register("gsum")
def _d_gsum(eng, n, ins):
    return ins[0].double().sum(dim=(2, 3))


@DENSE.register("flatten")
def _d_flatten(eng, n, ins):
    return ins[0].reshape(ins[0].shape[0], -1)


class FastGolden:
    """Golden model compiled to exact torch ops; evaluates chunks of faults batched along the row dimension."""

    def __init__(self, gm, device: str = "cpu", early_stop: bool = True, prefix_reuse: bool = True,
                 sparse_delta: bool | None = None, compact_frac: float = 0.1, propagate: str = "auto"):
        self.gm = gm
        if propagate not in ("auto", "sparse", "dense"):
            raise SanitasError(f"engine: propagate must be auto, sparse or dense, not {propagate!r}")
        if propagate == "sparse" and (not _sp.available() or torch.device(device).type != "cpu"):
            raise SanitasError("engine: sparse propagation needs numba and device cpu")
        # auto: the concurrent (sparse-delta) propagation on CPU with every optimisation on; the dense batched
        # torch path on GPU and for the ablations (early stop / incremental conv switched by hand)
        self.propagate = propagate if propagate != "auto" else (
            "sparse" if (_sp.available() and torch.device(device).type == "cpu" and early_stop
                         and sparse_delta is None) else "dense")
        self.sparse_delta = sparse_delta
        self.device = torch.device(device)
        self.early_stop = early_stop
        self.prefix_reuse = prefix_reuse
        self.compact_frac = compact_frac
        self.nodes = gm.nodes
        self.pos = {n.name: i for i, n in enumerate(self.nodes)}
        self.consumers = defaultdict(list)
        for n in self.nodes:
            for i in n.inputs:
                self.consumers[i].append(n.name)
        shapes = gm.shapes()
        self.spec = {n.name: spec(n.op) for n in self.nodes}
        self.node_macs = {n.name: self.spec[n.name].macs(n.weight.shape, shapes[n.name]) for n in gm.layers()}
        self.p = {}
        cuda = self.device.type == "cuda"
        for n in self.nodes:
            if self.spec[n.name].has_weights:
                w = n.weight.astype(np.float64)
                src = gm.by_name[n.inputs[0]]
                m_in = float(2 ** src.bits)
                # |partial sums| <= (max_o sum|w_o| + 128) * 2**in_bits: the +128 covers one faulty weight
                bound = (np.abs(w).reshape(w.shape[0], -1).sum(1).max() + 128.0) * m_in
                bound_b = bound + float(np.abs(n.bias.astype(np.float64)).max(initial=0))
                cd = torch.float64 if (cuda or bound >= 2 ** 24) else torch.float32
                ad = torch.float32 if (cd == torch.float32 and bound_b < 2 ** 24) else torch.float64
                self.p[n.name] = MacParams(torch.tensor(w, dtype=cd, device=self.device),
                                           torch.tensor(n.weight.astype(np.int64), device=self.device),
                                           torch.tensor(n.bias.astype(np.float64), dtype=ad, device=self.device),
                                           torch.tensor(n.bias.astype(np.int64), device=self.device),
                                           cd, ad, bool(bound_b >= 2 ** 31))
            elif self.spec[n.name].requant:
                lo, hi = int_range(n.bits, n.signed, n.narrow)
                self.p[n.name] = ActParams(2.0 ** (gm.by_name[n.inputs[0]].e_out - n.e_out), lo, hi)
        self.total_macs = sum(self.node_macs.values())
        self._snet = _sp.SparseNet(gm, shapes) if self.propagate == "sparse" else None
        self._np_clean = (None, None)          # (clean env, its int64 channel-last numpy copy) of the last call
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

    # ------------------------------------------------------------------------------------------ ops
    def op(self, n, ins: list[torch.Tensor]) -> torch.Tensor:
        """One node on rows of integer-valued tensors (see the module doc for dtypes)."""
        return DENSE[n.op](self, n, ins)

    def run(self, xq) -> dict:
        """Fault-free forward on int8 inputs (N, C, H, W): every node's output (the prefix cache)."""
        x = torch.as_tensor(np.asarray(xq), dtype=torch.float32, device=self.device)
        env = {}
        with torch.no_grad():
            for n in self.nodes:
                env[n.name] = DENSE[n.op](self, n, [env[i] for i in n.inputs] or [x])
        return env

    def logits(self, xq) -> np.ndarray:
        """Integer logits (N, classes) as int64 numpy: equals ``GoldenModel.run_int``."""
        return self.run(xq)[self.nodes[-1].name].cpu().numpy().astype(np.int64)

    # ------------------------------------------------------------------------------------------ faults
    def _masks(self, faults: list[Fault], info):
        """Per-fault flat element index and (AND, OR, XOR) masks as int64 tensors (F,)."""
        flat, am, om, xm = [], [], [], []
        for f in faults:
            flat.append(int(np.ravel_multi_index(f.index, info.shape)) if info.shape else 0)
            a, o, x = fault_masks(f.kind, f.bit, f.value, info.bits)
            am.append(a), om.append(o), xm.append(x)
        t = lambda v: torch.tensor(v, dtype=torch.int64, device=self.device)  # noqa: E731
        return t(flat), t(am), t(om), t(xm)

    @staticmethod
    def _apply(v: torch.Tensor, am, om, xm, bits: int, signed: bool) -> torch.Tensor:
        """Faulty values of integer-valued float tensor ``v`` (any dtype) under per-element masks."""
        full = (1 << bits) - 1
        u = (((v.long() & full) & am) | om) ^ xm
        if signed:
            u = u - ((u >> (bits - 1)) & 1) * (1 << bits)
        return u.to(v.dtype)

    def _element_values(self, t: torch.Tensor, inp, e, am, om, xm, info):
        """Fault-free and faulty value of element e[r] of fault-free tensor ``t`` (I, ...) on input inp[r]
        (float64 for the int32-wide sites, exact)."""
        old = t.reshape(t.shape[0], -1)[inp, e]
        if info.bits > 24:
            old = old.double()
        return old, self._apply(old, am, om, xm, info.bits, info.signed)

    def _faulted_node(self, clean: dict, faults: list[Fault], site: str, layer: str, info, inp, fidx):
        """Output of the faulted node for R rows (row r: fault fidx[r] on input inp[r]); sets ``_known_change``
        (rows known changed, or None) and ``_last_macs`` (MACs the faulted layer computed)."""
        fn = _FAULTED.get(site)
        if fn is None:
            raise SanitasError(f"engine: site '{site}' is not executable by the batched engine")
        self._known_change, self._last_macs = None, 0
        return fn(self, clean, faults, self.gm.by_name[layer], info, inp, fidx)

    def _clean_np(self, clean: dict) -> tuple[dict, dict]:
        """int64 and float64 channel-last numpy copies of the fault-free activations (once per ``clean`` env)."""
        if self._np_clean[0] is not clean:
            ci = {k: _sp.hwc(v) for k, v in clean.items()}
            self._np_clean = (clean, (ci, {k: v.astype(np.float64) for k, v in ci.items()}))
        return self._np_clean[1]

    def _prefix_ablation(self, clean: dict, layer: str, nf: int, R: int, st: EngineStats):
        """Ablation ``prefix_reuse=False``: recompute the fault-free prefix on every row (what a naive tool does)."""
        if self.prefix_reuse:
            return
        env_rows = {self.nodes[0].name: clean[self.nodes[0].name].repeat(nf, 1, 1, 1)}
        for n in self.nodes[1:self.pos[layer]]:
            env_rows[n.name] = self.op(n, [env_rows[i] for i in n.inputs])
            st.macs_done += R * self.node_macs.get(n.name, 0)

    def mac_rows(self, n, x: torch.Tensor, clean: dict, rows_, pos=None) -> tuple[torch.Tensor, int]:
        """Conv/linear ``n`` on faulty rows ``x``, incremental (see ``faults.dense.mac_rows``): (output, MACs)."""
        return _dense.mac_rows(self, n, x, clean, rows_, pos)

    def run_faults(self, clean: dict, faults: list[Fault], n_inputs: int, stats: EngineStats | None = None,
                   validated: bool = False):
        """Evaluate ``faults`` (any mix of sites and layers) on the ``n_inputs`` inputs of ``clean``.

        Returns (outcome, pred): int8 / int64 numpy arrays of shape (F, I). The sparse path propagates all the
        faults of the chunk in one pass over the graph (each row enters at its faulted node); the dense path
        runs one batch per (site, layer)."""
        if not faults:
            return np.zeros((0, n_inputs), np.int8), np.zeros((0, n_inputs), np.int64)
        if not validated:
            for f in faults:
                validate(f, self.gm)
        st = stats if stats is not None else EngineStats()
        groups: dict = {}
        for i, f in enumerate(faults):
            groups.setdefault((f.site, f.layer), []).append(i)
        if self.propagate == "sparse":
            self._snet.threads = _sp.use_threads(torch.get_num_threads())   # same budget as torch's intra-op
            return run_sparse(self, clean, faults, groups, n_inputs, st)
        outcome = np.zeros((len(faults), n_inputs), np.int8)
        pred = np.zeros((len(faults), n_inputs), np.int64)
        for ids in groups.values():
            outcome[ids], pred[ids] = _dense.run_group(self, clean, [faults[i] for i in ids], n_inputs, st)
        return outcome, pred

# ------------------------------------------------------------------------------------------------ faulted node
# per fault site: fn(engine, clean, faults, node, info, inp, fidx) -> the faulted node's output rows (R, ...)
def _f_element(eng, clean, faults, n, info, inp, fidx):
    """output / acc: one element of the node's output changes (its faulty value from the fault-free one)."""
    flat, am, om, xm = eng._masks(faults, info)
    R = inp.numel()
    e = flat[fidx]
    y = clean[n.name][inp]                                                 # gather = a fresh copy
    if info.bits > 24:
        y = y.double()                                                     # faulty int32: exact in f64
    old, new = eng._element_values(clean[n.name], inp, e, am[fidx], om[fidx], xm[fidx], info)
    y.view(R, -1)[torch.arange(R, device=eng.device), e] = new
    eng._known_change = new != old                         # (R,) exact: only that element changed
    return y


def _f_input(eng, clean, faults, n, info, inp, fidx):
    """input: the node recomputed on its faulty input (incrementally for conv/linear)."""
    flat, am, om, xm = eng._masks(faults, info)
    R = inp.numel()
    e = flat[fidx]
    src = n.inputs[0]
    x = clean[src][inp]
    if info.bits > 24:
        x = x.double()
    x.view(R, -1)[torch.arange(R, device=eng.device), e] = eng._element_values(
        clean[src], inp, e, am[fidx], om[fidx], xm[fidx], info)[1]
    if eng.spec[n.name].has_weights:
        y, eng._last_macs = eng.mac_rows(n, x, clean, _dense.Rows(len(faults), R // len(faults), x.device))
        return y
    return eng.op(n, [x])


def _f_weight(eng, clean, faults, n, info, inp, fidx):
    """weight: a fault (o, c[, kh, kw]) changes output channel o by dw * x[c, shifted window] (a gather)."""
    flat, am, om, xm = eng._masks(faults, info)
    pr = eng.p[n.name]
    R = inp.numel()
    rows = torch.arange(R, device=eng.device)
    w_old = pr.w_int.view(-1)[flat]                                      # (F,) int8 values
    dw = (eng._apply(w_old, am, om, xm, 8, True) - w_old).double()       # (F,)
    idx = np.array([f.index for f in faults], dtype=np.int64)            # (F, 4) or (F, 2)
    dev = eng.device
    o = torch.tensor(idx[:, 0], device=dev)
    y = clean[n.name][inp]                                               # (R, O, Ho, Wo) / (R, O)
    dw = dw.to(y.dtype)                  # acc dtype is float32 only if the +128 bound proves exactness
    xs = clean[n.inputs[0]]                                              # (I, C, H, W) / (I, F)
    if not eng.spec[n.name].spatial:
        c = torch.tensor(idx[:, 1], device=dev)
        dy = dw[fidx] * xs[inp, c[fidx]].to(y.dtype)
        y[rows, o[fidx]] += dy
        eng._known_change = dy != 0                           # wrap32 is injective on these values
        return wrap32_f(y) if pr.may_wrap else y
    a = n.attrs
    s, pd, d = a["stride"], a["padding"], a["dilation"]
    og = n.weight.shape[0] // a["groups"]
    cg = n.weight.shape[1]
    cin = torch.tensor((idx[:, 0] // og) * cg + idx[:, 1], device=dev)   # absolute input channel
    xp = F.pad(xs, (pd, pd, pd, pd)) if pd else xs                       # (I, C, Hp, Wp)
    ho, wo = y.shape[2], y.shape[3]
    hh = torch.tensor(idx[:, 2], device=dev)[:, None] * d + s * torch.arange(ho, device=dev)
    ww = torch.tensor(idx[:, 3], device=dev)[:, None] * d + s * torch.arange(wo, device=dev)
    g = xp[inp[:, None, None], cin[fidx][:, None, None], hh[fidx][:, :, None], ww[fidx][:, None, :]]
    dy = dw[fidx][:, None, None] * g.to(y.dtype)                         # (R, Ho, Wo)
    y[rows, o[fidx]] += dy
    eng._known_change = (dy != 0).reshape(R, -1).any(1)
    return wrap32_f(y) if pr.may_wrap else y


def _f_bias(eng, clean, faults, n, info, inp, fidx):
    """bias: output channel o changes by db everywhere (float64 + wrap: a faulty bias may reach 2**31)."""
    flat, am, om, xm = eng._masks(faults, info)
    R = inp.numel()
    rows = torch.arange(R, device=eng.device)
    b_old = eng.p[n.name].b_int[flat]
    db = (eng._apply(b_old, am, om, xm, 32, True) - b_old).double()
    y = clean[n.name][inp].double()
    if eng.spec[n.name].spatial:
        y[rows, flat[fidx]] += db[fidx][:, None, None]
    else:
        y[rows, flat[fidx]] += db[fidx]
    eng._known_change = db[fidx] != 0
    return wrap32_f(y)


_FAULTED = dict.fromkeys(ELEMENT_SITES, _f_element) | {"input": _f_input, "weight": _f_weight, "bias": _f_bias}


def classify(faulty_logits: np.ndarray, clean_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outcome (0 masked / 1 SDC / 2 critical) and faulty top-1 of integer logits (N, classes) vs fault-free."""
    fp, cp = faulty_logits.argmax(1), clean_logits.argmax(1)
    changed = (faulty_logits != clean_logits).any(1)
    oc = np.where(~changed, MASKED, np.where(fp != cp, CRITICAL, SDC)).astype(np.int8)
    return oc, fp.astype(np.int64)


__all__ = ["FastGolden", "EngineStats", "classify", "MASKED", "SDC", "CRITICAL", "OUTCOMES", "wrap32_f"]

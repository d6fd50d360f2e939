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

The result per (fault, input): outcome 0 masked (logits bit-identical), 1 SDC-benign (other logits, same top-1),
2 critical (top-1 changed; top-1 = first maximal logit), and the faulty top-1. ``stats`` counts the work done
(row-MACs) against the naive cost (every row through the whole net), which is how the speed is measured.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SanitasError
from ..golden.rounding import int_range
from . import sparse as _sp
from .fault import Fault, SITES, fault_masks, validate

MASKED, SDC, CRITICAL = 0, 1, 2
MASKING_OPS = ("act", "maxpool")          # ops that can make a changed input give an unchanged output
OUTCOMES = ("masked", "sdc", "critical")
_P31, _P32 = float(1 << 31), float(1 << 32)


def wrap32_f(y: torch.Tensor) -> torch.Tensor:
    """Two's-complement 32-bit wrap of float64 integers (exact); a no-op pass when nothing overflows."""
    if y.numel() and (y.max() >= _P31 or y.min() < -_P31):
        y = torch.remainder(y + _P31, _P32) - _P31
    return y


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


class _Rows:
    """The current rows of a chunk: an (nf, I) fault-major grid (fault-free tensors broadcast, no gather) until the
    first row compaction, then arbitrary rows with their input index ``inp`` (fault-free tensors gathered)."""

    def __init__(self, nf: int, n_inputs: int, device):
        self.I = n_inputs
        self.nf = nf                                            # grid faults (None once compacted to rows)
        self.ids = torch.arange(nf * n_inputs, device=device)  # global row id = fault * I + input
        self.inp = None

    @property
    def n(self) -> int:
        return int(self.ids.numel())

    def crows(self, t: torch.Tensor) -> torch.Tensor:
        """Fault-free t (I, ...) for every row: a fresh copy (callers may write into it)."""
        if self.nf is not None:
            return t.repeat(self.nf, *([1] * (t.dim() - 1)))
        return t[self.inp]

    def ne(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Element-wise y != fault-free t."""
        if self.nf is not None:
            return (y.view(self.nf, *t.shape) != t.unsqueeze(0)).view(y.shape)
        return y != t[self.inp]

    def add(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """y + fault-free t."""
        if self.nf is not None:
            return (y.view(self.nf, *t.shape) + t.unsqueeze(0)).view(y.shape)
        return y + t[self.inp]

    def keep(self, idx: torch.Tensor):
        """Keep rows ``idx`` (positions in the current rows): the grid becomes a row list."""
        if self.inp is None:
            self.inp = self.ids % self.I
        self.ids, self.inp, self.nf = self.ids[idx], self.inp[idx], None


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
        self.node_macs = {}
        self.p = {}
        cuda = self.device.type == "cuda"
        for n in self.nodes:
            if n.op in ("conv", "linear"):
                w = n.weight.astype(np.float64)
                src = gm.by_name[n.inputs[0]]
                m_in = float(2 ** src.bits)
                # |partial sums| <= (max_o sum|w_o| + 128) * 2**in_bits: the +128 covers one faulty weight
                bound = (np.abs(w).reshape(w.shape[0], -1).sum(1).max() + 128.0) * m_in
                bound_b = bound + float(np.abs(n.bias.astype(np.float64)).max(initial=0))
                cd = torch.float64 if (cuda or bound >= 2 ** 24) else torch.float32
                ad = torch.float32 if (cd == torch.float32 and bound_b < 2 ** 24) else torch.float64
                self.p[n.name] = {
                    "w": torch.tensor(w, dtype=cd, device=self.device),
                    "w_int": torch.tensor(n.weight.astype(np.int64), device=self.device),
                    "b": torch.tensor(n.bias.astype(np.float64), dtype=ad, device=self.device),
                    "b_int": torch.tensor(n.bias.astype(np.int64), device=self.device),
                    "dtype": cd,                  # conv/matmul dtype
                    "acc_dtype": ad,              # accumulator dtype (float32 only if provably exact)
                    "may_wrap": bound_b >= 2 ** 31,
                }
                per_out = int(np.prod(n.weight.shape[1:]))
                o_shape = shapes[n.name]
                self.node_macs[n.name] = per_out * int(np.prod(o_shape[1:]))
            elif n.op == "act":
                lo, hi = int_range(n.bits, n.signed, n.narrow)
                self.p[n.name] = {"mul": 2.0 ** (gm.by_name[n.inputs[0]].e_out - n.e_out), "lo": lo, "hi": hi}
        self.total_macs = sum(self.node_macs.values())
        self._snet = _sp.SparseNet(gm, shapes) if self.propagate == "sparse" else None
        self._np_clean = (None, None)          # (clean env, its int64 channel-last numpy copy) of the last call
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

    # ------------------------------------------------------------------------------------------ ops
    def op(self, n, ins: list[torch.Tensor]) -> torch.Tensor:
        """One node on rows of integer-valued tensors (see the module doc for dtypes)."""
        if n.op == "conv":
            pr, a = self.p[n.name], n.attrs
            y = F.conv2d(ins[0].to(pr["dtype"]), pr["w"], None, a["stride"], a["padding"], a["dilation"], a["groups"])
            y = y.to(pr["acc_dtype"]).add_(pr["b"][None, :, None, None])
            return wrap32_f(y) if pr["may_wrap"] else y
        if n.op == "linear":
            pr = self.p[n.name]
            y = (ins[0].to(pr["dtype"]) @ pr["w"].T).to(pr["acc_dtype"]).add_(pr["b"][None, :])
            return wrap32_f(y) if pr["may_wrap"] else y
        if n.op == "act":
            # x * 2**k is exact in float32/64; round half to even, then saturate (golden.rounding.requantize)
            pr = self.p[n.name]
            y = (ins[0] * pr["mul"]).round_().clamp_(pr["lo"], pr["hi"])
            return y if y.dtype == torch.float32 else y.float()
        if n.op == "add":
            return ins[0] + ins[1]
        if n.op == "concat":
            return torch.cat(ins, dim=1)
        if n.op == "maxpool":
            a = n.attrs
            return F.max_pool2d(ins[0], a["k"], a["stride"], a["padding"])
        if n.op == "gsum":
            return ins[0].double().sum(dim=(2, 3))
        if n.op == "flatten":
            return ins[0].reshape(ins[0].shape[0], -1)
        if n.op == "input":
            return ins[0]
        raise SanitasError(f"engine: unknown op {n.op!r}")

    def run(self, xq) -> dict:
        """Fault-free forward on int8 inputs (N, C, H, W): every node's output (the prefix cache)."""
        x = torch.as_tensor(np.asarray(xq), dtype=torch.float32, device=self.device)
        env = {}
        with torch.no_grad():
            for n in self.nodes:
                env[n.name] = x if n.op == "input" else self.op(n, [env[i] for i in n.inputs])
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
        """Output of the faulted node for R rows (row r: fault fidx[r] on input inp[r])."""
        n = self.gm.by_name[layer]
        flat, am, om, xm = self._masks(faults, info)
        R = inp.numel()
        rows = torch.arange(R, device=self.device)
        e = flat[fidx]
        if site in ("output", "acc"):
            y = clean[layer][inp]                                                  # gather = a fresh copy
            if info.bits > 24:
                y = y.double()                                                     # faulty int32: exact in f64
            old, new = self._element_values(clean[layer], inp, e, am[fidx], om[fidx], xm[fidx], info)
            y.view(R, -1)[rows, e] = new
            self._known_change = new != old                        # (R,) exact: only that element changed
            return y
        self._known_change = None
        if site == "input":
            src = n.inputs[0]
            x = clean[src][inp]
            if info.bits > 24:
                x = x.double()
            x.view(R, -1)[rows, e] = self._element_values(clean[src], inp, e, am[fidx], om[fidx], xm[fidx], info)[1]
            if n.op in ("conv", "linear"):
                y, macs = self.mac_rows(n, x, clean, _Rows(len(faults), inp.numel() // len(faults), x.device))
                self._last_macs = macs
                return y
            self._last_macs = 0
            return self.op(n, [x])
        pr = self.p[layer]
        if site == "weight":
            w_old = pr["w_int"].view(-1)[flat]                                   # (F,) int8 values
            dw = (self._apply(w_old, am, om, xm, 8, True) - w_old).double()       # (F,)
            idx = np.array([f.index for f in faults], dtype=np.int64)             # (F, 4) or (F, 2)
            o = torch.tensor(idx[:, 0], device=self.device)
            y = clean[layer][inp]                                                 # (R, O, Ho, Wo) / (R, O)
            dw = dw.to(y.dtype)                  # acc dtype is float32 only if the +128 bound proves exactness
            xs = clean[n.inputs[0]]                                               # (I, C, H, W) / (I, F)
            if n.op == "linear":
                c = torch.tensor(idx[:, 1], device=self.device)
                dy = dw[fidx] * xs[inp, c[fidx]].to(y.dtype)
                y[rows, o[fidx]] += dy
                self._known_change = dy != 0                           # wrap32 is injective on these values
                return wrap32_f(y) if pr["may_wrap"] else y
            a = n.attrs
            s, pd, d = a["stride"], a["padding"], a["dilation"]
            og = n.weight.shape[0] // a["groups"]
            cg = n.weight.shape[1]
            cin = torch.tensor((idx[:, 0] // og) * cg + idx[:, 1], device=self.device)   # absolute input channel
            xp = F.pad(xs, (pd, pd, pd, pd)) if pd else xs                               # (I, C, Hp, Wp)
            ho, wo = y.shape[2], y.shape[3]
            hh = torch.tensor(idx[:, 2], device=self.device)[:, None] * d + s * torch.arange(ho, device=self.device)
            ww = torch.tensor(idx[:, 3], device=self.device)[:, None] * d + s * torch.arange(wo, device=self.device)
            g = xp[inp[:, None, None], cin[fidx][:, None, None], hh[fidx][:, :, None], ww[fidx][:, None, :]]
            dy = dw[fidx][:, None, None] * g.to(y.dtype)                                # (R, Ho, Wo)
            y[rows, o[fidx]] += dy
            self._known_change = (dy != 0).reshape(R, -1).any(1)
            return wrap32_f(y) if pr["may_wrap"] else y
        if site == "bias":
            b_old = pr["b_int"][flat]
            db = (self._apply(b_old, am, om, xm, 32, True) - b_old).double()
            y = clean[layer][inp].double()                 # a faulty bias may reach 2**31: float64 + wrap
            if n.op == "conv":
                y[rows, flat[fidx]] += db[fidx][:, None, None]
            else:
                y[rows, flat[fidx]] += db[fidx]
            self._known_change = db[fidx] != 0
            return wrap32_f(y)
        raise SanitasError(f"engine: site '{site}' is not executable by the batched engine")

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

    def _inject(self, clean: dict, cnp: dict, faults: list[Fault], I: int, st: EngineStats):
        """Sparse rows (over the F x I rows of ``faults``, all on one (site, layer)) of the faulted node's output."""
        site, layer = faults[0].site, faults[0].layer
        info = SITES[site].describe(self.gm, self.gm.by_name[layer])
        nf = len(faults)
        R = nf * I
        dev = self.device
        inp = torch.arange(I, device=dev).repeat(nf)
        fidx = torch.arange(nf, device=dev).repeat_interleave(I)
        self._prefix_ablation(clean, layer, nf, R, st)
        st.node_rows[layer] += R
        if site in ("output", "acc"):
            # one element per row changes: its faulty value straight from the fault-free one (no row copy)
            flat, am, om, xm = self._masks(faults, info)
            e = flat[fidx]
            old, new = self._element_values(clean[layer], inp, e, am[fidx], om[fidx], xm[fidx], info)
            ch = (new != old).cpu().numpy()
            hw = _sp.chw_to_hwc_index(e.cpu().numpy(), self._snet.shape[layer])
            ptr = np.zeros(R + 1, np.int64)
            np.cumsum(ch, out=ptr[1:])
            return ptr, hw[ch].astype(np.int64), new.cpu().numpy().astype(np.int64)[ch]
        y = self._faulted_node(clean, faults, site, layer, info, inp, fidx)
        if site == "input":
            st.macs_done += self._last_macs
        return self._snet.from_dense((layer, site), _sp.hwc(y), cnp[layer], inp.cpu().numpy().astype(np.int64),
                                     wide=self.gm.by_name[layer].op == "gsum")

    def _run_sparse(self, clean: dict, faults: list[Fault], groups: dict, I: int, st: EngineStats):
        """Concurrent propagation (``faults.sparse``) of every fault of the chunk to the logits, in one pass."""
        cnp, cnpf = self._clean_np(clean)
        snet = self._snet
        snet.threads = _sp.use_threads(torch.get_num_threads())      # same budget as torch's intra-op
        F = len(faults)
        R = F * I
        st.rows += R
        st.macs_naive += R * self.total_macs
        # rows in group order: group g holds the contiguous rows of its faults (undone at the end)
        perm = np.concatenate([np.asarray(ids, np.int64) for ids in groups.values()])
        inp_np = np.tile(np.arange(I, dtype=np.int64), F)
        inject: dict = defaultdict(list)       # node -> sparse rows (over all R rows) entering there
        r0 = 0
        with torch.no_grad():
            for (site, layer), ids in groups.items():
                key = (site, layer)                # distinct per group: the converted rows' buffers
                p, i, v = self._inject(clean, cnp, [faults[k] for k in ids], I, st)
                n_rows = len(ids) * I
                if layer in snet.fused:        # a fused conv/add: rows enter at its requantiser's output
                    act = snet.fused[layer]
                    p, i, v = snet.node(self.gm.by_name[act], [(p, i, v)], inp_np[r0:r0 + n_rows], cnp, cnpf,
                                        n_rows, key=("inject", *key))[0]
                    layer = act
                if layer in snet.mid_add:      # its add runs inside a conv's epilogue: rows enter at the add's
                    add, out = snet.conv_add[snet.mid_add[layer]][:2]               # requantiser's output
                    an = self.gm.by_name[add]
                    p, i, v = snet.node(an, [(p, i, v) if x == layer else None for x in an.inputs],
                                        inp_np[r0:r0 + n_rows], cnp, cnpf, n_rows, key=("inject-add", *key))[0]
                    layer = out
                gp = np.empty(R + 1, np.int64)
                gp[:r0 + 1] = 0
                gp[r0 + 1:r0 + n_rows + 1] = p[1:]
                gp[r0 + n_rows + 1:] = p[-1]
                inject[layer].append((gp, i, v))
                r0 += n_rows
        out_name = self.nodes[-1].name
        first = min(self.pos[k] for k in inject)
        last_inject = max(self.pos[k] for k in inject)
        live: dict = {}
        remaining: dict = {}
        final = None
        counted = False
        for n in self.nodes[first:]:
            if not live and self.pos[n.name] > last_inject:
                break                                      # every row proven masked
            if n.name == out_name:                         # rows with no difference left before the output layer
                alive = np.zeros(R, bool)
                for v in live.values():
                    alive |= np.diff(v[0]) > 0
                for v in inject.get(n.name, ()):
                    alive |= np.diff(v[0]) > 0
                st.stopped_early += R - int(alive.sum())
                counted = True
            name = n.name
            if n.name in snet.conv_add:
                pass                                       # evaluated at its add, with the other operand
            elif n.name in snet.add_conv and any(i in live for i in snet.add_inputs(n.name)):
                conv = self.gm.by_name[snet.add_conv[n.name]]
                xin, other = snet.add_inputs(n.name)
                res, macs = snet.conv(conv, live.get(xin), inp_np, cnp, cnpf, R, key=n.name, with_add=True,
                                      xrows=live.get(other))
                st.macs_done += macs
                for i in (xin, other):
                    if i in live:
                        remaining[i] -= 1
                        if remaining[i] <= 0:
                            del live[i]
                name = snet.conv_add[conv.name][1]
                if res[0][-1]:
                    live[name] = res
                    remaining[name] = len(self.consumers[name])
            elif any(i in live for i in n.inputs):
                ins = [live.get(i) for i in n.inputs]
                res, macs = snet.node(n, ins, inp_np, cnp, cnpf, R)
                st.macs_done += macs
                for i in set(n.inputs):
                    if i in live:
                        remaining[i] -= n.inputs.count(i)
                        if remaining[i] <= 0:
                            del live[i]
                name = snet.fused.get(n.name, n.name)      # a fused conv gives its requantiser's output
                if res[0][-1]:                             # some row still differs
                    live[name] = res
                    remaining[name] = len(self.consumers[name])
            for j, x in enumerate(inject.get(n.name, ())):   # rows whose fault is here join (disjoint rows)
                live[n.name] = x if n.name not in live else snet.merge(live[n.name], x, ("join", n.name, j))
                remaining[n.name] = len(self.consumers[n.name])
            if n.name == out_name:
                final = live.get(out_name)
        if not counted:                                    # the differences died out before the output layer
            st.stopped_early += R
        clean_logits = cnp[out_name]                               # (I, classes) int64
        cp = clean_logits.argmax(1)
        logits = clean_logits[inp_np]                              # (R, classes) copy
        changed = np.zeros(R, bool)
        if final is not None and final[0][-1]:
            ptr, idx, val = final
            cnt = np.diff(ptr)
            logits[np.repeat(np.arange(R), cnt), idx] = val
            changed = cnt > 0
        fp = logits.argmax(1)                                      # first maximal logit, as classify()
        oc = np.where(~changed, MASKED, np.where(fp != cp[inp_np], CRITICAL, SDC)).astype(np.int8)
        outcome = np.empty((F, I), np.int8)
        pred = np.empty((F, I), np.int64)
        outcome[perm] = oc.reshape(F, I)
        pred[perm] = fp.reshape(F, I)
        return outcome, pred

    def _use_sparse(self, x: torch.Tensor) -> bool:
        if self.sparse_delta is None:           # auto: worth it on large maps only (dense GEMM wins on 8x8)
            return x.dim() == 4 and x.shape[2] * x.shape[3] >= 256
        return self.sparse_delta

    def mac_rows(self, n, x: torch.Tensor, clean: dict, rows_: "_Rows", pos=None) -> tuple[torch.Tensor, int]:
        """Conv/linear ``n`` on faulty input rows ``x`` (described by ``rows_``): (output, MACs done).

        Incremental: only the outputs whose receptive field holds a changed input element are recomputed (an
        im2col GEMM over those output positions, or over the changed rows of a linear layer); the others are
        the fault-free accumulators. Exact: the same integer dot products, only fewer of them. Dense when more
        than half of the positions are affected. ``pos``: (R, H, W) bool map of changed input positions (or
        (R,) changed rows) when the caller already has it."""
        src = n.inputs[0]
        rows = x.shape[0]
        per_row = self.node_macs[n.name]
        if not self._use_sparse(x):
            return self.op(n, [x]), rows * per_row
        pr = self.p[n.name]
        if n.op == "linear":
            if pos is None or pos.dim() != 1:
                pos = rows_.ne(x, clean[src]).reshape(rows, -1).any(1)
            rc = torch.nonzero(pos).squeeze(1)                          # rows with any changed input
            if rc.numel() > rows // 2:
                return self.op(n, [x]), rows * per_row
            y = rows_.crows(clean[n.name])
            if rc.numel():
                y[rc] = self.op(n, [x[rc]]).to(y.dtype)
            return y, int(rc.numel()) * per_row
        if pos is None or pos.dim() != 3:
            pos = rows_.ne(x, clean[src]).any(1)                        # (R, H, W)
        a = n.attrs
        s, p, d, g = a["stride"], a["padding"], a["dilation"], a["groups"]
        w = pr["w"]
        o_n, cg, kh, kw = w.shape
        ones = torch.ones((1, 1, kh, kw), dtype=w.dtype, device=w.device)
        aff = F.conv2d(pos[:, None].to(w.dtype), ones, None, s, p, d)[:, 0] > 0   # (R, Ho, Wo) may change
        idx = torch.nonzero(aff)                                        # (P, 3): row, oh, ow
        n_pos = idx.shape[0]
        ho, wo = aff.shape[1], aff.shape[2]
        if n_pos > rows * ho * wo // 2:
            return self.op(n, [x]), rows * per_row
        y = rows_.crows(clean[n.name])                                  # (R, O, Ho, Wo) fresh copy
        if n_pos == 0:
            return y, 0
        xp = F.pad(x, (p, p, p, p)) if p else x                         # (R, C, Hp, Wp)
        dev = x.device
        r, oh, ow = idx[:, 0], idx[:, 1], idx[:, 2]
        ii = oh[:, None] * s + torch.arange(kh, device=dev)[None] * d   # (P, kh) input rows of each tap
        jj = ow[:, None] * s + torch.arange(kw, device=dev)[None] * d   # (P, kw)
        c_all = torch.arange(cg * g, device=dev)
        patches = xp[r[:, None, None, None], c_all[None, :, None, None], ii[:, None, :, None], jj[:, None, None, :]]
        patches = patches.to(w.dtype).reshape(n_pos, g, cg * kh * kw)   # (P, G, Cg*k*k)
        wg = w.reshape(g, o_n // g, cg * kh * kw)                       # (G, Og, Cg*k*k)
        out = torch.einsum("pgk,gok->pgo", patches, wg).reshape(n_pos, o_n)
        out = out.to(y.dtype) + pr["b"].to(y.dtype)[None]
        y[r, :, oh, ow] = wrap32_f(out) if pr["may_wrap"] else out
        return y, n_pos * per_row // (ho * wo)


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
            return self._run_sparse(clean, faults, groups, n_inputs, st)
        outcome = np.zeros((len(faults), n_inputs), np.int8)
        pred = np.zeros((len(faults), n_inputs), np.int64)
        for ids in groups.values():
            outcome[ids], pred[ids] = self._run_group(clean, [faults[i] for i in ids], n_inputs, st)
        return outcome, pred

    def _run_group(self, clean: dict, faults: list[Fault], n_inputs: int, st: EngineStats):
        """Dense batched evaluation of faults that share one (site, layer): (outcome, pred) of shape (F, I)."""
        site, layer = faults[0].site, faults[0].layer
        info = SITES[site].describe(self.gm, self.gm.by_name[layer])
        nf0, I = len(faults), n_inputs
        R = nf0 * I
        dev = self.device
        inp = torch.arange(I, device=dev).repeat(nf0)                      # (R,) input of each row
        fidx = torch.arange(nf0, device=dev).repeat_interleave(I)          # (R,) fault of each row
        out_name = self.nodes[-1].name
        clean_logits = clean[out_name]                                     # (I, classes)
        clean_pred = clean_logits.argmax(1)                                # (I,) first maximal logit
        outcome = torch.zeros((nf0, I), dtype=torch.int8, device=dev)
        pred = clean_pred.unsqueeze(0).repeat(nf0, 1)                      # (F, I)
        st.rows += R
        st.macs_naive += R * self.total_macs
        with torch.no_grad():
            self._prefix_ablation(clean, layer, nf0, R, st)
            y = self._faulted_node(clean, faults, site, layer, info, inp, fidx)
            if site == "input":                # weight/bias faults: a gather instead of the layer's MACs
                st.macs_done += self._last_macs
            st.node_rows[layer] += R
            rw = _Rows(nf0, I, dev)
            # live: faulty tensors still to be consumed; chg: where they MAY differ from fault-free, as (R, H, W)
            # position maps or (R,) row flags (exact where compared, conservative where inherited)
            live = {layer: y}
            if self.early_stop and self._known_change is not None and not self._use_sparse(y):
                chg = {layer: self._known_change}          # rows changed, known from the fault itself (no pass)
            elif self.early_stop:
                ne = rw.ne(y, clean[layer])
                chg = {layer: _change_map(ne) if self._use_sparse(y) else ne.reshape(R, -1).any(1)}
            else:
                chg = {layer: torch.ones(R, dtype=torch.bool, device=dev)}
            remaining = {layer: len(self.consumers[layer])}
            final = y if layer == out_name else None
            skip, backoff = 0, 1            # adaptive check schedule (see the loop)
            checked = self.early_stop
            for n in self.nodes[self.pos[layer] + 1:]:
                if not any(i in live for i in n.inputs):
                    continue
                if checked:            # flags only fall at a check (inheritance ORs them): re-plan after one
                    checked = False
                    alive = torch.zeros(rw.n, dtype=torch.bool, device=dev)
                    for k in live:
                        alive |= _rows_of(chg[k])
                    n_alive = int(alive.sum())
                    if n_alive == 0:
                        st.stopped_early += rw.n
                        rw.keep(alive.nonzero().squeeze(1))
                        final = None
                        break
                    if n_alive <= (1 - self.compact_frac) * rw.n:
                        keep = torch.nonzero(alive).squeeze(1)
                        st.stopped_early += rw.n - n_alive
                        rw.keep(keep)
                        live = {k: v[keep] for k, v in live.items()}
                        chg = {k: v[keep] for k, v in chg.items()}
                in_chg = [chg[i] for i in n.inputs if i in chg]
                if n.op in ("conv", "linear"):
                    y, macs = self.mac_rows(n, live[n.inputs[0]], clean, rw, in_chg[0] if self.early_stop else None)
                elif n.op == "add":
                    a, b = (live.get(i) for i in n.inputs)
                    if a is not None and b is not None:
                        y = a + b
                    else:                           # one input fault-free: broadcast / gather it
                        y = rw.add(a, clean[n.inputs[1]]) if a is not None else rw.add(b, clean[n.inputs[0]])
                    macs = 0
                else:
                    ins = [live[i] if i in live else rw.crows(clean[i]) for i in n.inputs]
                    y, macs = self.op(n, ins), 0
                st.macs_done += macs
                st.node_rows[n.name] += rw.n
                for i in set(n.inputs):
                    if i in live:
                        remaining[i] -= n.inputs.count(i)
                        if remaining[i] <= 0:
                            del live[i], chg[i], remaining[i]
                # where the output may differ: compared element-wise after the ops that can absorb a change
                # (requantisation, max-pooling); inherited from the inputs otherwise (exact: equal in, equal out)
                # checks cost a pass over the output: when one proves < 5 % of the rows masked, the next
                # 1, 2, 4, ... masking ops are not compared (their flags stay inherited: still exact)
                if not self.early_stop:
                    c = torch.ones(rw.n, dtype=torch.bool, device=dev)
                elif n.op in MASKING_OPS and skip == 0:
                    ne = rw.ne(y, clean[n.name])
                    c = _change_map(ne) if self._use_sparse(y) else ne.reshape(rw.n, -1).any(1)
                    checked = True
                    before = int(_rows_of(in_chg[0]).sum())
                    if before - int(_rows_of(c).sum()) < 0.05 * max(1, before):
                        backoff, skip = 2 * backoff, 2 * backoff
                    else:
                        backoff = 1
                elif n.op in MASKING_OPS:
                    skip -= 1
                    c = in_chg[0]
                    if c.dim() == 3 and n.op == "maxpool":     # pooled positions whose window holds a change
                        a = n.attrs
                        c = F.max_pool2d(c[:, None].float(), a["k"], a["stride"], a["padding"])[:, 0] > 0
                elif n.op in ("add", "concat") and all(m.dim() == 3 for m in in_chg):
                    c = in_chg[0]
                    for m in in_chg[1:]:
                        c = c | m
                else:
                    c = _rows_of(in_chg[0])
                    for m in in_chg[1:]:
                        c = c | _rows_of(m)
                live[n.name] = y
                chg[n.name] = c
                remaining[n.name] = len(self.consumers[n.name])
                if n.name == out_name:
                    final = y
            if final is not None and rw.n:
                changed = rw.ne(final, clean_logits).any(1)
                fp = final.argmax(1)
                cp = clean_pred[rw.ids % I]
                oc = torch.where(fp != cp, CRITICAL, SDC).to(torch.int8)
                outcome.view(-1)[rw.ids] = torch.where(changed, oc, torch.zeros_like(oc))
                pred.view(-1)[rw.ids] = fp
        return outcome.cpu().numpy(), pred.cpu().numpy().astype(np.int64)


def _change_map(ne: torch.Tensor):
    """Element-wise change mask -> changed positions (R, H, W) for NCHW tensors, changed rows (R,) otherwise."""
    return ne.any(1) if ne.dim() == 4 else ne.reshape(ne.shape[0], -1).any(1)


def _rows_of(m: torch.Tensor) -> torch.Tensor:
    return m if m.dim() == 1 else m.reshape(m.shape[0], -1).any(1)


def classify(faulty_logits: np.ndarray, clean_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outcome (0 masked / 1 SDC / 2 critical) and faulty top-1 of integer logits (N, classes) vs fault-free."""
    fp, cp = faulty_logits.argmax(1), clean_logits.argmax(1)
    changed = (faulty_logits != clean_logits).any(1)
    oc = np.where(~changed, MASKED, np.where(fp != cp, CRITICAL, SDC)).astype(np.int8)
    return oc, fp.astype(np.int64)


__all__ = ["FastGolden", "EngineStats", "classify", "MASKED", "SDC", "CRITICAL", "OUTCOMES", "wrap32_f"]

"""The dense batched propagation of ``FastGolden`` (GPU, ablations, ``propagate="dense"``): steps 2-4 of the
engine's module doc, on rows of integer-valued torch tensors.

``run_group`` evaluates the faults of one (site, layer) as R = F x I rows: the faulted node's rows (from the
engine), then every downstream node on the rows still alive, with early stop (rows proven masked are dropped)
and the incremental conv (``mac_rows``: only the outputs whose receptive field holds a changed input).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .fault import SITES

MASKED, SDC, CRITICAL = 0, 1, 2
_P31, _P32 = float(1 << 31), float(1 << 32)


def wrap32_f(y: torch.Tensor) -> torch.Tensor:
    """Two's-complement 32-bit wrap of float64 integers (exact); a no-op pass when nothing overflows."""
    if y.numel() and (y.max() >= _P31 or y.min() < -_P31):
        y = torch.remainder(y + _P31, _P32) - _P31
    return y


class Rows:
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


def use_incremental(eng, x: torch.Tensor) -> bool:
    """Whether the incremental conv pays (auto: on maps of 16 x 16 and more; dense GEMM wins on 8 x 8)."""
    if eng.sparse_delta is None:           # auto: worth it on large maps only (dense GEMM wins on 8x8)
        return x.dim() == 4 and x.shape[2] * x.shape[3] >= 256
    return eng.sparse_delta


def mac_rows(eng, n, x: torch.Tensor, clean: dict, rows_: Rows, pos=None) -> tuple[torch.Tensor, int]:
    """Conv/linear ``n`` on faulty input rows ``x`` (described by ``rows_``): (output, MACs done).

    Incremental: only the outputs whose receptive field holds a changed input element are recomputed (an
    im2col GEMM over those output positions, or over the changed rows of a linear layer); the others are
    the fault-free accumulators. Exact: the same integer dot products, only fewer of them. Dense when more
    than half of the positions are affected. ``pos``: (R, H, W) bool map of changed input positions (or
    (R,) changed rows) when the caller already has it."""
    src = n.inputs[0]
    rows = x.shape[0]
    per_row = eng.node_macs[n.name]
    if not use_incremental(eng, x):
        return eng.op(n, [x]), rows * per_row
    pr = eng.p[n.name]
    if not eng.spec[n.name].spatial:
        if pos is None or pos.dim() != 1:
            pos = rows_.ne(x, clean[src]).reshape(rows, -1).any(1)
        rc = torch.nonzero(pos).squeeze(1)                          # rows with any changed input
        if rc.numel() > rows // 2:
            return eng.op(n, [x]), rows * per_row
        y = rows_.crows(clean[n.name])
        if rc.numel():
            y[rc] = eng.op(n, [x[rc]]).to(y.dtype)
        return y, int(rc.numel()) * per_row
    if pos is None or pos.dim() != 3:
        pos = rows_.ne(x, clean[src]).any(1)                        # (R, H, W)
    a = n.attrs
    s, p, d, g = a["stride"], a["padding"], a["dilation"], a["groups"]
    w = pr.w
    o_n, cg, kh, kw = w.shape
    ones = torch.ones((1, 1, kh, kw), dtype=w.dtype, device=w.device)
    aff = F.conv2d(pos[:, None].to(w.dtype), ones, None, s, p, d)[:, 0] > 0   # (R, Ho, Wo) may change
    idx = torch.nonzero(aff)                                        # (P, 3): row, oh, ow
    n_pos = idx.shape[0]
    ho, wo = aff.shape[1], aff.shape[2]
    if n_pos > rows * ho * wo // 2:
        return eng.op(n, [x]), rows * per_row
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
    out = out.to(y.dtype) + pr.b.to(y.dtype)[None]
    y[r, :, oh, ow] = wrap32_f(out) if pr.may_wrap else out
    return y, n_pos * per_row // (ho * wo)


def run_group(eng, clean: dict, faults: list, n_inputs: int, st):
    """Dense batched evaluation of faults that share one (site, layer): (outcome, pred) of shape (F, I)."""
    site, layer = faults[0].site, faults[0].layer
    info = SITES[site].describe(eng.gm, eng.gm.by_name[layer])
    nf0, I = len(faults), n_inputs
    R = nf0 * I
    dev = eng.device
    inp = torch.arange(I, device=dev).repeat(nf0)                      # (R,) input of each row
    fidx = torch.arange(nf0, device=dev).repeat_interleave(I)          # (R,) fault of each row
    out_name = eng.nodes[-1].name
    clean_logits = clean[out_name]                                     # (I, classes)
    clean_pred = clean_logits.argmax(1)                                # (I,) first maximal logit
    outcome = torch.zeros((nf0, I), dtype=torch.int8, device=dev)
    pred = clean_pred.unsqueeze(0).repeat(nf0, 1)                      # (F, I)
    st.rows += R
    st.macs_naive += R * eng.total_macs
    with torch.no_grad():
        eng._prefix_ablation(clean, layer, nf0, R, st)
        y = eng._faulted_node(clean, faults, site, layer, info, inp, fidx)
        st.macs_done += eng._last_macs     # input faults; weight/bias: a gather instead of the MACs
        st.node_rows[layer] += R
        rw = Rows(nf0, I, dev)
        # live: faulty tensors still to be consumed; chg: where they MAY differ from fault-free, as (R, H, W)
        # position maps or (R,) row flags (exact where compared, conservative where inherited)
        live = {layer: y}
        if eng.early_stop and eng._known_change is not None and not use_incremental(eng, y):
            chg = {layer: eng._known_change}          # rows changed, known from the fault itself (no pass)
        elif eng.early_stop:
            ne = rw.ne(y, clean[layer])
            chg = {layer: _change_map(ne) if use_incremental(eng, y) else ne.reshape(R, -1).any(1)}
        else:
            chg = {layer: torch.ones(R, dtype=torch.bool, device=dev)}
        remaining = {layer: len(eng.consumers[layer])}
        final = y if layer == out_name else None
        skip, backoff = 0, 1            # adaptive check schedule (see the loop)
        checked = eng.early_stop
        for n in eng.nodes[eng.pos[layer] + 1:]:
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
                if n_alive <= (1 - eng.compact_frac) * rw.n:
                    keep = torch.nonzero(alive).squeeze(1)
                    st.stopped_early += rw.n - n_alive
                    rw.keep(keep)
                    live = {k: v[keep] for k, v in live.items()}
                    chg = {k: v[keep] for k, v in chg.items()}
            in_chg = [chg[i] for i in n.inputs if i in chg]
            sp = eng.spec[n.name]
            if sp.has_weights:
                y, macs = mac_rows(eng, n, live[n.inputs[0]], clean, rw, in_chg[0] if eng.early_stop else None)
            elif sp.sums_inputs:
                a, b = (live.get(i) for i in n.inputs)
                if a is not None and b is not None:
                    y = a + b
                else:                           # one input fault-free: broadcast / gather it
                    y = rw.add(a, clean[n.inputs[1]]) if a is not None else rw.add(b, clean[n.inputs[0]])
                macs = 0
            else:
                ins = [live[i] if i in live else rw.crows(clean[i]) for i in n.inputs]
                y, macs = eng.op(n, ins), 0
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
            if not eng.early_stop:
                c = torch.ones(rw.n, dtype=torch.bool, device=dev)
            elif sp.masking and skip == 0:
                ne = rw.ne(y, clean[n.name])
                c = _change_map(ne) if use_incremental(eng, y) else ne.reshape(rw.n, -1).any(1)
                checked = True
                before = int(_rows_of(in_chg[0]).sum())
                if before - int(_rows_of(c).sum()) < 0.05 * max(1, before):
                    backoff, skip = 2 * backoff, 2 * backoff
                else:
                    backoff = 1
            elif sp.masking:
                skip -= 1
                c = in_chg[0]
                if c.dim() == 3 and sp.windowed:     # pooled positions whose window holds a change
                    a = n.attrs
                    c = F.max_pool2d(c[:, None].float(), a["k"], a["stride"], a["padding"])[:, 0] > 0
            elif sp.multi_input and all(m.dim() == 3 for m in in_chg):
                c = in_chg[0]
                for m in in_chg[1:]:
                    c = c | m
            else:
                c = _rows_of(in_chg[0])
                for m in in_chg[1:]:
                    c = c | _rows_of(m)
            live[n.name] = y
            chg[n.name] = c
            remaining[n.name] = len(eng.consumers[n.name])
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


def _change_map(ne: torch.Tensor):
    """Element-wise change mask -> changed positions (R, H, W) for NCHW tensors, changed rows (R,) otherwise."""
    return ne.any(1) if ne.dim() == 4 else ne.reshape(ne.shape[0], -1).any(1)


def _rows_of(m: torch.Tensor) -> torch.Tensor:
    return m if m.dim() == 1 else m.reshape(m.shape[0], -1).any(1)


__all__ = ["Rows", "mac_rows", "run_group", "use_incremental", "wrap32_f"]

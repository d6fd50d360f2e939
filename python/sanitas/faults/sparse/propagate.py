"""The concurrent propagation of one chunk of faults: every row enters the graph at its faulted node and is
carried to the logits as sparse differences from the fault-free run, in one pass over the graph.

``run_sparse(engine, ...)`` is ``FastGolden``'s CPU path (``propagate="sparse"``): the faulted node's rows are
computed by the engine (``FastGolden._faulted_node``, a gather for weight and bias faults), converted to sparse
rows, merged per node, and propagated by the ``SparseNet`` kernels through the fused graph
(``sanitas.models.passes``): a fused producer gives its requantiser's output, and a residual block's conv is
evaluated at its add with the add's other operand.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from ..fault import SITES
from .net import chw_to_hwc_index, hwc

MASKED, SDC, CRITICAL = 0, 1, 2
ELEMENT_SITES = ("output", "acc")        # sites whose fault changes exactly one element of the node's output


def inject(eng, clean: dict, cnp: dict, faults: list, I: int, st):
    """Sparse rows (over the F x I rows of ``faults``, all on one (site, layer)) of the faulted node's output."""
    site, layer = faults[0].site, faults[0].layer
    node = eng.gm.by_name[layer]
    info = SITES[site].describe(eng.gm, node)
    nf = len(faults)
    R = nf * I
    dev = eng.device
    inp = torch.arange(I, device=dev).repeat(nf)
    fidx = torch.arange(nf, device=dev).repeat_interleave(I)
    eng._prefix_ablation(clean, layer, nf, R, st)
    st.node_rows[layer] += R
    if site in ELEMENT_SITES:
        # one element per row changes: its faulty value straight from the fault-free one (no row copy)
        flat, am, om, xm = eng._masks(faults, info)
        e = flat[fidx]
        old, new = eng._element_values(clean[layer], inp, e, am[fidx], om[fidx], xm[fidx], info)
        ch = (new != old).cpu().numpy()
        hw = chw_to_hwc_index(e.cpu().numpy(), eng._snet.shape[layer])
        ptr = np.zeros(R + 1, np.int64)
        np.cumsum(ch, out=ptr[1:])
        return ptr, hw[ch].astype(np.int64), new.cpu().numpy().astype(np.int64)[ch]
    y = eng._faulted_node(clean, faults, site, layer, info, inp, fidx)
    st.macs_done += eng._last_macs
    return eng._snet.from_dense((layer, site), hwc(y), cnp[layer], inp.cpu().numpy().astype(np.int64),
                                wide=eng.spec[layer].wide)


def _enter(eng, snet, faults, groups, I, cnp, cnpf, clean, st, R, inp_np) -> dict:
    """node -> the sparse rows (over all R rows) that enter there: each group's rows, moved past the fused
    requantiser / residual epilogue they would otherwise skip."""
    enter: dict = defaultdict(list)
    r0 = 0
    for (site, layer), ids in groups.items():
        key = (site, layer)                # distinct per group: the converted rows' buffers
        p, i, v = inject(eng, clean, cnp, [faults[k] for k in ids], I, st)
        n_rows = len(ids) * I
        if layer in snet.fused:        # a fused conv/add: rows enter at its requantiser's output
            act = snet.fused[layer]
            p, i, v = snet.node(eng.gm.by_name[act], [(p, i, v)], inp_np[r0:r0 + n_rows], cnp, cnpf,
                                n_rows, key=("inject", *key))[0]
            layer = act
        res = snet.fusions.at_mid.get(layer)
        if res is not None:            # its add runs inside a conv's epilogue: rows enter at the add's
            an = eng.gm.by_name[res.add]                                   # requantiser's output
            p, i, v = snet.node(an, [(p, i, v) if x == layer else None for x in an.inputs],
                                inp_np[r0:r0 + n_rows], cnp, cnpf, n_rows, key=("inject-add", *key))[0]
            layer = res.out
        gp = np.empty(R + 1, np.int64)
        gp[:r0 + 1] = 0
        gp[r0 + 1:r0 + n_rows + 1] = p[1:]
        gp[r0 + n_rows + 1:] = p[-1]
        enter[layer].append((gp, i, v))
        r0 += n_rows
    return enter


def _consume(live: dict, remaining: dict, names, counts) -> None:
    for i in names:
        if i in live:
            remaining[i] -= counts(i)
            if remaining[i] <= 0:
                del live[i]


def run_sparse(eng, clean: dict, faults: list, groups: dict, I: int, st):
    """Concurrent propagation of every fault of the chunk to the logits, in one pass: (outcome, pred) (F, I)."""
    cnp, cnpf = eng._clean_np(clean)
    snet = eng._snet
    F = len(faults)
    R = F * I
    st.rows += R
    st.macs_naive += R * eng.total_macs
    # rows in group order: group g holds the contiguous rows of its faults (undone at the end)
    perm = np.concatenate([np.asarray(ids, np.int64) for ids in groups.values()])
    inp_np = np.tile(np.arange(I, dtype=np.int64), F)
    with torch.no_grad():
        enter = _enter(eng, snet, faults, groups, I, cnp, cnpf, clean, st, R, inp_np)
    out_name = eng.nodes[-1].name
    pos = eng.pos
    first = min(pos[k] for k in enter)
    last_enter = max(pos[k] for k in enter)
    res_conv, res_add = snet.fusions.residual, snet.fusions.at_add
    live: dict = {}
    remaining: dict = {}
    final = None
    counted = False
    for n in eng.nodes[first:]:
        if not live and pos[n.name] > last_enter:
            break                                      # every row proven masked
        if n.name == out_name:                         # rows with no difference left before the output layer
            alive = np.zeros(R, bool)
            for v in live.values():
                alive |= np.diff(v[0]) > 0
            for v in enter.get(n.name, ()):
                alive |= np.diff(v[0]) > 0
            st.stopped_early += R - int(alive.sum())
            counted = True
        name = n.name
        if n.name in res_conv:
            pass                                       # evaluated at its add, with the other operand
        elif n.name in res_add and any(i in live for i in snet.add_inputs(n.name)):
            r = res_add[n.name]
            conv = eng.gm.by_name[r.conv]
            xin, other = snet.add_inputs(n.name)
            out, macs = snet.conv(conv, live.get(xin), inp_np, cnp, cnpf, R, key=n.name, with_add=True,
                                  xrows=live.get(other))
            st.macs_done += macs
            _consume(live, remaining, (xin, other), lambda i: 1)
            name = r.out
            if out[0][-1]:
                live[name] = out
                remaining[name] = len(eng.consumers[name])
        elif any(i in live for i in n.inputs):
            out, macs = snet.node(n, [live.get(i) for i in n.inputs], inp_np, cnp, cnpf, R)
            st.macs_done += macs
            _consume(live, remaining, set(n.inputs), n.inputs.count)
            name = snet.fused.get(n.name, n.name)      # a fused conv gives its requantiser's output
            if out[0][-1]:                             # some row still differs
                live[name] = out
                remaining[name] = len(eng.consumers[name])
        for j, x in enumerate(enter.get(n.name, ())):    # rows whose fault is here join (disjoint rows)
            live[n.name] = x if n.name not in live else snet.merge(live[n.name], x, ("join", n.name, j))
            remaining[n.name] = len(eng.consumers[n.name])
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


__all__ = ["run_sparse", "inject", "ELEMENT_SITES"]

"""The sanity unit's part of the accelerator's C++ (``hls/include/sanitas/sanity_unit.h``), emitted into
``sanitas_net.cpp`` by ``firmware.render_net``.

``sanity_plans(gm, spec)``: per sanity-guarded conv/linear node its ``SanityPlan`` (geometry, lazy/eager,
layer-wide mode, row width and the trusted image of its memory, read from ``ProtectedModel``'s guards);
``sanity_decl``: the node's ``sanity_layer`` constants and mutable ``sanity_mem``; ``su_buf``: the unit's scratch
size; ``memory_code``: ``reload_node`` / ``reset_memory`` / ``upset_memory`` (every layer's parameter memory,
guarded or not) and the patrol (``protect.patrol.Patrol``); ``conv_geom``: a conv/linear node's geometry as the
kernels take it.
"""
from __future__ import annotations

from typing import NamedTuple


class SanityPlan(NamedTuple):
    """The sanity unit of one conv/linear node (``sanity_unit.h``'s ``sanity_layer``), from its golden guard."""
    G: int
    C: int
    K: int
    M: int
    lazy: bool
    lw_mode: int          # 0: none (eager / depthwise), 1: weighted, 2: hamming (layerwide.LayerCheck.mode)
    row_bits: int
    spatial: bool
    arrays: dict          # the trusted image: protect.base.Memory.pristine of the guard


def sanity_plans(gm, spec="none", pm=None) -> dict:
    """Node index -> ``SanityPlan`` of every sanity-guarded node under ``spec`` (its ``ProtectedModel`` guards)."""
    from ..protect.model import ProtectedModel
    from ..protect.sanity import SanityLayer, SpatialSanity
    pm = pm or ProtectedModel(gm, spec)
    out = {}
    for i, n in enumerate(gm.nodes):
        g = pm.plans[n.name].guard
        if isinstance(g, SpatialSanity):
            out[i] = SanityPlan(1, g.C, g.K, g.M, True, 0, g.bits, True, g.mem.pristine)
        elif isinstance(g, SanityLayer):
            mode = 0 if g.check is None else (1 if g.check.mode == "weighted" else 2)
            out[i] = SanityPlan(g.G, g.C, g.K, g.M, bool(g.lazy), mode, g.bits, False, g.mem.pristine)
    return out


def conv_geom(n, shapes) -> tuple:
    """(cin, h, w, o, kh, kw, stride, pad, dil, groups, ho, wo) of a conv/linear node (linear: 1x1 on (F, 1, 1))."""
    o = int(n.weight.shape[0])
    if n.op == "conv":
        c, h, wd = shapes[n.inputs[0]]
        _, kh, kw = n.weight.shape[1:]
        a = n.attrs
        _, ho, wo = shapes[n.name]
        return (c, h, wd, o, kh, kw, a["stride"], a["padding"], a.get("dilation", 1), a.get("groups", 1), ho, wo)
    return (int(n.weight.shape[1]), 1, 1, o, 1, 1, 1, 0, 1, 1, 1, 1)


def sanity_decl(i: int, n, sp: SanityPlan, shapes) -> str:
    """The sanity_layer constants and the mutable memory (+ its trusted image in weights.h) of node i."""
    geo = ", ".join(str(int(v)) for v in conv_geom(n, shapes))
    mw, mb, mr, ms, mss = (f"{p}{i}" for p in ("mw", "mb", "msr", "msb", "mss"))
    a = sp.arrays
    wx = f"mwx{i}" if sp.lw_mode == 1 else "0"
    bx = f"mbx{i}" if sp.lw_mode == 1 else "0"
    ps = f"mps{i}" if sp.spatial else "0"
    out = [f"// {n.name}: the sanity unit's parameter memory (sanity_unit.h), reset from weights.h\n",
           f"static int8_t {mw}[{a['weight'].size}];\nstatic int32_t {mb}[{a['bias'].size}];\n",
           f"static int32_t {mr}[{a['sanity_w'].size}];\nstatic int32_t {ms}[{a['sanity_b'].size}];\n",
           f"static int64_t {mss}[{a['sanity_sum'].size}];\n"]
    if sp.lw_mode == 1:
        out.append(f"static int32_t {wx}[{a['sanity_wx'].size}];\nstatic int64_t {bx}[{a['sanity_bx'].size}];\n")
    if sp.spatial:
        out.append(f"static int64_t {ps}[8];\n")
    out.append(f"static const sanity_layer L{i} = {{{geo}, {sp.G}, {sp.C}, {sp.K}, {sp.M}, "
               f"{str(sp.lazy).lower()}, {sp.lw_mode}, {sp.row_bits}, {str(sp.spatial).lower()}}};\n")
    pw = f"swx{i}" if sp.lw_mode == 1 else "0"
    pb = f"sbx{i}" if sp.lw_mode == 1 else "0"
    pp = f"sps{i}" if sp.spatial else "0"
    out.append(f"static sanity_mem S{i} = {{{mw}, {mb}, {mr}, {ms}, {mss}, {wx}, {bx}, {ps}, "
               f"{{w{i}, b{i}, ssr{i}, ssb{i}, sss{i}, {pw}, {pb}, {pp}}}}};\n\n")
    return "".join(out)


def su_buf(gm, sps: dict, shapes) -> int:
    """Elements of the sanity unit's scratch buffers: the largest need of the network's guarded layers."""
    need = 1
    for i, sp in sps.items():
        g = conv_geom(gm.nodes[i], shapes)
        p = g[10] * g[11]
        need = max(need, g[9] * sp.K, sp.G * (sp.M + 1) * p, g[3], sp.K, sp.G * sp.M)
    return need


def memory_code(sps: dict, plain: list, sizes: dict, k: int) -> str:
    """reload_node / reset_memory (a layer's / every layer's parameter memory rewritten from its trusted image),
    upset_memory (a persistent fault written into the memory once) and the patrol (patrol.Patrol)."""
    out = [("// Layer i's parameter memory rewritten from its trusted image (weights.h); false: i has none.\n"
            "static bool reload_node(int i) {\n    switch (i) {\n")]
    out += [f"    case {i}: sanity_reload(L{i}, S{i}); return true;\n" for i in sps]
    out += [f"    case {i}: memcpy(mw{i}, w{i}, {sizes[i][0]}); memcpy(mb{i}, b{i}, {4 * sizes[i][1]}); "
            "return true;\n" for i in plain]
    out.append("    default: return false;\n    }\n}\n\nstatic void reset_memory() {\n")
    out += [f"    reload_node({i});\n" for i in sorted(list(sps) + plain)]
    out.append("}\n\n// A persistent upset: the record's memory fault written once (sites of parameter memory only).\n"
               "static void upset_memory(const net_fault &f) {\n    switch (f.layer) {\n")
    for i, sp in sps.items():
        sites = [("FI_WEIGHT", f"mw{i}", sp.arrays["weight"].size, 8),
                 ("FI_BIAS", f"mb{i}", sp.arrays["bias"].size, 32),
                 ("FI_SANITY_W", f"msr{i}", sp.arrays["sanity_w"].size, sp.row_bits),
                 ("FI_SANITY_B", f"msb{i}", sp.arrays["sanity_b"].size, 32),
                 ("FI_SANITY_SUM", f"mss{i}", sp.arrays["sanity_sum"].size, 64)]
        if sp.lw_mode == 1:
            sites += [("FI_SANITY_WX", f"mwx{i}", sp.arrays["sanity_wx"].size, 32),
                      ("FI_SANITY_BX", f"mbx{i}", sp.arrays["sanity_bx"].size, 64)]
        if sp.spatial:
            sites.append(("FI_PARAM_SUM", f"mps{i}", 8, 64))
        out.append(f"    case {i}:\n" + "".join(f"        read_fault({a}, {m}, {site}, {i}, f, {b});\n"
                                                  for site, a, m, b in sites) + "        break;\n")
    for i in plain:
        out.append(f"    case {i}:\n        read_fault(mw{i}, {sizes[i][0]}, FI_WEIGHT, {i}, f, 8);\n"
                   f"        read_fault(mb{i}, {sizes[i][1]}, FI_BIAS, {i}, f, 32);\n        break;\n")
    out.append("    default: break;\n    }\n}\n\n"
               "// The patrol (protect.patrol.Patrol): k lines per image over the guards in node order.\n"
               "static int patrol_ptr = 0;\n")
    lines = " + ".join(f"patrol_lines(L{i})" for i in sps) or "0"
    out.append("static void patrol_run(int start, int count, int *cnt) {\n    int off = 0, lo, hi;\n"
               "    (void)lo, (void)hi, (void)start, (void)count, (void)cnt;\n")
    for i in sps:
        out.append(f"    lo = start > off ? start : off;\n"
                   f"    hi = start + count < off + patrol_lines(L{i}) ? start + count : off + patrol_lines(L{i});\n"
                   f"    if (lo < hi) sanity_patrol(L{i}, S{i}, lo - off, hi - off, cnt);\n"
                   f"    off += patrol_lines(L{i});\n")
    out.append(f"}}\n\nstatic void patrol_step(int *cnt) {{\n    const int total = {lines};\n"
               f"    const int k = {k} < total ? {k} : total;\n    if (k <= 0) return;\n"
               "    const int first = k < total - patrol_ptr ? k : total - patrol_ptr;\n"
               "    patrol_run(patrol_ptr, first, cnt);\n    if (k > first) patrol_run(0, k - first, cnt);\n"
               "    patrol_ptr = (patrol_ptr + k) % total;\n}\n\n")
    return "".join(out)

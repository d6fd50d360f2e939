"""The sanitas accelerator's HLS C++ for one network: a golden model + an ArrayConfig -> one translation unit.

``write_firmware(gm, out_dir, array)`` writes (docs/architecture.md, "The accelerator"):

* ``sanitas_regmap.h``  the register map (``regmap.render_header``: the one table, never a second copy);
* ``weights.h``         every conv/linear layer's int8 weights (O, C/g, kh, kw) and int32 biases as static arrays;
* ``sanitas_net.cpp``   the network: one static int32 buffer per node, one call per node into
                        ``hls/include/sanitas/layers.h`` (conv/linear/depthwise = im2col + ``systolic_gemm`` tiles
                        of the GEMM config rendered here from the ArrayConfig; requant, maxpool, add, concat, gsum,
                        flatten), the synthesizable top ``sanitas_top`` (m_axi int8 images / int32 logits,
                        s_axilite control ap_ctrl_hs, the status counters of ``regmap.STATUS_COUNTERS``, the fi_*
                        fault registers when compiled with ``-DSANITAS_FAULT_PORT``), the C entry point
                        ``sanitas_top_axi(in, out, regs)`` of the shared library (``-DSANITAS_TOP_AXI``) and the
                        network testbench ``main`` (``-DSANITAS_TB``: vectors written from the golden model).

The node list is the golden model's, so the C++ computes the golden integers node for node (bit-exact: tested on
the digits test split and 28x28 / 32x32x3 inputs). Protection comes from ``ProtectedModel``'s plan of the same
spec (``BUILT_SCHEMES``): DMR (``node_plans``: duplicate lanes, verified reads, checkpoint checksums, retries) and
the sanity unit (``sanity_plans``: ``hls/include/sanitas/sanity_unit.h`` with the guard's trusted image in
``weights.h``; escalation reloads the layer, the patrol runs after each image); every conv/linear layer's parameter
memory is a RAM (``reload_node``: the reload port). The total-checksum column of every GEMM tile runs and its
flags are counted in ``net_stats.flagged``.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..config import ArrayConfig, clog2
from ..errors import SanitasError
from ..golden.rounding import int_range
from ..models.ops import spec
from ..models.ops import spec as spec_of
from . import regmap
from .sanity_emit import conv_geom, memory_code, sanity_decl, sanity_plans, su_buf

CPP = "sanitas_net.cpp"
M_TILE = 256     # largest GEMM row tile held on chip (output pixels per systolic_gemm call), rounded to rows


def _lit(v: int, ctype: str) -> str:
    v = int(v)
    if ctype == "int64_t":
        return "(-9223372036854775807LL - 1)" if v == -(1 << 63) else f"{v}LL"
    return "(-2147483647 - 1)" if v == -(1 << 31) else str(v)


def _array_c(name: str, ctype: str, values: np.ndarray, const: bool = True) -> str:
    flat = np.asarray(values).reshape(-1)
    body = ",".join(_lit(v, ctype) for v in flat)
    return f"static {'const ' if const else ''}{ctype} {name}[{max(1, flat.size)}] = {{{body or '0'}}};\n"


def gemm_geometry(gm, array: ArrayConfig) -> dict:
    """max_m (rows of one GEMM call, a multiple of rows), max_k (longest K tile) and the layers' (M, K, N)."""
    shapes = gm.shapes()
    gemms = {}
    for n in gm.layers():
        w = n.weight.shape
        k = int(np.prod(w[1:]))
        m = int(np.prod(shapes[n.name][2:])) if len(shapes[n.name]) == 4 else 1
        gemms[n.name] = (m, k, int(w[0]) // int(n.attrs.get("groups", 1)))
    max_m = min(max(m for m, _, _ in gemms.values()), M_TILE)
    max_m = -(-max_m // array.rows) * array.rows
    max_k = min(max(k for _, k, _ in gemms.values()), array.max_k)
    return {"max_m": max_m, "max_k": max_k, "gemms": gemms}


def _check(gm) -> None:
    for n in gm.layers():
        src = gm.by_name[n.inputs[0]]
        if src.bits > 8:
            raise SanitasError(f"node {n.name}: reads {src.name} of {src.bits} bits; the array takes int8/uint8 "
                               "operands (requantise first)")


class NodePlan(NamedTuple):
    """How the hardware runs one node (from ``ProtectedModel``'s plan of the same spec): a duplicate lane compared
    by checksum (DMR's ``DupGuard``), verified reads of checkpointed inputs, its own checkpoint checksum, retries."""
    dup: bool
    verify: bool
    ckpt: bool
    retries: int


#: scheme components sanitas_top generates
BUILT_SCHEMES = ("dmr", "sanity", "sanity:eager")


def node_plans(gm, spec="none") -> list[NodePlan]:
    """Per node (graph order) its ``NodePlan`` under ``spec`` (a scheme string or per-layer map)."""
    from ..protect.dmr import DupGuard
    from ..protect.model import ProtectedModel
    pm = ProtectedModel(gm, spec)
    out = []
    for n in gm.nodes:
        pl = pm.plans[n.name]
        out.append(NodePlan(isinstance(pl.guard, DupGuard), bool(pl.verify_inputs), bool(pl.rollback),
                            int(pl.retries)))
    return out


def _csum(buf: str, n: int) -> str:
    return f"tensor_checksum({buf}, {n})"


def _two_lane(n, pl: NodePlan, guarded: bool) -> bool:
    """A duplicated elementwise node: its duplicate runs as a second lane of the same pass (layers.h, lane)."""
    return pl.dup and not guarded and n.op not in ("conv", "linear")


def _act_args(gm, n, ins, shapes, size):
    lo, hi = int_range(n.bits, n.signed, n.narrow)
    return [(["in0"], "dst", None, [size[n.name], n.e_out - gm.by_name[n.inputs[0]].e_out, lo, hi])]


def _concat_args(gm, n, ins, shapes, size):
    offs = np.cumsum([0] + [size[s] for s in n.inputs])
    return [([p], f"dst + {off}", str(off), [size[s]]) for s, p, off in zip(n.inputs, ins, offs)]


def _maxpool_args(gm, n, ins, shapes, size):
    a = n.attrs
    return [(["in0", *shapes[n.inputs[0]], a["k"], a["stride"], a["padding"]], "dst", None,
             list(shapes[n.name][1:]))]


def _gsum_args(gm, n, ins, shapes, size):
    c, h, wd = shapes[n.inputs[0]]
    return [(["in0", c, h * wd], "dst", None, [])]


#: elementwise op -> (layers.h kernel, argument builder): the builder gives per call (args before the output,
#: the output of the one-lane kernel, that of the two-lane kernel ``<kernel>2`` (None: none; its lanes a, b
#: follow the other arguments), args after the output); both kernels end with the stats ``st``
ELEMENTWISE = {
    "act": ("requant", _act_args),
    "add": ("add", lambda gm, n, ins, shapes, size: [(["in0", "in1"], "dst", None, [size[n.name]])]),
    "concat": ("copy", _concat_args),
    "maxpool": ("maxpool", _maxpool_args),
    "gsum": ("gsum", _gsum_args),
    "flatten": ("copy", lambda gm, n, ins, shapes, size: [(["in0"], "dst", "0", [size[n.name]])]),
}


def _elementwise_calls(gm, n, ins, shapes, size, two: bool) -> str:
    """The layers.h call(s) of elementwise node n: one lane into dst, or (two) both lanes a, b in one pass."""
    if n.op not in ELEMENTWISE:
        raise SanitasError(f"node {n.name}: op '{n.op}' has no HLS layer")
    kernel, build = ELEMENTWISE[n.op]
    out = []
    for pre, dst, dst2, post in build(gm, n, ins, shapes, size):
        args = (pre + ([dst2] if dst2 is not None else []) + post + ["a", "b"]) if two else pre + [dst] + post
        out.append(f"    {kernel}{'2' if two else ''}({', '.join(str(v) for v in args + ['st'])});\n")
    return "".join(out)


def _lanes_code(gm, n, i, ins, params, shapes, size, n_in) -> str:
    """lanes_i: node i in both DMR lanes in one pass (t_i hooked by FI_OUTPUT, d_i by FI_DMR), each lane's
    checksum accumulated as it writes; returns the two checksums equal, *ws the hooked lane's."""
    sg = str(n.signed).lower()
    L = [(f"// node {i} {n.name} ({n.op}): both DMR lanes\n"
         f"static bool lanes_{i}({params}const net_fault &f, net_stats &st, tensor_sum *ws) {{\n"
         f"    lane a = make_lane(t{i}, f, FI_OUTPUT, {i}, {n.bits}, {sg});\n"
         f"    lane b = make_lane(d{i}, f, FI_DMR, {i}, {n.bits}, {sg});\n")]
    if spec(n.op).is_source:
        L.append(f"input2_{i}:\n    for (int k = 0; k < {n_in}; ++k) {{\n#pragma HLS PIPELINE II = 1\n"
                 f"        lane_put(a, k, cur_img[k]);\n        lane_put(b, k, cur_img[k]);\n    }}\n    (void)st;\n")
    else:
        L.append(_elementwise_calls(gm, n, ins, shapes, size, True))
    L.append("    *ws = a.cs;\n    return checksum_equal(a.cs, b.cs);\n}\n\n")
    return "".join(L)


def _node_code(gm, n, idx, shapes, size, n_in, plans, sps) -> str:
    """compute_i (one evaluation into dst, returns ok; acc/output/input faults only in the hooked lane) and exec_i
    (reads, duplicate lane, retries, escalation, checkpoint checksum: ProtectedModel._exec / _read / _verify)."""
    i, pl = idx[n.name], plans[idx[n.name]]
    ins = [f"in{k}" for k in range(len(n.inputs))]
    params = "".join(f"const word_t *{v}, " for v in ins)
    two = _two_lane(n, pl, i in sps)
    if two:
        return _lanes_code(gm, n, i, ins, params, shapes, size, n_in) + _exec_code(gm, n, idx, size, plans, sps, two)
    L = [(f"// node {i} {n.name} ({n.op})\n"
         f"static bool compute_{i}({params}word_t *dst, const net_fault &f, net_stats &st, int *cnt) {{\n")]
    w = L.append
    if i in sps:
        unit = "spatial_conv" if sps[i].spatial else "sanity_conv"
        w(f"    return {unit}<net_gemm>(in0, L{i}, S{i}, dst, {i}, f, st, cnt);\n}}\n\n")
    elif spec(n.op).is_source:
        w(f"input_{i}:\n    for (int i = 0; i < {n_in}; ++i) dst[i] = cur_img[i];\n")
    elif n.op in ("conv", "linear"):
        g = [str(v) for v in conv_geom(n, shapes)]
        w(f"    conv_gemm<net_gemm>(in0, {', '.join(g[:3])}, mw{i}, mb{i}, {', '.join(g[3:10])}, dst, "
          f"{', '.join(g[10:])}, {i}, f, st);\n")
    else:
        w(_elementwise_calls(gm, n, ins, shapes, size, False))
    if i not in sps:
        w(f"    if (fault_hits(f, FI_OUTPUT, {i})) fault_tensor(dst, {size[n.name]}, f, {n.bits}, "
          f"{str(n.signed).lower()});\n    (void)cnt;\n    return true;\n}}\n\n")
    return "".join(L) + _exec_code(gm, n, idx, size, plans, sps, two)


def _exec_code(gm, n, idx, size, plans, sps, two: bool) -> str:
    """exec_i: reads (verified against checkpoints), the duplicate lane, retries, escalation, own checkpoint."""
    i, pl = idx[n.name], plans[idx[n.name]]
    L = []
    w = L.append
    w(f"static void exec_{i}(const net_fault &f, net_stats &st, int *cnt) {{\n    bool ok = false;\n")
    if two:
        w(f"    tensor_sum ws{i} = {{0, 0}};   // the hooked lane's checksum of t{i}, from the write pass\n")
    for k, src in enumerate(n.inputs):
        w(f"    const word_t *in{k} = t{idx[src]};\n")
    w(f"attempt_{i}:\n    for (int attempt = 0; attempt <= {pl.retries}; ++attempt) {{\n")
    for k, src in enumerate(n.inputs):
        j, p = idx[src], gm.by_name[src]
        w(f"        in{k} = t{j};\n")
        if len(n.inputs) == 1:
            w(f"        if (fault_hits(f, FI_INPUT, {i})) {{\n"
              f"            memcpy(scratch, t{j}, sizeof(word_t) * {size[src]});\n"
              f"            fault_tensor(scratch, {size[src]}, f, {p.bits}, {str(p.signed).lower()});\n"
              f"            in{k} = scratch;\n        }}\n")
        if pl.verify and plans[j].ckpt:
            retry = max(pl.retries, 1)
            w(f"        if (!checksum_equal({_csum(f'in{k}', size[src])}, c{j})) {{   // verified read (DMR)\n"
              f"            cnt[C_DET]++;\n            bool good = false;\n"
              f"        rollback_{i}_{k}:\n            for (int r = 0; r < {retry} && !good; ++r) {{\n"
              f"                cnt[C_RB]++;\n"
              f"                if (r > 0) {{ exec_{j}(f, st, cnt); in{k} = t{j}; }}   // re-execute the producer\n"
              f"                else if (fault_hits(f, FI_INPUT, {i})) {{   // re-read: the read path's fault again\n"
              f"                    memcpy(scratch, t{j}, sizeof(word_t) * {size[src]});\n"
              f"                    fault_tensor(scratch, {size[src]}, f, {p.bits}, {str(p.signed).lower()});\n"
              f"                    in{k} = scratch;\n                }} else in{k} = t{j};\n"
              f"                good = checksum_equal({_csum(f'in{k}', size[src])}, c{j});\n            }}\n"
              f"            if (!good) cnt[C_UNC]++;\n        }}\n")
    args = "".join(f"in{k}, " for k in range(len(n.inputs)))
    if two:   # both lanes in one pass, each lane's checksum accumulated as it writes
        w(f"        ok = lanes_{i}({args}f, st, &ws{i});\n        if (!ok) cnt[C_DET]++;\n")
    else:
        w(f"        ok = compute_{i}({args}t{i}, f, st, cnt);\n")
    if pl.dup and not two:
        w(f"        compute_{i}({args}d{i}, memory_only(f), st, cnt);   // the duplicate lane\n"
          f"        if (fault_hits(f, FI_DMR, {i})) fault_tensor(d{i}, {size[n.name]}, f, {n.bits}, "
          f"{str(n.signed).lower()});\n"
          f"        ok = checksum_equal({_csum(f't{i}', size[n.name])}, {_csum(f'd{i}', size[n.name])});\n"
          f"        if (!ok) cnt[C_DET]++;\n")
    w(f"        if (ok) break;\n        if (attempt < {pl.retries}) cnt[C_RB]++;\n    }}\n")
    if i in sps:
        w(f"    if (!ok) {{   // escalation: reload the layer from its trusted image, compute once more\n"
          f"        sanity_reload(L{i}, S{i});\n        cnt[C_ESC]++;\n"
          f"        ok = compute_{i}({args}t{i}, f, st, cnt);\n    }}\n")
    w("    if (!ok) cnt[C_UNC]++;\n")
    if pl.ckpt:
        w(f"    const tensor_sum cs{i} = {f'ws{i}' if two else _csum(f't{i}', size[n.name])};\n"
          f"    if (fault_hits(f, FI_CHECKPOINT, {i})) fault_tensor(t{i}, {size[n.name]}, f, {n.bits}, "
          f"{str(n.signed).lower()});   // the stored tensor\n"
          f"    c{i}[0] = cs{i}.s0;\n    c{i}[1] = cs{i}.s1;\n"
          f"    if (fault_hits(f, FI_CHECKSUM, {i}) && f.index >= 0 && f.index < 2)\n"
          f"        c{i}[f.index] = (uint64_t)fault_value64((int64_t)c{i}[f.index], f, 64, true);\n")
    w("}\n\n")
    return "".join(L)


def render_net(gm, array: ArrayConfig, spec="none") -> str:
    """The network translation unit (see the module doc)."""
    _check(gm)
    geo = gemm_geometry(gm, array)
    shapes = {k: tuple(v[1:]) for k, v in gm.shapes().items()}
    size = {k: int(np.prod(v)) for k, v in shapes.items()}
    idx = {n.name: i for i, n in enumerate(gm.nodes)}
    n_in, n_out = int(np.prod(gm.input_shape)), int(gm.num_classes)
    scratch = max(size.values())
    L = []
    w = L.append
    w(f"// {CPP} -- generated by sanitas.hls.firmware for network '{gm.spec.get('name', 'net')}'; do not edit.\n")
    w(f"// Array: {array.rows} x {array.cols} PEs + checksum column, max_m {geo['max_m']}, max_k {geo['max_k']}.\n")
    from ..protect.model import ProtectedModel
    pm = ProtectedModel(gm, spec)
    sps = sanity_plans(gm, spec, pm)
    w(f"#define SANITAS_SU_BUF {su_buf(gm, sps, shapes)}\n")
    w("#include <stdint.h>\n#include <string.h>\n\n#include \"sanitas/layers.h\"\n#include \"sanitas/sanity_unit.h\"\n"
      "#include \"sanitas_regmap.h\"\n#include \"weights.h\"\n\nusing namespace sanitas;\n\n")
    w("struct net_gemm {\n"
      f"    static const unsigned rows = {array.rows};\n    static const unsigned cols = {array.cols};\n"
      f"    static const unsigned max_m = {geo['max_m']};\n    static const unsigned max_k = {geo['max_k']};\n"
      f"    static const int data_w = {array.data_width};\n"
      f"    typedef ap_int<{array.data_width + 1}> a_t;   // int8 or uint8 activation\n"
      f"    typedef ap_int<{array.data_width}> w_t;\n"
      f"    typedef ap_int<{array.acc_width}> acc_t;\n"
      f"    typedef ap_int<{array.data_width + clog2(array.cols) + 1}> csum_t;\n"
      f"    typedef ap_int<{array.acc_width}> sacc_t;\n}};\n\n")
    w(f"#define SANITAS_IN_SIZE {n_in}\n#define SANITAS_OUT_SIZE {n_out}\n#define SANITAS_N_NODES {len(gm.nodes)}\n\n")
    for n in gm.nodes:
        w(f"static word_t t{idx[n.name]}[{size[n.name]}];   // {n.name}: {n.op} {shapes[n.name]}\n")
    w(f"static word_t scratch[{scratch}];   // an input read with a fault applied (fault port only)\n")
    w("#ifdef SANITAS_TOP_AXI\n// Every node's buffer (last image of the last run), for the layer-by-layer trace.\n"
      f"static word_t *const node_buf[{len(gm.nodes)}] = {{{', '.join(f't{i}' for i in range(len(gm.nodes)))}}};\n"
      f"static const int node_size[{len(gm.nodes)}] = {{{', '.join(str(size[n.name]) for n in gm.nodes)}}};\n"
      "#endif\n\n")
    plans = node_plans(gm, spec)
    for n in gm.nodes:
        i = idx[n.name]
        if plans[i].dup:
            w(f"static word_t d{i}[{size[n.name]}];   // {n.name}: the duplicate lane (DMR)\n")
        if plans[i].ckpt:
            w(f"static uint64_t c{i}[2];   // {n.name}: checksum of its checkpoint (DMR)\n")
    w(f"static int8_t cur_img[{n_in}];   // the image being computed (the input node re-reads it on rollback)\n")
    w("enum { C_DET = 0, C_RB = 4, C_UNC = 5, C_ESC = 6 };   // counter indices (regmap.STATUS_COUNTERS)\n\n")
    for i, sp in sps.items():
        w(sanity_decl(i, gm.nodes[i], sp, shapes))
    plain = [i for i, n in enumerate(gm.nodes) if spec_of(n.op).has_weights and i not in sps]
    for i in plain:
        n = gm.nodes[i]
        w(f"static int8_t mw{i}[{n.weight.size}];   // {n.name}: the parameter memory (from weights.h)\n"
          f"static int32_t mb{i}[{n.bias.size}];\n")
    w(memory_code(sps, plain, {i: (gm.nodes[i].weight.size, gm.nodes[i].bias.size) for i in plain},
                   pm.patrol.k))
    for n in gm.nodes:
        w(f"static void exec_{idx[n.name]}(const net_fault &f, net_stats &st, int *cnt);\n")
    for n in gm.nodes:
        w(_node_code(gm, n, idx, shapes, size, n_in, plans, sps))
    last = idx[gm.output_node.name]
    w("// One image: int8 input (C, H, W) -> int32 logits; cnt accumulates the counters.\n"
      "static void sanitas_net(const int8_t img[SANITAS_IN_SIZE], int32_t logits[SANITAS_OUT_SIZE], "
      "const net_fault &f, net_stats &st, int *cnt) {\n"
      "load_image:\n    for (int i = 0; i < SANITAS_IN_SIZE; ++i) cur_img[i] = img[i];\n")
    for n in gm.nodes:
        w(f"    exec_{idx[n.name]}(f, st, cnt);\n")
    if plans[last].ckpt:     # the host's read of the logits, verified against their checkpoint checksum
        sz = size[gm.output_node.name]
        w(f"    if (!checksum_equal({_csum(f't{last}', sz)}, c{last})) {{\n        cnt[C_DET]++;\n"
          f"        bool good = false;\n    host_read:\n"
          f"        for (int r = 0; r < {max(plans[last].retries, 1)} && !good; ++r) {{\n"
          f"            cnt[C_RB]++;\n            if (r > 0) exec_{last}(f, st, cnt);   // re-execute\n"
          f"            good = checksum_equal({_csum(f't{last}', sz)}, c{last});\n        }}\n"
          "        if (!good) cnt[C_UNC]++;\n    }\n")
    w(f"output_copy:\n    for (int j = 0; j < SANITAS_OUT_SIZE; ++j) logits[j] = t{last}[j];\n"
      "    patrol_step(cnt);   // between inferences: the next k patrol lines\n}\n\n")
    w(_TOP.replace("@COUNTERS@", ", ".join(f"int *{k}" for k in regmap.STATUS_COUNTERS))
          .replace("@FAULT_ARGS@", ", ".join(f"int {k}" for k, _ in regmap.FAULT_REGISTERS))
          .replace("@PRAGMAS@", "".join(f"#pragma HLS INTERFACE s_axilite port = {k} bundle = control\n"
                                        for k in ("n",) + regmap.STATUS_COUNTERS))
          .replace("@FAULT_PRAGMAS@", "".join(f"#pragma HLS INTERFACE s_axilite port = {k} bundle = control\n"
                                              for k, _ in regmap.FAULT_REGISTERS))
          .replace("@WRITE_COUNTERS@", "".join(f"    *{k} = cnt[{j}];\n"
                                                 for j, k in enumerate(regmap.STATUS_COUNTERS)))
          .replace("@AXI_COUNTERS@", ", ".join(f"&cnt[{j}]" for j in range(len(regmap.STATUS_COUNTERS))))
          .replace("@AXI_FAULT_ARGS@", ", ".join(f"(int)regs[SANITAS_REG_{k.upper()}_W]"
                                                 for k, _ in regmap.FAULT_REGISTERS))
          .replace("@DEPTH_IN@", str(n_in)).replace("@DEPTH_OUT@", str(n_out))
          .replace("@FAULT_ZEROS@", ", ".join("0" for _ in regmap.FAULT_REGISTERS)))
    return "".join(L)


def render_weights(gm, spec="none") -> str:
    """weights.h: every conv/linear node's int8 weights and int32 biases, and for sanity-guarded nodes the trusted
    image of the sanity memory (rows ssr, biases ssb, seals sss, weighted layer-wide row swx / sbx, parameter
    seals sps): the sanity rows are extra weight columns of the layer's GEMM."""
    out = [("// weights.h -- generated by sanitas.hls.firmware: int8 weights (O, C/g, kh, kw) / (O, F) and int32\n"
            "// biases of every conv/linear node (index = node index), the sanity memory of guarded nodes; do not "
            "edit.\n#include <stdint.h>\n")]
    sps = sanity_plans(gm, spec)
    for i, n in enumerate(gm.nodes):
        if spec_of(n.op).has_weights:
            out.append(f"// {n.name}: weight {tuple(n.weight.shape)}, bias ({n.bias.shape[0]},)\n")
            out.append(_array_c(f"w{i}", "int8_t", n.weight))
            out.append(_array_c(f"b{i}", "int32_t", n.bias))
        if i in sps:
            a = sps[i].arrays
            out.append(f"// {n.name}: sanity rows {tuple(a['sanity_w'].shape)}, biases, seals\n")
            out.append(_array_c(f"ssr{i}", "int32_t", a["sanity_w"]))
            out.append(_array_c(f"ssb{i}", "int32_t", a["sanity_b"]))
            out.append(_array_c(f"sss{i}", "int64_t", a["sanity_sum"]))
            if sps[i].lw_mode == 1:
                out.append(_array_c(f"swx{i}", "int32_t", a["sanity_wx"]))
                out.append(_array_c(f"sbx{i}", "int64_t", a["sanity_bx"]))
            if sps[i].spatial:
                out.append(_array_c(f"sps{i}", "int64_t", a["param_sum"]))
    return "".join(out)


def write_firmware(gm, out_dir, array: ArrayConfig | None = None, spec="none") -> Path:
    """Write the network's C++ (module doc) into ``out_dir``; returns the path of ``sanitas_net.cpp``."""
    array = array or ArrayConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sanitas_regmap.h").write_text(regmap.render_header())
    (out / "weights.h").write_text(render_weights(gm, spec))
    (out / CPP).write_text(render_net(gm, array, spec))
    return out / CPP


_TOP = r"""// ---------------------------------------------------------------------------------------------- sanitas_top
// The synthesizable top: n images (int8, C-order) in, n x classes int32 logits out, s_axilite control
// (ap_ctrl_hs) and the status counters (regmap.STATUS_COUNTERS order); the fi_* fault registers with
// -DSANITAS_FAULT_PORT. Vitis HLS lays the registers out as sanitas_regmap.h says (sanitas.hls.regmap).
static net_stats last_stats;   // engine statistics of the last call (csim / shared library only)
static bool memory_loaded = false;   // the sanity-guarded layers' memory holds their trusted image

void sanitas_top(const int8_t *in, int32_t *out, int n, @COUNTERS@, int reload_layer, int reload
#ifdef SANITAS_FAULT_PORT
                 , @FAULT_ARGS@
#endif
) {
#pragma HLS INTERFACE m_axi port = in offset = slave bundle = gmem depth = @DEPTH_IN@
#pragma HLS INTERFACE m_axi port = out offset = slave bundle = gmem depth = @DEPTH_OUT@
#pragma HLS INTERFACE s_axilite port = in bundle = control
#pragma HLS INTERFACE s_axilite port = out bundle = control
@PRAGMAS@#pragma HLS INTERFACE s_axilite port = reload_layer bundle = control
#pragma HLS INTERFACE s_axilite port = reload bundle = control
#ifdef SANITAS_FAULT_PORT
@FAULT_PRAGMAS@#endif
#pragma HLS INTERFACE s_axilite port = return bundle = control
    net_fault f;
    int fi_mode = 0;
#ifdef SANITAS_FAULT_PORT
    fi_mode = fi_enable;
    if (fi_enable & 1) {
        f.site = fi_site;
        f.layer = fi_layer;
        f.index = fi_index;
        f.and_m = ((uint64_t)(uint32_t)fi_and_hi << 32) | (uint32_t)fi_and;
        f.or_m = ((uint64_t)(uint32_t)fi_or_hi << 32) | (uint32_t)fi_or;
        f.xor_m = ((uint64_t)(uint32_t)fi_xor_hi << 32) | (uint32_t)fi_xor;
    }
#endif
    net_stats st;
    int cnt[SANITAS_N_COUNTERS];
reset_counters:
    for (int i = 0; i < SANITAS_N_COUNTERS; ++i) cnt[i] = 0;
    if (!memory_loaded) reset_memory();   // configuration: the parameter memory holds the trusted image
    memory_loaded = true;
    if ((reload & 1) && reload_node(reload_layer)) cnt[C_ESC]++;   // the per-layer reload port
    if (f.site != FI_NONE && (fi_mode & 2)) {   // a persistent upset: into the memory once, not at every read
        upset_memory(f);
        f.site = FI_NONE;
    }
    int8_t img[SANITAS_IN_SIZE];
    int32_t logits[SANITAS_OUT_SIZE];
    patrol_ptr = 0;
image:
    for (int b = 0; b < n; ++b) {
        // with the fault port's (replayed) record each image starts from the trusted image, as the golden
        // check runs them; otherwise the memory keeps what it holds (repairs, upsets) from image to image
        if (f.site != FI_NONE) reset_memory();
    read_image:
        for (int i = 0; i < SANITAS_IN_SIZE; ++i) img[i] = in[(long)b * SANITAS_IN_SIZE + i];
        sanitas_net(img, logits, f, st, cnt);
    write_logits:
        for (int j = 0; j < SANITAS_OUT_SIZE; ++j) out[(long)b * SANITAS_OUT_SIZE + j] = logits[j];
    }
    if (f.site != FI_NONE) reset_memory();   // a replayed record lasts this run only
@WRITE_COUNTERS@    last_stats = st;
}

#ifdef SANITAS_TOP_AXI
// Built with -fvisibility=hidden: only these C entry points leave the library, so several nets' libraries load
// side by side in one process without interposing each other's (same-named) kernels.
#define SANITAS_EXPORT extern "C" __attribute__((visibility("default")))
// The shared library's entry point (board helper's fake device): regs is the s_axilite register file as uint32
// words indexed by byte offset / 4 (sanitas_regmap.h); reads n (and fi_*), writes the counters and their ap_vld.
SANITAS_EXPORT int sanitas_top_axi(const int8_t *in, int32_t *out, uint32_t *regs) {
    int cnt[SANITAS_N_COUNTERS];
    const int n = (int)regs[SANITAS_REG_N_W];
    if (n < 0) return 1;
    sanitas_top(in, out, n, @AXI_COUNTERS@, (int)regs[SANITAS_REG_RELOAD_LAYER_W], (int)regs[SANITAS_REG_RELOAD_W]
#ifdef SANITAS_FAULT_PORT
                , @AXI_FAULT_ARGS@
#endif
    );
    for (int i = 0; i < SANITAS_N_COUNTERS; ++i) {
        regs[SANITAS_COUNTER_W(i)] = (uint32_t)cnt[i];
        regs[SANITAS_COUNTER_W(i) + 1] = 1u;   // ap_vld
    }
    return 0;
}

// Copies node i's output of the last image into dst (if not null); returns its size, -1 for a bad index.
SANITAS_EXPORT int sanitas_node_output(int i, int32_t *dst) {
    if (i < 0 || i >= SANITAS_N_NODES) return -1;
    if (dst) memcpy(dst, node_buf[i], sizeof(word_t) * node_size[i]);
    return node_size[i];
}

// Engine statistics of the last sanitas_top_axi call: cycles (estimate), data MACs, flagged GEMM rows.
SANITAS_EXPORT void sanitas_top_stats(long long *out3) {
    out3[0] = last_stats.cycles;
    out3[1] = last_stats.macs;
    out3[2] = last_stats.flagged;
}
#endif

#ifdef SANITAS_TB
#include <stdio.h>
#include <stdlib.h>
// Network testbench: csim DIR N -- DIR/input.bin (int8 N x in), DIR/expected.bin (int32 N x classes, golden),
// DIR/counters.bin (optional: the golden fault-free counters, default 0); prints "sanitas_net: K/N bit-exact,
// counters 0|golden|MISMATCH, cycles C" and exits non-zero on any mismatch.
int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s DIR N\n", argv[0]); return 2; }
    const int n = atoi(argv[2]);
    char path[4096];
    static int8_t x[(long)SANITAS_IN_SIZE * 4096];
    static int32_t want[(long)SANITAS_OUT_SIZE * 4096], got[(long)SANITAS_OUT_SIZE * 4096];
    if (n <= 0 || n > 4096) { fprintf(stderr, "N must be in 1..4096\n"); return 2; }
    snprintf(path, sizeof path, "%s/input.bin", argv[1]);
    FILE *fi = fopen(path, "rb");
    snprintf(path, sizeof path, "%s/expected.bin", argv[1]);
    FILE *fe = fopen(path, "rb");
    if (!fi || !fe) { fprintf(stderr, "cannot open the vectors in %s\n", argv[1]); return 2; }
    if (fread(x, 1, (size_t)n * SANITAS_IN_SIZE, fi) != (size_t)n * SANITAS_IN_SIZE ||
        fread(want, 4, (size_t)n * SANITAS_OUT_SIZE, fe) != (size_t)n * SANITAS_OUT_SIZE) {
        fprintf(stderr, "short vector files in %s\n", argv[1]);
        return 2;
    }
    fclose(fi);
    fclose(fe);
    int cnt[SANITAS_N_COUNTERS], want_cnt[SANITAS_N_COUNTERS] = {0};
    snprintf(path, sizeof path, "%s/counters.bin", argv[1]);   // the golden fault-free counters (optional: 0)
    FILE *fc = fopen(path, "rb");
    if (fc) {
        if (fread(want_cnt, 4, SANITAS_N_COUNTERS, fc) != SANITAS_N_COUNTERS) {
            fprintf(stderr, "short counters.bin in %s\n", argv[1]);
            return 2;
        }
        fclose(fc);
    }
    sanitas_top(x, got, n, @AXI_COUNTERS@, 0, 0
#ifdef SANITAS_FAULT_PORT
                , @FAULT_ZEROS@
#endif
    );
    int exact = 0, differ = 0, nonzero = 0;
    for (int b = 0; b < n; ++b) exact += memcmp(got + (long)b * SANITAS_OUT_SIZE, want + (long)b * SANITAS_OUT_SIZE,
                                                4 * SANITAS_OUT_SIZE) == 0;
    for (int i = 0; i < SANITAS_N_COUNTERS; ++i) differ += cnt[i] != want_cnt[i], nonzero += cnt[i] != 0;
    printf("sanitas_net: %d/%d bit-exact, counters %s, cycles %lld, flagged %lld\n", exact, n,
           differ ? "MISMATCH" : (nonzero ? "golden" : "0"), last_stats.cycles / n, last_stats.flagged);
    return (exact == n && differ == 0 && last_stats.flagged == 0) ? 0 : 1;
}
#endif
"""

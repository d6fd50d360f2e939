"""Host side of the RTL ``engine`` (templates/engine.v.j2): a network as engine commands, their streams, and a
byte-level model of what the engine returns.

The engine runs one GEMM layer per command (tiles of ROWS x COLS outputs, K in chunks of KMAX, bias, output
stage). What it does not do is done here, in numpy, as a DMA engine and a host driver would:

* `network_steps`: a `sanitas.golden.GoldenModel` in graph order as engine commands and host nodes. One
  `EngineCmd` per conv/linear (its ``src`` / ``dst``: the stored tensors it reads and writes): B = the weights as
  (K, N) (`gemm_weights`: a grouped / depthwise conv is block diagonal), the bias (int32, with the uint8
  zero-point fold 128 * sum_k B[k, j] when the layer's input is unsigned), and, when its only consumer is an
  ``act``, that requantiser as the output stage (shift, saturation bounds) with the act's only 2x2 stride-2
  maxpool as the engine's pool; otherwise raw int32 outputs. A `HostStep` for every other node (add, concat,
  padded / strided max pools, the global sum, requantisers of host tensors), which `host_node` computes with
  the golden kernel itself; ``flatten`` is a view. `layer_commands`: the commands alone (a chain network);
* `im2col`: the conv input as A (M, K) -- rows in pooling-window order (each 2x2 window's four output positions
  are consecutive rows, so the engine pools over consecutive tile rows), K = (C, kh, kw) in the weights' order,
  taps ``dilation`` apart;
* `pack_stream` / `unpack_output`: the tile order (M tiles outer, N tiles inner), the zero padding of M, N and K,
  the s_axis byte stream and the m_axis bytes back to the layer's output tensor;
* `engine_model`: the engine's arithmetic on the same stream (int32 wrap, requantise, pool), so the stream format
  is checked without a simulator (tests/rtl/test_rtl_engine.py) and the RTL bench compares bytes with it;
* `run_network`: a whole network through a ``run_layer(cmd, a) -> y`` function (the RTL bench, or the model) and
  `host_node`;
* the stored tensors (the host is the memory the engine reads and writes): `stored_words` (the words an EXEC wrote,
  the tensor its checkpoint covers), `checkpoint` (their (S0, F), `sanitas.rtl.dmr.fletcher`), `read_stream` (what
  the engine's READ op takes: the words and the checkpoint beat), `split_frame` (an m_axis frame -> words, the
  checkpoint beat, the EXEC's status bit).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ArrayConfig
from ..errors import SanitasError
from ..golden.model import wrap32
from ..golden.rounding import int_range, shift_round_half_even
from .engine_regs import ENGINE_KMAX

#: K per chunk of the engine (its KMAX parameter default): the stream is KMAX bytes wide.
KMAX = ENGINE_KMAX


@dataclass(frozen=True)
class EngineCmd:
    """One engine command: a conv/linear layer with its output stage."""
    name: str            # the conv/linear node
    b: np.ndarray        # (K, N) int8 weights
    bias: np.ndarray     # (N,) int32 bias as the engine adds it (zero-point fold included)
    shift: int           # requantisation shift e_out - e_in
    lo: int              # saturation bounds
    hi: int
    in_unsigned: bool    # A words are uint8
    pool: int            # pooling window side (1: none; 2: 2x2 stride 2)
    raw: bool            # no output stage: int32 outputs
    conv: dict | None    # conv attrs (k, stride, padding, dilation) or None for linear
    out_channels: int
    src: str = ""        # the stored tensor (golden node) the command reads
    dst: str = ""        # the stored tensor it writes: the conv/linear (raw), its act, or the act's fused maxpool

    @property
    def pool_log2(self) -> int:
        return 2 * (self.pool - 1).bit_length() if self.pool > 1 else 0

    def mode(self) -> int:
        """The MODE register (sanitas.rtl.engine_regs)."""
        return int(self.in_unsigned) | (int(self.raw) << 1) | (self.pool_log2 << 2)


@dataclass(frozen=True)
class HostStep:
    """A node the host computes (`host_node`) between engine commands: add, concat, a pooling the output stage
    does not do, a global sum, a requantiser not fused into a command."""
    node: object         # the sanitas.golden GNode
    src: tuple           # the stored tensors it reads (flatten resolved)
    dst: str             # its own name

    @property
    def name(self) -> str:
        return self.node.name


def gemm_weights(n) -> np.ndarray:
    """The (K, N) int64 B matrix of conv/linear node ``n``: K = (C, kh, kw) in im2col order; a grouped (depthwise)
    conv is block diagonal, group g's filters reading only its C/g input channels."""
    w = np.asarray(n.weight, np.int64)
    o = w.shape[0]
    if n.op != "conv" or n.attrs["groups"] == 1:
        return w.reshape(o, -1).T.copy()
    g = n.attrs["groups"]
    cg, og, kk = w.shape[1], o // g, w.shape[2] * w.shape[3]
    b = np.zeros((g * cg * kk, o), np.int64)
    for i in range(g):
        b[i * cg * kk:(i + 1) * cg * kk, i * og:(i + 1) * og] = w[i * og:(i + 1) * og].reshape(og, -1).T
    return b


def _fused_pool(gm, conv, act, after, shapes) -> bool:
    """Whether ``act``'s only consumer is a maxpool the output stage does: 2x2 stride 2, no padding, even output."""
    if conv.op != "conv" or len(after) != 1 or after[0].op != "maxpool":
        return False
    a = after[0].attrs
    h, w = shapes[conv.name][2:]
    return (a["k"], a["stride"] or a["k"], a["padding"]) == (2, 2, 0) and h % 2 == 0 and w % 2 == 0


def network_steps(gm) -> list:
    """The golden model ``gm`` in graph order as engine commands (`EngineCmd`: each conv/linear, its lone ``act``
    consumer fused as the output stage, that act's lone 2x2 stride-2 maxpool as the engine's pool; raw int32
    outputs otherwise) and `HostStep` nodes (everything else but the input and ``flatten``, which is a view: the
    linear after it reads the tensor before it). SanitasError when a conv/linear reads a tensor wider than 8 bits."""
    nodes = gm.nodes
    consumers = {n.name: [m for m in nodes if n.name in m.inputs] for n in nodes}
    shapes = gm.shapes()
    alias, fused, steps = {}, set(), []

    def res(name):
        return alias.get(name, name)
    for n in nodes:
        if n.op == "input" or n.name in fused:
            continue
        if n.op == "flatten":
            alias[n.name] = res(n.inputs[0])
            continue
        if n.op not in ("conv", "linear"):
            steps.append(HostStep(n, tuple(res(i) for i in n.inputs), n.name))
            continue
        src = gm.by_name[res(n.inputs[0])]
        if src.bits > 8:
            raise SanitasError(f"engine: {n.op} {n.name!r} reads {src.name!r}, a {src.bits}-bit tensor (the engine "
                               f"reads int8/uint8)")
        b = gemm_weights(n)
        bias = np.asarray(n.bias, np.int64)
        unsigned = not src.signed
        if unsigned:
            bias = bias + 128 * b.sum(axis=0)
        nxt = consumers[n.name]
        act = nxt[0] if len(nxt) == 1 and nxt[0].op == "act" else None
        pool, raw, shift, lo, hi, dst = 1, act is None, 0, 0, 0, n.name
        if act is not None:
            shift = act.e_out - n.e_out
            lo, hi = int_range(act.bits, act.signed, act.narrow)
            fused.add(act.name)
            dst = act.name
            after = consumers[act.name]
            if _fused_pool(gm, n, act, after, shapes):
                pool, dst = 2, after[0].name
                fused.add(dst)
        conv = dict(k=n.attrs["k"], stride=n.attrs["stride"], padding=n.attrs["padding"],
                    dilation=n.attrs.get("dilation", 1)) if n.op == "conv" else None
        steps.append(EngineCmd(n.name, b, wrap32(bias), shift, lo, hi, unsigned, pool, raw, conv, b.shape[1],
                               src.name, dst))
    return steps


def output_tensor(gm) -> str:
    """The stored tensor that holds ``gm``'s logits (its output node, flatten resolved)."""
    out = gm.output_node
    while out.op == "flatten":
        out = gm.by_name[out.inputs[0]]
    return out.name


def layer_commands(gm, skip_other: bool = False) -> list[EngineCmd]:
    """The engine commands of `network_steps`: SanitasError when the network has host nodes (a chain of
    conv/linear + act + 2x2 pool layers only); with ``skip_other`` the host nodes are left out (e.g. the residual
    adds and the global pool of a ResNet for cycle counts: a conv whose output feeds an add then runs raw)."""
    steps = network_steps(gm)
    host = [s for s in steps if isinstance(s, HostStep)]
    if host and not skip_other:
        n = host[0].node
        raise SanitasError(f"engine: op {n.op!r} of node {n.name!r} is not an engine layer")
    return [s for s in steps if isinstance(s, EngineCmd)]


def host_node(gm, node, ins: list) -> np.ndarray:
    """What the host computes for ``node`` on its input tensors: the golden kernel itself (exact integers)."""
    from ..golden.model import GOLDEN, GoldenRun, conv2d_int
    return GOLDEN[node.op](GoldenRun(gm, None, conv2d_int), node, [np.asarray(a, np.int64) for a in ins])


def im2col(x: np.ndarray, k: int, stride: int, padding: int, pool: int,
           dilation: int = 1) -> tuple[np.ndarray, tuple]:
    """x (N, C, H, W) -> (A (M, C*k*k), (N, Ho, Wo)); rows ordered (n, oh // pool, ow // pool, oh % pool, ow % pool);
    ``dilation``: the taps of a window are ``dilation`` pixels apart."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    e = dilation * (k - 1) + 1
    ho, wo = (h + 2 * padding - e) // stride + 1, (w + 2 * padding - e) // stride + 1
    if ho % pool or wo % pool:
        raise SanitasError(f"engine: conv output {ho}x{wo} does not split into {pool}x{pool} pooling windows")
    win = np.lib.stride_tricks.sliding_window_view(xp, (e, e), axis=(2, 3))
    win = win[:, :, ::stride, ::stride, ::dilation, ::dilation]
    a = win.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho // pool, pool, wo // pool, pool, c * k * k)
    return a.transpose(0, 1, 3, 2, 4, 5).reshape(-1, c * k * k), (n, ho, wo)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def tiles(cmd: EngineCmd, m: int, array: ArrayConfig, kmax: int = KMAX) -> tuple[int, int, int]:
    """(M tiles, N tiles, K chunks) of ``cmd`` on an M-row input."""
    return _ceil(m, array.rows), _ceil(cmd.b.shape[1], array.cols), max(1, _ceil(cmd.b.shape[0], kmax))


def check_array(cmd: EngineCmd, array: ArrayConfig, kmax: int = KMAX) -> None:
    """SanitasError unless the engine of ``array`` can run ``cmd`` (pool windows within a tile, whole out beats)."""
    rows, cols = array.rows, array.cols
    if rows % (1 << cmd.pool_log2) or (rows * cols * 4) % kmax:
        raise SanitasError(f"engine: a {rows}x{cols} array cannot run {cmd.name} (rows a multiple of the pool "
                           f"window {1 << cmd.pool_log2}, rows*cols*4 a multiple of {kmax})")


def check_network(gm, array: ArrayConfig, kmax: int = KMAX) -> list:
    """``network_steps(gm)``, after `check_array` of each of its engine commands (SanitasError on the first the
    engine of ``array`` cannot run)."""
    steps = network_steps(gm)
    for cmd in steps:
        if isinstance(cmd, EngineCmd):
            check_array(cmd, array, kmax)
    return steps


def pack_stream(cmd: EngineCmd, a: np.ndarray, array: ArrayConfig, kmax: int = KMAX) -> bytes:
    """The s_axis bytes of ``cmd`` on A (M, K): per tile (M tiles outer) bias beats, then per K chunk ROWS A rows
    and COLS B columns of KMAX bytes."""
    check_array(cmd, array, kmax)
    rows, cols = array.rows, array.cols
    mt, nt, kc = tiles(cmd, a.shape[0], array, kmax)
    k, n = cmd.b.shape
    ap = np.zeros((mt * rows, kc * kmax), np.int64)
    ap[: a.shape[0], :k] = a
    bp = np.zeros((kc * kmax, nt * cols), np.int64)
    bp[:k, :n] = cmd.b
    biasp = np.zeros(nt * cols, np.int64)
    biasp[:n] = cmd.bias
    bpb = kmax // 4
    nbb = _ceil(cols, bpb)
    a8 = (ap & 0xFF).astype(np.uint8).reshape(mt, rows, kc, kmax).transpose(0, 2, 1, 3)   # (mt, kc, rows, kmax)
    b8 = (bp & 0xFF).astype(np.uint8).reshape(kc, kmax, nt, cols).transpose(2, 0, 3, 1)   # (nt, kc, cols, kmax)
    bias_b = np.zeros((nt, nbb * bpb), np.int64)
    bias_b[:, :cols] = biasp.reshape(nt, cols)
    bias_b = (bias_b & 0xFFFFFFFF).astype("<u4").view(np.uint8).reshape(nt, -1)
    parts = []
    for i in range(mt):
        for j in range(nt):
            parts.append(bias_b[j].tobytes())
            chunks = np.concatenate([a8[i].reshape(kc, -1), b8[j].reshape(kc, -1)], axis=1)
            parts.append(chunks.tobytes())
    return b"".join(parts)


def tile_gemm(cmd: EngineCmd, a: np.ndarray, array: ArrayConfig, g: int, kmax: int = KMAX) -> tuple:
    """(A (ROWS, kmax), B (kmax, COLS)) int64 operands of tile GEMM ``g`` of ``cmd`` on A (GEMMS order: tile g // K
    chunks, chunk g % K chunks; M tiles outer, N tiles inner) as the array takes them: zero padded, uint8 A words
    as a - 128. What a fault in that GEMM's pass acts on (`sanitas.rtl.sanity.protected_gemm`)."""
    rows, cols = array.rows, array.cols
    mt, nt, kc = tiles(cmd, a.shape[0], array, kmax)
    if not 0 <= g < mt * nt * kc:
        raise SanitasError(f"engine: tile GEMM {g} of {cmd.name}, which has {mt * nt * kc}")
    t, c = divmod(g, kc)
    i, j = divmod(t, nt)
    at = np.zeros((rows, kmax), np.int64)
    blk = np.asarray(a, np.int64)[i * rows:(i + 1) * rows, c * kmax:(c + 1) * kmax]
    at[: blk.shape[0], : blk.shape[1]] = blk
    if cmd.in_unsigned:
        at = at - 128
    bt = np.zeros((kmax, cols), np.int64)
    blk = cmd.b[c * kmax:(c + 1) * kmax, j * cols:(j + 1) * cols]
    bt[: blk.shape[0], : blk.shape[1]] = blk
    return at, bt


def tile_out_bytes(cmd: EngineCmd, array: ArrayConfig, kmax: int = KMAX) -> tuple[int, int]:
    """(meaningful bytes, stream bytes) of one output tile."""
    ne = array.rows * array.cols
    nb = ne * 4 if cmd.raw else ne >> cmd.pool_log2
    return nb, _ceil(nb, kmax) * kmax


def unpack_output(data: bytes, cmd: EngineCmd, m: int, array: ArrayConfig, kmax: int = KMAX) -> np.ndarray:
    """m_axis bytes -> the layer's output matrix: (M / pool**2, N) int8/uint8 values or (M, N) int32 (raw)."""
    rows, cols = array.rows, array.cols
    mt, nt, _ = tiles(cmd, m, array, kmax)
    nb, sb = tile_out_bytes(cmd, array, kmax)
    if len(data) != mt * nt * sb:
        raise SanitasError(f"engine: {len(data)} output bytes, expected {mt * nt * sb}")
    t = np.frombuffer(data, np.uint8).reshape(mt, nt, sb)[:, :, :nb]
    if cmd.raw:
        v = t.copy().view("<i4").astype(np.int64).reshape(mt, nt, rows, cols)
    else:
        v = t.reshape(mt, nt, rows >> cmd.pool_log2, cols).astype(np.int64)
        if cmd.lo < 0:
            v = np.where(v > 127, v - 256, v)
    r = v.shape[2]
    out = v.transpose(0, 2, 1, 3).reshape(mt * r, nt * cols)
    return out[: m >> cmd.pool_log2, : cmd.b.shape[1]]


def engine_model(stream: bytes, cmd: EngineCmd, m: int, array: ArrayConfig, kmax: int = KMAX,
                 prot: bool = False) -> bytes:
    """What the engine sends back for ``stream`` (its arithmetic, fault-free): parse the tiles, GEMM with int32
    wrap, bias, output stage (requantise, saturate, pool over consecutive rows) or raw words; ``prot`` (PROT = 1):
    the checkpoint beat of the written words (status: passed) after the tiles."""
    rows, cols = array.rows, array.cols
    mt, nt, kc = tiles(cmd, m, array, kmax)
    nbb = _ceil(cols, kmax // 4)
    buf = np.frombuffer(stream, np.uint8)
    per_tile = nbb * kmax + kc * (rows + cols) * kmax
    if len(buf) != mt * nt * per_tile:
        raise SanitasError(f"engine: stream of {len(buf)} bytes, expected {mt * nt * per_tile}")
    nb, sb = tile_out_bytes(cmd, array, kmax)
    out = []
    for t in buf.reshape(mt * nt, per_tile):
        bias = t[: nbb * kmax].copy().view("<i4")[:cols].astype(np.int64)
        ch = t[nbb * kmax:].reshape(kc, rows + cols, kmax).astype(np.int64)
        a = ch[:, :rows, :] ^ (0x80 if cmd.in_unsigned else 0)
        a = np.where(a > 127, a - 256, a)
        b = np.where(ch[:, rows:, :] > 127, ch[:, rows:, :] - 256, ch[:, rows:, :])
        acc = wrap32(np.einsum("crk,cjk->rj", a, b) + bias)
        if cmd.raw:
            words = (acc & 0xFFFFFFFF).astype("<u4").view(np.uint8).ravel()
        else:
            y = np.clip(shift_round_half_even(acc, cmd.shift), cmd.lo, cmd.hi)
            p = 1 << cmd.pool_log2
            y = y.reshape(rows // p, p, cols).max(axis=1)
            words = (y & 0xFF).astype(np.uint8).ravel()
        tile_b = np.zeros(sb, np.uint8)
        tile_b[:nb] = words
        out.append(tile_b.tobytes())
    data = b"".join(out)
    if prot:
        data += checkpoint_beat(checkpoint(stored_words(data, cmd, m, array, kmax), cmd.lo < 0, cmd.raw), True, kmax)
    return data


# ---- stored tensors: the words an EXEC writes, their checkpoint, the READ stream ----
_M64 = (1 << 64) - 1


def stored_words(data: bytes, cmd: EngineCmd, m: int, array: ArrayConfig, kmax: int = KMAX) -> bytes:
    """The words a command wrote (each tile's meaningful bytes, stream order) from its m_axis tile bytes."""
    mt, nt, _ = tiles(cmd, m, array, kmax)
    nb, sb = tile_out_bytes(cmd, array, kmax)
    return np.frombuffer(data[: mt * nt * sb], np.uint8).reshape(mt * nt, sb)[:, :nb].tobytes()


def stored_tensor(words: bytes, cmd: EngineCmd, m: int, geom: tuple, array: ArrayConfig,
                  kmax: int = KMAX) -> np.ndarray:
    """The tensor the next layer reads from the words ``cmd`` stored (`stored_words`; ``geom`` of `layer_input`):
    what the host's im2col / DMA reads back from memory."""
    mt, nt, _ = tiles(cmd, m, array, kmax)
    nb, sb = tile_out_bytes(cmd, array, kmax)
    t = np.zeros((mt * nt, sb), np.uint8)
    t[:, :nb] = np.frombuffer(words, np.uint8).reshape(mt * nt, nb)
    return layer_output(cmd, unpack_output(t.tobytes(), cmd, m, array, kmax), geom)


def stored_offsets(cmd: EngineCmd, m: int, geom: tuple, array: ArrayConfig, kmax: int = KMAX) -> np.ndarray:
    """For every element of the tensor the next layer reads (`layer_output` shape), its byte offset in the words
    ``cmd`` stores (`stored_words`): where a fault on that element sits in memory. Raw (int32) outputs: the offset
    of the word's low byte."""
    mt, nt, _ = tiles(cmd, m, array, kmax)
    nb, _ = tile_out_bytes(cmd, array, kmax)
    rows, cols = array.rows, array.cols
    ids = np.arange(mt * nt * nb, dtype=np.int64).reshape(mt, nt, nb)
    if cmd.raw:
        v = ids[:, :, ::4].reshape(mt, nt, rows, cols)
    else:
        v = ids.reshape(mt, nt, rows >> cmd.pool_log2, cols)
    out = v.transpose(0, 2, 1, 3).reshape(mt * v.shape[2], nt * cols)[: m >> cmd.pool_log2, : cmd.b.shape[1]]
    return layer_output(cmd, out, geom)


def word_values(words: bytes, signed: bool, raw: bool = False) -> np.ndarray:
    """Stored words -> their values (int64): int32 words (raw), int8 (signed) or uint8 bytes."""
    if raw:
        return np.frombuffer(words, "<i4").astype(np.int64)
    v = np.frombuffer(words, np.uint8).astype(np.int64)
    return np.where(v > 127, v - 256, v) if signed else v


def checkpoint(words: bytes, signed: bool, raw: bool = False) -> tuple[int, int]:
    """(S0, F) of stored words as unsigned 64-bit ints: S0 = sum x_i, F = sum (n - i) x_i mod 2**64 (the engine's
    dmr_unit Fletcher form, `sanitas.rtl.dmr.fletcher`)."""
    x = word_values(words, signed, raw)
    n = len(x)
    with np.errstate(over="ignore"):
        s0 = int(np.sum(x, dtype=np.int64))
        f = int(np.sum((n - np.arange(n, dtype=np.int64)) * x, dtype=np.int64))
    return s0 & _M64, f & _M64


def checkpoint_beat(ck: tuple[int, int], ok: bool = True, kmax: int = KMAX) -> bytes:
    """One stream beat: bytes 0..7 S0, 8..15 F (little endian), 16..19 status (bit 0: ok), zeros."""
    b = (ck[0] & _M64).to_bytes(8, "little") + (ck[1] & _M64).to_bytes(8, "little") + int(ok).to_bytes(4, "little")
    return b + bytes(kmax - len(b))


def read_stream(words: bytes, ck: tuple[int, int], kmax: int = KMAX) -> bytes:
    """The s_axis bytes of a READ: the words (IN_WORDS = len(words)) in beats of kmax, the last one zero padded,
    then the checkpoint beat."""
    pad = -len(words) % kmax
    return bytes(words) + bytes(pad) + checkpoint_beat(ck, True, kmax)[:16] + bytes(kmax - 16)


def split_frame(frame: bytes, kmax: int = KMAX) -> tuple[bytes, tuple[int, int], bool]:
    """An EXEC's m_axis frame (PROT = 1) -> (tile bytes, its checkpoint (S0, F), status bit 0: passed)."""
    if len(frame) < kmax or len(frame) % kmax:
        raise SanitasError(f"engine: a frame of {len(frame)} bytes is not whole beats of {kmax} with a checkpoint")
    cb = frame[-kmax:]
    return frame[:-kmax], (int.from_bytes(cb[:8], "little"), int.from_bytes(cb[8:16], "little")), bool(cb[16] & 1)


def layer_input(cmd: EngineCmd, x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """The A matrix of ``cmd`` for its input tensor ``x`` and the output geometry."""
    if cmd.conv is None:
        return x.reshape(x.shape[0], -1), (x.shape[0],)
    c = cmd.conv
    return im2col(x, c["k"], c["stride"], c["padding"], cmd.pool, c.get("dilation", 1))


def layer_output(cmd: EngineCmd, y: np.ndarray, geom: tuple) -> np.ndarray:
    """The engine's output matrix -> the tensor the next layer reads (N, O, Hp, Wp) or (N, O)."""
    if cmd.conv is None:
        return y
    n, ho, wo = geom
    p = cmd.pool
    return y.reshape(n, ho // p, wo // p, cmd.out_channels).transpose(0, 3, 1, 2)


def run_network(gm, xq: np.ndarray, run_layer) -> np.ndarray:
    """Run ``gm`` on int8 images ``xq`` (N, C, H, W) step by step (`network_steps`): each engine command through
    ``run_layer(cmd, a) -> y`` (the output matrix of `unpack_output`), each host node with `host_node`; returns the
    logits (int32 (N, classes)). SanitasError when a tensor an engine command reads leaves its 8-bit range."""
    env = {gm.input_node.name: np.asarray(xq, np.int64)}
    for st in network_steps(gm):
        if isinstance(st, HostStep):
            env[st.dst] = host_node(gm, st.node, [env[s] for s in st.src])
            continue
        x = env[st.src]
        lo, hi = (0, 255) if st.in_unsigned else (-128, 127)
        if x.size and (x.min() < lo or x.max() > hi):
            raise SanitasError(f"engine: {st.name} reads {st.src} outside [{lo}, {hi}]")
        a, geom = layer_input(st, x)
        env[st.dst] = layer_output(st, run_layer(st, a), geom)
    return env[output_tensor(gm)]


def model_layer(array: ArrayConfig, kmax: int = KMAX):
    """A ``run_layer`` for `run_network` that packs the stream and runs `engine_model` (no simulator)."""
    def run(cmd: EngineCmd, a: np.ndarray) -> np.ndarray:
        return unpack_output(engine_model(pack_stream(cmd, a, array, kmax), cmd, a.shape[0], array, kmax), cmd,
                             a.shape[0], array, kmax)
    return run

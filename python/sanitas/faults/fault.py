"""Fault records: a fault is data (docs/architecture.md, "The integer contract").

A ``Fault`` is a frozen record ``{site, layer, index, bit, kind, value?, cycle?}`` with a stable ``id`` (a hash of
its fields), JSON round trip, validation against a ``GoldenModel`` and reproducible sampling / exhaustive
enumeration. The same record replays on every level (golden integer model, torch/Brevitas model, csim, RTL).

Sites (an open registry: ``register_site`` lets later code add e.g. the protection's "sanity" / "checkpoint"
state) and what ``index`` addresses:

* ``weight``  int8 weight memory of a conv/linear layer; ``index`` into (O, C/g, kh, kw) or (O, F); bits 0..7
* ``bias``    int32 bias of a conv/linear layer; ``index`` = (o,); bits 0..31
* ``input``   the value a single-input layer reads (its input buffer); ``index`` into ONE image's tensor
              (C, H, W) or (F,), applied to every image of the batch; width/sign = the producing node's
* ``output``  a node's output (activations int8/uint8 after ``act``, int32 for conv/linear); per-image index
* ``acc``     the int32 accumulator of a conv/linear layer (incl. bias, after the 32-bit wrap); per-image index

Hardware sites of the systolic array (``level="array"``; replayed on one GEMM C = A @ B, A (M, K), B (K, N), by
`sanitas.golden.gemm.gemm_replay`, the HLS kernel's ``gemm_fault`` and the RTL ``fi_*`` ports). ``index`` is in
GEMM coordinates; the PE that holds GEMM row m is PE row ``m % rows`` (m's row tile), GEMM column ``j`` is PE
column j, and the checksum PE sits at array column ``cols`` (``j == N`` selects it):

* ``pe_acc``  accumulator of output C[m, j]; ``index`` = (m, j); acc_width bits.  Golden: the ``acc`` site of that
              output element (conv: (j, m // W_out, m % W_out), linear: (j,)) -- exact for ``cycle=None`` where
              the bias is the accumulator's initial value; a fault at an earlier cycle has data-dependent effect
              (later products carry through the flipped bit) and maps to a ``random`` acc fault of the replayed
              value (`golden_equivalent`).
* ``chk_acc`` checksum accumulator S[m] of the total-checksum column; ``index`` = (m,); acc_width bits.  No golden
              equivalent: it is protection state, never an output; a fault raises the row alarm of row m only.
* ``pe_a``    A operand register of PE (m % rows, j), j in 0..N (N: the checksum PE); data_width bits.  In cycle t it
              holds A[m, t - i - j]; the faulty value is used by that PE and passed right to every PE after it
              (columns j..N), so for j == 0 the checksum column sees it too and the row check cannot detect it
              (input DMR's job).  Golden: the ``input`` site only for a linear layer and j == 0 (im2col is the
              identity); for a conv the register holds one im2col copy of an input pixel: no golden equivalent.
* ``pe_b``    B operand register of PE (m % rows, j), j in 0..N (N: the checksum-weight register, chk_width bits;
              else data_width bits).  In cycle t it holds B[t - i - j, j] and passes it down to the rows below it in
              the same row tile.  Golden: the ``weight`` site (j, t - j) of a linear layer for m == 0 of a one-tile
              GEMM (one image); otherwise no golden equivalent (one tile's rows only).
* later: activation buffer words and controller state (the RTL issue registers them here).

``cycle`` has one meaning at every level: the *wavefront cycle* t >= 0 of m's row tile, in which PE (i, j) runs the
MAC of reduction step kk = t - i - j (A is skewed one cycle per PE row, B one per PE column).  An accumulator fault
acts after the MAC of cycle t (it sees the sum of the products kk' <= t - i - j, then the later ones are added); an
operand fault acts on the value the register holds in cycle t, before the MAC.  ``cycle=None`` on an accumulator
site means at read-out (after the last MAC); operand sites need a cycle.  The RTL adapter turns t into the clock
edge of the bench's beat schedule (`sanitas.rtl.faults.fault_to_fi_ports`), the HLS adapter into ``gemm_fault``
(`sanitas.hls.csim.fault_to_gemm_fault`); the golden and torch network levels ignore ``cycle``.

Kinds act on the ``bits``-wide two's-complement (signed) or plain binary (unsigned) representation:

* ``bitflip`` transient single-event upset: bit ``bit`` inverted
* ``multibit`` several bits inverted: ``bit`` is the MASK (e.g. 0b101 flips bits 0 and 2)
* ``stuck0`` / ``stuck1`` permanent stuck-at on bit ``bit``
* ``random``  the element is replaced by ``value`` (drawn when the fault is sampled, so the record is exact)

Every kind is one (AND, OR, XOR) triple on the unsigned representation ``u``: ``u' = ((u & A) | O) ^ X``
(``fault_masks``); ``apply_masks`` evaluates it vectorised on numpy or torch int64 arrays, which is how the
golden hook, the batched campaign engine and the Brevitas executor all apply the same record.
At the array sites a ``stuck0`` / ``stuck1`` with a cycle forces the bit in that one cycle (the RTL holds
``fi_en`` for one edge); ``multibit`` and ``random`` replay at golden and HLS level only (the RTL port has one bit).
"""
from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..errors import SanitasError
from ..models.ops import spec

KINDS = ("bitflip", "multibit", "stuck0", "stuck1", "random")


@dataclass(frozen=True)
class Fault:
    """One fault: ``site`` on node ``layer``, element ``index``, bit ``bit`` (a mask for multibit), ``kind``."""
    site: str
    layer: str
    index: tuple
    bit: int = 0
    kind: str = "bitflip"
    value: int | None = None     # replacement integer for kind "random"
    cycle: int | None = None     # clock cycle for cycle-level (RTL) replays; ignored by golden/torch

    def __post_init__(self):
        object.__setattr__(self, "index", tuple(int(i) for i in self.index))
        object.__setattr__(self, "bit", int(self.bit))
        if self.value is not None:
            object.__setattr__(self, "value", int(self.value))
        if self.cycle is not None:
            object.__setattr__(self, "cycle", int(self.cycle))

    def to_dict(self) -> dict:
        return {"site": self.site, "layer": self.layer, "index": list(self.index), "bit": self.bit,
                "kind": self.kind, "value": self.value, "cycle": self.cycle}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal faults give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> Fault:
        try:
            return cls(site=d["site"], layer=d["layer"], index=tuple(d["index"]), bit=d.get("bit", 0),
                       kind=d.get("kind", "bitflip"), value=d.get("value"), cycle=d.get("cycle"))
        except (KeyError, TypeError, ValueError) as e:
            raise SanitasError(f"malformed fault record {d!r} ({type(e).__name__}: {e})") from None

    @classmethod
    def from_json(cls, s: str) -> Fault:
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise SanitasError(f"fault record is not JSON: {e}") from None
        return cls.from_dict(d)

    @cached_property
    def id(self) -> str:
        """Stable 16-hex-digit id: blake2b-64 of the canonical JSON (same fields, same id, every run)."""
        return hashlib.blake2b(self.to_json().encode(), digest_size=8).hexdigest()

    def __str__(self) -> str:
        idx = ",".join(map(str, self.index))
        b = f"mask=0x{self.bit:x}" if self.kind == "multibit" else f"bit={self.bit}"
        v = f" value={self.value}" if self.value is not None else ""
        return f"{self.kind}@{self.site}:{self.layer}[{idx}] {b}{v}"


# ------------------------------------------------------------------------------------------------ sites
@dataclass(frozen=True)
class SiteInfo:
    """What a (site, layer) addresses: element shape (per image when ``batched``), integer width, signedness."""
    shape: tuple
    bits: int
    signed: bool
    batched: bool

    @property
    def type_name(self) -> str:
        return f"{'int' if self.signed else 'uint'}{self.bits}"

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True)
class Site:
    """A fault site: ``layers(gm)`` lists the nodes that have it, ``describe(gm, node)`` its ``SiteInfo``.

    ``hook`` is the ``GoldenModel.run_int`` hook site it is applied at (None: executed by its owner, e.g. the
    protection's own state)."""
    name: str
    doc: str
    layers: Callable
    describe: Callable
    hook: str | None = None
    level: str = "golden"          # golden: a network-level site | array: a register of the systolic array
    golden: str | None = None      # array sites: the golden-level site it corrupts (None: no golden equivalent)
    mapping: str = ""              # array sites: how the index maps onto ``golden``, or why there is none


SITES: dict[str, Site] = {}


def register_site(site: Site) -> Site:
    """Add a site to the open registry (later code adds e.g. "sanity", "checkpoint")."""
    SITES[site.name] = site
    return site


_SHAPES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def node_shapes(gm) -> dict:
    """Per-node output shapes (batch 1) of a golden model, cached per model object."""
    s = _SHAPES.get(gm)
    if s is None:
        s = gm.shapes()
        _SHAPES[gm] = s
    return s


def _mac_layers(gm):
    return [n.name for n in gm.nodes if spec(n.op).has_weights]


register_site(Site("weight", "int8 weight memory of a conv/linear layer", _mac_layers,
                   lambda gm, n: SiteInfo(tuple(n.weight.shape), 8, True, False), "weight"))
register_site(Site("bias", "int32 bias of a conv/linear layer", _mac_layers,
                   lambda gm, n: SiteInfo(tuple(n.bias.shape), 32, True, False), "bias"))
register_site(Site("acc", "int32 accumulator of a conv/linear layer (after the 32-bit wrap)", _mac_layers,
                   lambda gm, n: SiteInfo(tuple(node_shapes(gm)[n.name][1:]), 32, True, True), "acc"))
register_site(Site("output", "output of a node (int8/uint8 activations, int32 for conv/linear)",
                   lambda gm: [n.name for n in gm.nodes],
                   lambda gm, n: SiteInfo(tuple(node_shapes(gm)[n.name][1:]), n.bits, n.signed, True), "output"))


def _input_info(gm, n):
    src = gm.by_name[n.inputs[0]]
    return SiteInfo(tuple(node_shapes(gm)[src.name][1:]), src.bits, src.signed, True)


register_site(Site("input", "the value a single-input layer reads (its input buffer)",
                   lambda gm: [n.name for n in gm.nodes if len(n.inputs) == 1], _input_info, "input"))


# ---- hardware sites of the systolic array (index in GEMM coordinates of the layer's per-image im2col GEMM) ----
def _gemm_mn(gm, n) -> tuple[int, int]:
    """(M, N) of the per-image GEMM of conv/linear node ``n``: M = H_out * W_out (1 for linear), N = C_out."""
    shape = node_shapes(gm)[n.name][1:]
    return (int(np.prod(shape[1:])) if len(shape) > 1 else 1), int(shape[0])


def _array_site(name, doc, golden, mapping, shape_of, bits):
    return register_site(Site(name, doc, _mac_layers, lambda gm, n: SiteInfo(shape_of(*_gemm_mn(gm, n)), bits,
                                                                             True, True),
                              hook=None, level="array", golden=golden, mapping=mapping))


#: Accumulator and operand-register sites of the array; widths at network level are the integer contract's
#: (int32 accumulators, int8 operands); a GEMM replay takes them from the ArrayConfig.
ARRAY_ACC_SITES = ("pe_acc", "chk_acc")
ARRAY_OPERAND_SITES = ("pe_a", "pe_b")
_array_site("pe_acc", "accumulator of PE (m % rows, j): output C[m, j]", "acc",
            "(m, j) -> acc (j, m // W_out, m % W_out) (linear: (j,)); exact at read-out (cycle=None) with the bias "
            "preloaded, a mid-GEMM fault is an acc fault of its replayed (random) value",
            lambda m, n: (m, n), 32)
_array_site("chk_acc", "checksum accumulator S[m] of the total-checksum PE column", None,
            "none: protection state, never an output (a fault raises row m's alarm only)",
            lambda m, n: (m,), 32)
#: Sanity-unit registers of the array (RTL level): the Hamming partial checksums of `sanitas.protect.code`.
ARRAY_SANITY_SITES = ("part_acc",)
_array_site("part_acc", "partial checksum P[m, p] of Hamming partial p (eager: its PE; lazy: its register)", None,
            "none: protection state, never an output (the golden of the RTL datapath is sanitas.rtl.sanity)",
            lambda m, n: (m, int(n).bit_length()), 32)   # NP = floor(log2 N) + 1 (protect.code.n_partials)
_array_site("pe_a", "A operand register of PE (m % rows, j); j == N: the checksum PE", "input",
            "linear layer, j == 0: input element t - m % rows; otherwise none (one im2col copy, columns >= j only)",
            lambda m, n: (m, n + 1), 8)
_array_site("pe_b", "B operand register of PE (m % rows, j); j == N: the checksum-weight register", "weight",
            "linear layer, m == 0, one-tile GEMM: weight (j, t - j) for that image; otherwise none (one tile's rows)",
            lambda m, n: (m, n + 1), 8)


def campaign_sites() -> list[str]:
    """Sites the golden campaign engines execute (those with a ``GoldenModel.run_int`` hook)."""
    return [name for name, s in SITES.items() if s.hook is not None]


def golden_equivalent(fault: Fault, gm, value: int | None = None) -> Fault | None:
    """The golden-level ``Fault`` that an array-site fault of layer ``fault.layer`` equals, or None where none does.

    ``pe_acc`` at read-out -> ``acc`` of the same output element, same bit and kind; ``pe_acc`` at a cycle needs the
    replayed faulty accumulator ``value`` (`sanitas.golden.gemm.gemm_replay`) and becomes a ``random`` acc fault.
    ``pe_a`` of a linear layer at PE column 0 -> ``input`` element kk = cycle - m; ``pe_b`` of a linear layer at
    m == 0 -> ``weight`` (j, cycle - j).  ``chk_acc`` and every other case: None (see the module doc).
    Both sides assume the bias is the accumulator's initial value.
    """
    site = SITES.get(fault.site)
    if site is None or site.level != "array":
        raise SanitasError(f"'{fault.site}' is not an array site (choose from "
                           f"{', '.join(n for n, s in SITES.items() if s.level == 'array')})")
    info = validate(fault, gm)
    node = gm.by_name[fault.layer]
    linear = len(node_shapes(gm)[node.name]) == 2
    if fault.site == "pe_acc":
        m, j = fault.index
        shape = node_shapes(gm)[node.name][1:]
        idx = (j,) if linear else (j, m // shape[2], m % shape[2])
        if fault.cycle is None:
            return Fault("acc", fault.layer, idx, fault.bit, fault.kind, fault.value)
        return None if value is None else Fault("acc", fault.layer, idx, 0, "random", value=value)
    if fault.cycle is None or not linear:
        return None
    m, j = fault.index
    n_out = info.shape[1] - 1
    if fault.site == "pe_a" and j == 0:
        kk = fault.cycle - m
        if 0 <= kk < node.weight.shape[1]:
            return Fault("input", fault.layer, (kk,), fault.bit, fault.kind, fault.value)
    if fault.site == "pe_b" and m == 0 and j < n_out:
        kk = fault.cycle - j
        if 0 <= kk < node.weight.shape[1]:
            return Fault("weight", fault.layer, (j, kk), fault.bit, fault.kind, fault.value)
    return None


def site_info(gm, site: str, layer: str) -> SiteInfo:
    """``SiteInfo`` of (site, layer), with one-line errors for unknown sites/layers."""
    if site not in SITES:
        raise SanitasError(f"unknown site '{site}' (choose from {', '.join(SITES)})")
    if layer not in gm.by_name:
        raise SanitasError(f"layer '{layer}' does not exist")
    s = SITES[site]
    if layer not in s.layers(gm):
        raise SanitasError(f"layer '{layer}' ({gm.by_name[layer].op}) has no '{site}' site")
    return s.describe(gm, gm.by_name[layer])


def validate(fault: Fault, gm) -> SiteInfo:
    """Check ``fault`` against golden model ``gm``; raise a one-line ``SanitasError`` if it cannot be applied."""
    if fault.kind not in KINDS:
        raise SanitasError(f"unknown fault kind '{fault.kind}' (choose from {', '.join(KINDS)})")
    info = site_info(gm, fault.site, fault.layer)
    if len(fault.index) != len(info.shape) or any(not 0 <= i < d for i, d in zip(fault.index, info.shape, strict=True)):
        raise SanitasError(f"index {fault.index} out of range for {fault.layer} {fault.site} of shape {info.shape}")
    if fault.kind == "multibit":
        if not 0 < fault.bit < (1 << info.bits):
            raise SanitasError(f"bit mask {fault.bit:#x} out of range for {info.type_name} {fault.site}")
    elif fault.kind == "random":
        lo, hi = _type_range(info.bits, info.signed)
        if fault.value is None or not lo <= fault.value <= hi:
            raise SanitasError(f"random fault needs a value in [{lo}, {hi}] for {info.type_name} {fault.site}")
    elif not 0 <= fault.bit < info.bits:
        raise SanitasError(f"bit {fault.bit} out of range for {info.type_name} {fault.site}")
    return info


def _type_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


# ------------------------------------------------------------------------------------------------ bit semantics
def fault_masks(kind: str, bit: int, value: int | None, bits: int) -> tuple[int, int, int]:
    """(AND, OR, XOR) masks on the unsigned ``bits``-wide representation that implement one fault."""
    full = (1 << bits) - 1
    if kind == "bitflip":
        return full, 0, 1 << bit
    if kind == "multibit":
        return full, 0, bit & full
    if kind == "stuck0":
        return full & ~(1 << bit), 0, 0
    if kind == "stuck1":
        return full, 1 << bit, 0
    if kind == "random":
        return 0, int(value) & full, 0
    raise SanitasError(f"unknown fault kind '{kind}' (choose from {', '.join(KINDS)})")


def apply_masks(v, and_m, or_m, xor_m, bits: int, signed: bool):
    """Apply (AND, OR, XOR) masks to integers ``v`` (numpy or torch int64, any shape; masks broadcast).

    ``v`` is reduced to its ``bits``-wide two's-complement pattern, modified, and read back as signed or unsigned.
    """
    full = (1 << bits) - 1
    u = ((v & full) & and_m | or_m) ^ xor_m
    if signed:
        u = u - ((u >> (bits - 1)) & 1) * (1 << bits)
    return u


def apply_fault_value(v, fault: Fault, info: SiteInfo):
    """Faulty value(s) of element(s) ``v`` (int64) under ``fault`` at a site described by ``info``."""
    a, o, x = fault_masks(fault.kind, fault.bit, fault.value, info.bits)
    return apply_masks(v, a, o, x, info.bits, info.signed)


# ------------------------------------------------------------------------------------------------ sampling
def _resolve(gm, sites: Sequence[str], layers: Sequence[str] | None):
    """[(site, layer, SiteInfo)] in a deterministic order (sites as given, layers in graph order)."""
    out = []
    for s in sites:
        if s not in SITES:
            raise SanitasError(f"unknown site '{s}' (choose from {', '.join(SITES)})")
        avail = SITES[s].layers(gm)
        if layers is not None:
            for lay in layers:
                if lay not in gm.by_name:
                    raise SanitasError(f"layer '{lay}' does not exist")
            chosen = [lay for lay in avail if lay in set(layers)]
        else:
            chosen = [lay for lay in avail if _default_layer(gm, s, lay)]
        out += [(s, lay, SITES[s].describe(gm, gm.by_name[lay])) for lay in chosen]
    if not out:
        raise SanitasError(f"no layer has site(s) {', '.join(sites)}"
                           + (f" among {', '.join(layers)}" if layers else ""))
    return out


def _default_layer(gm, site: str, layer: str) -> bool:
    """Without an explicit layer list, "output" means the stored activations (input/act/add nodes): the
    conv/linear outputs are the "acc" site, and pooling/flatten/concat outputs are copies of act outputs."""
    if site == "output":
        s = spec(gm.by_name[layer].op)
        return s.is_source or s.requant
    return True


def _bit_slots(kind: str, info: SiteInfo) -> int:
    return 1 if kind == "random" else info.bits


def population(gm, sites=("weight",), kinds=("bitflip",), layers=None) -> int:
    """Number of distinct faults (element x bit x kind) over the chosen sites/layers: the exhaustive count."""
    return sum(info.numel * _bit_slots(k, info) for _, _, info in _resolve(gm, sites, layers) for k in kinds)


def _fault_at(site, layer, info, kind, flat, slot, rng, mbu):
    idx = tuple(int(i) for i in np.unravel_index(flat, info.shape)) if info.shape else ()
    if kind == "random":
        lo, hi = _type_range(info.bits, info.signed)
        return Fault(site, layer, idx, 0, kind, value=int(rng.integers(lo, hi + 1)))
    if kind == "multibit":   # `mbu` adjacent bits starting at `slot` (wrapping), the usual multi-bit upset
        mask = 0
        for j in range(mbu):
            mask |= 1 << ((slot + j) % info.bits)
        return Fault(site, layer, idx, mask, kind)
    return Fault(site, layer, idx, slot, kind)


def sample_faults(gm, n: int, sites=("weight",), kinds=("bitflip",), seed: int = 0, layers=None,
                  mbu: int = 2) -> list[Fault]:
    """``n`` distinct faults drawn uniformly (without replacement) from the (site, layer, element, bit, kind)
    population; the list depends only on (model structure, arguments, seed). ``mbu``: bits of a multibit upset."""
    if n < 0:
        raise SanitasError("number of faults must be >= 0")
    for k in kinds:
        if k not in KINDS:
            raise SanitasError(f"unknown fault kind '{k}' (choose from {', '.join(KINDS)})")
    groups = [(s, lay, info, k) for s, lay, info in _resolve(gm, sites, layers) for k in kinds]
    sizes = np.array([info.numel * _bit_slots(k, info) for _, _, info, k in groups], dtype=np.int64)
    total = int(sizes.sum())
    rng = np.random.default_rng(seed)
    n = min(n, total)
    picks = np.sort(rng.choice(total, size=n, replace=False)) if n < total else np.arange(total)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    out = []
    for p in picks:
        g = int(np.searchsorted(starts, p, side="right") - 1)
        s, lay, info, k = groups[g]
        off = int(p - starts[g])
        slots = _bit_slots(k, info)
        out.append(_fault_at(s, lay, info, k, off // slots, off % slots, rng, mbu))
    order = rng.permutation(len(out))          # random order, so a partial campaign is an unbiased sample
    return [out[i] for i in order]


def enumerate_faults(gm, site: str, layers=None, kinds=("bitflip",), mbu: int = 2) -> Iterator[Fault]:
    """Every fault of ``site`` (all elements, all bits, each kind) in graph order: exhaustive campaigns."""
    rng = np.random.default_rng(0)   # only "random" kinds draw (their value); fixed so enumeration is stable
    for s, lay, info in _resolve(gm, [site], layers):
        for k in kinds:
            for flat in range(info.numel):
                for slot in range(_bit_slots(k, info)):
                    yield _fault_at(s, lay, info, k, flat, slot, rng, mbu)


__all__ = ["Fault", "KINDS", "SITES", "Site", "SiteInfo", "register_site", "site_info", "validate",
           "ARRAY_ACC_SITES", "ARRAY_OPERAND_SITES", "ARRAY_SANITY_SITES", "campaign_sites", "golden_equivalent",
           "fault_masks", "apply_masks", "apply_fault_value", "sample_faults", "enumerate_faults", "population",
           "node_shapes"]

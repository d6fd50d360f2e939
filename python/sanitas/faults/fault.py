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

Kinds act on the ``bits``-wide two's-complement (signed) or plain binary (unsigned) representation:

* ``bitflip`` transient single-event upset: bit ``bit`` inverted
* ``multibit`` several bits inverted: ``bit`` is the MASK (e.g. 0b101 flips bits 0 and 2)
* ``stuck0`` / ``stuck1`` permanent stuck-at on bit ``bit``
* ``random``  the element is replaced by ``value`` (drawn when the fault is sampled, so the record is exact)

Every kind is one (AND, OR, XOR) triple on the unsigned representation ``u``: ``u' = ((u & A) | O) ^ X``
(``fault_masks``); ``apply_masks`` evaluates it vectorised on numpy or torch int64 arrays, which is how the
golden hook, the batched campaign engine and the Brevitas executor all apply the same record.
``cycle`` is kept for cycle-level replays (RTL); the golden and torch levels ignore it.
"""
from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator, Sequence

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
    def from_dict(cls, d: dict) -> "Fault":
        try:
            return cls(site=d["site"], layer=d["layer"], index=tuple(d["index"]), bit=d.get("bit", 0),
                       kind=d.get("kind", "bitflip"), value=d.get("value"), cycle=d.get("cycle"))
        except (KeyError, TypeError, ValueError) as e:
            raise SanitasError(f"malformed fault record {d!r} ({type(e).__name__}: {e})") from None

    @classmethod
    def from_json(cls, s: str) -> "Fault":
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


SITES: dict[str, Site] = {}


def register_site(site: Site) -> Site:
    """Add a site to the open registry (later code adds e.g. "sanity", "checkpoint")."""
    SITES[site.name] = site
    return site


_SHAPES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


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
    if len(fault.index) != len(info.shape) or any(not 0 <= i < d for i, d in zip(fault.index, info.shape)):
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
            for l in layers:
                if l not in gm.by_name:
                    raise SanitasError(f"layer '{l}' does not exist")
            chosen = [l for l in avail if l in set(layers)]
        else:
            chosen = [l for l in avail if _default_layer(gm, s, l)]
        out += [(s, l, SITES[s].describe(gm, gm.by_name[l])) for l in chosen]
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
    groups = [(s, l, info, k) for s, l, info in _resolve(gm, sites, layers) for k in kinds]
    sizes = np.array([info.numel * _bit_slots(k, info) for _, _, info, k in groups], dtype=np.int64)
    total = int(sizes.sum())
    rng = np.random.default_rng(seed)
    n = min(n, total)
    picks = np.sort(rng.choice(total, size=n, replace=False)) if n < total else np.arange(total)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    out = []
    for p in picks:
        g = int(np.searchsorted(starts, p, side="right") - 1)
        s, l, info, k = groups[g]
        off = int(p - starts[g])
        slots = _bit_slots(k, info)
        out.append(_fault_at(s, l, info, k, off // slots, off % slots, rng, mbu))
    order = rng.permutation(len(out))          # random order, so a partial campaign is an unbiased sample
    return [out[i] for i in order]


def enumerate_faults(gm, site: str, layers=None, kinds=("bitflip",), mbu: int = 2) -> Iterator[Fault]:
    """Every fault of ``site`` (all elements, all bits, each kind) in graph order: exhaustive campaigns."""
    rng = np.random.default_rng(0)   # only "random" kinds draw (their value); fixed so enumeration is stable
    for s, l, info in _resolve(gm, [site], layers):
        for k in kinds:
            for flat in range(info.numel):
                for slot in range(_bit_slots(k, info)):
                    yield _fault_at(s, l, info, k, flat, slot, rng, mbu)


__all__ = ["Fault", "KINDS", "SITES", "Site", "SiteInfo", "register_site", "site_info", "validate",
           "fault_masks", "apply_masks", "apply_fault_value", "sample_faults", "enumerate_faults", "population",
           "node_shapes"]

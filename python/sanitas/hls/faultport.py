"""The HLS adapter of network-level ``Fault`` records: a record -> the fi_* registers of ``sanitas_top``.

The debug port (compiled in with ``-DSANITAS_FAULT_PORT``, registers ``regmap.FAULT_REGISTERS``) carries one fault:
the site code, the node index, the flat C-order element index (into one image's tensor for acc / output / input and
the per-image protection state, into the memory array for weight / bias and the sanity memory) and the (AND, OR,
XOR) masks of ``faults.fault_masks`` on the site's bits-wide pattern (64-bit masks as a low and a high word), so
every kind (bitflip, multibit, stuck0/1, random) replays the way the golden hook applies it, at every read, for
every image of the run.

Sites: the golden ones (``faults.site_info``) and the protection's own state (``protect.base.STATE_SITES``: sanity
rows, biases, seals, accumulators, layer-wide sums, the weighted row, parameter seals; DMR's duplicate lane,
checkpoints and their checksums), whose shape and width come from
``ProtectedModel.state_sites()``; ``state_hook`` is the reference hook applying such a record at every read.
"""
from __future__ import annotations

import numpy as np

from ..errors import SanitasError
from ..faults.fault import SiteInfo, fault_masks, validate

#: site -> code of layers.h's net_fault_site
SITE_CODES = {"weight": 1, "bias": 2, "acc": 3, "output": 4, "input": 5}
#: the sanity unit's state sites -> code (sanity_unit.h)
STATE_CODES = {"sanity_w": 6, "sanity_b": 7, "sanity_sum": 8, "sanity_acc": 9, "sanity_spatial": 10,
               "sanity_wx": 11, "sanity_bx": 12, "param_sum": 13, "dmr": 14, "checkpoint": 15, "checksum": 16}
ALL_CODES = {**SITE_CODES, **STATE_CODES}


def state_info(pm, site: str, layer: str) -> SiteInfo:
    """``SiteInfo`` of a protection state site of ``pm`` (one-line error where the layer has none)."""
    for s, lay, shape, bits, signed, batched in pm.state_sites():
        if s == site and lay == layer:
            return SiteInfo(tuple(shape), bits, signed, batched)
    raise SanitasError(f"layer '{layer}' has no '{site}' state under this protection scheme")


def _info(fault, gm, pm):
    if fault.site in STATE_CODES:
        if pm is None:
            raise SanitasError(f"site '{fault.site}' is protection state: the record needs the ProtectedModel")
        info = state_info(pm, fault.site, fault.layer)
        if len(fault.index) != len(info.shape) or any(not 0 <= i < d for i, d in zip(fault.index, info.shape)):
            raise SanitasError(f"index {fault.index} out of range for {fault.layer} {fault.site} of shape "
                               f"{info.shape}")
        return info
    return validate(fault, gm)


MEMORY_SITES = ("weight", "bias", "sanity_w", "sanity_b", "sanity_sum", "sanity_wx", "sanity_bx", "param_sum")


def fault_registers(fault, gm, pm=None, persistent: bool = False) -> dict:
    """{fi_* register: uint32 word} for ``fault`` on golden model ``gm`` (validated; one-line errors). ``pm``: the
    ``ProtectedModel`` whose state sites a protection-state record addresses. ``persistent``: an upset written once
    into the parameter memory at the start of the run (it stays until scrubbed or reloaded) instead of a record
    replayed at every read of every image."""
    if persistent and fault.site not in MEMORY_SITES:
        raise SanitasError(f"a persistent upset needs a memory site ({', '.join(MEMORY_SITES)}), got '{fault.site}'")
    if fault.site not in ALL_CODES:
        raise SanitasError(f"sanitas_top's fault port has no site '{fault.site}' "
                           f"(choose from {', '.join(ALL_CODES)})")
    info = _info(fault, gm, pm)
    a, o, x = fault_masks(fault.kind, fault.bit, fault.value, info.bits)
    layer = next(i for i, n in enumerate(gm.nodes) if n.name == fault.layer)
    flat = int(np.ravel_multi_index(fault.index, info.shape)) if info.shape else 0
    return {"fi_enable": 3 if persistent else 1, "fi_site": ALL_CODES[fault.site], "fi_layer": layer, "fi_index": flat,
            "fi_and": a & 0xFFFFFFFF, "fi_or": o & 0xFFFFFFFF, "fi_xor": x & 0xFFFFFFFF,
            "fi_and_hi": (a >> 32) & 0xFFFFFFFF, "fi_or_hi": (o >> 32) & 0xFFFFFFFF,
            "fi_xor_hi": (x >> 32) & 0xFFFFFFFF}


def _apply(v: np.ndarray, masks, bits: int, signed: bool) -> np.ndarray:
    """The masks on the bits-wide two's-complement pattern of the int64 values ``v`` (bits <= 64)."""
    a, o, x = masks
    full = (1 << bits) - 1
    out = []
    for e in np.asarray(v, dtype=np.int64).reshape(-1):
        u = ((((int(e) & full) & a) | o) ^ x) & full
        if signed and u >> (bits - 1) & 1:
            u -= 1 << bits
        out.append(u if -(1 << 63) <= u < (1 << 63) else u - (1 << 64))
    return np.array(out, dtype=np.int64).reshape(np.shape(v))


def state_hook(gm, pm, faults):
    """A ``ProtectedModel`` hook applying ``faults`` (golden or protection-state sites) at every read, as the
    fault port does (``faults.executors.golden_hook`` for the golden sites; 64-bit words on their raw pattern)."""
    from ..faults.executors import golden_hook
    faults = list(faults)
    gold = golden_hook(gm, [f for f in faults if f.site not in STATE_CODES])
    state = {}
    for f in faults:
        if f.site in STATE_CODES:
            info = _info(f, gm, pm)
            state.setdefault((f.layer, f.site), []).append((f, info, fault_masks(f.kind, f.bit, f.value, info.bits)))

    def hook(node, site, arr):
        arr = gold(node, site, arr)
        todo = state.get((node.name, site))
        if not todo:
            return arr
        out = np.array(arr, dtype=np.int64, copy=True)
        for f, info, masks in todo:
            idx = ((slice(None),) + f.index) if info.batched else f.index
            out[idx] = _apply(out[idx], masks, info.bits, info.signed)
        return out

    return hook

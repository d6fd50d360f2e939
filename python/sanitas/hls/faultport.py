"""The HLS adapter of network-level ``Fault`` records: a record -> the fi_* registers of ``sanitas_top``.

The debug port (compiled in with ``-DSANITAS_FAULT_PORT``, registers ``regmap.FAULT_REGISTERS``) carries one fault:
the site code, the node index, the flat C-order element index (into one image's tensor for acc / output / input,
into the parameter array for weight / bias) and the (AND, OR, XOR) masks of ``faults.fault_masks`` on the site's
bits-wide pattern (``faults.site_info``), so every kind (bitflip, multibit, stuck0/1, random) replays the way the
golden hook applies it (``faults.executors.golden_hook``), for every image of the run.
"""
from __future__ import annotations

import numpy as np

from ..errors import SanitasError
from ..faults.fault import fault_masks, validate

#: site -> code of layers.h's net_fault_site
SITE_CODES = {"weight": 1, "bias": 2, "acc": 3, "output": 4, "input": 5}


def fault_registers(fault, gm) -> dict:
    """{fi_* register: uint32 word} for ``fault`` on golden model ``gm`` (validated; one-line errors)."""
    if fault.site not in SITE_CODES:
        raise SanitasError(f"sanitas_top's fault port has no site '{fault.site}' "
                           f"(choose from {', '.join(SITE_CODES)})")
    info = validate(fault, gm)
    a, o, x = fault_masks(fault.kind, fault.bit, fault.value, info.bits)
    layer = next(i for i, n in enumerate(gm.nodes) if n.name == fault.layer)
    flat = int(np.ravel_multi_index(fault.index, info.shape)) if info.shape else 0
    return {"fi_enable": 1, "fi_site": SITE_CODES[fault.site], "fi_layer": layer, "fi_index": flat,
            "fi_and": a & 0xFFFFFFFF, "fi_or": o & 0xFFFFFFFF, "fi_xor": x & 0xFFFFFFFF}

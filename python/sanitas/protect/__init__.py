"""Protection of the integer CNN: exact INT8 Sanity ABFT, DMR checkpoint/rollback and baselines (issue 4).

* ``sanity``       — Hamming-indexed sanity neurons (detect, locate, correct, scrub), lazy location (``Sanity``)
* ``code``         — the sanity rows, their seals and the scrub of a layer's parameter memory
* ``seal``         — position-weighted checksums (Jou & Abraham) and self-checking seals, exact mod 2**64
* ``spatial``      — box sums, layer-wide checksums, depthwise convs (``SpatialSanity``)
* ``patrol``       — patrol scrubbing of the parameter memory and escalation (reload from the trusted image)
* ``dmr``          — checksummed checkpoints, verified reads, duplicated elementwise nodes, rollback (``DMR``)
* ``tmr``          — triple modular redundancy with majority vote (``TMR``)
* ``sanity_check`` — detection-only spatial + temporal (x, -x) checksums (``SanityCheck``)
* ``clip``         — activation range restriction (``Clip``)
* ``model``        — ``ProtectedModel(gm, schemes)``: per-layer scheme map, per-inference ``Report``
* ``overhead``     — extra MACs / adds / memory per layer (analytic) and measured CPU time
* ``campaign``     — single-bit fault campaigns over all sites incl. the protection's own state
"""
from .base import NoProtection, Report, Scheme
from .clip import Clip, calibrate
from .dmr import DMR
from .patrol import Patrol
from .model import ProtectedModel, load_scheme_map, parse_scheme, resolve_map, scheme_name
from .sanity import Sanity, SanityLayer, SpatialSanity, hamming_cover, locate, make_sanity
from .sanity_check import SanityCheck
from .tmr import TMR

__all__ = ["ProtectedModel", "Patrol", "Report", "Scheme", "NoProtection", "Sanity", "DMR", "TMR", "SanityCheck",
           "Clip", "SanityLayer", "SpatialSanity", "make_sanity", "hamming_cover", "locate", "calibrate",
           "parse_scheme", "scheme_name", "resolve_map", "load_scheme_map"]

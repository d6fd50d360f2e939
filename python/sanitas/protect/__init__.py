"""Protection of the integer CNN: exact INT8 Sanity ABFT, DMR checkpoint/rollback and baselines (issue 4).

* ``sanity``       — Hamming-indexed sanity neurons (detect, locate, correct, scrub), lazy location,
                     spatial checksums for depthwise convs (``Sanity``)
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
from .model import ProtectedModel, load_scheme_map, parse_scheme, resolve_map, scheme_name
from .sanity import Sanity, SanityLayer, SpatialSanity, hamming_cover, locate, make_sanity
from .sanity_check import SanityCheck
from .tmr import TMR

__all__ = ["ProtectedModel", "Report", "Scheme", "NoProtection", "Sanity", "DMR", "TMR", "SanityCheck", "Clip",
           "SanityLayer", "SpatialSanity", "make_sanity", "hamming_cover", "locate", "calibrate", "parse_scheme",
           "scheme_name", "resolve_map", "load_scheme_map"]

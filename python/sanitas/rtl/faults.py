"""The RTL adapter of the fault vocabulary: a ``sanitas.faults.Fault`` -> the generated array's ``fi_*`` port values.

The generated ``systolic_array`` acts on PE (fi_row, fi_col)'s accumulator (fi_col == COLS: the checksum PE) at the
rising edge where ``fi_en`` is 1, after that edge's accumulate/clear, with fi_kind 0 flip / 1 force 0 / 2 force 1
(templates/systolic_pe.v.j2).  A fault record names the register by its array site (``pe_acc`` (row, col) or
``chk_acc`` (row,), see `sanitas.faults.fault`) and the time by its wavefront cycle t, the one meaning of
``Fault.cycle`` at every level: PE (i, j) runs the MAC of reduction step kk = t - i - j in cycle t.

The RTL streams beats at edges chosen by the bench (bubbles allowed), so cycle -> edge needs the beat schedule:
beat kk accepted at edge E reaches PE (i, j) i + j edges later and is accumulated at edge E + 1 + i + j.  Hence
`fault_to_fi_ports` maps t to edge ``beat_edge[kk] + 1 + i + j`` for 0 <= kk < K - 1, to edge 0 (the start edge,
after the clear) for kk < 0, and to the last accumulation edge ``e_last + rows + cols`` for kk >= K - 1 and for
``cycle=None`` (read-out).  Edges count from the start edge 0.

Operand registers (``pe_a``, ``pe_b`` (row, j), j == cols: the checksum PE; fi_reg 1 / 2): the value entering PE
(i, j) at the edge where it runs reduction step kk is the faulty one, used there and forwarded (A to the right,
into the checksum PE and, eager, the partial PEs that share its A register; B downwards), so the edge is the same
``beat_edge[kk] + 1 + i + j``; a cycle whose kk is outside [0, K) meets a padding operand and has no effect (the
golden's rule): the port gets fi_kind 3 (none).  The kinds multibit / random have no RTL port (one-line
SanitasError); they replay at golden and HLS level.

``part_acc`` (index (m, p)) is Hamming partial checksum p of GEMM row m (`sanitas.rtl.sanity`; registered in
`sanitas.faults.fault` as an array site without golden equivalent): eager, the accumulator of partial PE p at the
wavefront position of the total-checksum PE; lazy, the partial register P[m, p] (the partials are computed on the
total PE column in the re-run). Its cycle maps to an edge exactly as ``chk_acc`` (m,)'s does, with fi_part = p + 1.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

from ..config import ArrayConfig
from ..errors import SanitasError
from ..golden.gemm import locate

#: fi_kind encoding of the generated PE: `sanitas.faults.KINDS` name -> 2-bit code.
FI_KINDS = {"bitflip": 0, "stuck0": 1, "stuck1": 2}
#: Array sites the RTL fault port reaches.
FI_SITES = ("pe_acc", "chk_acc", "part_acc", "pe_a", "pe_b")
#: fi_reg code of each site: the register of PE (fi_row, fi_col) the fault acts on.
FI_REGS = {"pe_acc": 0, "chk_acc": 0, "part_acc": 0, "pe_a": 1, "pe_b": 2}


class FiPorts(NamedTuple):
    """fi_* port values of one fault and the edge (counted from the start edge 0) at which fi_en is 1."""
    fi_row: int
    fi_col: int    # cols: the checksum PE
    fi_bit: int
    fi_kind: int
    edge: int
    fi_part: int = 0   # 0: the PE named by fi_col; p + 1: partial checksum PE p of row fi_row
    fi_reg: int = 0    # 0 accumulator, 1 A operand register, 2 B operand register (FI_REGS)


def fault_to_fi_ports(fault, array: ArrayConfig, k: int, beat_edges: Sequence[int] | None = None) -> FiPorts:
    """Map an array-site ``Fault`` on a (rows, k) @ (k, cols) GEMM to the array's fi_* ports and edge.

    ``beat_edges[kk]`` is the edge accepting beat kk (default: back to back, beat kk at edge kk + 1).  Raises a
    one-line SanitasError for records the RTL cannot replay.
    """
    if fault.site not in FI_SITES:
        raise SanitasError(f"RTL replay supports the sites {', '.join(FI_SITES)}, got '{fault.site}'")
    if fault.kind not in FI_KINDS:
        raise SanitasError(f"RTL replay supports the kinds {', '.join(FI_KINDS)}, got '{fault.kind}'")
    part = 0
    if fault.site == "part_acc":            # a partial PE: timed like the total PE of its row
        n_part = array.cols.bit_length()
        if len(fault.index) != 2 or not 0 <= fault.index[1] < n_part:
            raise SanitasError(f"part_acc index must be (row, p) with p in [0, {n_part}), got {fault.index}")
        part = fault.index[1] + 1
        fault = dataclasses.replace(fault, site="chk_acc", index=(fault.index[0],))
    edges = list(range(1, k + 1)) if beat_edges is None else [int(e) for e in beat_edges]
    if len(edges) != k or any(b <= a for a, b in zip([0, *edges], edges, strict=False)):
        raise SanitasError(f"beat_edges must be {k} increasing edges >= 1, got {edges}")
    t = locate(fault, array, array.rows, k, array.cols)
    reg = FI_REGS[fault.site]
    if reg:                                 # operand register: the edge that uses step kk; padding: no effect
        if not 0 <= t.kk < k:
            return FiPorts(t.pe_row, t.pe_col, fault.bit, 3, 0, 0, reg)
        return FiPorts(t.pe_row, t.pe_col, fault.bit, FI_KINDS[fault.kind], edges[t.kk] + 1 + t.pe_row + t.pe_col,
                       0, reg)
    last = (edges[-1] if edges else 0) + array.latency     # every accumulator is final after this edge
    if t.kk is None or t.kk >= k - 1:
        edge = last
    elif t.kk < 0:
        edge = 0
    else:
        edge = edges[t.kk] + 1 + t.pe_row + t.pe_col
    return FiPorts(t.pe_row, t.pe_col, fault.bit, FI_KINDS[fault.kind], edge, part)

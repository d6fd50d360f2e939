"""Golden model of the RTL rollback_ctrl: the operation sequence and counters of one layer command.

The algorithm is `sanitas.protect.model.ProtectedModel._exec` with its input check `_verify`: read the input
checkpoint and compare its checksum; on a mismatch (``detected``) re-read, then re-execute the producer, at most
``max(retries, 1)`` times (each a ``rolled_back``), else ``uncorrectable`` and go on; execute the layer; on a failed
check (lane mismatch or sanity uncorrectable) roll back (``rolled_back``) and repeat from the read, at most
``retries`` times; still failing, escalate (reload the weights, ``escalations``) and execute once more, else
``uncorrectable``. `sequence` replays that with the datapath's answers given by a callable, exactly as the
hardware's FSM (templates/rollback_ctrl.v.j2) issues them; the cocotb bench rtl_tests/rollback_ctrl compares the
two op by op. `CTRL_REGS` are the controller-state registers its fault port reaches (no golden equivalent: the
golden has no controller; those faults are classified by `CTRL_OUTCOMES`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

#: Operation codes of the controller (op_code), by value.
OPS = ("READ", "REREAD", "REEXEC", "EXEC", "RELOAD")
#: Controller-state registers of the fault port (fi_sel) and their widths.
CTRL_REGS = {"state": 3, "rd_att": 3, "ex_att": 3, "rd_pass": 1, "verified": 1}
#: Outcomes of a controller-state fault: the command ended right and unflagged (``ok``), ended flagged
#: (``flagged``), never ended (``stalled``: the host's watchdog sees busy or idle without done), or ended
#: with done, no flag and an unverified result (``silent``, must not occur).
CTRL_OUTCOMES = ("ok", "flagged", "stalled", "silent")
COUNTERS = ("detected", "rolled_back", "uncorrectable", "escalations")


class Command(NamedTuple):
    """What one layer command did: the ops in order, the counters, and the flag."""
    ops: tuple[str, ...]
    detected: int
    rolled_back: int
    uncorrectable: int
    escalations: int
    flag: bool


def sequence(respond: Callable[[str], bool], retries: int = 2, escalate: bool = True) -> Command:
    """The ops of one command; ``respond(op)`` is the datapath's check result of each op (RELOAD: ignored)."""
    if not 0 <= retries <= 6:
        raise ValueError(f"retries must be in [0, 6], got {retries}")
    ops: list[str] = []
    n = dict.fromkeys(COUNTERS, 0)

    def do(op: str) -> bool:
        ops.append(op)
        return bool(respond(op))

    flag = False
    for ex in range(retries + 1):
        if not do("READ"):
            n["detected"] += 1
            for rd in range(max(retries, 1)):
                n["rolled_back"] += 1
                if do("REREAD" if rd == 0 else "REEXEC"):
                    break
            else:
                n["uncorrectable"] += 1
                flag = True
        if do("EXEC"):
            return Command(tuple(ops), *n.values(), flag)
        if ex < retries:
            n["rolled_back"] += 1
    if escalate:
        n["escalations"] += 1
        do("RELOAD")
        if do("EXEC"):
            return Command(tuple(ops), *n.values(), flag)
    n["uncorrectable"] += 1
    return Command(tuple(ops), *n.values(), True)

"""cocotb bench of the generated rollback_ctrl (re-read, re-execute with bounded retries, escalation, counters)
against its golden `sanitas.rtl.rollback.sequence` (the loops of `sanitas.protect.model.ProtectedModel`).

A scripted datapath answers every op after 1..3 cycles with the next entry of a random answer list (a failed read
check, a lane mismatch, ...); the same list drives the golden.
  * test_commands: ``n_commands`` layer commands (RETRIES = 2, ESC_EN = 1) with answer lists from all-ok to
    mostly-failing: the op sequence, the four counters and the flag equal the golden's, command by command.
  * test_state_faults: ``per_reg`` single faults (random bit, kind, cycle) in each controller-state register
    (`CTRL_REGS`), each in a fresh command after a reset; classified ok / flagged / stalled / silent
    (`CTRL_OUTCOMES`; silent = done raised, no flag, and the result not from a passing EXEC on a passing read).
    None may be silent. The golden has no controller, so these are reported separately.
"""
from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import pytest

from sanitas.rtl.bench import UnitBench, bench_config, run_unit
from sanitas.rtl.generate import generate_rollback_ctrl
from sanitas.rtl.rollback import COUNTERS, CTRL_OUTCOMES, CTRL_REGS, OPS, sequence

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("bitflip", "stuck0", "stuck1")
MAX_CYCLES = 300   # watchdog: a command not done by then is stalled


_cfg = bench_config


class CtrlBench(UnitBench):
    """One rollback_ctrl and its scripted datapath."""

    inputs = ("cnt_clr", "start", "op_done", "op_ok", "fi_en", "fi_sel", "fi_bit", "fi_kind")
    settle = True

    def answers(self, p_fail: float, n: int = 64) -> list[bool]:
        return [bool(v) for v in self.rng.random(n) >= p_fail]

    async def command(self, answers: list[bool], fault=None):
        """Run one command (at a falling edge); returns (ops, counters delta, flag, done, result_good)."""
        dut = self.dut
        before = [int(getattr(dut, f"cnt_{c}").value) for c in COUNTERS]
        dut.start.value = 1
        await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        dut.start.value = 0
        ops, busy_left, result, answer = [], 0, None, False
        last_read_ok, last = False, None           # the datapath's own view of what it delivered
        done = False
        for cycle in range(MAX_CYCLES):
            hit = fault is not None and fault[3] == cycle
            dut.fi_en.value = int(hit)
            if hit:
                dut.fi_sel.value, dut.fi_bit.value = list(CTRL_REGS).index(fault[0]), fault[1]
                dut.fi_kind.value = KINDS.index(fault[2])
            dut.op_done.value, dut.op_ok.value = 0, 0
            if busy_left == 1:                     # finish the op in flight
                dut.op_done.value, dut.op_ok.value = 1, int(answer)
                if result in ("READ", "REREAD", "REEXEC"):
                    last_read_ok = answer
                last = (result, answer, last_read_ok)
            busy_left = max(0, busy_left - 1)
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(dut.done.value):
                done = True
                break
            if int(dut.op_go.value):               # a new op (restarts one in flight)
                result = OPS[int(dut.op_code.value)]
                ops.append(result)
                answer = answers[len(ops) - 1] if len(ops) <= len(answers) else True
                busy_left = int(self.rng.integers(1, 4))
            await FallingEdge(dut.clk)
        await FallingEdge(dut.clk)
        dut.fi_en.value = 0
        after = [int(getattr(dut, f"cnt_{c}").value) for c in COUNTERS]
        good = last is not None and last[0] == "EXEC" and last[1] and last[2]
        return ops, [a - b for a, b in zip(after, before, strict=True)], bool(int(dut.flag.value)), done, good


@cocotb.test()
async def test_commands(dut):
    """Commands under random answer lists: ops, counters and flag equal the golden sequence."""
    cfg = _cfg()
    bench = CtrlBench(dut, cfg)
    await bench.init()
    flags = 0
    seen_ops = collections.Counter()
    for i in range(cfg["n_commands"]):
        answers = bench.answers((0.0, 0.3, 0.6, 0.9)[i % 4])
        it = iter(answers)
        want = sequence(lambda op, it=it: next(it), retries=2, escalate=True)
        ops, counts, flag, done, good = await bench.command(answers)
        assert done, f"command {i} never finished"
        assert tuple(ops) == want.ops, f"command {i}: ops {ops} != golden {want.ops}"
        assert counts == [getattr(want, c) for c in COUNTERS], f"command {i}: counters {counts} != {want}"
        assert flag == want.flag and (good or flag), f"command {i}: flag {flag} good {good}"
        flags += flag
        seen_ops.update(ops)
    assert set(seen_ops) == set(OPS), f"every op must occur, got {seen_ops}"
    Path(cfg["summary"]).write_text(json.dumps({"commands": cfg["n_commands"], "flagged": flags,
                                                "ops": dict(seen_ops)}))


@cocotb.test()
async def test_state_faults(dut):
    """Single faults in the controller-state registers: never done + no flag + an unverified result."""
    cfg = _cfg()
    bench = CtrlBench(dut, cfg)
    await bench.init()
    rng = bench.rng
    outcomes, per_reg, silent = collections.Counter(), collections.Counter(), []
    for reg, width in CTRL_REGS.items():
        for _ in range(cfg["per_reg"]):
            answers = bench.answers(float(rng.choice([0.0, 0.3, 0.6])))
            fault = (reg, int(rng.integers(width)), KINDS[int(rng.choice(3, p=[0.8, 0.1, 0.1]))],
                     int(rng.integers(0, 40)))
            await bench.reset()
            ops, _, flag, done, good = await bench.command(answers, fault)
            o = "stalled" if not done else "flagged" if flag else "ok" if good else "silent"
            if o == "silent":
                silent.append((fault, ops))
            outcomes[o] += 1
            per_reg[f"{reg}:{o}"] += 1
    print(f"rollback_ctrl state faults: {dict(outcomes)}")
    Path(cfg["summary"]).write_text(json.dumps({"faults": sum(outcomes.values()),
                                                "outcomes": {o: outcomes[o] for o in CTRL_OUTCOMES},
                                                "per_reg": dict(per_reg)}))
    assert outcomes["silent"] == 0, f"silent controller faults: {silent}"


# ------------------------------------------------------------------------------------------------ pytest side

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) not on PATH")
N_COMMANDS = 80
PER_REG = 40


def _run(test: str, seed: int, **cfg) -> dict:
    return run_unit(ROOT / "build" / "rtl_tests" / "rollback_ctrl" / test, "rollback_ctrl", test, seed,
                    generate_rollback_ctrl, **cfg)


@needs_iverilog
def test_rollback_commands():
    s = _run("test_commands", seed=3, n_commands=N_COMMANDS)
    assert s["commands"] == N_COMMANDS and 0 < s["flagged"] < N_COMMANDS
    assert set(s["ops"]) == set(OPS)


@needs_iverilog
def test_rollback_state_faults():
    s = _run("test_state_faults", seed=9, per_reg=PER_REG)
    assert s["faults"] == PER_REG * len(CTRL_REGS) and s["outcomes"]["silent"] == 0
    assert s["outcomes"]["ok"] > 0 and s["outcomes"]["flagged"] > 0

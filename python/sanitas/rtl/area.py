"""FPGA area estimate of generated Verilog with yosys ``synth_xilinx`` (7-series cell library by default).

`estimate_area` elaborates the given files (parameters applied with ``chparam``), runs
``synth_xilinx -flatten`` and ``stat -json``, and groups the mapped Xilinx primitives into the resource classes an
FPGA report uses: LUT (LUT1..LUT6), FF (FD*), DSP (DSP48*), CARRY (CARRY4/8), SRL (LUT shift registers), MUXF
(F7/F8 muxes), BRAM (RAMB*), LUTRAM (RAM16/32/64*). Counts are yosys's mapping, not Vivado's, and serve for
relative comparisons (e.g. the cost of the checksum column or of the fault-injection port). `variant_area` sums
the units of each engine variant (`VARIANTS`: unprotected, sanity lazy / eager, sanity+dmr, TMR) into one table.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

#: Resource class -> regular expression over Xilinx primitive names (first match wins).
RESOURCE_CLASSES = {
    "LUT": r"LUT[1-6]$",
    "FF": r"FD[A-Z]*(_1)?$",
    "DSP": r"DSP48",
    "CARRY": r"CARRY[48]$",
    "SRL": r"SRL",
    "MUXF": r"MUXF[789]$",
    "BRAM": r"RAMB",
    "LUTRAM": r"RAM(16|32|64|128|256)",
}


def _classify(cells: dict[str, int]) -> dict[str, int]:
    counts = dict.fromkeys(RESOURCE_CLASSES, 0)
    for name, n in cells.items():
        bare = name.lstrip("\\$")
        for cls, pattern in RESOURCE_CLASSES.items():
            if re.match(pattern, bare):
                counts[cls] += int(n)
                break
    return counts


def estimate_area(verilog_files, top: str, params: dict | None = None, *, family: str = "xc7",
                  timeout_s: float = 300.0) -> dict:
    """Synthesise ``verilog_files`` (top module ``top``, Verilog ``params`` overrides) with yosys synth_xilinx.

    Returns {"LUT", "FF", "DSP", "CARRY", "SRL", "MUXF", "BRAM", "LUTRAM": int, "cells": {primitive: count},
    "total_cells": int, "top": str, "params": dict, "family": str}.
    Raises RuntimeError when yosys is missing or synthesis fails (the message carries the yosys error lines).
    """
    yosys = shutil.which("yosys")
    if yosys is None:
        raise RuntimeError("yosys not found on PATH: install Yosys (e.g. apt-get install yosys) for area estimates")
    files = [Path(f).resolve() for f in verilog_files]
    if not files:
        raise ValueError("estimate_area needs at least one Verilog file")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"Verilog file not found: {f}")
    params = dict(params or {})
    # chparam after a plain read (yosys 0.23 trips an internal assert on `read_verilog -defer` + derived modules)
    chparam = "".join(f"chparam -set {name} {int(value)} {top}\n" for name, value in params.items())

    with tempfile.TemporaryDirectory(prefix="sanitas_yosys_") as tmp:
        stat_json = Path(tmp) / "stat.json"
        script = Path(tmp) / "area.ys"
        script.write_text(
            "".join(f'read_verilog -sv "{f}"\n' for f in files)
            + chparam
            + f"hierarchy -check -top {top}\n"
            + f"rename -top {top}\n"  # chparam renames the top to $paramod...; restore it
            + f"synth_xilinx -flatten -noiopad -family {family} -top {top}\n"
            + f"tee -q -o {stat_json} stat -json\n"  # (temp path has no spaces; tee takes no quotes)
        )
        try:
            proc = subprocess.run([yosys, "-q", "-s", str(script)], capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"yosys synth_xilinx of {top} timed out after {timeout_s:.0f} s") from exc
        if proc.returncode != 0 or not stat_json.is_file():
            errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln] or \
                     (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise RuntimeError(f"yosys synth_xilinx of {top} failed (rc={proc.returncode}): " + " | ".join(errors))
        stat = json.loads(stat_json.read_text())

    modules = stat.get("modules", {})
    design = stat.get("design") or (next(iter(modules.values())) if len(modules) == 1 else None)
    if design is None:
        raise RuntimeError(f"unexpected yosys stat -json layout (modules: {sorted(modules)})")
    cells = {name.lstrip("\\$"): int(n) for name, n in design.get("num_cells_by_type", {}).items()}
    result = _classify(cells)
    result.update(cells=cells, total_cells=int(design.get("num_cells", sum(cells.values()))), top=top,
                  params=params, family=family)
    return result


#: Resource classes of the variant table.
CLASSES = ("LUT", "FF", "DSP", "BRAM")
#: The engine variants compared (benchmarks/bench_rtl.py): unprotected array + one-lane output stage; the sanity
#: array lazy / eager + that stage; sanity lazy + the two-lane dmr_unit + rollback_ctrl; three arrays + voters.
VARIANTS = ("unprotected", "sanity lazy", "sanity eager", "sanity+dmr", "tmr")


def variant_units(array, out: Path) -> dict[str, list[tuple]]:
    """Variant (`VARIANTS`) -> [(files, top, params)] of its units, rendered under ``out``."""
    from .generate import (generate_dmr_unit, generate_rollback_ctrl, generate_sanity_array, generate_systolic_array,
                           generate_tmr_array)
    from ..config import ArrayConfig
    lazy = ArrayConfig(**dict(array.to_dict(), checksums="lazy", fault_injection=False))
    eager = ArrayConfig(**dict(array.to_dict(), checksums="eager", fault_injection=False))
    arr = generate_systolic_array(lazy, out / "array")
    san_l = generate_sanity_array(lazy, out / "lazy")
    san_e = generate_sanity_array(eager, out / "eager")
    dmr = generate_dmr_unit(lazy, out / "dmr")
    rb = generate_rollback_ctrl(lazy, out / "rb")
    tmr = generate_tmr_array(lazy, out / "tmr")
    stage = (dmr, "dmr_unit", {"FI_EN": 0, "DMR_EN": 0})
    return {
        "unprotected": [(arr, "systolic_array", {"FI_EN": 0, "CHK_EN": 0}), stage],
        "sanity lazy": [(san_l, "sanity_array", {"FI_EN": 0, "EAGER": 0}), stage],
        "sanity eager": [(san_e, "sanity_array", {"FI_EN": 0, "EAGER": 1}), stage],
        "sanity+dmr": [(san_l, "sanity_array", {"FI_EN": 0, "EAGER": 0}),
                       (dmr, "dmr_unit", {"FI_EN": 0, "DMR_EN": 1}), (rb, "rollback_ctrl", {"FI_EN": 0})],
        "tmr": [(tmr, "tmr_array", {"FI_EN": 0}), stage],
    }


def variant_area(array, out: Path, timeout_s: float = 3600.0, progress=None) -> dict[str, dict]:
    """Variant -> {LUT, FF, DSP, BRAM, seconds}: the sum of its units (yosys synth_xilinx each, FI_EN = 0); a unit
    shared by variants is synthesised once. ``progress(line)`` is called per variant."""
    cache: dict[tuple, dict] = {}
    table = {}
    for name, units in variant_units(array, out).items():
        row = dict.fromkeys(CLASSES, 0)
        t0 = time.perf_counter()
        for files, top, params in units:
            key = (tuple(map(str, files)), top, tuple(sorted(params.items())))
            if key not in cache:
                cache[key] = estimate_area(files, top, params, timeout_s=timeout_s)
            for c in CLASSES:
                row[c] += cache[key][c]
        row["seconds"] = round(time.perf_counter() - t0, 1)
        table[name] = row
        if progress is not None:
            progress(f"  {name:13s} " + " ".join(f"{c} {row[c]:6d}" for c in CLASSES))
    return table

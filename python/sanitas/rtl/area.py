"""FPGA area estimate of generated Verilog with yosys ``synth_xilinx`` (7-series cell library by default).

`estimate_area` elaborates the given files (parameters applied with ``chparam``), runs
``synth_xilinx -flatten`` and ``stat -json``, and groups the mapped Xilinx primitives into the resource classes an
FPGA report uses: LUT (LUT1..LUT6), FF (FD*), DSP (DSP48*), CARRY (CARRY4/8), SRL (LUT shift registers), MUXF
(F7/F8 muxes), BRAM (RAMB*), LUTRAM (RAM16/32/64*). Counts are yosys's mapping, not Vivado's, and serve for
relative comparisons (e.g. the cost of the checksum column or of the fault-injection port). `variant_area` sums
the units of each engine variant (`VARIANTS`: unprotected, sanity lazy / eager, sanity+dmr, TMR) into one table;
`area_table` adds the ratios against the unprotected variant of the same run and the targets (the table
`sanitas rtl --area`, benchmarks/bench_rtl.py and the flow report read). `module_breakdown` synthesises without
flattening and returns LUT / FF per module (where the area goes).

Every variant reads its results through the same drain (a ROWS:1 row multiplexer and a COLS-word output register,
the unprotected `sanity_unit` with CHK_EN = 0): an output-stationary array has to read its accumulators out, and
the protected variants check the rows on that very path, so the baseline carries it too. The output stage
(dmr_unit) is instantiated as the engine instantiates it: RD_N = `engine_beat_words` (a stream beat's words) and
RD_W = `engine_read_words` (the words its read check adds an edge, the engine's RD_W).

`engine_area` is the whole-engine comparison: the generated ``engine`` top synthesised with PROT = 0 (the
unprotected engine) and PROT = 1 (sanity lazy + two-lane dmr_unit + read checks + rollback_ctrl + the hold bank
and the sanity_tile capture register): every unit either engine instantiates is counted, the engine's own
operand / accumulator / output registers in both.
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


#: LUTs a LUT-based primitive occupies (distributed RAM and shift registers are built from LUTs: counted as LUTs in
#: the engine comparison, `lut_equivalent`).
LUT_COST = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32X1S": 1, "RAM64X1S": 1,
            "RAM128X1S": 2, "RAM256X1S": 4, "SRL16E": 1, "SRLC32E": 1, "SRLC16E": 1}


def lut_equivalent(res: dict) -> int:
    """LUT + the LUTs of the LUTRAM and SRL primitives of an `estimate_area` result (unknown LUTRAM kinds: 4)."""
    extra = sum(int(n) * LUT_COST.get(name, 4) for name, n in res.get("cells", {}).items()
                if re.match(RESOURCE_CLASSES["LUTRAM"], name) or re.match(RESOURCE_CLASSES["SRL"], name))
    return int(res["LUT"]) + extra


#: Resource classes of the variant table.
CLASSES = ("LUT", "FF", "DSP", "BRAM")
#: The engine variants compared (benchmarks/bench_rtl.py), each the sum of its units (FI_EN = 0):
#:   unprotected   sanity_array CHK_EN = 0 (the array without checksum PEs + the drain) + dmr_unit DMR_EN = 0
#:                 (the one-lane output stage)
#:   sanity lazy   sanity_array EAGER = 0 (one checksum PE column, serial check on the drain) + the same stage
#:   sanity eager  sanity_array EAGER = 1 (+ NP partial PE columns, parallel check) + the same stage
#:   sanity+dmr    sanity_array lazy + dmr_unit DMR_EN = 1 (two lanes, stream checksums) + rollback_ctrl
#:   tmr           tmr_array (three unprotected arrays + bitwise voters + the drain) + the same stage
VARIANTS = ("unprotected", "sanity lazy", "sanity eager", "sanity+dmr", "tmr")
#: Targets of issue 14 (LUT+FF ratio over unprotected; extra DSPs at most one PE column = rows).
TARGETS = {"sanity+dmr": "LUT+FF <= +10 % and extra DSP <= rows", "tmr": "LUT+FF >= +200 %"}
#: The synthesis flow of every unit (recorded in the table).
FLOW = "yosys synth_xilinx -flatten -noiopad -family xc7 (one run per unit, FI_EN = 0)"


def engine_beat_words(array) -> int:
    """Words a read beat of the engine carries (its dmr_unit's RD_N): the stream's KMAX * DATA_W bits in bytes."""
    from .engine_regs import ENGINE_KMAX
    return ENGINE_KMAX * array.data_width // 8


def engine_read_words(array) -> int:
    """Words of a beat the engine's read check adds an edge (its RD_W, the dmr_unit's RD_W: `ENGINE_READ_W`)."""
    from .engine_regs import ENGINE_READ_W
    if engine_beat_words(array) % ENGINE_READ_W:
        raise ValueError(f"ENGINE_READ_W {ENGINE_READ_W} must divide the {engine_beat_words(array)} words a beat")
    return ENGINE_READ_W


def variant_units(array, out: Path) -> dict[str, list[tuple]]:
    """Variant (`VARIANTS`) -> [(files, top, params)] of its units, rendered under ``out``."""
    from .generate import generate_dmr_unit, generate_rollback_ctrl, generate_sanity_array, generate_tmr_array
    from ..config import ArrayConfig
    rd = {"RD_N": engine_beat_words(array), "RD_W": engine_read_words(array)}
    lazy = ArrayConfig(**dict(array.to_dict(), checksums="lazy", fault_injection=False))
    eager = ArrayConfig(**dict(array.to_dict(), checksums="eager", fault_injection=False))
    san_l = generate_sanity_array(lazy, out / "lazy")
    san_e = generate_sanity_array(eager, out / "eager")
    dmr = generate_dmr_unit(lazy, out / "dmr")
    rb = generate_rollback_ctrl(lazy, out / "rb")
    tmr = generate_tmr_array(lazy, out / "tmr")
    stage = (dmr, "dmr_unit", {"FI_EN": 0, "DMR_EN": 0, **rd})
    return {
        "unprotected": [(san_l, "sanity_array", {"FI_EN": 0, "CHK_EN": 0, "A_CHK": 0}), stage],
        "sanity lazy": [(san_l, "sanity_array", {"FI_EN": 0, "EAGER": 0}), stage],
        "sanity eager": [(san_e, "sanity_array", {"FI_EN": 0, "EAGER": 1}), stage],
        "sanity+dmr": [(san_l, "sanity_array", {"FI_EN": 0, "EAGER": 0}),
                       (dmr, "dmr_unit", {"FI_EN": 0, "DMR_EN": 1, **rd}), (rb, "rollback_ctrl", {"FI_EN": 0})],
        "tmr": [(tmr, "tmr_array", {"FI_EN": 0}), stage],
    }


def variant_area(array, out: Path, timeout_s: float = 3600.0, progress=None) -> dict[str, dict]:
    """Variant -> {LUT, FF, DSP, BRAM, seconds, units}: the sum of its units (yosys synth_xilinx each, FI_EN = 0); a
    unit shared by variants is synthesised once (its seconds count where it first ran). ``units`` lists
    {top, params, LUT, FF, DSP, BRAM} per unit. ``progress(line)`` is called per variant."""
    cache: dict[tuple, dict] = {}
    table = {}
    for name, units in variant_units(array, out).items():
        row = dict.fromkeys(CLASSES, 0)
        row["units"] = []
        t0 = time.perf_counter()
        for files, top, params in units:
            key = (tuple(map(str, files)), top, tuple(sorted(params.items())))
            if key not in cache:
                cache[key] = estimate_area(files, top, params, timeout_s=timeout_s)
            for c in CLASSES:
                row[c] += cache[key][c]
            row["units"].append(dict(top=top, params=dict(params), **{c: cache[key][c] for c in CLASSES}))
        row["seconds"] = round(time.perf_counter() - t0, 1)
        table[name] = row
        if progress is not None:
            progress(f"  {name:13s} " + " ".join(f"{c} {row[c]:6d}" for c in CLASSES) + f"  ({row['seconds']} s)")
    return table


def area_table(array, out: Path | None = None, *, timeout_s: float = 3600.0, progress=None) -> dict:
    """The area table of ``array`` (an `ArrayConfig`; its rows x cols, FI_EN = 0): every variant and its ratios
    against the unprotected variant synthesised in the same run.

    Returns {"rows", "cols", "flow", "seconds", "variants": {variant: {LUT, FF, DSP, BRAM, seconds, units}},
    "ratios": {variant: {"LUT+FF": fraction over unprotected (0.1 = +10 %), "LUT", "FF": fractions,
    "extra_DSP": int, "DSP_columns": extra DSPs / rows}}, "targets": {"sanity+dmr": bool, "sanity lazy": bool,
    "tmr": bool}}; a target is met when LUT+FF <= +10 % and extra DSP <= rows (sanity) or LUT+FF >= +200 % (tmr).
    ``out`` holds the rendered Verilog (default: a temporary folder). RuntimeError when yosys is missing/fails.
    """
    t0 = time.perf_counter()
    if out is None:
        with tempfile.TemporaryDirectory(prefix="sanitas_area_") as tmp:
            table = variant_area(array, Path(tmp), timeout_s=timeout_s, progress=progress)
    else:
        table = variant_area(array, Path(out), timeout_s=timeout_s, progress=progress)
    base = table["unprotected"]
    lf = base["LUT"] + base["FF"]
    ratios = {}
    for name, row in table.items():
        ratios[name] = {"LUT+FF": round((row["LUT"] + row["FF"]) / lf - 1, 4),
                        "LUT": round(row["LUT"] / max(base["LUT"], 1) - 1, 4),
                        "FF": round(row["FF"] / max(base["FF"], 1) - 1, 4),
                        "extra_DSP": row["DSP"] - base["DSP"],
                        "DSP_columns": round((row["DSP"] - base["DSP"]) / array.rows, 3)}

    def sanity_ok(v):
        return ratios[v]["LUT+FF"] <= 0.10 and ratios[v]["extra_DSP"] <= array.rows
    targets = {"sanity+dmr": sanity_ok("sanity+dmr"), "sanity lazy": sanity_ok("sanity lazy"),
               "tmr": ratios["tmr"]["LUT+FF"] >= 2.0}
    return {"rows": array.rows, "cols": array.cols, "flow": FLOW, "seconds": round(time.perf_counter() - t0, 1),
            "variants": table, "ratios": ratios, "targets": targets}


def engine_area(array, out: Path | None = None, *, timeout_s: float = 3600.0, progress=None) -> dict:
    """The whole engine (templates/engine.v.j2 at ``array``'s rows x cols, lazy, FI_EN = 0) synthesised twice:
    {"unprotected": {LUT, FF, DSP, BRAM, LUTRAM, SRL, LUT_eq, seconds} (PROT = 0), "sanity+dmr": {...} (PROT = 1),
    "ratio": {"LUT+FF": fraction over unprotected, "extra_DSP": int}}; the ratio counts LUT_eq (`lut_equivalent`:
    the LUTs of distributed RAM, e.g. the tile's hold memory, and of shift registers included) + FF."""
    from .generate import generate_engine
    from ..config import ArrayConfig
    lazy = ArrayConfig(**dict(array.to_dict(), checksums="lazy", fault_injection=False))

    def run(folder: Path) -> dict:
        files = generate_engine(lazy, folder)
        rows = {}
        for name, prot in (("unprotected", 0), ("sanity+dmr", 1)):
            t0 = time.perf_counter()
            res = estimate_area(files, "engine", {"FI_EN": 0, "PROT": prot}, timeout_s=timeout_s)
            rows[name] = {c: res[c] for c in CLASSES} | {"LUTRAM": res.get("LUTRAM", 0), "SRL": res.get("SRL", 0),
                                                         "LUT_eq": lut_equivalent(res),
                                                         "seconds": round(time.perf_counter() - t0, 1)}
            if progress is not None:
                progress(f"  engine {name:11s} " + " ".join(f"{c} {rows[name][c]:6d}" for c in CLASSES + ("LUTRAM",))
                         + f" LUT incl. LUTRAM/SRL {rows[name]['LUT_eq']:6d}  ({rows[name]['seconds']} s)")
        return rows
    if out is None:
        with tempfile.TemporaryDirectory(prefix="sanitas_engine_area_") as tmp:
            rows = run(Path(tmp))
    else:
        rows = run(Path(out))
    base, prot = rows["unprotected"], rows["sanity+dmr"]
    rows["ratio"] = {"LUT+FF": round((prot["LUT_eq"] + prot["FF"]) / max(base["LUT_eq"] + base["FF"], 1) - 1, 4),
                     "extra_DSP": prot["DSP"] - base["DSP"]}
    return rows


def module_breakdown(verilog_files, top: str, *, family: str = "xc7", timeout_s: float = 3600.0) -> dict[str, dict]:
    """LUT / FF / DSP / CARRY / MUXF per module of a hierarchical ``synth_xilinx`` (no -flatten) of ``top``:
    {module name (yosys $paramod names shortened to the module): {class: count, "instances": n}}, summed over
    the parameterisations of a module; the top's own logic is under ``top``."""
    yosys = shutil.which("yosys")
    if yosys is None:
        raise RuntimeError("yosys not found on PATH: install Yosys (e.g. apt-get install yosys) for area estimates")
    files = [Path(f).resolve() for f in verilog_files]
    with tempfile.TemporaryDirectory(prefix="sanitas_yosys_") as tmp:
        stat_txt = Path(tmp) / "stat.txt"
        script = Path(tmp) / "hier.ys"
        script.write_text("".join(f'read_verilog -sv "{f}"\n' for f in files)
                          + f"hierarchy -check -top {top}\n"
                          + f"synth_xilinx -noiopad -family {family} -top {top}\n"
                          + f"tee -q -o {stat_txt} stat\n")   # (yosys 0.23's hierarchical stat -json is not JSON)
        proc = subprocess.run([yosys, "-q", "-s", str(script)], capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0 or not stat_txt.is_file():
            raise RuntimeError(f"yosys hierarchical synth_xilinx of {top} failed (rc={proc.returncode})")
        text = stat_txt.read_text()
    modules: dict[str, dict] = {}     # module -> {"num_cells_by_type": {cell: n}} from the text report
    current = None
    for line in text.splitlines():
        head = re.match(r"^=== (.+) ===$", line.strip())
        if head:
            current = None if head.group(1) == "design hierarchy" else head.group(1)
            if current is not None:
                modules[current] = {"num_cells_by_type": {}}
            continue
        cell = re.match(r"^\s{5,}(\S+)\s+(\d+)$", line)
        if current is not None and cell:
            modules[current]["num_cells_by_type"][cell.group(1)] = int(cell.group(2))
    # instance counts: walk the hierarchy from the top
    inst: dict[str, int] = {}

    def walk(name: str, n: int) -> None:
        inst[name] = inst.get(name, 0) + n
        for cell, k in modules.get(name, {}).get("num_cells_by_type", {}).items():
            if cell in modules:
                walk(cell, n * int(k))
    top_name = next((m for m in modules if m.lstrip("\\") == top), None)
    if top_name is None:
        raise RuntimeError(f"top {top} not in the yosys statistics")
    walk(top_name, 1)
    out: dict[str, dict] = {}
    for name, n in inst.items():
        short = re.sub(r"^\$paramod\$[0-9a-f]+\\", "", name).lstrip("\\")
        cells = {c.lstrip("\\$"): int(k) for c, k in modules[name].get("num_cells_by_type", {}).items()
                 if c not in modules}
        cls = _classify(cells)
        row = out.setdefault(short, dict.fromkeys(("LUT", "FF", "DSP", "CARRY", "MUXF"), 0) | {"instances": 0})
        for c in ("LUT", "FF", "DSP", "CARRY", "MUXF"):
            row[c] += cls[c] * n
        row["instances"] += n
    return out

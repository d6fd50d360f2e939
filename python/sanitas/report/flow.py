"""Report of ``sanitas flow``: one HTML page and its Markdown twin (jinja2 templates ``report/templates/flow.*.j2``),
the figures as PNG files beside them (matplotlib, Agg).

``write_report(flow_dir, out_dir)`` reads ``flow_dir/flow.json`` (every step's record) and the step folders:
``search/`` (history.json, summary.json, genotype.json: reward curve, Pareto front, derived cells), ``campaign/``
(results.sqlite: the layer x bit vulnerability heat maps, one per site), ``plan/plan.json`` (the schemes x
coverage x overhead table, the chosen per-layer plan and its cost), and the golden / csim / rtl / board records
(the cross-level table, RTL area against TMR) and every step's time. A section whose step did not run says so.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .search import _plot_cells, _plot_pareto, _plot_reward, _plt

TEMPLATES = Path(__file__).parent / "templates"


def _engine_fault_text(e: dict) -> str:
    """The engine row's fault column: directed faults by the counters they moved, the golden-checked operand
    faults, and the rollback_ctrl state faults (which the golden model cannot express) by outcome."""
    ef, gf, cf = e["faults"], e.get("golden_faults") or {}, e.get("ctrl_faults") or {}
    text = (f"{ef['directed']} directed faults, every output exact: {ef['corrected']} corrected in the sanity unit, "
            f"{ef['reexecuted']} output-stage re-executions, {ef['input_mismatches']} stored-input mismatches, "
            f"{ef['rolled_back']} rollbacks, {ef['escalations']} layer escalations")
    if gf.get("faults"):
        text += f"; {gf['agree']}/{gf['faults']} operand faults agree with the golden sanity flow"
    if cf:
        text += "; controller faults: " + ", ".join(f"{v} {k}" for k, v in cf.items())
    return text


def _read(p: Path):
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)


# ------------------------------------------------------------------------------------------------ figures
def vulnerability(db: Path) -> dict:
    """{site: {"layers": [...], "bits": [...], "critical": (L, B) rates, "n": (L, B) experiments}} of a campaign."""
    from ..faults.store import Store
    with Store(db, readonly=True) as st:
        rows = st.con.execute("SELECT f.site, f.layer, f.bit, MIN(f.seq), COUNT(*), SUM(r.outcome = 2) FROM results r "
                              "JOIN faults f USING(fault_id) GROUP BY f.site, f.layer, f.bit").fetchall()
    out: dict = {}
    for site, layer, bit, seq, n, crit in rows:
        d = out.setdefault(site, {"order": {}, "cells": {}})
        d["order"][layer] = min(seq, d["order"].get(layer, seq))
        d["cells"][(layer, int(bit))] = (int(n), int(crit))
    res = {}
    for site, d in out.items():
        layers = sorted(d["order"], key=d["order"].get)
        bits = sorted({b for _, b in d["cells"]})
        n = np.zeros((len(layers), len(bits)))
        c = np.zeros_like(n)
        for (lay, b), (k, cr) in d["cells"].items():
            n[layers.index(lay), bits.index(b)], c[layers.index(lay), bits.index(b)] = k, cr
        res[site] = {"layers": layers, "bits": bits, "n": n, "critical": np.divide(c, n, out=np.full_like(c, np.nan),
                                                                                     where=n > 0)}
    return res


def _plot_heatmaps(vul: dict, path: Path, order: list | None = None) -> bool:
    """One critical-rate map (layer x bit) per site, on one shared layer axis: every layer any site hit, in graph
    order (``order``: the golden node names; else by first fault), so the labels of the first map hold for all."""
    sites = [s for s in ("weight", "bias", "input", "acc", "output") if s in vul]
    if not sites:
        return False
    plt = _plt()
    rank = {n: i for i, n in enumerate(order or [])}
    first: dict = {}
    for s in sites:
        for i, lay in enumerate(vul[s]["layers"]):
            first.setdefault(lay, (rank.get(lay, len(rank)), i))
    layers = sorted(first, key=first.get)
    fig, axs = plt.subplots(1, len(sites), figsize=(2.6 * len(sites) + 1.6, 1.2 + 0.13 * len(layers)),
                            squeeze=False, sharey=True)
    cmap = plt.get_cmap("magma_r").with_extremes(bad="#f4f4f4")    # grey: no fault drawn there
    for ax, s in zip(axs[0], sites):
        v = vul[s]
        grid = np.full((len(layers), len(v["bits"])), np.nan)
        for i, lay in enumerate(v["layers"]):
            grid[layers.index(lay)] = v["critical"][i]
        im = ax.imshow(grid, aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{s}: critical rate", fontsize=9)
        ax.set_xlabel("bit", fontsize=8)
        step = max(1, len(v["bits"]) // 8)
        ax.set_xticks(range(0, len(v["bits"]), step), [str(b) for b in v["bits"][::step]], fontsize=6)
    axs[0][0].set_yticks(range(len(layers)), layers, fontsize=5)
    fig.colorbar(im, ax=axs[0].tolist(), shrink=0.8, label="P(top-1 changed)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


SCHEME_COLOURS = {"none": "#ddd", "sanity": "tab:blue", "dmr": "tab:orange", "sanity+dmr": "tab:purple",
                  "tmr": "tab:red"}


def _plot_plan(plan: dict, steps: dict, path: Path) -> bool:
    """Per layer (conv/linear and elementwise nodes in order): the chosen scheme (colour)."""
    m = plan.get("scheme_map") or {}
    nodes = [n for n, _op in (steps.get("golden", {}).get("nodes") or [[k, ""] for k in m])]
    if not m:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 2.2))
    for i, n in enumerate(nodes):
        ax.bar(i, 1, color=SCHEME_COLOURS.get(m.get(n, "none"), "k"), width=0.9)
    ax.set_xticks(range(len(nodes)), nodes, rotation=90, fontsize=5)
    ax.set_yticks([])
    ax.set_xlim(-0.6, len(nodes) - 0.4)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in SCHEME_COLOURS.values()]
    ax.legend(handles, list(SCHEME_COLOURS), ncol=5, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 1.35))
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


def plot_protection(plan: dict, path: Path) -> bool:
    """Extra cost per image (MAC-equivalents, % of the net's MACs) of the uniform schemes and of the plan, with the
    held-out critical faults the plan corrected. ``path``: .png for the report, .svg for the README."""
    u = {k: v for k, v in (plan.get("uniform") or {}).items() if k != "none"}
    if not u:
        return False
    plt = _plt()
    names = [*u, "plan (per layer)"]
    vals = [100 * c / plan["macs"] for c in [*u.values(), plan["cost"]]]
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    bars = ax.barh(names[::-1], vals[::-1], color=["tab:green"] + ["#999"] * len(u))
    for b, v in zip(bars, vals[::-1]):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {v:.0f} %", va="center", fontsize=8)
    h = (plan.get("verify") or {}).get("hunt") or {}
    ax.set_xlabel("extra work per image (MAC-equivalents, % of the network's MACs)")
    ax.set_title(f"Protection cost; the plan corrects {h.get('restored', '?')}/{h.get('critical', '?')} held-out "
                 "critical faults", fontsize=9)
    ax.set_xlim(0, max(vals) * 1.18)
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "sanitas"}):
        fig.tight_layout()
        fig.savefig(path, dpi=100, metadata={"Date": None} if str(path).endswith(".svg") else None)
    plt.close(fig)
    return True


AREA_CLASSES = ("LUT", "FF", "DSP", "BRAM")
AREA_COLOURS = {"unprotected": "#bbb", "sanity lazy": "tab:blue", "sanity eager": "tab:cyan",
                "sanity+dmr": "tab:purple", "tmr": "tab:red"}


def area_rows(area: dict) -> list[dict]:
    """The yosys table of the engine variants (rtl step, ``rtl.area.variant_area``): per variant its LUT / FF /
    DSP / BRAM and each as a multiple of the unprotected variant's."""
    v = (area or {}).get("variants") or {}
    base = v.get("unprotected", {})
    rows = []
    for name, d in v.items():
        rows.append({"variant": name, **{k: d.get(k, 0) for k in AREA_CLASSES},
                     **{f"{k}_x": (f"{d.get(k, 0) / base[k]:.2f}x" if base.get(k) else "—") for k in AREA_CLASSES}})
    return rows


def _plot_area(area: dict, path: Path) -> bool:
    """Bars per resource class, one per engine variant, as multiples of the unprotected engine (yosys counts)."""
    rows = area_rows(area)
    base = {k: v for k, v in next((r for r in rows if r["variant"] == "unprotected"), {}).items()}
    keys = [k for k in AREA_CLASSES if base.get(k)]
    if not rows or not keys:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3))
    x = np.arange(len(keys))
    w = 0.8 / len(rows)
    for j, r in enumerate(rows):
        ax.bar(x + (j - (len(rows) - 1) / 2) * w, [r[k] / base[k] for k in keys], w, label=r["variant"],
               color=AREA_COLOURS.get(r["variant"], "k"))
    ax.set_xticks(x, keys)
    ax.set_ylabel("x unprotected engine")
    ax.legend(fontsize=7, ncol=3)
    ax.set_title(f"RTL area, {area.get('array', '?')} array (yosys synth_xilinx): protection vs TMR", fontsize=9)
    _save(fig, path)
    return True


def _plot_timings(rows: list, path: Path) -> bool:
    rows = [r for r in rows if r["seconds"] > 0]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, max(1.8, 0.5 + 0.3 * len(rows))))
    ax.barh([r["name"] for r in rows][::-1], [r["seconds"] for r in rows][::-1], color="tab:green")
    ax.set_xlabel("seconds")
    ax.set_title("Time per step")
    _save(fig, path)
    return True


def _plot_training(history, path: Path) -> bool:
    if not history:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([h["epoch"] for h in history], [h["val_acc"] for h in history], "s-", color="tab:green")
    ax.set_xlabel("epoch")
    ax.set_ylabel("val accuracy")
    ax.set_title("INT8 quantisation-aware training")
    _save(fig, path)
    return True


# ------------------------------------------------------------------------------------------------ tables
def _pct(x, digits: int = 2) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f} %"


def scheme_rows(plan: dict) -> list[dict]:
    """The schemes x coverage x overhead table: the plan and the schemes of its verification campaign (coverage,
    extra MACs and memory), then every other uniform scheme with its cost only (MAC-equivalents per image, % of the
    net's MACs: the planner's overhead model)."""
    v = plan.get("verify") or {}
    uniform, macs = plan.get("uniform") or {}, plan.get("macs") or 0
    cost = {"plan": plan.get("cost"), **uniform}
    rows = []

    def frac(name):
        return _pct(cost[name] / macs, 1) if macs and cost.get(name) is not None else "—"
    for name, c in (v.get("coverage") or {}).items():
        o = (v.get("overhead") or {}).get(name, {})
        rows.append({"scheme": "plan (per layer)" if name == "plan" else name, "effective": c.get("effective"),
                     "critical": c.get("critical"), "critical_corrected": _pct(c.get("critical_corrected")),
                     "lo95": _pct(c.get("critical_corrected_lower95"), 1), "corrected": _pct(c.get("corrected")),
                     "silent": c.get("silent"), "state_bit_exact": _pct(c.get("state_bit_exact"), 1),
                     "false_alarms": c.get("false_alarms"), "extra_macs": _pct(o.get("extra_macs"), 1),
                     "extra_mem": _pct(o.get("extra_mem"), 1), "cost": frac(name)})
    for name in uniform:
        if name not in (v.get("coverage") or {}) and name != "none":
            rows.append({**dict.fromkeys(("effective", "critical", "critical_corrected", "lo95", "corrected",
                                          "silent", "state_bit_exact", "false_alarms", "extra_macs", "extra_mem"),
                                         "—"), "scheme": f"{name} (uniform, cost only)", "cost": frac(name)})
    return rows


def _restricted(r: dict) -> str:
    """How much of the plan a hardware level ran: the plan, or the plan without the schemes it does not generate."""
    if r.get("scheme") != "plan restricted":
        return r.get("scheme", "?")
    drop = ", ".join(f"{k} on {n} nodes" for k, n in r.get("dropped", {}).items())
    return f"plan restricted to {'+'.join(['none', *r.get('built_schemes', [])])} ({drop} not generated yet)"


def cross_level(steps: dict) -> list[dict]:
    """One row per level: what was compared with golden, how many were bit-exact, and fault agreement."""
    g, c, r, b = (steps.get(k, {}) for k in ("golden", "csim", "rtl", "board"))
    rows = []
    if "bit_exact" in g:
        rows.append({"level": "Brevitas vs golden", "what": "test images (logits)",
                     "exact": f"{g['bit_exact']}/{g['total']}", "faults": "—"})
    h = steps.get("hls", {})
    if "bit_exact" in h:
        rows.append({"level": "hls4ml (g++)", "what": "test images (predictions)",
                     "exact": f"{h['bit_exact']}/{h['total']}", "faults": "—"})
    if "bit_exact" in c:
        rows.append({"level": f"HLS csim: sanitas_top, {_restricted(c)}", "what": "test images (logits)",
                     "exact": f"{c['bit_exact']}/{c['total']}",
                     "faults": f"{c['fault_agreement']}/{c['faults']} fault records: logits and counters equal "
                               f"ProtectedModel's ({c['fault_images']} images each)"})
    k = c.get("kernel") or {}
    if "cases" in k:
        rows.append({"level": f"HLS csim: {k.get('kernel', 'gemm')} kernel", "what": "GEMMs vs golden GEMM",
                     "exact": f"{k['cases'] - (k.get('mismatches') or 0)}/{k['cases']}",
                     "faults": f"{k.get('faults_located', '?')}/{k.get('faults', '?')} located in their row"})
    rg = r.get("regress") or {}
    if "faults" in rg:
        rows.append({"level": f"RTL sanity_tile regression ({r.get('array', '?')}, cocotb + Icarus)",
                     "what": "fault records vs golden protected GEMM", "exact": f"{rg['bit_exact']}/{rg['faults']}",
                     "faults": f"{rg['silent']} silent, {rg['corrected']} corrected, {rg['rolled_back']} to rollback, "
                               f"{rg['masked']} masked; {rg['faults_per_s']:.0f} faults/s"})
    e = r.get("engine") or {}
    if "bit_exact" in e:
        ef = e.get("faults")
        split = (f"{e['commands']} engine commands, {e['host_nodes']} host nodes"
                 if e.get("commands") is not None and e.get("host_nodes") is not None else "layer by layer")
        rows.append({"level": f"RTL engine, {e['network']} ({e['name']}): {split}",
                     "what": "test images (logits)", "exact": f"{e['bit_exact']}/{e['total']}",
                     "faults": _engine_fault_text(e) if ef else "—"})
    elif "skipped" in e:
        rows.append({"level": "RTL engine", "what": "not run", "exact": "—", "faults": e["skipped"]})
    if "bit_exact" in b:
        rows.append({"level": f"board ({b.get('backend')} {b.get('board')}, {b.get('ip', '?')} IP, "
                              f"{_restricted(b) if b.get('protected') else 'unprotected'})",
                     "what": "test images (logits)", "exact": f"{b['bit_exact']}/{b['total']}",
                     "faults": f"{b['fault_agreement']}/{b['faults']} faults: logits and counters equal "
                               "ProtectedModel's" if "faults" in b else "—"})
    return rows


def step_rows(steps: dict) -> list[dict]:
    return [{"name": k, "status": v.get("status", "?"), "seconds": float(v.get("seconds", 0) or 0),
             "cached": bool(v.get("cached")), "note": v.get("reason") or v.get("error") or ""}
            for k, v in steps.items() if v.get("reason") != "not selected"]


# ------------------------------------------------------------------------------------------------ the page
def write_report(flow_dir, out_dir) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/index.md`` (and the figures) for the flow in ``flow_dir``
    (a folder holding flow.json, or the flow.json itself); returns the HTML path."""
    import jinja2
    flow_dir = Path(flow_dir)
    if flow_dir.is_file():
        flow_dir = flow_dir.parent
    data = json.loads((flow_dir / "flow.json").read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = data["steps"]
    figs: dict[str, str] = {}

    def fig(name: str, ok: bool) -> None:
        if ok:
            figs[name] = f"{name}.png"

    sd = flow_dir / "search"
    hist, summ, geno = _read(sd / "history.json"), _read(sd / "summary.json"), _read(sd / "genotype.json")
    if hist and summ:
        fig("reward", _plot_reward(hist, out / "reward.png"))
        fig("pareto", _plot_pareto(hist, summ, out / "pareto.png"))
    if geno:
        fig("cells", _plot_cells(geno["genotype"], int(geno["space"]["nodes"]), out / "cells.png"))
    db = flow_dir / "campaign" / "results.sqlite"
    if steps.get("campaign", {}).get("status") == "ok" and db.is_file():
        order = [n for n, _op in steps.get("golden", {}).get("nodes") or []]
        fig("heatmap", _plot_heatmaps(vulnerability(db), out / "heatmap.png", order))
    plan = steps.get("plan", {}) if "scheme_map" in steps.get("plan", {}) else {}
    if plan:
        fig("plan", _plot_plan(plan, steps, out / "plan.png"))
        fig("protection", plot_protection(plan, out / "protection.png"))
        plot_protection(plan, out / "protection.svg")      # the README's picture (docs/img/flow_protection.svg)
    area = steps.get("rtl", {}).get("area") or {}
    if area.get("variants"):
        fig("area", _plot_area(area, out / "area.png"))
    fig("training", _plot_training(steps.get("train", {}).get("history"), out / "training.png"))
    srows = step_rows(steps)
    fig("timings", _plot_timings(srows, out / "timings.png"))
    cfg = data.get("config", {})
    net = steps.get("golden", {}).get("network") or cfg.get("train", {}).get("model", "?")
    m = plan.get("scheme_map", {})
    ctx = {"title": f"sanitas flow — {net} on {cfg.get('data', {}).get('dataset', '?')}", "seconds": data["seconds"],
           "steps": steps, "step_rows": srows, "figs": figs, "search": summ, "plan": plan,
           "plan_layers": [(n, s) for n, s in m.items() if s != "none"],
           "plan_counts": {s: sum(v == s for v in m.values()) for s in dict.fromkeys(m.values())},
           "scheme_rows": scheme_rows(plan), "cross": cross_level(steps), "area": area, "area_rows": area_rows(area),
           "pct": _pct,
           "config": json.dumps(cfg, indent=1)}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(("html.j2",)),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    (out / "index.md").write_text(env.get_template("flow.md.j2").render(**ctx))
    p = out / "index.html"
    p.write_text(env.get_template("flow.html.j2").render(**ctx))
    return p


__all__ = ["area_rows", "cross_level", "plot_protection", "scheme_rows", "step_rows", "vulnerability", "write_report"]

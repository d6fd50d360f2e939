"""Report of ``sanitas protect`` (manifest kind "protect"): coverage and overhead of every scheme on every network.

``write_report(dir)`` reads ``dir/protect.json`` (written by ``sanitas.commands.protect`` / ``benchmarks/
bench_protect.py``) and writes ``dir/index.md``, ``dir/index.html`` and three plots (matplotlib, Agg):
coverage vs extra MACs, critical faults corrected per scheme x network, and corrected fraction per site class.
The page states the targets (>= 99.9 % of critical single-bit faults corrected; <= +10 % MACs fault-free for
full protection on ResNet-20) next to what was reached, with Wilson 95 % lower bounds.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

TARGET_CRIT = 0.999
TARGET_MACS = 0.10


def pct(x, digits: int = 2) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def table_rows(res: dict) -> list[dict]:
    """One row per (network, scheme): the columns of the main table."""
    out = []
    for net, e in res["networks"].items():
        for s in res["schemes"]:
            c = (e.get("coverage") or {}).get(s, {})
            o = e["overhead"][s]
            t = e["time"].get(s, {})
            out.append({
                "network": net, "scheme": s,
                "effective": c.get("effective"), "critical": c.get("critical"),
                "detected": c.get("detected"), "corrected": c.get("corrected"),
                "critical_corrected": c.get("critical_corrected"), "lo95": c.get("critical_corrected_lower95"),
                "silent": c.get("silent"), "miscorrected": c.get("miscorrected"),
                "uncorrectable": c.get("uncorrectable"), "rollbacks": c.get("rollbacks"),
                "state_bit_exact": c.get("state_bit_exact"), "false_alarms": c.get("false_alarms"),
                "extra_macs": o["extra_macs"], "fault_path": o["fault_path_macs"] / o["macs"],
                "adds_per_mac": o["extra_adds_per_mac"], "extra_ops": o["extra_ops_frac"],
                "extra_mem": o["extra_mem"], "time_ratio": t.get("ratio")})
    return out


HEAD = ["network", "scheme", "effective faults", "critical", "detected", "corrected (bit-exact)",
        "critical corrected [95% lo]", "silent", "miscorrected", "uncorrectable", "rollbacks",
        "own-state faults bit-exact", "false alarms", "extra MACs", "fault-path MACs", "adds/MAC",
        "extra elementwise", "extra memory", "CPU time ×"]


def _fmt(r: dict) -> list[str]:
    n = lambda v: "—" if v is None else str(v)   # noqa: E731
    return [r["network"], r["scheme"], n(r["effective"]), n(r["critical"]), pct(r["detected"]),
            pct(r["corrected"]), f"{pct(r['critical_corrected'])} [{pct(r['lo95'], 1)}]"
            if r["critical_corrected"] is not None else "—",
            n(r["silent"]), n(r["miscorrected"]), n(r["uncorrectable"]), n(r["rollbacks"]),
            pct(r["state_bit_exact"], 1), n(r["false_alarms"]), pct(r["extra_macs"], 1), pct(r["fault_path"], 1),
            f"{r['adds_per_mac']:.3f}", pct(r["extra_ops"], 0), pct(r["extra_mem"], 1),
            "—" if r["time_ratio"] is None else f"{r['time_ratio']:.2f}"]


def text_table(res: dict) -> str:
    """The schemes x networks table as fixed-width text (what ``bench_protect.py`` prints)."""
    cols = ["network", "scheme", "eff", "crit", "detected", "corrected", "crit.corr", "[lo95]", "silent",
            "false", "+MACs", "+mem", "time×"]
    lines = []
    for r in table_rows(res):
        lines.append([r["network"], r["scheme"], str(r["effective"] or "—"), str(r["critical"] or "—"),
                      pct(r["detected"]), pct(r["corrected"]), pct(r["critical_corrected"]), pct(r["lo95"], 1),
                      "—" if r["silent"] is None else str(r["silent"]),
                      "—" if r["false_alarms"] is None else str(r["false_alarms"]),
                      pct(r["extra_macs"], 1), pct(r["extra_mem"], 1),
                      "—" if r["time_ratio"] is None else f"{r['time_ratio']:.2f}"])
    w = [max(len(c), *(len(l[i]) for l in lines)) if lines else len(c) for i, c in enumerate(cols)]
    fmt = lambda l: "  ".join(v.ljust(w[i]) if i < 2 else v.rjust(w[i]) for i, v in enumerate(l))  # noqa: E731
    return "\n".join([fmt(cols), fmt(["-" * x for x in w])] + [fmt(l) for l in lines])


def targets(res: dict) -> list[str]:
    """Sentences comparing the scheme under test with the issue's targets."""
    main = res.get("main")
    out = []
    for net, e in res["networks"].items():
        c = (e.get("coverage") or {}).get(main)
        o = e["overhead"].get(main)
        h = e.get("hunt")
        if h and h.get("critical"):
            ok = "meets" if h["lower95"] >= TARGET_CRIT else (
                "is consistent with" if h["critical_corrected"] >= TARGET_CRIT else "misses")
            out.append(f"{net}: {h['restored']} of {h['critical']} critical single-bit faults (screened from "
                       f"{h['screened_experiments']} experiments) have their top-1 restored by {h['scheme']}, "
                       f"{pct(h['bit_exact'])} bit-exactly; Wilson 95% interval [{pct(h['lower95'])}, "
                       f"{pct(h['upper95'])}]: {ok} the {pct(TARGET_CRIT, 1)} target"
                       + ("" if h["lower95"] >= TARGET_CRIT or h["critical_corrected"] < TARGET_CRIT else
                          " (bounding it at 95% needs >= 3840 critical experiments without a failure)") + ".")
        elif c and c.get("critical"):
            ok = "meets" if c["critical_corrected"] >= TARGET_CRIT else "misses"
            out.append(f"{net}: {pct(c['critical_corrected'])} of {c['critical']} critical faults corrected "
                       f"(Wilson 95% lower bound {pct(c['critical_corrected_lower95'])}): {ok} the "
                       f"{pct(TARGET_CRIT, 1)} target on this sample"
                       + ("" if c["critical_corrected_lower95"] >= TARGET_CRIT else
                          f"; the sample is too small to bound it above {pct(TARGET_CRIT, 1)}"
                          if c["critical_corrected"] >= TARGET_CRIT else "") + ".")
        if o:
            dw = [r for r in o.get("layers", []) if r["guard"] == "SpatialSanity"]
            if dw:
                m = sum(r["base_macs"] for r in dw)
                out.append(f"{net}: {len(dw)} depthwise convs ({m:,} MACs) are guarded by spatial checksums: "
                           f"+{sum(r['extra_macs'] for r in dw):,} MACs ({pct(sum(r['extra_macs'] for r in dw) / m)}"
                           f" of their MACs) and +{sum(r['extra_adds'] for r in dw):,} adds per image, where a "
                           f"cross-channel check neuron would cost +100% of their MACs.")
        if o and net.startswith("resnet20"):
            ok = "meets" if o["extra_macs"] <= TARGET_MACS else "misses"
            out.append(f"{net}: {pct(o['extra_macs'])} extra MACs fault-free for {main}: {ok} the "
                       f"<= {pct(TARGET_MACS, 0)} target (eager location would pay the fault-path "
                       f"{pct(o['fault_path_macs'] / o['macs'])} on every inference).")
    hunts = [e["hunt"] for e in res["networks"].values() if e.get("hunt") and e["hunt"].get("critical")]
    if len(hunts) > 1:
        from ..faults.stats import wilson
        k, n = sum(h["restored"] for h in hunts), sum(h["critical"] for h in hunts)
        lo, _ = wilson(k, n)
        out.append(f"pooled over the {len(hunts)} networks: {k} of {n} critical experiments restored, Wilson 95% "
                   f"lower bound {pct(lo)}: " + ("the 99.9% target is met at 95% confidence." if lo >= TARGET_CRIT
                                                else "below the 99.9% bound at 95% confidence."))
    return out


def _plots(res: dict, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    rows = table_rows(res)
    nets = list(res["networks"])
    schemes = res["schemes"]
    if any(r["corrected"] is not None for r in rows):
        fig, ax = plt.subplots(figsize=(6.4, 4))
        marks = "osD^v<>p*h"
        for i, s in enumerate(schemes):
            pts = [(r["extra_macs"] * 100, 100 * r["corrected"]) for r in rows if r["scheme"] == s
                   and r["corrected"] is not None]
            if pts:
                ax.scatter(*zip(*pts), marker=marks[i % len(marks)], label=s, s=40)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("extra MACs, fault-free (% of the model)")
        ax.set_ylabel("effective faults corrected bit-exactly (%)")
        ax.set_title("coverage vs cost (one marker per network)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "coverage_vs_macs.png", dpi=110)
        plt.close(fig)
        files.append("coverage_vs_macs.png")
        fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(schemes) * len(nets) / 2), 3.6))
        wdt = 0.8 / max(1, len(nets))
        for j, net in enumerate(nets):
            vals = [next((100 * (r["critical_corrected"] or 0) for r in rows if r["network"] == net
                          and r["scheme"] == s), 0) for s in schemes]
            ax.bar([i + j * wdt for i in range(len(schemes))], vals, wdt, label=net)
        ax.set_xticks([i + wdt * (len(nets) - 1) / 2 for i in range(len(schemes))])
        ax.set_xticklabels(schemes, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("critical faults with top-1 restored (%)")
        ax.axhline(100 * TARGET_CRIT, color="k", lw=0.8, ls="--")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "critical_corrected.png", dpi=110)
        plt.close(fig)
        files.append("critical_corrected.png")
        net = nets[0]
        cov = res["networks"][net].get("coverage") or {}
        classes = sorted({c for s in schemes for c in (cov.get(s, {}).get("per_class") or {})})
        if classes:
            import numpy as np
            m = np.array([[100 * ((cov[s]["per_class"].get(c) or {}).get("corrected") or 0) for c in classes]
                          for s in schemes])
            fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2.5, 0.45 * len(schemes) + 1.5))
            im = ax.imshow(m, vmin=0, vmax=100, cmap="RdYlGn", aspect="auto")
            ax.set_xticks(range(len(classes)))
            ax.set_xticklabels(classes, fontsize=8)
            ax.set_yticks(range(len(schemes)))
            ax.set_yticklabels(schemes, fontsize=8)
            for i in range(len(schemes)):
                for j in range(len(classes)):
                    ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=7)
            ax.set_title(f"{net}: effective faults corrected (%) per site")
            fig.colorbar(im, ax=ax)
            fig.tight_layout()
            fig.savefig(out / "per_class.png", dpi=110)
            plt.close(fig)
            files.append("per_class.png")
    return files


def write_report(d) -> Path:
    """Write ``d/index.md`` and ``d/index.html`` from ``d/protect.json``; returns the HTML path."""
    d = Path(d)
    res = json.loads((d / "protect.json").read_text())
    main = res.get("main", "?")
    rows = table_rows(res)
    plots = _plots(res, d)
    tg = targets(res)
    title = f"sanitas protect — {main} on {', '.join(res['networks'])}"
    md = [f"# {title}", "",
          ("Single-bit flips, uniformly over element x bit within each site class (weights, biases, layer inputs, "
           "accumulators, activations, layer outputs; an equal share per class), each on one test image; the "
           "same faults replay on every scheme. Effective = the unprotected output changed; critical = its "
           "top-1 changed. Own-state faults hit the scheme's sanity rows, checksums, checkpoints, replicas or "
           "bounds and must leave the output bit-exact. Extra MACs / adds / memory are counted per image, "
           "fault-free; fault-path MACs are paid only by a layer that raised an alarm (lazy location)."), ""]
    if tg:
        md += ["## Targets", ""] + [f"* {t}" for t in tg] + [""]
    md += ["## Schemes x networks", "", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    md += ["| " + " | ".join(_fmt(r)) + " |" for r in rows]
    for net, e in res["networks"].items():
        cov = (e.get("coverage") or {}).get(main)
        if cov:
            md += ["", f"### {net}: {main} per site class", "",
                   "| class | faults | effective | critical | detected | corrected | critical corrected |",
                   "|---|---|---|---|---|---|---|"]
            md += [f"| {c} | {v['faults']} | {v['effective']} | {v['critical']} | {pct(v['detected'])} | "
                   f"{pct(v['corrected'])} | {pct(v['critical_corrected'])} |" for c, v in cov["per_class"].items()]
        layers = e["overhead"].get(main, {}).get("layers")
        if layers:
            md += ["", f"### {net}: per-layer overhead of {main} (per image)", "",
                   "| node | op | guard | MACs | extra MACs | extra adds | extra ops | extra memory (bits) |",
                   "|---|---|---|---|---|---|---|---|"]
            md += [f"| {r['node']} | {r['op']} | {r['guard']} | {r['base_macs']} | {r['extra_macs']} | "
                   f"{r['extra_adds']} | {r['extra_ops']} | {r['extra_mem_bits']} |" for r in layers
                   if r["base_macs"] or r["extra_ops"] or r["extra_adds"]]
    hunts = [(net, e["hunt"]) for net, e in res["networks"].items() if e.get("hunt")]
    if hunts:
        md += ["", "## Critical-fault hunt", "",
               ("| network | scheme | critical experiments | screened | top-1 restored | bit-exact | Wilson 95% | "
                "per class (restored/critical) |"), "|---|---|---|---|---|---|---|---|"]
        md += [f"| {net} | {h['scheme']} | {h['critical']} | {h['screened_experiments']} | "
               f"{pct(h['critical_corrected'])} | {pct(h['bit_exact'])} | [{pct(h['lower95'])}, {pct(h['upper95'])}] | "
               + ", ".join(f"{c} {v['restored']}/{v['critical']}" for c, v in h["per_class"].items()) + " |"
               for net, h in hunts]
    md += [""] + [f"![{p}]({p})" for p in plots]
    (d / "index.md").write_text("\n".join(md) + "\n")
    th = "".join(f"<th>{html.escape(h)}</th>" for h in HEAD)
    trs = "\n".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in _fmt(r)) + "</tr>" for r in rows)
    tgs = "".join(f"<li>{html.escape(t)}</li>" for t in tg)
    imgs = "".join(f'<img src="{p}" alt="{p}" style="max-width:100%">' for p in plots)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:90em;margin:2em auto}}table{{border-collapse:collapse;font-size:85%}}
td,th{{border:1px solid #ccc;padding:.25em .5em;text-align:right}}td:nth-child(-n+2){{text-align:left}}</style>
</head><body><h1>{html.escape(title)}</h1><p>{html.escape(md[2])}</p>
{'<h2>Targets</h2><ul>' + tgs + '</ul>' if tg else ''}
<h2>Schemes x networks</h2><table><tr>{th}</tr>
{trs}</table><h2>Plots</h2>{imgs}
<p>Per-class and per-layer tables: <a href="index.md">index.md</a>.</p></body></html>"""
    p = d / "index.html"
    p.write_text(page)
    return p


__all__ = ["write_report", "table_rows", "text_table", "targets"]

"""Report of a fault-injection campaign (``sanitas inject``): plots + index.html + report.md in the campaign folder.

Read from the campaign's SQLite store (``sanitas.faults.store``), so a report can be written at any time, also
of a campaign still running or interrupted. Figures (matplotlib, Agg backend), every rate with its 95 % Wilson
score interval (formula in ``sanitas.faults.stats``), over (fault, input) experiments:

* ``accuracy_vs_rate.png``  rate models: top-1 accuracy vs fault rate (log axis) with CIs, fault-free line;
                            single faults: accuracy with one fault per site, with CIs, fault-free line
* ``vulnerability_layer.png`` SDC-benign and critical fractions per layer (critical with CI)
* ``vulnerability_site.png``  masked / SDC-benign / critical fractions per site
* ``vulnerability_bit.png``   critical and SDC fractions per bit position, one line per site (single-bit kinds)
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..faults.stats import proportion, wilson
from . import html_head


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _err(rows, key_k, key_n):
    """Asymmetric Wilson error bars [[below], [above]] for rows with k/n."""
    lo, hi = [], []
    for r in rows:
        p = r[key_k] / r[key_n] if r[key_n] else 0.0
        a, b = wilson(r[key_k], r[key_n])
        lo.append(max(0.0, p - a))
        hi.append(max(0.0, b - p))
    return [lo, hi]


def _query(con, q, args=()):
    cur = con.execute(q, args)
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _group(con, col: str, where: str = "1") -> list[dict]:
    """Outcome counts and correct predictions grouped by a faults-table column."""
    return _query(con, f"""
        SELECT {col} AS key, COUNT(*) AS n, SUM(r.outcome = 0) AS masked, SUM(r.outcome = 1) AS sdc,
               SUM(r.outcome = 2) AS critical, SUM(r.pred = i.label) AS correct, MIN(f.seq) AS first
        FROM results r JOIN faults f USING(fault_id) JOIN inputs i USING(input_id)
        WHERE {where} GROUP BY {col} ORDER BY first""")


def _plot_accuracy(con, summary, path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    clean = summary.get("clean_acc")
    if summary.get("per_rate"):
        pr = summary["per_rate"]
        rates = [p["rate"] for p in pr]
        acc = [p["accuracy"]["p"] for p in pr]
        err = [[a - p["accuracy"]["lo"] for a, p in zip(acc, pr)], [p["accuracy"]["hi"] - a for a, p in zip(acc, pr)]]
        ax.errorbar(rates, acc, yerr=err, fmt="o-", capsize=3, label=f"{summary.get('fault')} (95% Wilson CI)")
        if min(rates) > 0:
            ax.set_xscale("log")
        ax.set_xlabel("fault rate")
        title = "Accuracy vs fault rate"
    else:
        rows = _group(con, "f.site")
        xs = range(len(rows))
        acc = [r["correct"] / r["n"] for r in rows]
        ax.errorbar(list(xs), acc, yerr=_err(rows, "correct", "n"), fmt="o", capsize=4,
                    label="one fault per inference (95% Wilson CI)")
        ax.set_xticks(list(xs), [r["key"] for r in rows])
        ax.set_xlabel("fault site")
        title = "Accuracy under a single fault"
    if clean is not None:
        ax.axhline(clean, color="tab:green", ls="--", label=f"fault-free {clean:.3f}")
    ax.set_ylabel("top-1 accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return title


def _layer_rows(con, order: list) -> list[dict]:
    """Per (site, layer) outcome counts, in graph order (``order`` = node names) then site."""
    rows = _group(con, "site || ':' || f.layer", "f.layer != '*'")
    pos = {n: i for i, n in enumerate(order)}
    return sorted(rows, key=lambda r: (pos.get(r["key"].split(":", 1)[1], len(pos)), r["key"]))


def _plot_layers(con, path: Path, order: list) -> bool:
    rows = _layer_rows(con, order)
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(rows) + 2), 3.8))
    xs = list(range(len(rows)))
    sdc = [r["sdc"] / r["n"] for r in rows]
    crit = [r["critical"] / r["n"] for r in rows]
    ax.bar(xs, sdc, color="tab:orange", label="SDC-benign")
    ax.bar(xs, crit, bottom=sdc, color="tab:red", label="critical")
    e = _err(rows, "critical", "n")
    ax.errorbar(xs, [s + c for s, c in zip(sdc, crit)], yerr=e, fmt="none", ecolor="k", capsize=2,
                label="critical 95% CI")
    ax.set_xticks(xs, [r["key"] for r in rows], rotation=70, fontsize=7)
    ax.set_ylabel("fraction of experiments")
    ax.set_title("Vulnerability per layer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_sites(con, path: Path) -> bool:
    rows = _group(con, "f.site")
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs = list(range(len(rows)))
    bottom = [0.0] * len(rows)
    for key, color, label in (("masked", "tab:green", "masked"), ("sdc", "tab:orange", "SDC-benign"),
                              ("critical", "tab:red", "critical")):
        v = [r[key] / r["n"] for r in rows]
        ax.bar(xs, v, bottom=bottom, color=color, label=label)
        bottom = [b + x for b, x in zip(bottom, v)]
    ax.set_xticks(xs, [f"{r['key']}\n(n={r['n']})" for r in rows], fontsize=8)
    ax.set_ylabel("fraction of experiments")
    ax.set_title("Outcomes per fault site")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_bits(con, path: Path) -> bool:
    rows = _query(con, """
        SELECT f.site AS site, f.bit AS bit, COUNT(*) AS n, SUM(r.outcome = 1) AS sdc, SUM(r.outcome = 2) AS critical
        FROM results r JOIN faults f USING(fault_id)
        WHERE f.kind IN ('bitflip', 'stuck0', 'stuck1') GROUP BY f.site, f.bit ORDER BY f.site, f.bit""")
    if not rows:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for site in dict.fromkeys(r["site"] for r in rows):
        rs = [r for r in rows if r["site"] == site]
        bits = [r["bit"] for r in rs]
        for ax, key in zip(axes, ("critical", "sdc")):
            ax.errorbar(bits, [r[key] / r["n"] for r in rs], yerr=_err(rs, key, "n"), fmt="o-", capsize=2,
                        ms=3, label=site)
    for ax, t in zip(axes, ("critical (top-1 changed)", "SDC-benign")):
        ax.set_xlabel("bit position (0 = LSB)")
        ax.set_ylabel("fraction of experiments")
        ax.set_title(f"{t} per bit")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _fmt_p(p: dict) -> str:
    return f"{p['p']:.4f} [{p['lo']:.4f}, {p['hi']:.4f}]"


def write_report(d) -> Path:
    """Plots + index.html + report.md of the campaign in folder ``d``; returns index.html."""
    from ..faults.campaign import check_campaign_folder, summarize
    from ..faults.store import Store
    from . import read_manifest
    d = Path(d)
    man = read_manifest(d)
    check_campaign_folder(d)
    with Store(d / man.get("db", "results.sqlite"), readonly=True) as st:
        summary = summarize(st)
        spec = st.get_meta("spec") or man.get("spec", {})
        con = st.con
        figs = []
        title = _plot_accuracy(con, summary, d / "accuracy_vs_rate.png")
        figs.append(("accuracy_vs_rate.png", title))
        order = st.get_meta("layers") or []
        if _plot_layers(con, d / "vulnerability_layer.png", order):
            figs.append(("vulnerability_layer.png", "Vulnerability per layer"))
        if _plot_sites(con, d / "vulnerability_site.png"):
            figs.append(("vulnerability_site.png", "Outcomes per site"))
        if _plot_bits(con, d / "vulnerability_bit.png"):
            figs.append(("vulnerability_bit.png", "Vulnerability per bit position"))
        layers = _layer_rows(con, order)
    run = man.get("summary", {})
    rows = [("fault model", summary.get("fault")), ("sites", ", ".join(spec.get("sites", []))),
            ("faults (done / total)", f"{summary['faults']} / {summary['faults_total']}"),
            ("inputs per fault", summary["inputs"]), ("experiments", summary["experiments"]),
            ("masked", f"{summary['masked']} — {_fmt_p(summary['masked_rate'])}"),
            ("SDC-benign", f"{summary['sdc']} — {_fmt_p(summary['sdc_rate'])}"),
            ("critical", f"{summary['critical']} — {_fmt_p(summary['critical_rate'])}"),
            ("faults critical on >= 1 input", _fmt_p(summary["critical_faults"])),
            ("fault-free accuracy", f"{summary['clean_acc']:.4f}"),
            ("accuracy under faults", _fmt_p(summary["faulty_acc"]))]
    if run.get("faults_per_s"):
        rows.append(("speed of the last run", (f"{run['faults_per_s']:.1f} faults/s "
                                               f"({run.get('experiments_per_s', 0):.0f} experiments/s)")))
    note = ("Intervals: 95 % Wilson score intervals over (fault, input) experiments; "
            "masked = logits bit-identical to fault-free, SDC-benign = different logits with the same top-1, "
            "critical = top-1 changed.")
    top = sorted(layers, key=lambda r: -r["critical"] / r["n"])[:10]
    md = [f"# Fault-injection campaign: {summary.get('fault')}", "", "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in rows]
    md += ["", note, ""]
    if top:
        md += ["## Most vulnerable site:layer (critical fraction)", "", "| site:layer | experiments | critical |",
               "|---|---|---|"]
        md += [f"| {r['key']} | {r['n']} | {_fmt_p(proportion(r['critical'], r['n']))} |" for r in top]
        md += [""]
    for f, t in figs:
        md += [f"## {t}", "", f"![{t}]({f})", ""]
    (d / "report.md").write_text("\n".join(md))
    h = [html_head("sanitas campaign"),
         f"<h1>Fault-injection campaign: {html.escape(str(summary.get('fault')))}</h1><table>"]
    h += [f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows]
    h += [f"</table><p>{html.escape(note)}</p>"]
    if top:
        h += [("<h2>Most vulnerable site:layer</h2><table><tr><th>site:layer</th><th>experiments</th>"
               "<th>critical</th></tr>")]
        h += [f"<tr><td>{html.escape(r['key'])}</td><td>{r['n']}</td>"
              f"<td>{_fmt_p(proportion(r['critical'], r['n']))}</td></tr>" for r in top]
        h += ["</table>"]
    for f, t in figs:
        h += [f"<h2>{html.escape(t)}</h2><img src='{f}' alt='{html.escape(t)}'>"]
    h += [f"<details><summary>spec</summary><pre>{html.escape(json.dumps(spec, indent=2))}</pre></details>",
          "</body></html>"]
    (d / "index.html").write_text("\n".join(h))
    return d / "index.html"


__all__ = ["write_report"]

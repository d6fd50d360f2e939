"""Report of ``sanitas search`` (kind "search"): reward over the search, the Pareto front (faulty accuracy vs MACs
vs protection overhead), the derived cells, and the table of searched nets vs the zoo baselines trained with the
same FTT (clean accuracy, faulty accuracy mean ± 95% CI, MACs, params, Sanity overhead).

``write_report(dir)`` reads ``summary.json``, ``history.json`` and ``genotype.json`` of a search folder and writes
``reward.png``, ``pareto.png``, ``cells.png``, ``report.md`` and ``index.html`` there (matplotlib, Agg).
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from . import html_head


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def pareto_front(points: list[tuple]) -> list[int]:
    """Indices of the non-dominated points of (faulty acc [max], MACs [min], overhead [min])."""
    out = []
    for i, (a, m, o) in enumerate(points):
        dominated = any((a2 >= a and m2 <= m and o2 <= o) and (a2 > a or m2 < m or o2 < o)
                        for j, (a2, m2, o2) in enumerate(points) if j != i)
        if not dominated:
            out.append(i)
    return out


def _plot_reward(hist: dict, path: Path) -> bool:
    h = [r for r in hist.get("history", []) if r.get("valid", True) and r.get("reward") is not None]
    if not h:
        return False
    plt = _plt()
    idx = np.arange(len(h))
    r = np.array([x["reward"] for x in h])
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.scatter(idx, r, s=10, alpha=0.6, label="reward of each evaluated architecture")
    ax.plot(idx, np.maximum.accumulate(r), color="tab:red", label="best so far")
    w = max(1, len(r) // 10)
    if len(r) >= w:
        ax.plot(idx[w - 1:], np.convolve(r, np.ones(w) / w, mode="valid"), color="tab:green",
                label=f"moving mean ({w})")
    ax.set_xlabel("architecture evaluated")
    ax.set_ylabel("reward")
    ax.set_title("Reward over the search (supernet, reward split)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_pareto(hist: dict, summary: dict, path: Path) -> bool:
    h = [r for r in hist.get("history", []) if r.get("valid", True) and r.get("faulty") is not None]
    plt = _plt()
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8))
    if h:
        acc = np.array([x["faulty"] for x in h])
        macs = np.array([x["macs"] for x in h])
        ovh = np.array([x["overhead"] for x in h])
        front = pareto_front(list(zip(acc, macs, ovh)))
        sc = axs[0].scatter(macs, acc, c=ovh, s=12, cmap="viridis", alpha=0.7)
        fig.colorbar(sc, ax=axs[0], label="protection overhead (MACs)")
        f = sorted(front, key=lambda i: macs[i])
        axs[0].plot(macs[f], acc[f], "r.-", lw=1, label="Pareto front (acc, MACs, overhead)")
        axs[0].set_xlabel("MACs / image")
        axs[0].set_ylabel("faulty accuracy (supernet, reward split)")
        axs[0].set_title("Candidates of the search")
        axs[0].legend(fontsize=8)
    nets = [("searched: " + d.get("name", "?"), d) for d in summary.get("derived", [])]
    nets += [(k, v) for k, v in summary.get("baselines", {}).items()]
    for name, d in nets:
        mk = "*" if name.startswith("searched") else "o"
        axs[1].errorbar(d["macs"], d["faulty_acc"], yerr=d.get("faulty_ci", 0), fmt=mk, ms=9 if mk == "*" else 6,
                        capsize=3, label=f"{name} (+{d.get('overhead', 0):,} prot. MACs)")
    axs[1].set_xscale("log")
    axs[1].set_xlabel("MACs / image (log)")
    axs[1].set_ylabel("faulty accuracy (test, mean ± 95% CI)")
    axs[1].set_title("Final nets, same FTT and fault model")
    axs[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_cells(genotype: dict, nodes: int, path: Path) -> bool:
    """Draw the normal and reduction cell as DAGs: inputs c_{k-2}, c_{k-1}, nodes 0..n-1, output concat."""
    plt = _plt()
    kinds = [k for k in ("normal", "reduce") if genotype.get(k)]
    fig, axs = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.2))
    axs = np.atleast_1d(axs)
    for ax, kind in zip(axs, kinds):
        edges = genotype[kind]
        pos = {0: (0.0, 0.8), 1: (0.0, 0.2)}
        for j in range(nodes):
            pos[j + 2] = (1.0 + j, 0.5 + (0.25 if j % 2 else -0.25) * (1 if nodes > 1 else 0))
        out = (nodes + 1.0, 0.5)
        live = [True, True]
        for j in range(nodes):
            live.append(any(op != "none" and live[i] for op, i in edges[2 * j:2 * j + 2]))
        for e, (op, i) in enumerate(edges):
            j = e // 2
            if op == "none" or not live[i]:
                continue
            (x0, y0), (x1, y1) = pos[i], pos[j + 2]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->", color="gray"))
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + (0.04 if e % 2 else -0.04), op, fontsize=7, ha="center",
                    color="tab:blue")
        for k, (x, y) in pos.items():
            label = ("c_{k-2}", "c_{k-1}")[k] if k < 2 else str(k - 2)
            ax.text(x, y, label, ha="center", va="center", fontsize=9,
                    bbox=dict(boxstyle="round", fc="#dde" if k < 2 else ("#ffd" if live[k] else "#eee")))
            if k >= 2 and live[k]:
                ax.annotate("", xy=out, xytext=(x, y), arrowprops=dict(arrowstyle="->", color="#bbb", ls=":"))
        ax.text(*out, "c_{k} (concat)", ha="center", va="center", fontsize=9, bbox=dict(boxstyle="round", fc="#dfd"))
        ax.set_xlim(-0.5, nodes + 1.7)
        ax.set_ylim(0, 1)
        ax.axis("off")
        ax.set_title(f"{kind} cell")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _fmt(d: dict) -> tuple:
    return (f"{d['clean_acc']:.4f}", f"{d['faulty_acc']:.4f} ± {d.get('faulty_ci', 0):.4f}", f"{d['macs']:,}",
            f"{d['params']:,}", f"{d.get('overhead', 0):,}")


def write_report(d) -> Path:
    """Plots + report.md + index.html of the search in folder ``d``; returns index.html."""
    d = Path(d)
    summary = json.loads((d / "summary.json").read_text())
    hist = json.loads((d / "history.json").read_text()) if (d / "history.json").exists() else {}
    geno = json.loads((d / "genotype.json").read_text()) if (d / "genotype.json").exists() else {}
    figs = []
    if _plot_reward(hist, d / "reward.png"):
        figs.append(("reward.png", "Reward over the search"))
    if _plot_pareto(hist, summary, d / "pareto.png"):
        figs.append(("pareto.png", "Pareto front: faulty accuracy vs MACs vs protection overhead"))
    if geno and _plot_cells(geno["genotype"], int(geno["space"]["nodes"]), d / "cells.png"):
        figs.append(("cells.png", "Derived cells (best net)"))
    best = summary["best"]
    head = ("net", "clean acc", "faulty acc (mean ± 95% CI)", "MACs", "params", "protection MACs")
    rows = [("searched " + r.get("name", "?") + (" (best)" if r.get("name") == best.get("name") else ""),) + _fmt(r)
            for r in summary.get("derived", [])]
    rows += [(k,) + _fmt(v) for k, v in summary.get("baselines", {}).items()]
    fault = summary.get("fault", {})
    facts = [("fault model", ", ".join(f"{k}={v}" for k, v in fault.items())),
             ("space / controller / budget", f"{summary['space']} / {summary['controller']} / {summary['budget']}"),
             ("reward", json.dumps(summary.get("reward", {}))),
             ("MACs budget", summary.get("max_macs")),
             ("architectures evaluated", summary.get("evaluated")),
             ("timings (s)", json.dumps(summary.get("timings", {}))),
             ("golden check of the best net", json.dumps(best.get("golden", {})))]
    if "best_baseline" in summary:
        facts.append(("vs best baseline", (f"{summary['best_baseline']}: faulty accuracy "
                                            f"{summary['faulty_gain']:+.4f}, MACs x{summary['macs_ratio']:.3f}, "
                                            f"beats it: {summary['beats_best_baseline']}")))
    md = ["# FTT-NAS search", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in facts] + [""]
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", f"Best genotype: `{json.dumps(best.get('genotype'))}`", ""]
    for f, t in figs:
        md += [f"## {t}", "", f"![{t}]({f})", ""]
    (d / "report.md").write_text("\n".join(md))
    e = html.escape
    h = [html_head("sanitas search"),
         "<h1>FTT-NAS search</h1><table>"]
    h += [f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in facts]
    h += ["</table><h2>Searched nets vs zoo baselines (test split)</h2><table><tr>"]
    h += [f"<th>{e(c)}</th>" for c in head] + ["</tr>"]
    h += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows]
    h += ["</table>", f"<p>Best genotype: <code>{e(json.dumps(best.get('genotype')))}</code></p>"]
    for f, t in figs:
        h += [f"<h2>{e(t)}</h2><img src='{e(f)}' alt='{e(t)}'>"]
    h += ["</body></html>"]
    (d / "index.html").write_text("\n".join(h))
    return d / "index.html"

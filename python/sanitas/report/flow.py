"""Report of ``sanitas flow``: one HTML page (plus a Markdown twin) with accuracy, bit-exactness per level,
the RTL fault-injection figures and the steps' timings, and a training-curve plot (matplotlib, Agg)."""
from __future__ import annotations

import html
import json
from pathlib import Path


def _plot_training(history, path: Path) -> bool:
    if not history:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(ep, [h["loss"] for h in history], "o-", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax2 = ax.twinx()
    ax2.plot(ep, [h["val_acc"] for h in history], "s-", color="tab:green", label="val accuracy")
    ax2.set_ylabel("val accuracy")
    ax2.set_ylim(0, 1)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="center right")
    ax.set_title("INT8 quantisation-aware training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _rows(steps: dict) -> list[tuple[str, str, str, str]]:
    """One row per step that was selected: (name, status, seconds, what it measured)."""
    rows = []
    for name, s in steps.items():
        if s.get("reason") == "not selected":
            continue
        detail = []
        if "test_acc" in s:
            detail.append(f"test accuracy {s['test_acc']:.4f} (val {s['val_acc']:.4f})")
        if "bit_exact" in s:
            detail.append(f"bit-exact {s['bit_exact']}/{s['total']}")
        if "golden_test_acc" in s:
            detail.append(f"golden accuracy {s['golden_test_acc']:.4f}, {s['macs']:,} MACs/image")
        if "cases" in s:
            detail.append(f"{s['cases']} GEMM cases, {s.get('mismatches', '?')} mismatches, "
                          f"{s.get('faults_located', '?')}/{s.get('faults', '?')} injected faults located")
        if "sim" in s:
            m = s["sim"]
            detail.append(f"cocotb: {m.get('gemms_checked', '?')} GEMMs exact, faults detected "
                          f"{m.get('faults_detected', '?')}/{m.get('faults_corrupting', '?')} corrupting "
                          f"({m.get('faults_injected', '?')} injected), false alarms {m.get('false_alarms', '?')}")
        if isinstance(s.get("best"), dict):
            best = s["best"]
            detail.append(f"best searched net: clean {best.get('clean_acc', 0):.4f}, faulty "
                          f"{best.get('faulty_acc', 0):.4f}, {best.get('macs', 0):,} MACs "
                          f"({s.get('evaluated', '?')} architectures evaluated)")
        if "critical_rate" in s:
            detail.append(f"{s.get('faults', '?')} faults x {s.get('inputs', '?')} inputs: critical rate "
                          f"{s['critical_rate']:.4f}")
        if s.get("critical_corrected") is not None:
            detail.append(f"{s.get('scheme', '?')}: critical corrected {s['critical_corrected']:.4f}, extra MACs "
                          f"{s.get('extra_macs', 0):.3f}, false alarms {s.get('false_alarms', '?')}")
        if "reason" in s:
            detail.append(s["reason"])
        if "error" in s:
            detail.append("error: " + s["error"])
        rows.append((name, s.get("status", "?"), f"{s.get('seconds', 0):.1f}", "; ".join(detail)))
    return rows


def write_report(flow_json, out_dir) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/index.md`` from a ``flow.json``; returns the HTML path."""
    data = json.loads(Path(flow_json).read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = data["steps"]
    has_plot = _plot_training(steps.get("train", {}).get("history"), out / "training.png")
    rows = _rows(steps)
    cfg = data.get("config", {})
    title = f"sanitas flow — {cfg.get('train', {}).get('model', '?')} on {cfg.get('data', {}).get('dataset', '?')}"
    md = [f"# {title}", "", f"Total time: {data.get('seconds', 0):.1f} s", "",
          "| step | status | seconds | result |", "|---|---|---|---|"]
    md += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    if has_plot:
        md += ["", "![training](training.png)"]
    (out / "index.md").write_text("\n".join(md) + "\n")
    trs = "\n".join(
        f"<tr class='{html.escape(b)}'><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{c}</td>"
        f"<td>{html.escape(d)}</td></tr>" for a, b, c, d in rows)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}tr.failed{{background:#fdd}}
tr.ok td:nth-child(2){{color:#060}}</style>
</head><body><h1>{html.escape(title)}</h1><p>Total time: {data.get('seconds', 0):.1f} s</p>
<table><tr><th>step</th><th>status</th><th>seconds</th><th>result</th></tr>
{trs}</table>
{'<h2>Training</h2><img src="training.png" alt="training curve">' if has_plot else ''}
<h2>Configuration</h2><pre>{html.escape(json.dumps(cfg, indent=2))}</pre></body></html>"""
    p = out / "index.html"
    p.write_text(page)
    return p

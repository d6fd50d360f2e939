"""Report of a soak folder (``sanitas soak``): cumulative silent and flagged wrong outputs over the inferences
(``soak.png``) and the counters, as ``index.html`` / ``index.md``."""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..errors import SanitasError
from . import html_head

ROWS = ("inferences", "memory_faults", "transient_faults", "silent", "wrong_flagged", "detected", "corrected",
        "escalations", "repaired", "scrubbed", "rolled_back", "uncorrectable", "top1_wrong", "inferences_per_s")


def plot(d: Path, events, n: int) -> Path:
    """``soak.png``: cumulative silent (wrong, no alarm) and flagged (wrong, alarm) outputs over inferences."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3))
    for code, label in ((1, "silent (wrong, no alarm)"), (2, "flagged (wrong, alarm)")):
        xs = [i for i, c in events if c == code]
        ax.step([0, *xs, n], [0, *range(1, len(xs) + 1), len(xs)], where="post", label=label)
    ax.set_xlabel("inference")
    ax.set_ylabel("wrong outputs (cumulative)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    p = d / "soak.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p


def write_report(d) -> Path:
    d = Path(d)
    p = d / "soak.json"
    if not p.exists():
        raise SanitasError(f"{d}: no soak.json (soak not run yet)")
    r = json.loads(p.read_text())
    plot(d, r.get("events", []), int(r.get("inferences", 0)))
    cfg = r.get("config", {})
    title = f"soak: {r.get('scheme', '?')} on {Path(str(cfg.get('checkpoint', '?'))).name}"
    rows = [(k, r[k]) for k in ROWS if k in r]
    md = [f"# {title}", "", f"config: `{json.dumps(cfg)}`", "", "| counter | value |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in rows] + ["", "![wrong outputs over time](soak.png)", ""]
    (d / "index.md").write_text("\n".join(md))
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    page = (f"{html_head(title)}<h1>{html.escape(title)}</h1><p>config: <code>{html.escape(json.dumps(cfg))}</code></p>"
            f"<table>{body}</table><p><img src='soak.png' alt='wrong outputs'></p>"
            "</body></html>")
    out = d / "index.html"
    out.write_text(page)
    return out


__all__ = ["write_report", "plot"]

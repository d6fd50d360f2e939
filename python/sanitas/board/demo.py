"""The board notebook's steps (``notebooks/02_board.ipynb``): open the board, run the test set, inject faults live.

The notebook runs unchanged on a PYNQ board and off-board: ``choose_backend()`` picks ``pynq`` on a PYNQ image
that holds the overlay and ``fake`` otherwise, or when ``SANITAS_BOARD=fake``. ``open_boards`` gives two
accelerators with the same calls (``infer -> (logits, counters)``, ``inject``, ``reload``): protection off and
protection on. On the fake board the unprotected one is the csim of ``sanitas_top`` (its C++ behind the register
map) and the protected one the protected csim, or -- while ``sanitas_top`` generates the unprotected
accelerator only -- the protected golden model behind the same registers (``engine.GoldenEngine``); on a board
they are the overlays ``SANITAS_BITFILE`` and ``SANITAS_BITFILE_PROTECTED``. ``run_test_set`` measures accuracy,
bit-exactness against golden and latency; ``fault_sweep`` programs each fault through the fault-injection
registers of both and records the counters; ``plot_counters`` draws them.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..errors import SanitasError
from ..paths import REPO_ROOT
from .driver import STATUS_COUNTERS, BoardUnavailable

PROTECTION = "sanity+dmr"          # the protected accelerator's plan (sanitas.protect spec)
OUT = REPO_ROOT / "build" / "notebooks" / "board"


def load_network(checkpoint=None, out_dir=OUT, epochs: int = 4):
    """(golden model, digits splits) of ``checkpoint`` (or ``SANITAS_CHECKPOINT``); without one, a LeNet-5 is
    trained on digits once and kept in ``out_dir``."""
    from ..commands._common import load_model_data_golden
    ck = checkpoint or os.environ.get("SANITAS_CHECKPOINT")
    if ck is None:
        ck = Path(out_dir) / f"lenet5-e{epochs}.pt"
        if not ck.is_file():
            from ..data import load_dataset
            from ..models import build
            from ..train import save_checkpoint, train_model
            splits = load_dataset("digits")
            model = build("lenet5", splits.in_shape, splits.num_classes)
            metrics = train_model(model, splits, epochs=epochs, lr=5e-3, seed=0, progress=False)
            ck.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(model, ck, "digits", metrics)
    _, splits, gm = load_model_data_golden(str(ck))
    return gm, splits


def choose_backend() -> tuple[str, str]:
    """("pynq" | "fake", why): the real board when this is a PYNQ image with the overlay, else the fake one."""
    if os.environ.get("SANITAS_BOARD", "").lower() == "fake":
        return "fake", "SANITAS_BOARD=fake"
    try:
        from pynq.ps import ON_TARGET
    except ImportError:
        return "fake", "pynq is not installed"
    if not ON_TARGET:
        return "fake", "no PYNQ board found"
    if not os.environ.get("SANITAS_BITFILE"):
        return "fake", "on a PYNQ board, but SANITAS_BITFILE names no overlay"
    return "pynq", f"overlay {os.environ['SANITAS_BITFILE']}"


def open_boards(gm, backend: str, board: str = "pynq-z2", out_dir=OUT, protection: str = PROTECTION) -> dict:
    """{"off": accelerator, "on": accelerator} (module doc); each has ``.ip_kind``. Close them when done."""
    if backend == "pynq":
        from .driver import SanitasOverlay
        bits = {"off": os.environ["SANITAS_BITFILE"], "on": os.environ.get("SANITAS_BITFILE_PROTECTED")}
        if bits["on"] is None:
            raise BoardUnavailable("set SANITAS_BITFILE_PROTECTED to the protected overlay's .bit")
        boards = {}
        for k, bit in bits.items():
            boards[k] = SanitasOverlay(bit, model=gm)
            boards[k].ip_kind = "hw"
        return boards
    from .sim import FakeBoard
    off = FakeBoard(gm, board=board, out_dir=Path(out_dir) / "off", ip="csim").open()
    try:
        on = FakeBoard(gm, board=board, out_dir=Path(out_dir) / "on", ip="csim", spec=protection).open()
    except SanitasError:         # the HLS top does not generate this protection yet
        on = FakeBoard(gm, board=board, out_dir=Path(out_dir) / "on", ip="golden", spec=protection).open()
    return {"off": off, "on": on}


def run_test_set(acc, gm, xq: np.ndarray, labels: np.ndarray, batch: int = 30) -> dict:
    """The test set through ``acc`` in batches: accuracy, bit-exact images vs golden, latency per image."""
    logits, seconds = [], []
    for i in range(0, len(xq), batch):
        t0 = time.perf_counter()
        y, _ = acc.infer(xq[i:i + batch])
        seconds.append(time.perf_counter() - t0)
        logits.append(y)
    y = np.concatenate(logits)
    return {"images": int(len(xq)), "accuracy": float((y.argmax(1) == labels).mean()),
            "bit_exact": int((y == gm.run_int(xq)).all(axis=1).sum()),
            "ms_per_image": 1e3 * sum(seconds) / len(xq), "images_per_s": len(xq) / sum(seconds)}


def fault_sweep(boards: dict, gm, x: np.ndarray, faults) -> list[dict]:
    """Each fault through the fault-injection registers of every board: counters, changed logits, wrong
    predictions (against the fault-free run). The registers are cleared afterwards."""
    clean = gm.run_int(x)
    rows = []
    for f in faults:
        for name, acc in boards.items():
            acc.inject(f)
            y, counters = acc.infer(x)
            rows.append({"fault": f"{f.site} {f.layer}{list(f.index)} bit {f.bit} {f.kind}", "protection": name,
                         "changed_images": int((y != clean).any(axis=1).sum()),
                         "wrong_predictions": int((y.argmax(1) != clean.argmax(1)).sum()), **counters})
    for acc in boards.values():
        acc.inject(None)
    return rows


def totals(rows: list[dict]) -> dict:
    """{protection: {counter or outcome: sum over faults}}."""
    keys = ("changed_images", "wrong_predictions") + STATUS_COUNTERS
    out: dict = {}
    for r in rows:
        t = out.setdefault(r["protection"], dict.fromkeys(keys, 0))
        for k in keys:
            t[k] += r[k]
    return out


def plot_counters(rows: list[dict]):
    """Bar chart of the summed outcomes and counters, protection off vs on (a matplotlib Figure)."""
    import matplotlib.pyplot as plt
    t = totals(rows)
    keys = [k for k in next(iter(t.values())) if any(v[k] for v in t.values())] or list(next(iter(t.values())))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / len(t)
    for i, (name, vals) in enumerate(t.items()):
        ax.bar(np.arange(len(keys)) + i * width, [vals[k] for k in keys], width, label=f"protection {name}")
    ax.set_xticks(np.arange(len(keys)) + width * (len(t) - 1) / 2, keys, rotation=20)
    ax.set_ylabel(f"sum over {len(rows) // max(1, len(t))} faults")
    ax.legend()
    fig.tight_layout()
    return fig

"""The sanitas flow as named steps, FINN-builder style: ``step_<name>(ctx, cfg) -> record`` functions in one
table (``STEPS``, in execution order), a typed ``FlowContext`` passed between them, one ``Config`` going in.

Each step returns its record (the numbers it measured); the runner adds ``status`` (``ok`` unless the record says
``failed``, or the step raised: then ``error`` and ``traceback``) and ``seconds``, and writes every record to
``<out>/flow.json`` after each step. A failing step does not hide the others. Steps not selected are recorded as
``{"status": "skipped", "reason": "not selected"}``; a step whose input was to come from a selected step that
failed is skipped with that reason.

Artefacts between steps: the trained checkpoint (``<out>/<model>.pt``, made by ``train``) and the golden model
(made by ``golden``, else exported from the checkpoint). A step that needs the checkpoint while ``train`` is not
selected loads it from ``<out>``; when it is not there the flow stops with one line before anything is written
(``check_plan``). The search, inject, protect and board steps run their subcommands with the flow's config
(``commands._config.command_args``) into ``<out>/search``, ``campaign``, ``protect`` (board writes nothing); those
folders are emptied first: the flow recomputes its artefacts on every run, as train rewrites the checkpoint.
"""
from __future__ import annotations

import json
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .config import Config
from .errors import SanitasError
from .runfolder import FolderLock


class StepSkipped(Exception):
    """An input of the step was to be made by a selected step that failed (the message says which)."""


@dataclass
class FlowContext:
    """What the steps share: where artefacts go, what was selected, and the artefacts made so far."""
    cfg: Config                          # the whole configuration (the same object every step gets)
    out: Path                            # artefact folder (flow.out)
    report_dir: Path                     # report folder (flow.report)
    selected: tuple[str, ...]            # the steps that run, in table order
    progress: bool = True                # progress bars of the long steps
    records: dict[str, dict] = field(default_factory=dict)   # step name -> its record, in table order
    model: object | None = None          # trained Brevitas QNet (train step, or loaded from the checkpoint)
    golden: object | None = None         # its GoldenModel (golden step, or exported from the model)
    splits: object | None = None         # dataset splits (data.load_dataset), loaded once
    t0: float = field(default_factory=time.time)

    @property
    def checkpoint(self) -> Path:
        """The trained checkpoint: ``<out>/<train.model>.pt``."""
        return self.out / f"{self.cfg.train.model}.pt"

    def data(self):
        if self.splits is None:
            from .data import load_dataset
            self.splits = load_dataset(self.cfg.data.dataset, self.cfg.data.data_dir)
        return self.splits

    def need_checkpoint(self) -> Path:
        if "train" in self.selected and self.model is None:
            raise StepSkipped("train failed")
        return self.checkpoint

    def need_model(self):
        if self.model is None:
            from .train import load_checkpoint
            self.model, _ = load_checkpoint(self.need_checkpoint())
        return self.model

    def need_golden(self):
        if self.golden is None:
            if "golden" in self.selected:
                raise StepSkipped("golden failed")
            from .golden import export_golden
            self.golden = export_golden(self.need_model())
        return self.golden

    def fresh_dir(self, name: str) -> Path:
        """``<out>/<name>``, emptied: the flow recomputes its artefacts on every run."""
        d = self.out / name
        if d.exists():
            shutil.rmtree(d)
        return d

    def write_json(self) -> Path:
        p = self.out / "flow.json"
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps({"config": self.cfg.to_dict(), "steps": self.records,
                                   "seconds": round(time.time() - self.t0, 1)}, indent=2, default=str))
        tmp.replace(p)
        return p


def _subcommand(ctx: FlowContext, name: str, argv: list[str]) -> dict:
    """Run ``sanitas <name> <argv>`` with the flow's config; its summary becomes the record."""
    from .commands._config import command_args
    if not ctx.progress and name != "board":
        argv = [*argv, "--quiet"]
    args = command_args(name, argv, ctx.cfg)
    summary = dict(args.func(args) or {})
    ok = summary.pop("ok", True)
    # the runner's own keys are renamed, e.g. the board's "status" counters -> "board_status"
    rec = {(f"{name}_{k}" if k in _RUNNER_KEYS else k): v for k, v in summary.items()}
    return rec if ok else {"status": "failed", **rec}


_RUNNER_KEYS = ("status", "seconds", "error", "traceback", "reason")


# ------------------------------------------------------------------------------------------------ the steps
def step_train(ctx: FlowContext, cfg: Config) -> dict:
    """Quantisation-aware training of [train] model on [data]; writes the checkpoint."""
    from .models import build
    from .train import save_checkpoint, train_model
    splits, t = ctx.data(), cfg.train
    model = build(t.model, splits.in_shape, splits.num_classes, seed=t.seed)
    m = train_model(model, splits, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                    seed=t.seed, device=t.device, progress=ctx.progress)
    save_checkpoint(model, ctx.checkpoint, cfg.data.dataset, {"test_acc": m["test_acc"], "val_acc": m["val_acc"]})
    ctx.model = model
    return {"test_acc": m["test_acc"], "val_acc": m["val_acc"], "history": m["history"],
            "checkpoint": str(ctx.checkpoint)}


def step_golden(ctx: FlowContext, cfg: Config) -> dict:
    """Export the integer golden model (``golden.npz``) and check it bit-exactly on the test split."""
    from .golden import export_golden
    from .golden.check import check_bitexact
    model = ctx.need_model()
    ctx.golden = gm = export_golden(model)
    gm.save(ctx.out / "golden.npz")
    x, y = ctx.data().test.tensors
    c = check_bitexact(model, gm, x, backend=cfg.golden.backend)
    rec = {"bit_exact": c["bit_exact"], "total": c["total"],
           "golden_test_acc": float((c["golden_pred"] == y.numpy()).mean()), "macs": gm.macs()}
    return rec if c["bit_exact"] == c["total"] else {"status": "failed", **rec}


def step_hls(ctx: FlowContext, cfg: Config) -> dict:
    """QONNX -> hls4ml project (``hls4ml/``), compiled; predictions checked bit-exactly against golden."""
    from .hls.convert import check_bitexact, to_hls4ml
    model, gm = ctx.need_model(), ctx.need_golden()
    prj = ctx.out / "hls4ml"
    hm = to_hls4ml(model, prj, golden=gm)
    c = check_bitexact(hm, gm, ctx.data().test.tensors[0].numpy()[: cfg.hls.limit])
    rec = {"bit_exact": c["bit_exact"], "total": c["total"], "project": str(prj)}
    return rec if c["bit_exact"] == c["total"] else {"status": "failed", **rec}


def step_csim(ctx: FlowContext, cfg: Config) -> dict:
    """C simulation of the [csim] kernel (g++ + ap_types) into ``csim/``."""
    from .hls.csim import run_csim
    c = run_csim(kernel=cfg.csim.kernel, build_dir=ctx.out / "csim", array=cfg.array)
    rec = {k: c[k] for k in ("cases", "mismatches", "faults", "faults_located") if k in c}
    return rec if c.get("passed") else {"status": "failed", **rec}


def step_rtl(ctx: FlowContext, cfg: Config) -> dict:
    """Verilog of the [array] systolic array (``rtl/``) and one cocotb fault-injection run (``rtl_sim/``)."""
    from .rtl.generate import generate_systolic_array, run_cocotb_smoke
    files = generate_systolic_array(cfg.array, ctx.out / "rtl")
    rec: dict = {"files": [str(f) for f in files]}
    if not shutil.which("iverilog"):
        return {"status": "failed", **rec, "error": "iverilog not on PATH (make setup installs it as root)"}
    s = run_cocotb_smoke(ctx.out / "rtl_sim", cfg.array)
    s.pop("log", None)
    rec["sim"] = s
    return rec if s.get("passed") else {"status": "failed", **rec}


def step_search(ctx: FlowContext, cfg: Config) -> dict:
    """FTT-NAS search with [search] on [data] into ``search/`` (``sanitas search``)."""
    return _subcommand(ctx, "search", ["--out", str(ctx.fresh_dir("search"))])


def step_inject(ctx: FlowContext, cfg: Config) -> dict:
    """Fault-injection campaign [campaign] on the checkpoint into ``campaign/`` (``sanitas inject``)."""
    ck = ctx.need_checkpoint()
    return _subcommand(ctx, "inject", ["--checkpoint", str(ck), "--out", str(ctx.fresh_dir("campaign"))])


def step_protect(ctx: FlowContext, cfg: Config) -> dict:
    """Protection coverage and overhead study [protect] on the checkpoint into ``protect/`` (``sanitas protect``)."""
    ck = ctx.need_checkpoint()
    return _subcommand(ctx, "protect", ["--checkpoint", str(ck), "--out", str(ctx.fresh_dir("protect"))])


def step_board(ctx: FlowContext, cfg: Config) -> dict:
    """Inference through the PYNQ driver on the [board] backend, compared with golden (``sanitas board``)."""
    return _subcommand(ctx, "board", ["--checkpoint", str(ctx.need_checkpoint())])


def step_report(ctx: FlowContext, cfg: Config) -> dict:
    """The HTML/Markdown report of ``flow.json`` (the records of the steps before it) into flow.report."""
    from .report.flow import write_report
    return {"path": str(write_report(ctx.out / "flow.json", ctx.report_dir))}


class Step(NamedTuple):
    fn: Callable[[FlowContext, Config], dict]   # step_<name>(ctx, cfg) -> record
    needs: tuple[str, ...] = ()                  # inputs checked before the flow starts: "data", "checkpoint"


# The table: name -> step, in execution order; a name is its function's name without "step_".
STEPS: dict[str, Step] = {s.fn.__name__.removeprefix("step_"): s for s in (
    Step(step_train, ("data",)),
    Step(step_golden, ("data", "checkpoint")),
    Step(step_hls, ("data", "checkpoint")),
    Step(step_csim),
    Step(step_rtl),
    Step(step_search),
    Step(step_inject, ("checkpoint",)),
    Step(step_protect, ("checkpoint",)),
    Step(step_board, ("checkpoint",)),
    Step(step_report),
)}


# ------------------------------------------------------------------------------------------------ the runner
def select(names) -> tuple[str, ...]:
    """The steps to run, in table order; unknown names are one ``SanitasError`` line listing the valid ones."""
    bad = sorted(set(names) - set(STEPS))
    if bad:
        raise SanitasError(f"unknown flow step(s): {', '.join(bad)} (valid: {', '.join(STEPS)})")
    return tuple(n for n in STEPS if n in set(names))


def check_plan(ctx: FlowContext) -> None:
    """Before anything is written: every selected step's inputs can be had (the dataset loads; the checkpoint is
    made by a selected train step or is already in ``<out>``)."""
    for name in ctx.selected:
        needs = STEPS[name].needs
        if "checkpoint" in needs and "train" not in ctx.selected and not ctx.checkpoint.is_file():
            raise SanitasError(f"flow step {name} needs the checkpoint {ctx.checkpoint}: add train to the steps "
                               f"or train it into that folder first")
        if "data" in needs:
            ctx.data()


def run_step(ctx: FlowContext, name: str) -> dict:
    """Run one step and record it (module doc); a KeyboardInterrupt is recorded and re-raised."""
    rec: dict = {"status": "ok"}
    ctx.records[name] = rec
    t0 = time.time()
    print(f"[flow] {name} ...", flush=True)
    try:
        rec.update(STEPS[name].fn(ctx, ctx.cfg))
    except StepSkipped as e:
        rec.update(status="skipped", reason=str(e))
    except (Exception, KeyboardInterrupt) as e:
        rec["seconds"] = round(time.time() - t0, 2)
        rec["status"] = "failed"
        rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        rec["traceback"] = "".join(traceback.format_exception(e))[-4000:]
        print(f"[flow] {name} FAILED: {rec['error']}", flush=True)
        if isinstance(e, KeyboardInterrupt):
            raise
        return rec
    rec["seconds"] = round(time.time() - t0, 2)
    print(f"[flow] {name} {rec['status']} ({rec['seconds']} s)", flush=True)
    return rec


def run_flow(cfg: Config, out, report_dir, steps, progress: bool = True) -> dict:
    """Run the selected ``steps`` of ``cfg`` into ``out``; returns the summary (``ok`` false if a step failed)."""
    ctx = FlowContext(cfg, Path(out), Path(report_dir), select(steps), progress)
    check_plan(ctx)
    with FolderLock(ctx.out):             # one flow per folder: a second `sanitas flow` into it is refused
        if "report" in ctx.selected:
            try:
                ctx.report_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SanitasError(f"cannot create folder {ctx.report_dir}: {e.strerror or e}") from None
        cfg.save(ctx.out / "config.json")
        for name in STEPS:
            if name in ctx.selected:
                ctx.write_json()
                run_step(ctx, name)
            else:
                ctx.records[name] = {"status": "skipped", "seconds": 0.0, "reason": "not selected"}
        ctx.write_json()
    st = ctx.records
    summary = {"steps": {k: v["status"] for k, v in st.items()}, "seconds": round(time.time() - ctx.t0, 1)}
    if st["report"]["status"] == "ok":
        summary["report"] = st["report"]["path"]
    summary["ok"] = all(v in ("ok", "skipped") for v in summary["steps"].values())
    for k in ("train", "golden", "hls"):
        if "test_acc" in st[k]:
            summary["test_acc"] = st[k]["test_acc"]
        if "bit_exact" in st[k]:
            summary[f"{k}_bit_exact"] = f"{st[k]['bit_exact']}/{st[k]['total']}"
    return summary

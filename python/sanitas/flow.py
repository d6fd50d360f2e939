"""The sanitas flow as named steps, FINN-builder style: ``step_<name>(ctx, cfg) -> record`` functions in one
table (``STEPS``, in execution order), a typed ``FlowContext`` passed between them, one ``Config`` going in.

The default steps ([flow] steps) are the co-design end to end on digits: ``search`` (FTT-NAS with a small budget,
then the FTT training of the best derived net and of the best baseline), ``golden`` (the searched net's integer
model, bit-exact against Brevitas), ``campaign`` (single-bit flips over every golden site: vulnerability per
layer, site and bit), ``plan`` (the cheapest per-layer protection map reaching the target, verified on fresh
faults and a soak: ``protect/planner.py``), ``csim`` (``sanitas_top`` of the protected network in C simulation:
bit-exact on the test split, fault agreement with ``ProtectedModel``; and the GEMM kernel testbench), ``rtl`` (the
sanity_tile fault regression, the RTL engine layer by layer on a LeNet-5-shaped net, yosys area of the engine
variants against TMR), ``board`` (the PYNQ driver on the fake device whose IP is the csim) and ``report``. ``train``,
``hls``, ``protect`` are optional steps. The step bodies live in ``flowsteps.py``; this file is the runner.

Each step returns its record (the numbers it measured); the runner adds ``status`` (``ok`` unless the record says
``failed``, or the step raised: then ``error`` and ``traceback``) and ``seconds``, and writes every record to
``<out>/flow.json`` after each step. A failing step does not hide the others. Steps not selected are recorded as
``{"status": "skipped", "reason": "not selected"}``; a step whose input was to come from a selected step that
failed is skipped with that reason.

**Resumable.** Every step has its own folder ``<out>/<step>/`` and writes ``step.json`` there: its record and the
**key** of what it computed — sha256 of the config sections it reads (``Step.sections``) and of the keys of the
steps whose artefacts it reads (``Step.after``). A selected step whose folder holds an ``ok`` record with the
same key is not run again (``"cached": true``); anything else empties its folder and runs it. ``report`` always
runs.

The network every later step works on is the search's best derived net when ``search`` is selected, else the
``train`` step's checkpoint (``<out>/train/<model>.pt``). A step that needs that checkpoint while its maker is not
selected loads it from ``<out>``; when it is not there the flow stops with one line before anything is written
(``check_plan``).
"""
from __future__ import annotations

import fnmatch
import hashlib
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
from .runfolder import FolderLock, atomic_write

STEP_FILE = "step.json"


class StepSkipped(Exception):
    """An input of the step was to be made by a selected step that failed (the message says which)."""


@dataclass
class FlowContext:
    """What the steps share: where artefacts go, what was selected, and the artefacts made so far."""
    cfg: Config                          # the whole configuration (the same object every step gets)
    out: Path                            # artefact folder (flow.out): one sub-folder per step
    report_dir: Path                     # report folder (flow.report)
    selected: tuple[str, ...]            # the steps that run, in table order
    progress: bool = True                # progress bars of the long steps
    records: dict[str, dict] = field(default_factory=dict)   # step name -> its record, in table order
    keys: dict[str, str] = field(default_factory=dict)       # step name -> the key of its inputs + settings
    model: object | None = None          # the Brevitas QNet every later step works on
    golden: object | None = None         # its GoldenModel (golden step, or exported from the model)
    splits: object | None = None         # dataset splits (data.load_dataset), loaded once
    t0: float = field(default_factory=time.time)

    def step_dir(self, name: str) -> Path:
        return self.out / name

    @property
    def source(self) -> str:
        """The step that makes the network: ``search`` when selected (or already done), else ``train``."""
        if "search" in self.selected:
            return "search"
        if "train" not in self.selected and (self.step_dir("search") / "genotype.json").is_file():
            return "search"
        return "train"

    @property
    def checkpoint(self) -> Path:
        """The network's checkpoint: the search's best derived net, or ``<out>/train/<train.model>.pt``."""
        if self.source == "search":                 # the best derived net (summary.json; before the search: top0)
            p = self.step_dir("search") / "summary.json"
            name = Path(json.loads(p.read_text())["best"]["checkpoint"]).name if p.is_file() else "top0.pt"
            return self.step_dir("search") / "derived" / name
        return self.step_dir("train") / f"{self.cfg.train.model}.pt"

    def data(self):
        if self.splits is None:
            from .data import load_dataset
            self.splits = load_dataset(self.cfg.data.dataset, self.cfg.data.data_dir)
        return self.splits

    def need_checkpoint(self) -> Path:
        src = self.source
        if src in self.selected and self.records.get(src, {}).get("status") != "ok":
            raise StepSkipped(f"{src} failed")
        return self.checkpoint

    def need_model(self):
        if self.model is None:
            from .train import load_checkpoint
            self.model, _ = load_checkpoint(self.need_checkpoint())
        return self.model

    def need_golden(self):
        if self.golden is None:
            if "golden" in self.selected and self.records.get("golden", {}).get("status") != "ok":
                raise StepSkipped("golden failed")
            from .golden import export_golden
            self.golden = export_golden(self.need_model())
        return self.golden

    def need_ok(self, name: str) -> Path:
        """The folder of step ``name``, whose artefacts this step reads: it must have run (now or before)."""
        d = self.step_dir(name)
        if name in self.selected and self.records.get(name, {}).get("status") != "ok":
            raise StepSkipped(f"{name} failed")
        if _read_step(d) is None:
            raise StepSkipped(f"{name} has not run into {self.out}")
        return d

    def test_images(self, k: int | None = None):
        """The first ``k`` (default [flow] campaign_inputs) test images, int8 as the golden model reads them, and
        their labels."""
        k = self.cfg.flow.campaign_inputs if k is None else k
        x, y = self.data().test.tensors
        return self.need_golden().quantize_input(x.numpy()[:k]).astype("int64"), y.numpy()[:k]

    def write_json(self) -> Path:
        p = self.out / "flow.json"
        atomic_write(p, json.dumps({"config": self.cfg.to_dict(), "steps": self.records,
                                    "seconds": round(time.time() - self.t0, 1)}, indent=2, default=str))
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


_RUNNER_KEYS = ("status", "seconds", "error", "traceback", "reason", "cached")


class Step(NamedTuple):
    fn: Callable[[FlowContext, Config], dict]   # step_<name>(ctx, cfg) -> record
    needs: tuple[str, ...] = ()                  # inputs checked before the flow starts: "data", "checkpoint"
    sections: tuple[str, ...] = ()               # config sections ("sec") or keys ("sec.<pattern>") it reads
    after: tuple[str, ...] = ()                  # steps whose artefacts it reads (their keys are part of its key)
    cache: bool = True                           # False: always run (the report)


def _table() -> dict[str, Step]:
    from . import flowsteps as s
    net = ("net",)                               # the network's maker: search or train (FlowContext.source)
    return {st.fn.__name__.removeprefix("step_"): st for st in (
        Step(s.step_train, ("data",), ("data", "train")),
        Step(s.step_search, ("data",), ("data", "search", "flow.search_*", "flow.final_epochs", "flow.baseline*",
                                        "flow.test_fault_samples")),
        Step(s.step_golden, ("data", "checkpoint"), ("data", "golden"), net),
        Step(s.step_hls, ("data", "checkpoint"), ("data", "hls"), net),
        Step(s.step_campaign, ("data", "checkpoint"), ("data", "campaign", "flow.campaign_*"), net),
        Step(s.step_plan, ("data", "checkpoint"), ("data", "plan", "flow.campaign_inputs"), (*net, "campaign")),
        Step(s.step_protect, ("checkpoint",), ("data", "protect"), net),
        Step(s.step_csim, ("data", "checkpoint"), ("data", "csim", "array", "campaign.seed", "flow.csim_*"),
             (*net, "plan")),
        Step(s.step_rtl, (), ("rtl", "array", "flow.rtl_*"), net),
        Step(s.step_board, ("checkpoint",), ("data", "board", "array", "flow.campaign_inputs", "flow.board_faults"),
             (*net, "plan")),
        Step(s.step_report, (), (), (), cache=False),
    )}


STEPS: dict[str, Step] = _table()


# ------------------------------------------------------------------------------------------------ the runner
def select(names) -> tuple[str, ...]:
    """The steps to run, in table order; unknown names are one ``SanitasError`` line listing the valid ones."""
    bad = sorted(set(names) - set(STEPS))
    if bad:
        raise SanitasError(f"unknown flow step(s): {', '.join(bad)} (valid: {', '.join(STEPS)})")
    return tuple(n for n in STEPS if n in set(names))


def check_plan(ctx: FlowContext) -> None:
    """Before anything is written: every selected step's inputs can be had (the dataset loads; the checkpoint is
    made by a selected search/train step or is already in ``<out>``)."""
    for name in ctx.selected:
        needs = STEPS[name].needs
        if "checkpoint" in needs and ctx.source not in ctx.selected and not ctx.checkpoint.is_file():
            raise SanitasError(f"flow step {name} needs the checkpoint {ctx.checkpoint}: add {ctx.source} to the "
                               f"steps or run it into that folder first")
        if "data" in needs:
            ctx.data()


def _read_step(d: Path) -> dict | None:
    p = d / STEP_FILE
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def step_key(ctx: FlowContext, name: str) -> str:
    """sha256 of the step's settings (its config sections) and of the keys of the steps it reads from."""
    st = STEPS[name]
    d = ctx.cfg.to_dict()
    settings = {}
    for sec in st.sections:                      # "section" or "section.<fnmatch pattern of its keys>"
        name, _, pat = sec.partition(".")
        settings[sec] = d[name] if not pat else {k: v for k, v in d[name].items() if fnmatch.fnmatchcase(k, pat)}
    deps = {}
    for a in st.after:
        a = ctx.source if a == "net" else a
        deps[a] = ctx.keys.get(a) or (_read_step(ctx.step_dir(a)) or {}).get("key")
    blob = json.dumps({"step": name, "settings": settings, "after": deps}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def run_step(ctx: FlowContext, name: str) -> dict:
    """Run one step (or take its cached record) and record it (module doc); a KeyboardInterrupt is recorded and
    re-raised."""
    st = STEPS[name]
    d = ctx.step_dir(name)
    key = ctx.keys[name] = step_key(ctx, name)
    old = _read_step(d)
    if st.cache and old is not None and old.get("key") == key and old["record"].get("status") == "ok":
        rec = ctx.records[name] = {**old["record"], "cached": True}
        print(f"[flow] {name} unchanged: skipped (its record from {d / STEP_FILE})", flush=True)
        return rec
    rec: dict = {"status": "ok"}
    ctx.records[name] = rec
    if d.exists() and st.cache:
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print(f"[flow] {name} ...", flush=True)
    try:
        rec.update(st.fn(ctx, ctx.cfg))
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
    if st.cache:
        atomic_write(d / STEP_FILE, json.dumps({"key": key, "record": rec}, indent=1, default=str))
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
    summary = {"steps": {k: v["status"] for k, v in st.items()},
               "cached": [k for k, v in st.items() if v.get("cached")],
               "seconds": round(time.time() - ctx.t0, 1)}
    if st["report"]["status"] == "ok":
        summary["report"] = st["report"]["path"]
    summary["ok"] = all(v in ("ok", "skipped") for v in summary["steps"].values())
    for k in ("train", "golden", "hls", "csim", "board"):
        if "test_acc" in st[k]:
            summary["test_acc"] = st[k]["test_acc"]
        if "bit_exact" in st[k]:
            summary[f"{k}_bit_exact"] = f"{st[k]['bit_exact']}/{st[k]['total']}"
    if "scheme_map" in st["plan"]:
        summary["plan_met"] = st["plan"]["verify"]["met"]
    return summary

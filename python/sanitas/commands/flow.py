"""``sanitas flow``: the main job — train LeNet-5 on digits, golden check, hls4ml csim check, HLS kernel csim,
RTL generation + one cocotb run, and an HTML report with accuracy, bit-exactness and the steps' timings.

Every step records ``{"status": "ok"|"failed"|"skipped", "seconds": t, ...}`` in ``<out>/flow.json``; a failing
step does not hide the others (the summary says which failed and the exit status is 1).
"""
from __future__ import annotations

import json
import shutil
import time
import traceback
from pathlib import Path

from ..config import Config
from ..errors import SanitasError
from ._common import existing_file, limit_threads, non_negative_int, output_dir


def add_parser(sub):
    p = sub.add_parser("flow", help="run the whole flow on the default config and write build/report/index.html")
    p.add_argument("--config", default=None, type=existing_file, help="YAML/JSON config file (sanitas.config.Config)")
    p.add_argument("--out", default=None, type=output_dir, help="artefact folder (default: config flow.out = build/flow)")
    p.add_argument("--report", default=None, type=output_dir, help="report folder (default: config flow.report = build/report)")
    p.add_argument("--epochs", type=non_negative_int, default=None, help="override train.epochs")
    p.add_argument("--steps", default=None, help="comma-separated subset of train,golden,hls,csim,rtl,report")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
    return p


class _Step:
    def __init__(self, name, steps: dict, enabled: bool):
        self.name, self.steps, self.enabled = name, steps, enabled

    def __enter__(self):
        self.t0 = time.time()
        self.rec = {"status": "skipped" if not self.enabled else "ok"}
        self.steps[self.name] = self.rec
        if self.enabled:
            print(f"[flow] {self.name} ...", flush=True)
        return self.rec

    def __exit__(self, et, ev, tb):
        self.rec["seconds"] = round(time.time() - self.t0, 2)
        if et is not None:
            self.rec["status"] = "failed"
            self.rec["error"] = f"{et.__name__}: {str(ev).splitlines()[0] if str(ev) else ''}"
            self.rec["traceback"] = "".join(traceback.format_exception(et, ev, tb))[-4000:]
            print(f"[flow] {self.name} FAILED: {self.rec['error']}", flush=True)
            return et is not KeyboardInterrupt
        if self.enabled:
            print(f"[flow] {self.name} {self.rec['status']} ({self.rec['seconds']} s)", flush=True)
        return False


def run(args) -> dict:
    limit_threads()
    cfg = Config.load(args.config) if args.config else Config()
    if args.epochs is not None:
        cfg.train.epochs = args.epochs
    out = Path(args.out or cfg.flow.out)
    report_dir = Path(args.report or cfg.flow.report)
    steps_on = set(args.steps.split(",")) if args.steps else set(cfg.flow.steps)
    unknown = steps_on - {"train", "golden", "hls", "csim", "rtl", "report"}
    if unknown:
        raise SanitasError(f"unknown flow step(s): {', '.join(sorted(unknown))}")
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    steps: dict = {}
    ctx: dict = {}
    t_all = time.time()

    from ..data import load_dataset
    splits = load_dataset(cfg.data.dataset, cfg.data.data_dir)
    x_test, y_test = splits.test.tensors

    with _Step("train", steps, "train" in steps_on) as r:
        from ..models import build
        from ..train import load_checkpoint, save_checkpoint, train_model
        ck = out / f"{cfg.train.model}.pt"
        if "train" in steps_on:
            model = build(cfg.train.model, splits.in_shape, splits.num_classes, seed=cfg.train.seed)
            m = train_model(model, splits, epochs=cfg.train.epochs, batch_size=cfg.train.batch_size,
                            lr=cfg.train.lr, seed=cfg.train.seed, device=cfg.train.device, progress=not args.quiet)
            save_checkpoint(model, ck, cfg.data.dataset, {"test_acc": m["test_acc"], "val_acc": m["val_acc"]})
            r.update(test_acc=m["test_acc"], val_acc=m["val_acc"], history=m["history"], checkpoint=str(ck))
        elif ck.exists():
            model, _ = load_checkpoint(ck)
        else:
            raise SanitasError(f"no checkpoint at {ck}: run the train step first")
        ctx["model"] = model

    gm = None
    with _Step("golden", steps, "golden" in steps_on and "model" in ctx) as r:
        if r["status"] == "ok":
            from ..golden import export_golden
            from ..golden.check import check_bitexact
            gm = export_golden(ctx["model"])
            gm.save(out / "golden.npz")
            c = check_bitexact(ctx["model"], gm, x_test)
            acc = float((c["golden_pred"] == y_test.numpy()).mean())
            r.update(bit_exact=c["bit_exact"], total=c["total"], golden_test_acc=acc, macs=gm.macs())
            if c["bit_exact"] != c["total"]:
                r["status"] = "failed"

    with _Step("hls", steps, "hls" in steps_on and gm is not None) as r:
        if r["status"] == "ok":
            from ..hls.convert import check_bitexact as hls_check
            from ..hls.convert import to_hls4ml
            prj = out / "hls4ml"
            hm = to_hls4ml(ctx["model"], prj, golden=gm)
            c = hls_check(hm, gm, x_test.numpy())
            r.update(bit_exact=c["bit_exact"], total=c["total"], project=str(prj))
            if c["bit_exact"] != c["total"]:
                r["status"] = "failed"

    with _Step("csim", steps, "csim" in steps_on) as r:
        if r["status"] == "ok":
            from ..hls.csim import run_csim
            c = run_csim(kernel="systolic_gemm", build_dir=out / "csim")
            r.update({k: c[k] for k in ("cases", "mismatches", "faults", "faults_located") if k in c})
            if not c.get("passed"):
                r["status"] = "failed"

    with _Step("rtl", steps, "rtl" in steps_on) as r:
        if r["status"] == "ok":
            from ..rtl.generate import generate_systolic_array, run_cocotb_smoke
            files = generate_systolic_array(cfg.rtl.rows, cfg.rtl.cols, out / "rtl", cfg.rtl.data_width,
                                            cfg.rtl.acc_width)
            r["files"] = [str(f) for f in files]
            if shutil.which("iverilog"):
                s = run_cocotb_smoke(out / "rtl_sim", rows=cfg.rtl.rows, cols=cfg.rtl.cols)
                s.pop("log", None)
                r["sim"] = s
                if not s.get("passed"):
                    r["status"] = "failed"
            else:
                r["status"] = "failed"
                r["error"] = "iverilog not on PATH (make setup installs it as root)"

    summary = {"steps": {k: v["status"] for k, v in steps.items()},
               "seconds": round(time.time() - t_all, 1)}
    (out / "flow.json").write_text(json.dumps({"config": cfg.to_dict(), "steps": steps,
                                               "seconds": summary["seconds"]}, indent=2, default=str))
    with _Step("report", steps, "report" in steps_on) as r:
        if r["status"] == "ok":
            from ..report.flow import write_report
            r["path"] = str(write_report(out / "flow.json", report_dir))
            summary["report"] = r["path"]
    summary["steps"]["report"] = steps["report"]["status"]
    summary["ok"] = all(v in ("ok", "skipped") for v in summary["steps"].values())
    for k in ("train", "golden", "hls"):
        s = steps.get(k, {})
        if "test_acc" in s:
            summary["test_acc"] = s["test_acc"]
        if "bit_exact" in s:
            summary[f"{k}_bit_exact"] = f"{s['bit_exact']}/{s['total']}"
    return summary

"""Fault-injection campaigns: fault list -> chunks -> executor -> SQLite store -> summary with Wilson CIs.

Two families share one store and one report:

* **single-fault campaigns** (``bitflip``, ``stuck``, ``multibit``, ``random``): a list of ``Fault`` records
  (sampled uniformly without replacement, or exhaustive over the chosen sites) evaluated on K test inputs by the
  exact batched engine (``engine.FastGolden``; ``backend="golden"`` replays each record through
  ``GoldenModel.run_int`` instead — the slow reference);
* **rate campaigns** (``mibb``, ``adsaf``, ``ber``): for every rate, ``faults`` independent trials; a trial is one
  resampled fault pattern (``torch_inject``) applied to the Brevitas model for one forward of the K inputs. A
  trial is seeded from its own record (model, rate, index, seed), so any chunking, resume or worker gives the
  same faults.

The folder (``sanitas.runfolder``) has one owner (an flock held for the run) and its settings, the checkpoint's
sha256 and the fault list (``faults.jsonl``) with its sha256 are on disk (atomically) before the first result,
so a resume with other settings, another checkpoint content or another fault list is refused, and a kill at any
point (``SANITAS_CRASH_AT=setup|first_chunk|mid|final_write`` in the tests) resumes to the uninterrupted result.

Per (fault, input): 0 masked (logits bit-identical to fault-free), 1 SDC-benign (different logits, same top-1),
2 critical (top-1 changed). Work is cut into chunks (all inputs of a few faults); each chunk is committed to
the store in one transaction, so ``resume=True`` continues after any crash with nothing lost or duplicated.

Scale-out (``engine="dask"``): chunks are shipped to the workers of a dask.distributed cluster (a
``LocalCluster`` of ``workers`` processes, or an existing scheduler at ``scheduler``); the model and inputs are
scattered once per worker; the driver remains the single writer of the store. The computation of a chunk is
exact integer arithmetic, so results are identical to the single-process run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import CampaignConfig
from ..errors import SanitasError
from ..runfolder import (
    SETTINGS,
    FolderLock,
    RunFolder,
    atomic_write_json,
    crash_point,
    remove_stale_tmp,
)
from ..runfolder import sha256_file as file_sha256
from .engine import CRITICAL, MASKED, SDC, EngineStats, FastGolden, classify
from .fault import KINDS, Fault, enumerate_faults, sample_faults, validate
from .stats import proportion

SINGLE_FAULTS = {"bitflip": ("bitflip",), "stuck": ("stuck0", "stuck1"), "multibit": ("multibit",),
                 "random": ("random",)}
RATE_FAULTS = ("mibb", "adsaf", "ber")
DEFAULT_RATES = {"mibb": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3], "adsaf": [0.01, 0.02, 0.04, 0.08, 0.16],
                 "ber": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]}
FAULT_CHOICES = tuple(SINGLE_FAULTS) + RATE_FAULTS
MANIFEST = "manifest.json"
DB = "results.sqlite"


_D = CampaignConfig()          # the user-facing defaults live in the [campaign] config section


@dataclass
class CampaignSpec:
    """Everything that defines a campaign's results (a resume must present the same spec); the defaults are
    ``sanitas.config.CampaignConfig``'s (see there for each setting)."""
    checkpoint: str
    fault: str = _D.fault
    sites: list = field(default_factory=lambda: list(_D.sites))
    layers: list | None = _D.layers
    faults: int = _D.faults
    exhaustive: bool = _D.exhaustive
    inputs: int = _D.inputs
    seed: int = _D.seed
    rates: list | None = _D.rates           # None: DEFAULT_RATES[fault]
    dataset: str | None = _D.dataset
    data_dir: str | None = None
    backend: str = _D.backend

    def check(self):
        if self.fault not in FAULT_CHOICES:
            raise SanitasError(f"unknown fault model '{self.fault}' (choose from {', '.join(FAULT_CHOICES)})")
        if self.faults < 1 and not self.exhaustive:
            raise SanitasError("--faults must be >= 1")
        if self.inputs < 1:
            raise SanitasError("--inputs must be >= 1")
        if self.backend not in ("fast", "golden"):
            raise SanitasError(f"unknown backend '{self.backend}' (choose from fast, golden)")
        if self.fault == "ber" and (len(self.sites) != 1 or self.sites[0] not in ("weight", "act")):
            raise SanitasError("--fault ber takes --site weight or --site act")
        if self.fault in RATE_FAULTS and self.exhaustive:
            raise SanitasError(f"--exhaustive applies to single-fault models, not '{self.fault}'")
        for r in self.rates or []:
            if not 0 <= r <= 1:
                raise SanitasError(f"rate {r} must be in [0, 1]")

    @property
    def is_rate(self) -> bool:
        return self.fault in RATE_FAULTS


# ------------------------------------------------------------------------------------------------ context
@dataclass
class Context:
    """A loaded campaign: model (Brevitas + golden), inputs, the fault / trial list."""
    spec: CampaignSpec
    qnet: object
    gm: object
    x: np.ndarray              # (K, C, H, W) float32 images
    xq: np.ndarray             # (K, C, H, W) int8 codes (int64)
    labels: np.ndarray         # (K,)
    input_ids: np.ndarray      # (K,) indices into the test split
    ckpt_sha: str


def load_context(spec: CampaignSpec) -> Context:
    from ..data import load_dataset
    from ..golden import export_golden
    from ..train import check_input_shape, load_checkpoint
    spec.check()
    qnet, ck = load_checkpoint(spec.checkpoint)
    ds = spec.dataset or ck.get("dataset") or "digits"
    splits = load_dataset(ds, spec.data_dir)
    check_input_shape(spec.checkpoint, ck["spec"], splits.in_shape, ds)
    xt, yt = splits.test.tensors
    k = min(spec.inputs, len(xt))
    x = xt[:k].numpy()
    gm = export_golden(qnet)
    if spec.layers:
        for l in spec.layers:
            if l not in gm.by_name:
                raise SanitasError(f"layer '{l}' does not exist")
    return Context(spec, qnet, gm, x, gm.quantize_input(x), yt[:k].numpy(), np.arange(k),
                   file_sha256(spec.checkpoint))


def fault_list(ctx: Context) -> list[Fault]:
    """The campaign's single-fault records (reproducible from model, spec and seed)."""
    s = ctx.spec
    kinds = SINGLE_FAULTS[s.fault]
    if s.exhaustive:
        out = []
        for site in s.sites:
            out += list(enumerate_faults(ctx.gm, site, s.layers, kinds))
        return out
    return sample_faults(ctx.gm, s.faults, s.sites, kinds, s.seed, s.layers)


def trial_list(ctx: Context) -> list[dict]:
    """Rate campaigns: one record per (rate, trial)."""
    s = ctx.spec
    site = s.sites[0] if s.fault == "ber" else ("output" if s.fault == "mibb" else "weight")
    return [{"model": s.fault, "site": site, "rate": float(r), "trial": t, "seed": s.seed}
            for r in (s.rates or DEFAULT_RATES[s.fault]) for t in range(s.faults)]


def trial_id(rec: dict) -> str:
    return hashlib.blake2b(json.dumps(rec, sort_keys=True).encode(), digest_size=8).hexdigest()


def _fault_model(rec: dict):
    from .torch_inject import ADSAF, BER, MiBB
    if rec["model"] == "mibb":
        return MiBB(rec["rate"])
    if rec["model"] == "adsaf":
        return ADSAF(rec["rate"])
    return BER(rec["rate"], site=rec["site"])


# ------------------------------------------------------------------------------------------------ executors
_WORKER = {}   # per-process cache: context key -> (FastGolden, clean env) or (qnet, x tensor, clean logits)


def _fast_ctx(key, payload, device):
    if key not in _WORKER:
        gm, xq = payload["gm"], payload["xq"]
        fg = FastGolden(gm, device=device)
        _WORKER.clear()
        _WORKER[key] = (fg, fg.run(xq))
    return _WORKER[key]


def exec_fault_chunk(key, payload, fault_dicts, backend="fast", device="cpu", threads=None):
    """Evaluate one chunk of faults (all on one (site, layer)); returns (ids, outcome (F, K), pred (F, K), stats).

    Top-level and picklable: the same function runs in-process and on dask workers."""
    if threads:
        torch.set_num_threads(threads)
    faults = [Fault.from_dict(d) for d in fault_dicts]
    st = EngineStats()
    if backend == "golden":
        from .executors import run_golden
        gm, xq = payload["gm"], payload["xq"]
        clean = gm.run_int(xq)
        res = [classify(run_golden(gm, xq, f), clean) for f in faults]
        oc = np.stack([r[0] for r in res])
        pr = np.stack([r[1] for r in res])
        st.rows = oc.size
    else:
        fg, env = _fast_ctx(key, payload, device)
        oc, pr = fg.run_faults(env, faults, len(payload["xq"]), st, validated=True)
    return [f.id for f in faults], oc, pr, st.to_dict()


def exec_trial_chunk(key, payload, trials, device="cpu", threads=None):
    """Evaluate rate-model trials (one forward each on the K inputs); returns (ids, outcome, pred, {})."""
    from ..train import load_checkpoint
    from .torch_inject import inject
    if threads:
        torch.set_num_threads(threads)
    if key not in _WORKER:
        qnet, _ = load_checkpoint(payload["checkpoint"])
        qnet.to(device).eval()
        x = torch.as_tensor(payload["x"], device=device)
        with torch.no_grad():
            clean = qnet(x)
        _WORKER.clear()
        _WORKER[key] = (qnet, x, clean)
    qnet, x, clean = _WORKER[key]
    ocs, prs = [], []
    cp = clean.argmax(1)
    for rec in trials:
        g = torch.Generator(device=x.device).manual_seed(int(trial_id(rec), 16) & ((1 << 63) - 1))
        with torch.no_grad(), inject(qnet, _fault_model(rec), generator=g):
            out = qnet(x)
        fp = out.argmax(1)
        changed = (out != clean).reshape(len(x), -1).any(1)
        oc = torch.where(~changed, MASKED, torch.where(fp != cp, CRITICAL, SDC))
        ocs.append(oc.cpu().numpy().astype(np.int8))
        prs.append(fp.cpu().numpy().astype(np.int64))
    return [trial_id(r) for r in trials], np.stack(ocs), np.stack(prs), {"rows": len(trials) * len(x)}


def run_fault_list(gm, xq, faults: list[Fault], backend: str = "fast", device: str = "cpu",
                   chunk_rows: int = 4096, stats: EngineStats | None = None, validate_faults: bool = True):
    """In-memory campaign: outcome and faulty top-1 (both (F, K) numpy) of ``faults`` on int8 inputs ``xq``.

    The library entry point for other parts of sanitas (protection coverage, replays); no store, no progress."""
    if validate_faults:
        for f in faults:
            validate(f, gm)
    k = len(xq)
    out_o = np.zeros((len(faults), k), np.int8)
    out_p = np.zeros((len(faults), k), np.int64)
    pos = {f.id: i for i, f in enumerate(faults)}
    payload = {"gm": gm, "xq": np.asarray(xq)}
    key = f"mem-{id(gm)}-{id(xq)}-{device}"
    st = stats if stats is not None else EngineStats()
    for chunk in make_chunks(faults, k, chunk_rows, mixed=None if device == "cpu" else False):
        ids, oc, pr, s = exec_fault_chunk(key, payload, [f.to_dict() for f in chunk], backend, device)
        for fid, o, p in zip(ids, oc, pr):
            out_o[pos[fid]], out_p[pos[fid]] = o, p
        _merge(st, s)
    _WORKER.pop(key, None)
    return out_o, out_p


def _merge(st: EngineStats, s: dict):
    st.rows += s.get("rows", 0)
    st.macs_done += s.get("macs_done", 0)
    st.macs_naive += s.get("macs_naive", 0)
    st.stopped_early += s.get("stopped_early", 0)


def make_chunks(faults: list[Fault], n_inputs: int, chunk_rows: int, mixed: bool | None = None) -> list[list[Fault]]:
    """Cut the list into chunks of <= chunk_rows rows (faults x inputs), grouped by (site, layer) in
    first-appearance order. ``mixed`` (default: when the sparse CPU engine is available): a chunk may span
    several (site, layer) groups, which that engine propagates in one pass; otherwise one group per chunk
    (the dense engine batches one group at a time)."""
    from . import sparse
    per = max(1, chunk_rows // max(1, n_inputs))
    groups: dict = {}
    for f in faults:
        groups.setdefault((f.site, f.layer), []).append(f)
    if mixed is None:
        mixed = sparse.available()
    if mixed:
        flat = [f for g in groups.values() for f in g]
        return [flat[i:i + per] for i in range(0, len(flat), per)]
    return [g[i:i + per] for g in groups.values() for i in range(0, len(g), per)]


# ------------------------------------------------------------------------------------------------ campaign
FAULT_LIST = "faults.jsonl"
CAMPAIGN_RESULTS = (MANIFEST, DB)                       # files that exist only once a campaign has started


def _write_manifest(out: Path, data: dict):
    atomic_write_json(out / MANIFEST, data, indent=2)


def _settings_key(spec: CampaignSpec, ckpt_sha: str) -> dict:
    """What defines a campaign's results: the spec (without the checkpoint's path) + the checkpoint's content."""
    skey = {**asdict(spec), "checkpoint_sha256": ckpt_sha}
    skey.pop("checkpoint")
    return json.loads(json.dumps(skey, sort_keys=True))


def _records(ctx: Context) -> tuple[list[str], list[tuple]]:
    """The campaign's fault / trial records (canonical JSON, in order) and their store rows."""
    if ctx.spec.is_rate:
        recs = trial_list(ctx)
        lines = [json.dumps(r, sort_keys=True) for r in recs]
        rows = [(trial_id(r), i, r["site"], "*", None, r["model"], r["rate"], ln)
                for i, (r, ln) in enumerate(zip(recs, lines))]
    else:
        fl = fault_list(ctx)
        lines = [f.to_json() for f in fl]
        rows = [(f.id, i, f.site, f.layer, f.bit, f.kind, None, ln) for i, (f, ln) in enumerate(zip(fl, lines))]
    return lines, rows


def _stored_records(db: Path) -> list[str] | None:
    """Read-only: the records in an existing store (None: no store; [] : a store without a setup)."""
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "faults" not in tables:
                return []
            return [r[0] for r in con.execute("SELECT record FROM faults ORDER BY seq")]
        finally:
            con.close()
    except sqlite3.Error as e:
        raise SanitasError(f"{db}: not a sanitas campaign database ({e}); use another --out") from None


LABELS = {"checkpoint_sha256": "checkpoint content"}


def check_campaign_folder(d) -> None:
    """``sanitas report``: refuse (one line) a campaign folder whose setup never completed."""
    d = Path(d)
    if not (d / SETTINGS).exists() or not (d / DB).exists():
        raise SanitasError(f"{d}: the campaign's setup never completed (no {SETTINGS} or {DB}); nothing to report")
    recs = _stored_records(d / DB)
    if not recs:
        raise SanitasError(f"{d}: the campaign's store holds no fault list; nothing to report")


def _auto_rows(gm, chunk_rows: int, n_inputs: int, budget_bytes: float = 256e6) -> int:
    """Cap rows per chunk so that ~4 live float64 tensors of the largest node fit ``budget_bytes``."""
    from .fault import node_shapes
    biggest = max(int(np.prod(s[1:])) for s in node_shapes(gm).values())
    cap = int(budget_bytes // (biggest * 8 * 4))
    return max(n_inputs, min(chunk_rows, cap))


def run_campaign(spec: CampaignSpec, out, resume: bool = False, engine: str = "local", workers: int = 2,
                 scheduler: str | None = None, device: str = "cpu", chunk_rows: int = 4096,
                 progress: bool = True, connect_timeout: float = 10.0) -> dict:
    """Run (or resume) a campaign into folder ``out`` (settings.json, faults.jsonl, results.sqlite,
    manifest.json); returns the summary.

    The folder is locked for the run (``runfolder.FolderLock``). Before the first result: the fault list
    (``faults.jsonl``) and the settings with the checkpoint's sha256 and the list's sha256 (``settings.json``)
    are written atomically, then the store's setup is one transaction. A resume must present the same settings,
    checkpoint content and fault list, else it is refused before anything is written."""
    if engine not in ("local", "dask"):
        raise SanitasError(f"unknown engine '{engine}' (choose from local, dask)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SanitasError("--device cuda: no CUDA device available")
    out = Path(out)
    ctx = load_context(spec)
    with FolderLock(out):
        return _run_locked(ctx, out, resume, engine, workers, scheduler, device, chunk_rows, progress,
                           connect_timeout)


def _run_locked(ctx, out, resume, engine, workers, scheduler, device, chunk_rows, progress, connect_timeout):
    from tqdm.auto import tqdm

    from .store import AsyncWriter, Store
    spec = ctx.spec
    skey = _settings_key(spec, ctx.ckpt_sha)
    lines, frows = _records(ctx)
    blob = ("\n".join(lines) + "\n").encode()
    folder = RunFolder(out, "campaign", results=CAMPAIGN_RESULTS, labels=LABELS)
    # ---- read-only checks: a refused resume changes nothing
    resuming = folder.check(skey, {FAULT_LIST: blob}, resume)
    stored = _stored_records(out / DB) if resuming else None
    if stored and stored != lines:
        raise SanitasError(f"{out / DB} holds another fault list than {FAULT_LIST}; use another --out")
    if not resuming:
        folder.setup(skey, {FAULT_LIST: blob})
    remove_stale_tmp(out)
    k = len(ctx.xq)
    store = Store(out / DB)
    try:
        if not stored:                                  # fresh, or killed between settings.json and the store
            if spec.is_rate:
                with torch.no_grad():
                    cpred = ctx.qnet(torch.as_tensor(ctx.x)).argmax(1).numpy()
            else:
                cpred = ctx.gm.run_int(ctx.xq, backend="f64").argmax(1)
            store.setup(frows, ctx.input_ids, ctx.labels, cpred, spec=skey, checkpoint=str(spec.checkpoint),
                        started=time.time(), model=ctx.qnet.spec, n_inputs=k,
                        layers=[n.name for n in ctx.gm.nodes])
        records = [json.loads(ln) for ln in lines]
        _write_manifest(out, {"kind": "campaign", "version": 1, "status": "running", "db": DB,
                              "spec": skey, "checkpoint": str(spec.checkpoint)})
        done = store.done_faults(k)
        n_total = len(records)
        if spec.is_rate:
            todo = [r for r in records if trial_id(r) not in done]
            per = max(1, min(8, len(todo) // max(1, 4 * workers))) if engine == "dask" else 4
            chunks = [todo[i:i + per] for i in range(0, len(todo), per)]
            payload = {"checkpoint": str(Path(spec.checkpoint).resolve()), "x": ctx.x}
            fn, args = exec_trial_chunk, (device,)
        else:
            todo = [Fault.from_dict(d) for d in records if Fault.from_dict(d).id not in done]
            rows = _auto_rows(ctx.gm, chunk_rows, k)
            chunks = [[f.to_dict() for f in c]
                      for c in make_chunks(todo, k, rows, mixed=None if device == "cpu" else False)]
            payload = {"gm": ctx.gm, "xq": ctx.xq}
            fn, args = exec_fault_chunk, (spec.backend, device)
        ckey = f"{ctx.ckpt_sha[:16]}-{spec.fault}-{k}-{device}"
        st = EngineStats()
        bar = tqdm(total=n_total, initial=n_total - len(todo), unit="fault", desc=f"inject {spec.fault}",
                   disable=not progress, dynamic_ncols=True, smoothing=0.1)
        counts = np.zeros(3, np.int64)
        t0 = time.time()
        n_new = 0

        n_chunks = len(chunks)

        def on_commit(n):                                 # the kill-at-every-phase hooks
            if n == 1:
                crash_point("first_chunk")
            if n == max(2, n_chunks // 2):
                crash_point("mid")

        writer = AsyncWriter(out / DB, ctx.input_ids, on_commit=on_commit)

        def consume(res):
            nonlocal n_new
            ids, oc, pr, s = res
            writer.put(ids, oc, pr)
            _merge(st, s)
            counts[:] += np.bincount(oc.reshape(-1), minlength=3)[:3]
            n_new += len(ids)
            bar.update(len(ids))
            bar.set_postfix(masked=int(counts[0]), sdc=int(counts[1]), critical=int(counts[2]), refresh=False)

        try:
            if engine == "local":
                for c in chunks:
                    consume(fn(ckey, payload, c, *args))
            else:
                _run_dask(fn, ckey, payload, chunks, args, workers, scheduler, consume, connect_timeout)
        finally:
            writer.close()                       # every computed chunk is committed before the summary
        elapsed = time.time() - t0
        bar.close()
        summary = summarize(store, spec)
        summary.update({
            "faults_per_s": n_new / elapsed if elapsed > 0 and n_new else 0.0,
            "experiments_per_s": n_new * k / elapsed if elapsed > 0 and n_new else 0.0,
            "seconds": round(elapsed, 3), "new_faults": n_new, "resumed_faults": n_total - len(todo),
            "engine": engine, "device": device, "out": str(out), "db": str(out / DB)})
        if not spec.is_rate:
            summary["work"] = st.to_dict()          # row-MACs done vs naive: the measured engine saving
        store.set_meta(summary=summary, finished=time.time())
        crash_point("final_write")
        _write_manifest(out, {"kind": "campaign", "version": 1, "status": "done", "db": DB, "spec": skey,
                              "checkpoint": str(spec.checkpoint), "summary": summary})
        return summary
    finally:
        store.close()


def _run_dask(fn, key, payload, chunks, args, workers, scheduler, consume, connect_timeout: float = 10.0):
    """Ship chunks to dask.distributed workers; results are consumed (stored) as they complete."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise SanitasError("--engine dask needs dask.distributed: pip install 'sanitas[dist]'") from None
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=connect_timeout)
        except (OSError, TimeoutError) as e:
            raise SanitasError(f"cannot reach the dask scheduler at {scheduler} "
                               f"({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''})") from None
    else:
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    try:
        data = client.scatter(payload, broadcast=True)
        futs = [client.submit(fn, key, data, c, *args, threads=1, pure=False) for c in chunks]
        for fut in as_completed(futs):
            consume(fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ------------------------------------------------------------------------------------------------ summary
def summarize(store, spec: CampaignSpec | None = None) -> dict:
    """Campaign totals from the store: outcome counts with Wilson CIs, accuracy, per-rate tables."""
    con = store.con
    k = store.get_meta("n_inputs") or con.execute("SELECT COUNT(*) FROM inputs").fetchone()[0]
    n_faults = store.n_faults()
    done = con.execute("SELECT COUNT(DISTINCT fault_id) FROM results").fetchone()[0]
    cnt = dict(con.execute("SELECT outcome, COUNT(*) FROM results GROUP BY outcome").fetchall())
    n = sum(cnt.values())
    correct = con.execute("SELECT COUNT(*) FROM results r JOIN inputs i USING(input_id) "
                          "WHERE r.pred = i.label").fetchone()[0]
    clean_correct = con.execute("SELECT COUNT(*) FROM inputs WHERE clean_pred = label").fetchone()[0]
    crit_f = con.execute("SELECT COUNT(DISTINCT fault_id) FROM results WHERE outcome = 2").fetchone()[0]
    s = {"kind": "campaign", "fault": spec.fault if spec else (store.get_meta("spec") or {}).get("fault"),
         "faults": done, "faults_total": n_faults, "inputs": k, "experiments": n,
         "masked": cnt.get(MASKED, 0), "sdc": cnt.get(SDC, 0), "critical": cnt.get(CRITICAL, 0),
         "masked_rate": proportion(cnt.get(MASKED, 0), n), "sdc_rate": proportion(cnt.get(SDC, 0), n),
         "critical_rate": proportion(cnt.get(CRITICAL, 0), n),
         "critical_faults": proportion(crit_f, done),
         "clean_acc": clean_correct / max(1, k), "faulty_acc": proportion(correct, n),
         "complete": done == n_faults}
    rates = con.execute("SELECT f.rate, r.outcome, COUNT(*), SUM(r.pred = i.label) FROM results r "
                        "JOIN faults f USING(fault_id) JOIN inputs i USING(input_id) WHERE f.rate IS NOT NULL "
                        "GROUP BY f.rate, r.outcome ORDER BY f.rate").fetchall()
    if rates:
        per = {}
        for rate, oc, c, ok in rates:
            d = per.setdefault(rate, {"n": 0, "correct": 0, "outcomes": [0, 0, 0]})
            d["n"] += c
            d["correct"] += ok
            d["outcomes"][oc] += c
        s["per_rate"] = [{"rate": r, "accuracy": proportion(d["correct"], d["n"]),
                          "masked": d["outcomes"][0], "sdc": d["outcomes"][1], "critical": d["outcomes"][2]}
                         for r, d in sorted(per.items())]
    return s


__all__ = [
    "DEFAULT_RATES",
    "FAULT_CHOICES",
    "KINDS",
    "RATE_FAULTS",
    "SINGLE_FAULTS",
    "CampaignSpec",
    "check_campaign_folder",
    "exec_fault_chunk",
    "exec_trial_chunk",
    "fault_list",
    "file_sha256",
    "load_context",
    "make_chunks",
    "run_campaign",
    "run_fault_list",
    "summarize",
    "trial_list",
]

"""The FT-NAS / FTT-NAS search driver: supernet FTT training alternating with controller updates, derivation of
the top-k genotypes, final FTT training, zoo baselines under the same FTT, and the evaluation of them all.

Stages (Ning et al. TODAES 2021 sec. 4; every stage checkpoints into ``out`` and is skipped when done):

1. **search** — ``float_epochs`` of float warm-up of the shared weights (the supernet's Brevitas modules run
   as plain float ops, quantisers bypassed, uniform architecture sampling, CE), then ``epochs`` INT8 epochs:
   one epoch of supernet training with the FTT loss on 80% of the training split (one architecture per batch:
   uniform during ``warmup``, then from the controller — the policy for RL, uniform for evolution), then
   controller steps on the remaining 20% (the reward split): each asked architecture is evaluated with the
   shared INT8 weights, clean and under ``eval_fault_samples`` fault draws, rewarded by ``Reward`` and told
   to the controller. The whole state (supernet weights + Brevitas quantiser counters, optimiser, schedule,
   controller, every RNG, history) is saved after every epoch in ``search_state.pt``: an interrupted search
   resumes to the same result (asserted bit-identical in the tests).
2. **derive** — the top-k distinct genotypes by reward; each is built as an ordinary INT8 ``QNet`` and trained
   from scratch with FTT (``derived/top{i}.pt``); the best on the validation split (by the same reward) is
   written to ``genotype.json``.
3. **baselines** — the zoo nets trained with the same FTT loss, fault model and rate (``baselines/{name}.pt``);
   they do not depend on the search, so on the dask engine they train in one background task from the start.
4. **evaluate** — clean accuracy, faulty accuracy (mean ± 95% CI over ``test_fault_samples`` draws), MACs,
   params and protection overhead of every net on the test split; the best derived net is exported to the
   golden integer model and checked bit-exact against Brevitas on the whole test split.

Deviations from FTT-NAS' recipe, all measured on digits (see the issue-5 note): without batch norm (the integer
contract has none) a weight-sharing supernet trained with uniformly sampled paths stays at chance accuracy for
hundreds of steps (even in float: 640 steps), and SGD 0.05 diverges. So the supernet (i) normalises every op
output with parameter-free batch statistics (DARTS/ENAS' affine-free BN; supernet only, derived nets are
BN-free INT8), (ii) uses variance-preserving init, (iii) is warmed up in float (a warm-up step costs 0.23x an
INT8 FTT step, ``benchmarks/bench_search.py``) before the INT8 FTT epochs, and (iv) trains with Adam 1e-2 +
cosine. Derived nets are trained from scratch, as in the paper.

Candidate evaluation and the final/baseline trainings run on ``engine`` "local" (in process) or "dask" (a local
``distributed`` cluster of ``workers`` single-threaded processes — the engine the fault campaigns use); the
results are identical (per-candidate fault seeds, one intra-op thread everywhere).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import SearchConfig
from ..errors import SanitasError
from ..models.ops import spec
from .controllers import CONTROLLERS
from .ftt import FTTLoss, evaluate_faulty, fault_to_dict, make_fault
from .reward import Reward
from .search_tasks import (_Engine, _eval_task_kw, _set_threads, _train_many, _train_task, _uniform_valid,
                           budget_per_epoch, evaluate_genotypes, split_reward)
from .space import Genotype, SearchSpace, save_genotype

__all__ = ["SearchConfig", "Search", "run_search", "split_reward", "budget_per_epoch", "evaluate_genotypes",
           "STATE_FORMAT", "ZOO_BASELINES", "BASELINE_RECIPES"]

STATE_FORMAT = "sanitas-search-1"
ZOO_BASELINES = SearchConfig().baselines          # the default: every zoo net
# zoo training recipes on digits under FTT (lr, epochs). resnet20: 2e-3 (the zoo's recipe), 5 epochs (its
# 2.5 M MACs make it the slowest by far). vgg: under MiBB FTT its faulty CE explodes at lr >= 1e-3 (measured:
# 13% accuracy at 2e-3 and 5e-3); 5e-4 was the best of {2e-4, 5e-4, 1e-3, 2e-3, 5e-3} (90.0% clean, 54.9%
# faulty; clean-only training gives 98.2% / 74.2%, still far below the searched nets).
BASELINE_RECIPES = {"lenet5": (5e-3, 15), "vgg": (5e-4, 15), "mobilenetv2": (5e-3, 15), "resnet20": (2e-3, 5)}


# ------------------------------------------------------------------------------------------------ the search
def read_state(path) -> dict:
    """A search state file (``torch.load(weights_only=True)``), refused in one line if unreadable or foreign."""
    from ..train import read_torch_file
    st = read_torch_file(path, "search state")
    if not isinstance(st, dict) or st.get("format") != STATE_FORMAT or not isinstance(st.get("config"), dict):
        raise SanitasError(f"{path}: not a sanitas search state")
    return st


class Search:
    """One search run in folder ``out`` (see the module doc). ``run()`` returns the summary dict."""

    def __init__(self, cfg: SearchConfig, out, progress: bool = True, callback=None):
        self.cfg = cfg = cfg.resolved()          # dataset, fault and alpha filled in: the recorded settings
        self.out = Path(out)
        self.progress = progress
        self.callback = callback            # callback(stage, epoch) after every checkpoint (tests interrupt here)
        self.space = cfg.space_config()
        self.ss = SearchSpace(self.space)
        self.fault = make_fault(cfg.fault, cfg.rate)
        self.fault_d = fault_to_dict(self.fault)
        self.fault_d["model"] = cfg.fault
        self.timings: dict = {}

    # -------------------------------------------------------------- helpers
    def _data(self):
        from ..data import load_dataset
        splits = load_dataset(self.cfg.dataset, self.cfg.data_dir)
        w, r = split_reward(splits.train, self.cfg.reward_frac)
        return splits, w, r

    def _cost_cache(self, reward: Reward, g: Genotype, cache: dict) -> dict:
        k = g.key()
        if k not in cache:
            from .derive import emit_derived
            em = emit_derived(g, self.space, self.in_shape, self.num_classes)
            cache[k] = reward.cost(em.layers, em.nodes, self.in_shape, self.num_classes)
        return cache[k]

    def _resolve_max_macs(self):
        mm = self.cfg.max_macs
        if mm != "auto":
            return None if mm is None else int(mm)
        if not self.cfg.baselines:
            return None
        from ..models import build
        macs = [_zoo_macs(build(b, self.in_shape, self.num_classes)) for b in self.cfg.baselines]
        return int(min(macs))

    # -------------------------------------------------------------- stage 1: search
    def search(self, eng: "_Engine | None" = None) -> dict:
        """Stage 1 (see the module doc); ``eng``: the engine of the run (default: one of its own)."""
        if eng is None:
            with _Engine(self.cfg.engine if self.cfg.budget else "local", self.cfg.workers) as own:
                return self.search(own)
        from .supernet import Supernet
        cfg = self.cfg
        _set_threads()
        splits, w_ds, r_ds = self._data()
        self.in_shape, self.num_classes = tuple(splits.in_shape), splits.num_classes
        dev = cfg.device
        state_path = self.out / "search_state.pt"
        torch.manual_seed(cfg.seed)          # supernet init is the only user of the global RNG
        sn = Supernet(self.space, self.in_shape, self.num_classes)
        st = None
        if state_path.exists():
            st = read_state(state_path)
            if st.get("format") != STATE_FORMAT:
                raise SanitasError(f"{state_path}: not a sanitas search state")
            if _resume_key(st["config"]) != _resume_key(cfg.to_dict()):
                raise SanitasError(f"{state_path} was written with another configuration; use a new --out")
            # before the optimiser is built: Brevitas replaces its scale parameters when a state is loaded
            sn.load_full_state(st["supernet"], st["quant"])
        sn.to(dev)
        params = [p for p in sn.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = (cfg.float_epochs * math.ceil(len(w_ds) / cfg.float_batch)
                 + cfg.epochs * math.ceil(len(w_ds) / cfg.batch_size))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        ctl = CONTROLLERS[cfg.controller](self.ss, seed=cfg.seed)
        data_gen = torch.Generator().manual_seed(cfg.seed + 1)
        fault_gen = torch.Generator(device=dev).manual_seed(cfg.seed + 2)
        arch_rng = np.random.default_rng(cfg.seed + 3)     # uniform sampling in warmup
        max_macs = self._resolve_max_macs()
        reward = Reward(cfg.alpha, cfg.macs_weight, cfg.overhead_weight, cfg.macs_ref, max_macs,
                        protect_scheme=cfg.protect_scheme)
        history: list[dict] = []
        epoch_log: list[dict] = []
        start = 0
        if st is not None:
            opt.load_state_dict(st["opt"])
            sched.load_state_dict(st["sched"])
            ctl.load_state_dict(st["controller"])
            data_gen.set_state(st["data_gen"])
            fault_gen.set_state(st["fault_gen"])
            arch_rng.bit_generator.state = st["arch_rng"]
            history, epoch_log, start = st["history"], st["epochs"], int(st["epoch"])
            self.timings["search_resumed_at_epoch"] = start
        loss_fn = FTTLoss(self.fault, cfg.beta, fault_gen)
        n_ep = cfg.float_epochs + cfg.epochs
        per_epoch = [0] * cfg.float_epochs + budget_per_epoch(cfg.budget, cfg.epochs, cfg.warmup)
        cost_cache: dict = {}
        xr, yr = (t.to(dev) for t in r_ds.tensors)
        t0 = time.time()
        bar = tqdm(total=n_ep, initial=start, desc=f"search {cfg.controller}", disable=not self.progress)
        ce = torch.nn.CrossEntropyLoss()
        for ep in range(start, n_ep):
            te = time.time()
            fl = ep < cfg.float_epochs
            # ---- supernet: one epoch (float warm-up: CE; INT8: FTT), one sampled architecture per batch
            sn.train()
            sn.float_mode = fl
            tot, n, faulty_tot = 0.0, 0, 0.0
            for x, y in DataLoader(w_ds, batch_size=cfg.float_batch if fl else cfg.batch_size, shuffle=True,
                                   generator=data_gen):
                if ep < cfg.float_epochs + cfg.warmup:
                    vec = _uniform_valid(self.ss, arch_rng)
                else:
                    vec = ctl.sample_train()
                sn.set_genotype(self.ss.decode(vec))
                x, y = x.to(dev), y.to(dev)
                loss = ce(sn(x), y) if fl else loss_fn(sn, x, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                tot += float(loss.detach()) * len(y)
                faulty_tot += 0.0 if fl else (loss_fn.last.get("faulty") or 0.0) * len(y)
                n += len(y)
            sn.float_mode = False
            # ---- controller: ask / evaluate on the reward split / tell
            n_eval = per_epoch[ep]
            rewards_ep = []
            if n_eval:
                state = {k: v.detach().cpu() for k, v in sn.state_dict().items()}
                qstate = sn.quant_state()
            while n_eval > 0:
                k = min(cfg.arch_batch, n_eval)
                n_eval -= k
                vecs = ctl.ask(k)
                gens = [self.ss.decode(v) for v in vecs]
                valid = [self.ss.valid(g) for g in gens]
                todo = [i for i in range(k) if valid[i]]
                seeds = [cfg.seed * 1_000_003 + len(history) + i for i in range(k)]
                res = self._evaluate(eng, sn, state, qstate, [gens[i] for i in todo], xr, yr,
                                     [seeds[i] for i in todo])
                rs = []
                for i in range(k):
                    rec = {"epoch": ep, "index": len(history), "genotype": gens[i].to_dict(), "valid": valid[i]}
                    if valid[i]:
                        clean, faulty = res[todo.index(i)]
                        cost = self._cost_cache(reward, gens[i], cost_cache)
                        r = reward(clean, faulty, cost["macs"], cost["overhead"])
                        rec.update(clean=clean, faulty=faulty, reward=r, **cost)
                    else:
                        r = 0.0
                        rec.update(clean=None, faulty=None, reward=0.0, macs=None, overhead=None)
                    rs.append(r)
                    history.append(rec)
                ctl.tell(vecs, rs)
                rewards_ep += rs
            epoch_log.append({"epoch": ep, "phase": "float" if fl else "int8", "loss": tot / max(1, n),
                              "faulty_ce": faulty_tot / max(1, n),
                              "lr": sched.get_last_lr()[0], "evaluated": len(rewards_ep),
                              "reward_mean": float(np.mean(rewards_ep)) if rewards_ep else None,
                              "reward_max": float(np.max(rewards_ep)) if rewards_ep else None,
                              "seconds": round(time.time() - te, 2)})
            # ---- checkpoint (atomic)
            st = {"format": STATE_FORMAT, "config": json.loads(json.dumps(cfg.to_dict())), "epoch": ep + 1,
                  "supernet": {k: v.detach().cpu() for k, v in sn.state_dict().items()},
                  "quant": sn.quant_state(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                  "controller": ctl.state_dict(), "data_gen": data_gen.get_state(),
                  "fault_gen": fault_gen.get_state().cpu(), "arch_rng": arch_rng.bit_generator.state,
                  "history": history, "epochs": epoch_log, "max_macs": max_macs}
            self.out.mkdir(parents=True, exist_ok=True)
            tmp = state_path.with_name(state_path.name + f".tmp{os.getpid()}")
            torch.save(st, tmp)
            os.replace(tmp, state_path)
            _write_json(self.out / "history.json", {"history": history, "epochs": epoch_log,
                                                     "reward": reward.to_dict()})
            bar.update(1)
            bar.set_postfix(loss=f"{tot / max(1, n):.3f}",
                            best=f"{max((h['reward'] for h in history), default=0):.3f}")
            if self.callback:
                self.callback("search", ep)
        bar.close()
        self.timings["search_seconds"] = round(time.time() - t0, 2)
        self.supernet = sn
        return {"history": history, "epochs": epoch_log, "reward": reward, "max_macs": max_macs}

    def _evaluate(self, eng, sn, state, qstate, gens, xr, yr, seeds):
        if not gens:
            return []
        cfg = self.cfg
        if eng.client is None:
            return evaluate_genotypes(sn, gens, xr, yr, self.fault_d, 0, seeds, cfg.eval_fault_samples, cfg.device)
        nw = min(eng.workers, len(gens))
        chunks = [list(range(i, len(gens), nw)) for i in range(nw)]
        args = [([gens[i].to_dict() for i in c], [seeds[i] for i in c]) for c in chunks]
        shared = {"space_d": self.space.to_dict(), "in_shape": list(self.in_shape), "num_classes": self.num_classes,
                  "state": state, "qstate": qstate, "x": xr.cpu(), "y": yr.cpu(), "fault_d": self.fault_d,
                  "n_faults": cfg.eval_fault_samples}
        parts = eng.map(_eval_task_kw, args, shared)
        out = [None] * len(gens)
        for c, p in zip(chunks, parts):
            for i, r in zip(c, p):
                out[i] = r
        return out

    # -------------------------------------------------------------- stages 2-4
    def run(self) -> dict:
        threads = torch.get_num_threads()
        try:
            return self._run()
        finally:
            torch.set_num_threads(threads)

    def _run(self) -> dict:
        from ..data import load_dataset
        from ..models import build
        from .derive import derive_topk, genotype_spec
        cfg = self.cfg
        t_all = time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(self.out / "config.json", cfg.to_dict())
        splits0 = load_dataset(cfg.dataset, cfg.data_dir)
        self.in_shape, self.num_classes = tuple(splits0.in_shape), splits0.num_classes

        def job(spec, ck, ep, lr):
            return (spec, ck, cfg.dataset, cfg.data_dir, self.fault_d, cfg.beta, ep, lr, cfg.final_batch,
                    cfg.seed, cfg.device)
        base_jobs = []
        for b in cfg.baselines:
            lr, ep = BASELINE_RECIPES[b]
            spec = dict(build(b, self.in_shape, self.num_classes).spec)
            base_jobs.append((b, job(spec, str(self.out / "baselines" / f"{b}.pt"), cfg.baseline_epochs or ep, lr)))
        with _Engine(cfg.engine, cfg.workers) as eng:
            # the baselines do not depend on the search: on dask they train in the background (one task, so one
            # worker) while the supernet trains in this process; in process they train after the search
            tb = time.time()
            bg = eng.submit(_train_many, [a for _, a in base_jobs]) if base_jobs else None
            s = self.search(eng)
            history, reward = s["history"], s["reward"]
            top = derive_topk(history, cfg.topk) if history else []
            if not top:      # budget 0: a random valid genotype (documented: no search, a control run)
                rng = np.random.default_rng(cfg.seed)
                top = [{"genotype": self.ss.decode(_uniform_valid(self.ss, rng)).to_dict(), "reward": None}]
            # ---- stage 2: final FTT training of the derived top-k, in parallel on the engine
            t1 = time.time()
            jobs = []
            for i, t in enumerate(top):
                spec = genotype_spec(Genotype.from_dict(t["genotype"]), self.space, self.in_shape,
                                     self.num_classes, name=f"ftt_net_top{i}")
                jobs.append(job(spec, str(self.out / "derived" / f"top{i}.pt"), cfg.final_epochs, cfg.final_lr))
            bar = tqdm(total=len(jobs), desc="final FTT training (derived)", disable=not self.progress)
            eng.map(_train_task, jobs, on_done=lambda i, m: bar.update(1))
            bar.close()
            self.timings["final_training_seconds"] = round(time.time() - t1, 2)
            # ---- stage 3: baselines (already running on dask)
            t3 = time.time()
            if bg is not None:
                eng.result(bg)
            self.timings["baseline_wait_seconds"] = round(time.time() - t3, 2)
            self.timings["baseline_wall_seconds_incl_overlap"] = round(time.time() - tb, 2)
        names = [("derived", i) for i in range(len(top))] + [("baseline", b) for b, _ in base_jobs]
        jobs = jobs + [a for _, a in base_jobs]
        if self.callback:
            self.callback("train", -1)
        # ---- stage 4: evaluation on val (selection) and test (report)
        t2 = time.time()
        splits = load_dataset(cfg.dataset, cfg.data_dir)
        results = {"derived": [], "baselines": {}}
        for (kind, key), (_spec, ck, *_rest) in zip(names, jobs):
            r = self._evaluate_net(ck, splits, reward)
            if kind == "derived":
                r.update(search_reward=top[key]["reward"], genotype=top[key]["genotype"], rank=key)
                results["derived"].append(r)
            else:
                results["baselines"][key] = r
        best = max(results["derived"], key=lambda r: (r["val_reward"], -r["macs"]))
        best["golden"] = self._golden_check(best["checkpoint"], splits)
        g_best = Genotype.from_dict(best["genotype"])
        save_genotype(self.out / "genotype.json", g_best, self.space,
                      {"dataset": cfg.dataset, "in_shape": list(self.in_shape), "num_classes": self.num_classes,
                       "checkpoint": best["checkpoint"], "fault": self.fault_d, "metrics": _public(best)})
        self.timings["evaluate_seconds"] = round(time.time() - t2, 2)
        self.timings["total_seconds"] = round(time.time() - t_all, 2)
        summary = self._summary(best, results, reward, s)
        _write_json(self.out / "summary.json", summary)
        _write_json(self.out / "manifest.json", {"kind": "search", "summary": "summary.json",
                                                 "history": "history.json", "genotype": "genotype.json",
                                                 "config": "config.json"})
        return summary

    def _evaluate_net(self, ckpt: str, splits, reward: Reward) -> dict:
        from ..golden import export_golden
        from ..train import load_checkpoint
        from .derive import count_params, emit_derived
        cfg = self.cfg
        net, ck = load_checkpoint(ckpt)
        net.to(cfg.device)
        val = evaluate_faulty(net, splits.val, self.fault, n_samples=max(2, cfg.test_fault_samples // 4),
                              seed=cfg.seed + 11, device=cfg.device)
        test = evaluate_faulty(net, splits.test, self.fault, n_samples=cfg.test_fault_samples,
                               seed=cfg.seed + 13, device=cfg.device)
        net.to("cpu")
        gm = export_golden(net)
        if "genotype" in net.spec:
            em = emit_derived(Genotype.from_dict(net.spec["genotype"]), self.space, self.in_shape, self.num_classes,
                              prune=bool(net.spec.get("prune", False)))
            layers, nodes = em.layers, em.nodes
        else:
            layers, nodes = _zoo_layers(net), net.nodes
        macs = int(gm.macs())
        cost = reward.cost(layers, nodes, self.in_shape, self.num_classes)
        if cost["macs"] != macs:
            raise SanitasError(f"{ckpt}: analytic MACs {cost['macs']} != golden MACs {macs}")
        return {"name": net.spec.get("name"), "checkpoint": str(ckpt), "clean_acc": test["clean_acc"],
                "faulty_acc": test["faulty_acc"], "faulty_ci": test["faulty_ci"],
                "faulty_samples": test["faulty_samples"], "val_clean_acc": val["clean_acc"],
                "val_faulty_acc": val["faulty_acc"],
                "val_reward": (1 - cfg.alpha) * val["clean_acc"] + cfg.alpha * val["faulty_acc"],
                "macs": macs, "params": count_params(net), "overhead": cost["overhead"],
                "train": dict(ck.get("metrics", {}))}

    def _golden_check(self, ckpt: str, splits) -> dict:
        """Export to the golden integer model; bit-exact check against Brevitas on the whole test split."""
        from ..golden import export_golden
        from ..train import load_checkpoint
        net, _ = load_checkpoint(ckpt)
        gm = export_golden(net)
        x = splits.test.tensors[0]
        with torch.no_grad():
            ref = net(x).double().numpy()
        got = gm.predict(x.numpy(), backend="f64").astype(np.float64) * 2.0 ** gm.out_exp
        mism = int((got != ref).sum())
        gm.save(self.out / "golden_best.npz")
        return {"bitexact": mism == 0, "mismatches": mism, "images": int(len(x)),
                "path": str(self.out / "golden_best.npz")}

    def _summary(self, best, results, reward, s) -> dict:
        cfg = self.cfg
        bl = results["baselines"]
        out = {"ok": bool(best["golden"]["bitexact"]), "out": str(self.out), "dataset": cfg.dataset,
               "space": cfg.space, "controller": cfg.controller, "budget": cfg.budget, "fault": self.fault_d,
               "alpha": cfg.alpha, "beta": cfg.beta, "reward": reward.to_dict(), "max_macs": s["max_macs"],
               "evaluated": len(s["history"]), "timings": self.timings,
               "best": _public(best), "derived": [_public(r) for r in results["derived"]],
               "baselines": {k: _public(v) for k, v in bl.items()}}
        if bl:
            bb = max(bl, key=lambda k: bl[k]["faulty_acc"])
            out["best_baseline"] = bb
            out["faulty_gain"] = best["faulty_acc"] - bl[bb]["faulty_acc"]
            out["macs_ratio"] = best["macs"] / bl[bb]["macs"]
            out["beats_best_baseline"] = bool(out["faulty_gain"] > 0 and best["macs"] <= bl[bb]["macs"])
        return out



def _resume_key(d: dict) -> dict:
    """The settings a resumed search must share with the interrupted one (where it runs may change)."""
    d = json.loads(json.dumps(d))
    for k in ("engine", "workers", "progress"):
        d.pop(k, None)
    return d



def _zoo_layers(net) -> dict:
    """Per-layer dicts (as ``Emitter.layers``) of any QNet, from the golden model's shapes."""
    from ..golden import export_golden
    gm = export_golden(net)
    shapes = gm.shapes()
    out = {}
    for n in gm.layers():
        w = n.weight
        macs = spec(n.op).macs(w.shape, shapes[n.name])
        if spec(n.op).spatial:
            _, _, ho, wo = shapes[n.name]
            g = n.attrs["groups"]
            out[n.name] = dict(kind="conv", c_in=w.shape[1] * g, c_out=w.shape[0], k=w.shape[2], groups=g,
                               h_out=ho, w_out=wo, macs=macs, sum_pool=False)
        else:
            out[n.name] = dict(kind="linear", c_in=w.shape[1], c_out=w.shape[0], k=1, groups=1, h_out=1, w_out=1,
                               macs=macs, sum_pool=False)
    return out


def _zoo_macs(net) -> int:
    return int(sum(v["macs"] for v in _zoo_layers(net).values()))


def _public(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "faulty_samples"}


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)


def run_search(cfg: SearchConfig, out, progress: bool = True, callback=None) -> dict:
    """Run (or resume) a search in ``out``; returns the summary (also in ``out/summary.json``)."""
    return Search(cfg, out, progress, callback).run()


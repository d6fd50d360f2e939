"""The work units of an FTT-NAS search (``sanitas.nas.search``) and the engine that runs them.

Candidate evaluation with the supernet's shared weights (``evaluate_genotypes``; on dask each worker process
rebuilds the supernet once), the FTT training of one net from scratch (``_train_task``: derived nets and zoo
baselines), and ``_Engine``, which runs task lists in process or on a local ``distributed`` cluster of
single-threaded worker processes. Also the deterministic split of the training set into weight / reward parts
and the spread of the evaluation budget over the epochs. Everything here is a plain function of its arguments,
so the in-process and the dask runs give identical results.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..errors import SanitasError
from .ftt import FTTLoss, accuracy, fault_scope, make_fault
from .space import Genotype, SearchSpace, SpaceConfig


# ------------------------------------------------------------------------------------------------ data
def split_reward(train: TensorDataset, frac: float, seed: int = 2024) -> tuple[TensorDataset, TensorDataset]:
    """Deterministic (fixed seed) split of the training set: (supernet weights 1-frac, reward frac)."""
    x, y = train.tensors
    idx = np.random.default_rng(seed).permutation(len(x))
    n_r = int(round(frac * len(x)))
    r, w = torch.from_numpy(idx[:n_r]), torch.from_numpy(idx[n_r:])
    return TensorDataset(x[w], y[w]), TensorDataset(x[r], y[r])


def budget_per_epoch(budget: int, epochs: int, warmup: int) -> list[int]:
    """Architectures evaluated after each epoch: 0 during warmup, the budget spread evenly over the rest."""
    n = epochs - warmup
    return [0] * warmup + [budget * (i + 1) // n - budget * i // n for i in range(n)]


def _set_threads():
    """One intra-op thread: the search is dominated by per-layer overhead of tiny tensors, where a second
    thread only adds contention; parallelism comes from the engine's worker processes instead."""
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------ evaluation
_WORKER_SUPERNETS: dict = {}


def _supernet_for(space_d: dict, in_shape, num_classes: int):
    from .supernet import Supernet
    key = json.dumps([space_d, list(in_shape), num_classes], sort_keys=True)
    if key not in _WORKER_SUPERNETS:
        _WORKER_SUPERNETS.clear()
        _WORKER_SUPERNETS[key] = Supernet(SpaceConfig.from_dict(space_d), in_shape, num_classes)
    return _WORKER_SUPERNETS[key]


def evaluate_genotypes(supernet, genotypes: list[Genotype], x, y, fault_d: dict, rate_seed: int,
                       seeds: list[int], n_faults: int, device: str = "cpu") -> list[tuple[float, float]]:
    """(clean acc, mean faulty acc over ``n_faults`` draws) of each genotype with the supernet's shared weights.

    Faults of genotype i, draw s come from ``torch.Generator().manual_seed(seeds[i] * 1000 + s)``."""
    from ..faults.torch_inject import inject
    fm = make_fault(fault_d["model"], fault_d.get("p"))
    supernet.eval()
    out = []
    with torch.no_grad():
        for g, sd in zip(genotypes, seeds):
            supernet.set_genotype(g)
            clean = accuracy(supernet, x, y)
            accs = []
            for s in range(n_faults):
                gen = torch.Generator(device=device).manual_seed(int(sd) * 1000 + s)
                with inject(fault_scope(supernet), fm, generator=gen):
                    accs.append(accuracy(supernet, x, y))
            out.append((clean, float(np.mean(accs)) if accs else clean))
    return out


def _eval_task(space_d, in_shape, num_classes, state, qstate, gdicts, x, y, fault_d, seeds, n_faults):
    """Worker side of the distributed candidate evaluation (rebuilds the supernet once per process)."""
    _set_threads()
    sn = _supernet_for(space_d, in_shape, num_classes)
    sn.load_full_state(state, qstate)
    return evaluate_genotypes(sn, [Genotype.from_dict(d) for d in gdicts], x, y, fault_d, 0, seeds, n_faults)


def _train_task(spec: dict, ckpt: str, dataset: str, data_dir, fault_d: dict, beta: float, epochs: int, lr: float,
                batch_size: int, seed: int, device: str) -> dict:
    """Train one net (zoo or derived) from scratch with FTT and save its checkpoint (skipped if present)."""
    from ..data import load_dataset
    from ..models import build_from_spec
    from ..train import load_checkpoint, save_checkpoint, train_model
    _set_threads()
    if Path(ckpt).exists():
        _, ck = load_checkpoint(ckpt)
        return dict(ck["metrics"])
    splits = load_dataset(dataset, data_dir)
    torch.manual_seed(seed)          # the init is drawn from the global RNG: seed it, whatever ran before here
    net = build_from_spec(spec)
    fm = make_fault(fault_d["model"], fault_d.get("p"))
    loss = FTTLoss(fm, beta, torch.Generator(device=device).manual_seed(seed + 7919))
    t0 = time.time()
    m = train_model(net, splits, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                    progress=False, loss_fn=loss)
    metrics = {"val_acc": m["val_acc"], "test_acc": m["test_acc"], "train_seconds": round(time.time() - t0, 2),
               "epochs": epochs, "lr": lr}
    save_checkpoint(net, ckpt, dataset, metrics)
    return metrics


def _train_many(arglists: list[tuple]) -> list[dict]:
    """Several ``_train_task``s one after the other (one worker: the baselines' background task)."""
    return [_train_task(*a) for a in arglists]


class _Engine:
    """Runs task lists in process or on a local dask cluster (``distributed.LocalCluster``, processes)."""

    def __init__(self, kind: str, workers: int):
        self.kind, self.workers, self.client, self.cluster = kind, max(1, workers), None, None

    def __enter__(self):
        if self.kind == "dask":
            try:
                from distributed import Client, LocalCluster
            except ImportError:
                raise SanitasError("engine 'dask' needs the 'distributed' package (pip install distributed)") from None
            self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=40)
            self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
            self.cluster.close()

    def map(self, fn, arglists: list[tuple], shared: dict | None = None, on_done=None) -> list:
        """[fn(*args, **shared) for args in arglists] — in order, in process or on the cluster.
        ``on_done(i, result)`` is called as each finishes (progress bars)."""
        shared = shared or {}
        if self.client is None:
            out = []
            for i, a in enumerate(arglists):
                out.append(fn(*a, **shared))
                if on_done:
                    on_done(i, out[-1])
            return out
        from distributed import as_completed
        # one future per shared object ([v]: a bare dict would be scattered key by key)
        sh = {k: self.client.scatter([v], broadcast=True, hash=False)[0] for k, v in shared.items()}
        futs = [self.client.submit(fn, *a, **sh, pure=False) for a in arglists]
        index = {f.key: i for i, f in enumerate(futs)}
        for f in as_completed(futs):
            if on_done:
                on_done(index[f.key], f.result())
        return self.client.gather(futs)

    def submit(self, fn, *args):
        """Start ``fn(*args)`` now on the cluster (background); in process it runs at ``result()``."""
        if self.client is None:
            return ("local", fn, args)
        return self.client.submit(fn, *args, pure=False)

    def result(self, handle):
        if isinstance(handle, tuple) and handle and handle[0] == "local":
            return handle[1](*handle[2])
        return handle.result()



def _eval_task_kw(gdicts, seeds, space_d, in_shape, num_classes, state, qstate, x, y, fault_d, n_faults):
    return _eval_task(space_d, in_shape, num_classes, state, qstate, gdicts, x, y, fault_d, seeds, n_faults)




def _uniform_valid(ss: SearchSpace, rng) -> list[int]:
    for _ in range(1000):
        v = [int(rng.integers(c)) for _, c in ss.decisions()]
        if ss.valid(ss.decode(v)):
            return v
    raise SanitasError("could not sample a valid architecture")



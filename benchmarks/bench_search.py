"""Benchmark of the FTT-NAS supernet step (issue 5): the costs behind the search's design choices, as ratios
against the INT8 FTT step measured in the same process.

* float warm-up step (quantisers bypassed) vs INT8 step: why the supernet is warmed up in float;
* injecting faults into the active sub-network only (``fault_scope``) vs hooking every bank module;
* candidate evaluation (clean + 2 faulty passes on the reward split) per architecture.

Run: ``.venv/bin/python benchmarks/bench_search.py`` (about a minute on 2 cores).
"""
from __future__ import annotations

import time

import numpy as np
import torch


def _time(fn, n):
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main():
    from sanitas.data import load_dataset
    from sanitas.faults.torch_inject import inject
    from sanitas.nas.ftt import FTTLoss, accuracy, make_fault
    from sanitas.nas.search import SearchConfig, _uniform_valid, split_reward
    from sanitas.nas.space import SearchSpace
    from sanitas.nas.supernet import Supernet
    torch.set_num_threads(1)
    cfg = SearchConfig().resolved()
    space = cfg.space_config()
    ss = SearchSpace(space)
    splits = load_dataset("digits")
    w, r = split_reward(splits.train, cfg.reward_frac)
    torch.manual_seed(0)
    sn = Supernet(space, splits.in_shape, splits.num_classes)
    rng = np.random.default_rng(0)
    gens = [ss.decode(_uniform_valid(ss, rng)) for _ in range(8)]
    x, y = w.tensors[0][:64], w.tensors[1][:64]
    fm = make_fault(cfg.fault)
    ftt = FTTLoss(fm, cfg.beta, torch.Generator().manual_seed(0))
    ce = torch.nn.CrossEntropyLoss()
    it = iter(range(10 ** 9))

    def int8_step():
        sn.train()
        sn.set_genotype(gens[next(it) % len(gens)])
        ftt(sn, x, y).backward()

    def float_step():
        sn.train()
        sn.float_mode = True
        sn.set_genotype(gens[next(it) % len(gens)])
        ce(sn(x), y).backward()
        sn.float_mode = False

    def hook_all():
        sn.set_genotype(gens[next(it) % len(gens)])
        with torch.no_grad(), inject(sn, fm, generator=torch.Generator().manual_seed(1)):
            sn(x)

    def hook_scope():
        sn.set_genotype(gens[next(it) % len(gens)])
        with torch.no_grad(), inject(sn.fault_scope(), fm, generator=torch.Generator().manual_seed(1)):
            sn(x)

    def evaluate():
        sn.eval()
        sn.set_genotype(gens[next(it) % len(gens)])
        accuracy(sn, *r.tensors)
        for s in range(cfg.eval_fault_samples):
            with inject(sn.fault_scope(), fm, generator=torch.Generator().manual_seed(s)):
                accuracy(sn, *r.tensors)

    for _ in range(35):                      # past the supernet quantisers' 30-call statistics phase
        int8_step()
    t_int8 = _time(int8_step, 16)
    t_float = _time(float_step, 16)
    sn.eval()
    t_all, t_scope = _time(hook_all, 8), _time(hook_scope, 8)
    t_eval = _time(evaluate, 8)
    print(f"INT8 FTT supernet step (batch 64):       {t_int8 * 1e3:8.1f} ms   (1.00)")
    print(f"float warm-up step (batch 64):            {t_float * 1e3:8.1f} ms   ({t_float / t_int8:.2f} x INT8)")
    print(f"faulty forward, hooks on every module:    {t_all * 1e3:8.1f} ms   (1.00)")
    print(f"faulty forward, hooks on fault_scope():   {t_scope * 1e3:8.1f} ms   ({t_scope / t_all:.2f} x)")
    print(f"candidate evaluation ({len(r)} images, 1+{cfg.eval_fault_samples} passes): {t_eval * 1e3:8.1f} ms "
          f"({t_eval / t_int8:.2f} x INT8 step)")


if __name__ == "__main__":
    main()

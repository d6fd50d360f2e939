"""``sanitas inject``: a fault-injection campaign on a trained checkpoint, stored (resumably) in ``--out``.

Single-fault models (``bitflip``, ``stuck``, ``multibit``, ``random``) sample ``--faults`` records over ``--site``
(or ``--exhaustive``) and run them on the exact batched engine; rate models (``mibb``, ``adsaf``, ``ber``) run
``--faults`` trials per ``--rates`` value on the Brevitas model. ``--resume`` continues an interrupted campaign;
``--engine dask`` shards the chunks over dask.distributed workers. ``sanitas report DIR`` plots the results.
"""
from __future__ import annotations

import argparse

from ..errors import SanitasError
from ._common import limit_threads
from ._config import configure, csv_list


def add_parser(sub):
    from ..faults.campaign import FAULT_CHOICES
    p = sub.add_parser("inject", help="fault-injection campaign (exact INT8, batched, resumable)")
    p.add_argument("--checkpoint", required=True, help="trained checkpoint (.pt) from `sanitas train`")
    p.add_argument("--fault", default=None, choices=FAULT_CHOICES, help="fault model")
    p.add_argument("--site", dest="sites", type=csv_list(), default=None,
                   help="comma list: weight,bias,input,output,acc (single faults); ber: weight|act")
    p.add_argument("--layer", dest="layers", type=csv_list(), default=None,
                   help="comma list of node names to restrict the faults to")
    p.add_argument("--faults", type=int, default=None, help="faults to sample, or trials per rate (rate models)")
    p.add_argument("--exhaustive", action=argparse.BooleanOptionalAction, default=None,
                   help="every element x bit of the sites (single faults)")
    p.add_argument("--rates", type=csv_list(float), default=None, help="comma list of rates for mibb/adsaf/ber")
    p.add_argument("--inputs", type=int, default=None, help="test images per fault (first K of the test split)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True, help="campaign folder (manifest.json + results.sqlite)")
    p.add_argument("--resume", action="store_true", help="continue the campaign already in --out")
    p.add_argument("--engine", default=None, choices=["local", "dask"], help="single process or dask workers")
    p.add_argument("--workers", type=int, default=None, help="dask LocalCluster worker processes")
    p.add_argument("--scheduler", default=None, help="address of an existing dask scheduler (tcp://host:port)")
    p.add_argument("--connect-timeout", type=float, default=None, help="seconds to reach --scheduler")
    p.add_argument("--backend", default=None, choices=["fast", "golden"],
                   help="single faults: batched exact engine, or the golden reference replay (slow)")
    p.add_argument("--device", default=None, help="cpu | cuda | auto")
    p.add_argument("--chunk-rows", type=int, default=None, help="fault x input rows per batch / commit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return configure(p, "campaign", "data")


def run(args) -> dict:
    from ..faults.campaign import CampaignSpec, run_campaign
    limit_threads()
    if args.chunk_rows < 1:
        raise SanitasError("--chunk-rows must be >= 1")
    sites = args.sites
    if not sites:
        raise SanitasError("--site needs at least one site")
    spec = CampaignSpec(checkpoint=args.checkpoint, fault=args.fault, sites=sites, layers=args.layers or None,
                        faults=args.faults, exhaustive=args.exhaustive, inputs=args.inputs, seed=args.seed,
                        rates=args.rates or None, dataset=args.dataset, data_dir=args.data_dir,
                        backend=args.backend)
    if not spec.is_rate:
        from ..faults.fault import SITES
        for s in sites:
            if s not in SITES:
                raise SanitasError(f"unknown site '{s}' (choose from {', '.join(SITES)})")
    s = run_campaign(spec, args.out, resume=args.resume, engine=args.engine, workers=args.workers,
                     scheduler=args.scheduler, device=args.device, chunk_rows=args.chunk_rows,
                     progress=not args.quiet, connect_timeout=args.connect_timeout)
    keys = ("faults", "inputs", "experiments", "masked", "sdc", "critical", "faults_per_s", "experiments_per_s",
            "seconds", "new_faults", "resumed_faults", "clean_acc", "critical_rate", "faulty_acc", "per_rate",
            "work", "engine", "out")
    return {k: s[k] for k in keys if k in s}

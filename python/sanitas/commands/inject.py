"""``sanitas inject``: a fault-injection campaign on a trained checkpoint, stored (resumably) in ``--out``.

Single-fault models (``bitflip``, ``stuck``, ``multibit``, ``random``) sample ``--faults`` records over ``--site``
(or ``--exhaustive``) and run them on the exact batched engine; rate models (``mibb``, ``adsaf``, ``ber``) run
``--faults`` trials per ``--rates`` value on the Brevitas model. ``--resume`` continues an interrupted campaign;
``--engine dask`` shards the chunks over dask.distributed workers. ``sanitas report DIR`` plots the results.
"""
from __future__ import annotations

import argparse

from ..errors import SanitasError
from ._common import (
    DATASET_NAMES,
    any_int,
    choice,
    device,
    existing_dir,
    existing_file,
    limit_threads,
    output_dir,
    positive_float,
    positive_int,
    probability_list,
)
from ._config import configure, csv_list


def add_parser(sub):
    from ..faults.campaign import FAULT_CHOICES
    p = sub.add_parser("inject", help="fault-injection campaign (exact INT8, batched, resumable)")
    p.add_argument("--checkpoint", type=existing_file, required=True,
                   help="trained checkpoint (.pt) from `sanitas train`")
    p.add_argument("--fault", type=choice(FAULT_CHOICES, "fault model"), default=None, help="fault model")
    p.add_argument("--site", dest="sites", type=csv_list(), default=None,
                   help="comma list: weight,bias,input,output,acc (single faults); ber: weight|act")
    p.add_argument("--layer", dest="layers", type=csv_list(), default=None,
                   help="comma list of node names to restrict the faults to")
    p.add_argument("--faults", type=positive_int, default=None,
                   help="faults to sample, or trials per rate (rate models)")
    p.add_argument("--exhaustive", action=argparse.BooleanOptionalAction, default=None,
                   help="every element x bit of the sites (single faults)")
    p.add_argument("--rates", type=probability_list, default=None, help="comma list of rates for mibb/adsaf/ber")
    p.add_argument("--inputs", type=positive_int, default=None,
                   help="test images per fault (first K of the test split)")
    p.add_argument("--seed", type=any_int, default=None)
    p.add_argument("--dataset", type=choice(DATASET_NAMES, "dataset"), default=None,
                   help="default: the checkpoint's dataset")
    p.add_argument("--data-dir", type=existing_dir, default=None)
    p.add_argument("--out", type=output_dir, required=True, help="campaign folder (manifest.json + results.sqlite)")
    p.add_argument("--resume", action="store_true", help="continue the campaign already in --out")
    p.add_argument("--engine", type=choice(("local", "dask"), "engine"), default=None,
                   help="single process or dask workers")
    p.add_argument("--workers", type=positive_int, default=None, help="dask LocalCluster worker processes")
    p.add_argument("--scheduler", default=None, help="address of an existing dask scheduler (tcp://host:port)")
    p.add_argument("--connect-timeout", type=positive_float, default=None, help="seconds to reach --scheduler")
    p.add_argument("--backend", type=choice(("fast", "golden"), "backend"), default=None,
                   help="single faults: batched exact engine, or the golden reference replay (slow)")
    p.add_argument("--device", type=device, default=None, help="cpu | cuda | auto")
    p.add_argument("--chunk-rows", type=positive_int, default=None, help="fault x input rows per batch / commit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return configure(p, "campaign", "data")


def run(args) -> dict:
    from ..faults.campaign import CampaignSpec, run_campaign
    limit_threads()
    sites = args.sites
    if not sites:
        raise SanitasError("--site needs at least one site")
    spec = CampaignSpec(checkpoint=args.checkpoint, fault=args.fault, sites=sites, layers=args.layers or None,
                        faults=args.faults, exhaustive=args.exhaustive, inputs=args.inputs, seed=args.seed,
                        rates=args.rates or None, dataset=args.dataset, data_dir=args.data_dir,
                        backend=args.backend)
    if not spec.is_rate:
        from ..faults.fault import campaign_sites
        valid = campaign_sites()         # the array's hardware sites replay at csim/RTL, not in a golden campaign
        for s in sites:
            if s not in valid:
                raise SanitasError(f"unknown site '{s}' (choose from {', '.join(valid)})")
    s = run_campaign(spec, args.out, resume=args.resume, engine=args.engine, workers=args.workers,
                     scheduler=args.scheduler, device=args.device, chunk_rows=args.chunk_rows,
                     progress=not args.quiet, connect_timeout=args.connect_timeout)
    keys = ("faults", "inputs", "experiments", "masked", "sdc", "critical", "faults_per_s", "experiments_per_s",
            "seconds", "new_faults", "resumed_faults", "clean_acc", "critical_rate", "faulty_acc", "per_rate",
            "work", "engine", "out")
    return {k: s[k] for k in keys if k in s}

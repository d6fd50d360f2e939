"""``sanitas search``: FT-NAS / FTT-NAS architecture search producing Brevitas INT8 nets (``sanitas.nas``).

Runs (or resumes, when ``--out`` holds a search state with the same settings) the search, derives and trains the
top-k genotypes with fault-tolerant training, trains the zoo baselines with the same FTT, evaluates all of them
under the same fault model and writes ``genotype.json``, ``summary.json``, ``history.json`` and
``manifest.json`` (kind "search", for ``sanitas report``). The summary has ``best`` and ``baselines`` (each
with clean_acc, faulty_acc, faulty_ci, macs, params, overhead).

``--out`` has one owner (``runfolder.FolderLock``, held for the run), and a folder that holds a search with other
settings (its ``search_state.pt``, or its ``config.json`` when no epoch finished) is refused before anything in it
is written.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import SanitasError
from ..runfolder import FolderLock
from ._common import (
    add_data_args,
    any_int,
    check_data_args,
    choice,
    device,
    non_negative_float,
    non_negative_int,
    output_dir,
    positive_int,
    probability,
    scheme,
    zoo_list,
)
from ._config import configure, csv_list


def add_parser(sub):
    from ..nas.controllers import CONTROLLERS
    from ..nas.space import SPACE_PRESETS
    p = sub.add_parser("search", help="fault-tolerant architecture search (FTT-NAS) producing INT8 nets")
    add_data_args(p)
    p.add_argument("--space", type=choice(SPACE_PRESETS, "space"), default=None,
                   help="primitive set + fault model: mibb (feature faults), adsaf / bitflip (weight faults)")
    p.add_argument("--controller", type=choice(CONTROLLERS, "controller"), default=None)
    p.add_argument("--budget", type=non_negative_int, default=None, help="architectures evaluated by the controller")
    p.add_argument("--float-epochs", type=non_negative_int, default=None,
                   help="float warm-up epochs of the supernet's shared weights (quantisers bypassed)")
    p.add_argument("--epochs", type=non_negative_int, default=None,
                   help="INT8 FTT supernet epochs (controller after each)")
    p.add_argument("--warmup", type=non_negative_int, default=None,
                   help="INT8 epochs with uniform sampling before the controller")
    p.add_argument("--cells", type=positive_int, default=None)
    p.add_argument("--nodes", type=positive_int, default=None)
    p.add_argument("--channels", type=positive_int, default=None)
    p.add_argument("--reductions", type=csv_list(int), default=None,
                   help="comma-separated indices of the reduction cells")
    p.add_argument("--paper-space", action="store_true",
                   help="FTT-NAS' CIFAR-10 space (8 cells, C=20, stem x3, reductions 2,5, 4 nodes)")
    p.add_argument("--fault", type=choice(("mibb", "adsaf", "bitflip"), "fault model"), default=None,
                   help="default: the space's")
    p.add_argument("--rate", type=probability, default=None, help="fault rate (default: FTT-NAS' rate for the model)")
    p.add_argument("--alpha", type=non_negative_float, default=None, help="reward weight of faulty accuracy")
    p.add_argument("--beta", type=non_negative_float, default=None, help="FTT weight of the faulty cross-entropy")
    p.add_argument("--macs-weight", type=non_negative_float, default=None)
    p.add_argument("--overhead-weight", type=non_negative_float, default=None,
                   help="reward penalty per macs-ref MACs of protection (Sanity checksum) overhead")
    p.add_argument("--protect-scheme", type=scheme, default=None,
                   help="protection whose extra MACs the overhead term prices (sanitas.protect spec, e.g. sanity)")
    p.add_argument("--max-macs", default=None,
                   help="MACs budget: an integer, 'auto' (the cheapest baseline) or 'none'")
    p.add_argument("--topk", type=positive_int, default=None)
    p.add_argument("--final-epochs", type=non_negative_int, default=None)
    p.add_argument("--baselines", type=zoo_list, default=None, help="zoo baselines ('' for none)")
    p.add_argument("--baseline-epochs", type=non_negative_int, default=None)
    p.add_argument("--test-fault-samples", type=positive_int, default=None)
    p.add_argument("--seed", type=any_int, default=None)
    p.add_argument("--device", type=device, default=None, help="cpu or cuda")
    p.add_argument("--engine", type=choice(("local", "dask"), "engine"), default=None,
                   help="where candidates and final trainings run (dask: local cluster of --workers processes)")
    p.add_argument("--workers", type=positive_int, default=None)
    p.add_argument("--out", type=output_dir, required=True, help="output folder (resumes a search found there)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return configure(p, "data", "search")


def _max_macs(value):
    """``--max-macs`` text (or the [search] value) -> int, "auto" or None."""
    if not isinstance(value, str):
        return value
    mm = value.strip().lower()
    try:
        return None if mm in ("none", "") else ("auto" if mm == "auto" else int(mm))
    except ValueError:
        raise SanitasError(f"--max-macs must be an integer, 'auto' or 'none' (got '{value}')") from None


def config_from_args(args):
    """The run's ``SearchConfig``: [search] (``--config`` or the defaults) with the given options applied."""
    import dataclasses

    from ._config import fill
    cfg = fill(args)
    keys = {f.name for f in dataclasses.fields(cfg.search)}
    kw = {k: getattr(args, k) for k in keys if hasattr(args, k)}
    kw["max_macs"] = _max_macs(args.max_macs)
    if args.paper_space:
        kw.update(cells=8, nodes=4, channels=20, reductions=(2, 5), stem_multiplier=3)
    return dataclasses.replace(cfg.search, **kw)


def run(args) -> dict:
    from ..nas.search import run_search
    check_data_args(args.dataset, args.data_dir)
    cfg = config_from_args(args)
    with FolderLock(args.out):
        check_resumable(cfg, Path(args.out))
        return run_search(cfg, args.out, progress=not args.quiet)


def check_resumable(cfg, out: Path) -> None:
    """Read-only: refuse (one line) a folder that holds a search run with other settings, or a damaged state."""
    import torch

    from ..nas.search import STATE_FORMAT, _resume_key
    state, conf = out / "search_state.pt", out / "config.json"
    if state.exists():
        try:
            st = torch.load(state, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 (any unreadable file: torch raises several types)
            raise SanitasError(f"{state}: not a readable sanitas search state ({type(e).__name__}); "
                               "use another --out") from None
        if not isinstance(st, dict) or st.get("format") != STATE_FORMAT or not isinstance(st.get("config"), dict):
            raise SanitasError(f"{state}: not a sanitas search state; use another --out")
        old = st["config"]
    elif conf.exists():
        try:
            old = json.loads(conf.read_text())
        except (OSError, ValueError):
            raise SanitasError(f"{conf}: not valid JSON; use another --out") from None
        if not isinstance(old, dict):
            raise SanitasError(f"{conf}: not a search configuration; use another --out")
    else:
        return
    a, b = _resume_key(old), _resume_key(cfg.to_dict())
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
        raise SanitasError(f"{out} holds a search with other settings (differs in {', '.join(diff)}); "
                           "use another --out")

"""Arguments and helpers shared by the subcommands: one argparse ``type=`` per concept, checked before any work.

Each type either returns the parsed value or raises ``argparse.ArgumentTypeError`` with one line; the CLI's
parser turns that into ``sanitas: error: <command>: argument --x: <line>`` and exit status 2 (``sanitas.cli``).
None of them writes anything: ``output_dir`` / ``output_file`` only check that the path could be created and
written (the nearest existing ancestor is a writable folder), so a refused command leaves nothing behind.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

import torch

from ..errors import SanitasError

DATASET_NAMES = ("digits", "mnist", "cifar10")


# ---- numbers ---------------------------------------------------------------------------------------------------
def _int(s: str) -> int:
    try:
        return int(str(s).strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None


def _float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return v


def non_negative_int(s: str) -> int:
    """An integer >= 0."""
    v = _int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def positive_int(s: str) -> int:
    """An integer >= 1."""
    v = _int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def any_int(s: str) -> int:
    """Any integer (e.g. a seed), with a one-line error for anything else."""
    return _int(s)


def finite_float(s: str) -> float:
    """Any finite number (no nan / inf)."""
    return _float(s)


def positive_float(s: str) -> float:
    """A finite number > 0 (learning rates, timeouts)."""
    v = _float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
    return v


def non_negative_float(s: str) -> float:
    """A finite number >= 0 (weights of a reward, decay)."""
    v = _float(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def probability(s: str) -> float:
    """A finite number in [0, 1] (fault rates)."""
    v = _float(s)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {s}")
    return v


# ---- names -----------------------------------------------------------------------------------------------------
def choice(names, what: str):
    """A type accepting one of ``names`` (an iterable or a dict's keys); the error lists them on one line."""
    valid = tuple(sorted(names))

    def parse(s: str) -> str:
        if s not in valid:
            raise argparse.ArgumentTypeError(f"unknown {what} {s!r} (choose from {', '.join(valid)})")
        return s
    parse.__name__ = what.replace(" ", "_")
    return parse


def device(s: str) -> str:
    """``cpu``, ``auto``, ``cuda`` or ``cuda:N``: a CUDA device must exist on this machine."""
    s = s.strip()
    if s in ("cpu", "auto"):
        return s
    if s == "cuda" or (s.startswith("cuda:") and s[5:].isdigit()):
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{s}: no CUDA GPU is available (use --device cpu)")
        if ":" in s and int(s[5:]) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{s}: only {torch.cuda.device_count()} CUDA device(s)")
        return s
    raise argparse.ArgumentTypeError(f"unknown device {s!r} (choose from cpu, cuda, cuda:N, auto)")


def probability_list(s: str) -> list[float]:
    """A comma list of probabilities (fault rates), at least one."""
    vals = [probability(v.strip()) for v in s.split(",") if v.strip()]
    if not vals:
        raise argparse.ArgumentTypeError(f"expected a comma list of rates in [0, 1], got {s!r}")
    return vals


def scheme(s: str) -> str:
    """A protection scheme spec (``sanitas.protect.parse_scheme``: components joined by '+')."""
    from ..protect.model import parse_scheme
    try:
        parse_scheme(s)
    except SanitasError as e:
        raise argparse.ArgumentTypeError(str(e).splitlines()[0]) from None
    return s


def scheme_list(s: str) -> list[str]:
    """A comma list of protection scheme specs ('' for none), each checked."""
    return [scheme(part.strip()) for part in s.split(",") if part.strip()]


def zoo_list(s: str) -> list[str]:
    """A comma list of zoo model names ('' for none), each checked."""
    from ..models import ZOO
    valid = choice(ZOO, "model")
    return [valid(name.strip()) for name in s.split(",") if name.strip()]


# ---- paths -----------------------------------------------------------------------------------------------------
def existing_file(s: str) -> str:
    """A path to an existing regular file that can be read."""
    p = Path(s)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"file not found: {s}")
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"not a file: {s}")
    if not os.access(p, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {s}")
    return s


def existing_dir(s: str) -> str:
    """A path to an existing folder."""
    p = Path(s)
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{'not a folder' if p.exists() else 'folder not found'}: {s}")
    return s


def _writable_folder(d: Path) -> bool:
    """True when a file can really be created in the existing folder ``d`` (probed: root ignores mode bits)."""
    if not os.access(d, os.W_OK | os.X_OK):
        return False
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sanitas-probe-", dir=d)
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def _creatable(p: Path, s: str) -> None:
    """``p`` does not exist yet: its nearest existing ancestor must be a writable folder."""
    a = p.absolute().parent
    while not a.exists():
        a = a.parent
    if not a.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {s}: {a} is a file, not a folder")
    if not _writable_folder(a):
        raise argparse.ArgumentTypeError(f"cannot create {s}: {a} is not writable")


def output_dir(s: str) -> str:
    """An output folder: an existing writable folder, or a path that can be created (no part of it is a file)."""
    p = Path(s)
    if p.exists():
        if not p.is_dir():
            raise argparse.ArgumentTypeError(f"{s} exists and is not a folder")
        if not _writable_folder(p):
            raise argparse.ArgumentTypeError(f"{s} is not writable")
    else:
        _creatable(p, s)
    return s


def output_file(s: str) -> str:
    """An output file: not a folder, and its folder exists writable or can be created."""
    p = Path(s)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{s} is a folder, not a file path")
    if p.exists():
        if not _writable_folder(p.absolute().parent):
            raise argparse.ArgumentTypeError(f"{s}: its folder is not writable")
    else:
        _creatable(p, s)
    return s


# ---- shared arguments and helpers ------------------------------------------------------------------------------
def add_data_args(p) -> None:
    p.add_argument("--dataset", default=None, type=choice(DATASET_NAMES, "dataset"),
                   help="dataset (digits is bundled with scikit-learn; the others need --data-dir)")
    p.add_argument("--data-dir", default=None, type=existing_dir,
                   help="folder in torchvision's layout for mnist / cifar10")


def check_data_args(dataset: str, data_dir) -> None:
    """mnist / cifar10 need ``--data-dir`` (checked before any output is written)."""
    if dataset not in (None, "digits") and data_dir is None:
        raise SanitasError(f"{dataset} needs --data-dir pointing to a folder in torchvision's layout")


def limit_threads() -> None:
    """Use at most 2 intra-op threads: the reference machine has 2 cores, more only adds contention."""
    torch.set_num_threads(min(2, torch.get_num_threads()))


def load_model_data(checkpoint, data_dir=None, dataset: str | None = None):
    """Checkpoint -> (Brevitas model, checkpoint dict, dataset splits), its input shape checked against the data."""
    from ..data import load_dataset
    from ..train import check_input_shape, load_checkpoint
    model, ck = load_checkpoint(checkpoint)
    name = dataset or ck["dataset"]
    splits = load_dataset(name, data_dir)
    check_input_shape(checkpoint, ck["spec"], splits.in_shape, name)
    return model, ck, splits


def load_model_data_golden(checkpoint, data_dir=None):
    """Checkpoint -> (Brevitas model, its dataset splits, exported golden model); shapes checked first."""
    from ..golden import export_golden
    model, _, splits = load_model_data(checkpoint, data_dir)
    return model, splits, export_golden(model)


CAMPAIGN_TABLES = ("meta", "faults", "results")


def check_campaign_db(path) -> None:
    """Refuse a missing, garbage or foreign campaign database before any work reads it (read-only probe)."""
    import sqlite3
    p = Path(path)
    if not p.is_file():
        raise SanitasError(f"campaign database not found: {p}")
    with open(p, "rb") as f:
        head = f.read(16)
    if head != b"SQLite format 3\x00":
        raise SanitasError(f"{p}: not a sanitas campaign database (not an SQLite file)")
    try:
        con = sqlite3.connect(f"{p.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            bad = con.execute("PRAGMA quick_check(1)").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise SanitasError(f"{p}: not a sanitas campaign database (unreadable: {e})") from None
    if bad != "ok":
        raise SanitasError(f"{p}: not a sanitas campaign database (integrity check: {bad})")
    missing = [t for t in CAMPAIGN_TABLES if t not in names]
    if missing:
        raise SanitasError(f"{p}: not a sanitas campaign database (no table {missing[0]})")

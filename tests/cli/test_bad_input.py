"""The skeptical user: bad input of every kind against the ``sanitas`` CLI, each refused in one line.

Every case runs ``sanitas.cli.main(argv)`` in-process (a few through the real entry point in a subprocess) with
the working directory set to a fresh folder, and asserts: exit status 2, exactly one stderr line, starting with
``sanitas: error:`` and holding the expected message, no traceback, and nothing new or changed on disk — neither
in the working folder (where every ``--out`` points) nor among the input files. The inputs are small and built
here: an untrained LeNet-5 checkpoint on digits (and crafted variants of it), MNIST IDX files and CIFAR-10
batches (valid ones, then one file broken per case), campaign and search folders with broken state.
"""
from __future__ import annotations

import gzip
import json
import os
import pickle
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from sanitas.cli import _print_summary, main, strict_json

ROOT = Path(__file__).resolve().parents[2]
MARKER = "sanitas-pwned"          # the file a malicious payload would create (in the fixture folder)


# ---------------------------------------------------------------------------------------------- input files
class Evil:
    """A pickle payload: unpickling it with plain ``pickle.load`` would run ``os.system``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvilEval:
    def __reduce__(self):
        return (eval, ("1+1",))


class EvilPopen:
    def __reduce__(self):
        return (subprocess.Popen, (["true"],))


def idx(arr: np.ndarray) -> bytes:
    """An IDX (MNIST) file of a uint8 array."""
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.astype(np.uint8).tobytes()


def _mnist(d: Path, replace: dict[str, bytes] | None = None, drop: str | None = None) -> str:
    """A small MNIST folder (30 train, 10 test images; labels gzip'ed) with one file replaced or dropped."""
    rng = np.random.default_rng(0)
    raw = d / "MNIST" / "raw"
    raw.mkdir(parents=True)
    files = {"train-images-idx3-ubyte": idx(rng.integers(0, 256, (30, 28, 28))),
             "train-labels-idx1-ubyte.gz": gzip.compress(idx(np.arange(30) % 10)),
             "t10k-images-idx3-ubyte": idx(rng.integers(0, 256, (10, 28, 28))),
             "t10k-labels-idx1-ubyte.gz": gzip.compress(idx(np.arange(10) % 10))}
    files.update(replace or {})
    for name, data in files.items():
        if name != drop:
            (raw / name).write_bytes(data)
    return str(d)


def _batch(n: int = 4, **kw) -> dict:
    b = {b"batch_label": b"training batch", b"labels": [i % 10 for i in range(n)],
         b"data": np.zeros((n, 3072), np.uint8), b"filenames": [b"f%d.png" % i for i in range(n)]}
    b.update({k.encode(): v for k, v in kw.items()})
    return b


def _cifar(d: Path, test_batch: bytes | None = None, drop: str | None = None) -> str:
    """A small CIFAR-10 folder (6 batches of 4 images) whose test_batch is replaced by ``test_batch``."""
    c = d / "cifar-10-batches-py"
    c.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        if name != drop:
            (c / name).write_bytes(pickle.dumps(_batch(), protocol=2))
    if test_batch is not None:
        (c / "test_batch").write_bytes(test_batch)
    return str(d)


def _craft(src: Path, dst: Path, mutate, rehash: bool = True) -> str:
    """A checkpoint edited by ``mutate(dict)``; with ``rehash`` its content hash is made valid again (a crafted
    file that only the structure checks can refuse)."""
    from sanitas.train import checkpoint_hash
    ck = torch.load(src, weights_only=True)
    mutate(ck)
    tensors = isinstance(ck.get("state_dict"), dict) and all(isinstance(v, torch.Tensor)
                                                              for v in ck["state_dict"].values())
    if rehash and tensors:
        ck["sha256"] = checkpoint_hash(ck)
    torch.save(ck, dst)
    return str(dst)


def _flip(src: Path, dst: Path, start: int, n: int = 2000) -> str:
    raw = bytearray(src.read_bytes())
    for i in range(start, start + n):
        raw[i] ^= 0xFF
    dst.write_bytes(bytes(raw))                    # same length, 2,000 bytes changed
    return str(dst)


def _campaign_dir(d: Path, db: bytes | None, manifest) -> str:
    d.mkdir(parents=True)
    if manifest is not None:
        (d / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    if db is not None:
        (d / "results.sqlite").write_bytes(db)
    return str(d)


def _sqlite_bytes(tmp: Path, tables: str, truncate: int | None = None) -> bytes:
    con = sqlite3.connect(tmp)
    con.executescript(tables)
    con.commit()
    con.close()
    data = tmp.read_bytes()
    tmp.unlink()
    return data[:truncate] if truncate else data


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict[str, str]:
    """Every input of the cases, built once (a few seconds); values are paths."""
    from sanitas.models import build
    from sanitas.train import OLD_FORMAT, _tensor_bytes, save_checkpoint
    d = tmp_path_factory.mktemp("inputs")
    f: dict[str, str] = {"root": str(d), "marker": str(d / MARKER)}
    net = build("lenet5", (1, 8, 8), 10, seed=0)
    ok = save_checkpoint(net, d / "ok.pt", "digits")
    f["ok"] = str(ok)
    f["ck28"] = str(save_checkpoint(build("lenet5", (1, 28, 28), 10, seed=0), d / "ck28.pt", "digits"))
    f["rgb"] = str(save_checkpoint(build("lenet5", (3, 8, 8), 10, seed=0), d / "rgb.pt", "digits"))
    big = max(net.state_dict().items(), key=lambda kv: kv[1].numel())[1]
    f["flip_tensor"] = _flip(ok, d / "flip_tensor.pt", ok.read_bytes().find(_tensor_bytes(big)[:64]))
    f["flip_middle"] = _flip(ok, d / "flip_middle.pt", ok.stat().st_size // 2 - 1000)
    f["flip_head"] = _flip(ok, d / "flip_head.pt", 0, 64)
    (d / "empty.pt").write_bytes(b"")
    f["empty"] = str(d / "empty.pt")
    (d / "trunc.pt").write_bytes(ok.read_bytes()[: ok.stat().st_size // 2])
    f["trunc"] = str(d / "trunc.pt")
    (d / "garbage.pt").write_bytes(np.random.default_rng(3).bytes(5000))
    f["garbage"] = str(d / "garbage.pt")
    (d / "evil.pt").write_bytes(pickle.dumps({"format": "sanitas-ckpt-2", "x": Evil(d / MARKER)}))
    f["evil_pt"] = str(d / "evil.pt")
    torch.save([1, 2, 3], d / "list.pt")
    f["list_pt"] = str(d / "list.pt")
    key = "layers.conv1.weight" if "layers.conv1.weight" in net.state_dict() else next(iter(net.state_dict()))
    f["key"] = key

    def sd(fn):
        def m(ck):
            fn(ck["state_dict"])
        return m
    crafted = {
        "nospec": lambda ck: ck.pop("spec"),
        "spec_list": lambda ck: ck.update(spec=[1, 2]),
        "nostate": lambda ck: ck.pop("state_dict"),
        "nodataset": lambda ck: ck.pop("dataset"),
        "badformat": lambda ck: ck.update(format="other-ckpt-9"),
        "unknown_model": lambda ck: ck["spec"].update(name="alexnet"),
        "bad_in_shape": lambda ck: ck["spec"].update(in_shape=[1, 8]),
        "neg_in_shape": lambda ck: ck["spec"].update(in_shape=[1, -8, 8]),
        "bad_spec_arg": lambda ck: ck["spec"].update(bogus_arg=3),
        "unknown_dataset": lambda ck: ck.update(dataset="imagenet"),
        "wrong_shape": sd(lambda s: s.update({key: torch.zeros(tuple(s[key].shape[:-1]) + (s[key].shape[-1] + 1,))})),
        "extra_key": sd(lambda s: s.update({"layers.bogus.weight": torch.zeros(3)})),
        "missing_key": sd(lambda s: s.pop(key)),
        "non_tensor": sd(lambda s: s.update({key: 5})),
    }
    for name, fn in crafted.items():
        f[name] = _craft(ok, d / f"{name}.pt", fn)
    f["nohash"] = _craft(ok, d / "nohash.pt", lambda ck: ck.pop("sha256"), rehash=False)
    f["old_format"] = _craft(ok, d / "old_format.pt", lambda ck: (ck.pop("sha256"), ck.update(format=OLD_FORMAT)),
                             rehash=False)
    f["edited_tensor"] = _craft(ok, d / "edited_tensor.pt", sd(lambda s: s[key].add_(0.01)), rehash=False)
    f["edited_metrics"] = _craft(ok, d / "edited_metrics.pt", lambda ck: ck.update(metrics={"test_acc": 0.99}),
                                 rehash=False)
    f["edited_dataset"] = _craft(ok, d / "edited_dataset.pt", lambda ck: ck.update(dataset="mnist"), rehash=False)
    (d / "a_file").write_text("not a folder")
    f["afile"] = str(d / "a_file")
    (d / "a_dir").mkdir()
    f["adir"] = str(d / "a_dir")

    # MNIST: one broken file per folder
    trunc_gz = gzip.compress(idx(np.zeros((30, 28, 28), np.uint8)))
    good_imgs = idx(np.zeros((30, 28, 28), np.uint8))
    mn = {
        "mnist_ok": {},
        "gz_garbage": {"train-labels-idx1-ubyte.gz": b"\x00" + np.random.default_rng(1).bytes(299)},
        "gz_truncated": {"train-labels-idx1-ubyte.gz": trunc_gz[: len(trunc_gz) // 2]},
        "gz_not_gzip": {"train-labels-idx1-ubyte.gz": idx(np.arange(30) % 10)},
        "idx_200_dims": {"train-images-idx3-ubyte": bytes([0, 0, 8, 200]) + b"\0\0\0\1" * 200},
        "idx_0_dims": {"train-images-idx3-ubyte": bytes([0, 0, 8, 0])},
        "idx_bad_magic": {"train-images-idx3-ubyte": b"\x1f\x8b" + good_imgs[2:]},
        "idx_float_type": {"train-images-idx3-ubyte": bytes([0, 0, 0x0D, 3]) + good_imgs[4:]},
        "idx_empty": {"t10k-images-idx3-ubyte": b""},
        "idx_short_header": {"train-images-idx3-ubyte": bytes([0, 0, 8, 3]) + b"\0\0\0\x1e\0\0"},
        "idx_truncated_body": {"train-images-idx3-ubyte": good_imgs[:-100]},
        "idx_trailing": {"train-images-idx3-ubyte": good_imgs + b"\0" * 10},
        "idx_huge_claim": {"train-images-idx3-ubyte": bytes([0, 0, 8, 3]) + struct.pack(">III", 60000, 60000, 60000)},
        "idx_27x27": {"train-images-idx3-ubyte": idx(np.zeros((30, 27, 27), np.uint8))},
        "idx_test_27x27": {"t10k-images-idx3-ubyte": idx(np.zeros((10, 27, 27), np.uint8))},
        "idx_2d_images": {"train-images-idx3-ubyte": idx(np.zeros((30, 784), np.uint8))},
        "idx_count_mismatch": {"train-labels-idx1-ubyte.gz": gzip.compress(idx(np.arange(29) % 10))},
        "idx_label_10": {"t10k-labels-idx1-ubyte.gz": gzip.compress(idx(np.arange(10) + 1))},
        "idx_2d_labels": {"train-labels-idx1-ubyte.gz": gzip.compress(idx(np.zeros((30, 1), np.uint8)))},
        "idx_no_images": {"t10k-images-idx3-ubyte": idx(np.zeros((0, 28, 28), np.uint8)),
                          "t10k-labels-idx1-ubyte.gz": gzip.compress(idx(np.zeros(0, np.uint8)))},
    }
    for name, rep in mn.items():
        f[name] = _mnist(d / name, rep)
    f["mnist_missing"] = _mnist(d / "mnist_missing", drop="t10k-images-idx3-ubyte")

    # CIFAR-10: a broken test_batch per folder
    obj_arr = np.empty(1, dtype=object)
    obj_arr[0] = Evil(d / MARKER)
    cf = {
        "cifar_ok": None,
        "cifar_evil": pickle.dumps({b"data": Evil(d / MARKER), b"labels": [0]}),
        "cifar_evil_p0": pickle.dumps(Evil(d / MARKER), protocol=0),
        "cifar_eval": pickle.dumps(_batch(x=EvilEval())),
        "cifar_popen": pickle.dumps({b"labels": EvilPopen()}),
        "cifar_obj_array": pickle.dumps(_batch(data=obj_arr)),
        "cifar_not_dict": pickle.dumps([1, 2, 3]),
        "cifar_no_labels": pickle.dumps({b"data": np.zeros((4, 3072), np.uint8)}),
        "cifar_float_data": pickle.dumps(_batch(data=np.zeros((4, 3072)))),
        "cifar_wrong_width": pickle.dumps(_batch(data=np.zeros((4, 1000), np.uint8))),
        "cifar_label_count": pickle.dumps(_batch(labels=[1, 2, 3])),
        "cifar_label_range": pickle.dumps(_batch(labels=[0, 1, 2, 12])),
        "cifar_label_type": pickle.dumps(_batch(labels=["a", "b", "c", "d"])),
        "cifar_truncated": pickle.dumps(_batch(), protocol=2)[:500],
        "cifar_empty": b"",
        "cifar_garbage": b"\x80\x02" + np.random.default_rng(2).bytes(2000),
    }
    for name, tb in cf.items():
        f[name] = _cifar(d / name, tb)
    f["cifar_missing"] = _cifar(d / "cifar_missing", drop="data_batch_3")

    # campaign / report folders
    tables = ("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT); CREATE TABLE faults(fault_id TEXT);"
              "CREATE TABLE results(fault_id TEXT, input_id INTEGER);")
    rows = "".join(f"INSERT INTO faults VALUES('{'x' * 200}{i}');" for i in range(200))
    camp = {"kind": "campaign", "db": "results.sqlite"}
    f["db_garbage"] = _campaign_dir(d / "db_garbage", np.random.default_rng(4).bytes(4096), camp)
    f["db_empty"] = _campaign_dir(d / "db_empty", b"", camp)
    f["db_text"] = _campaign_dir(d / "db_text", b"SQLite format 3\0" + b"\xff" * 4000, camp)
    f["db_foreign"] = _campaign_dir(d / "db_foreign", _sqlite_bytes(d / "t.db", "CREATE TABLE foo(a);"), camp)
    f["db_truncated"] = _campaign_dir(d / "db_truncated", _sqlite_bytes(d / "t.db", tables + rows, 6000), camp)
    f["db_missing"] = _campaign_dir(d / "db_missing", None, camp)
    f["db_traversal"] = _campaign_dir(d / "db_traversal", None, {"kind": "campaign", "db": "../ok.pt"})
    f["man_missing"] = _campaign_dir(d / "man_missing", b"", None)
    f["man_garbage"] = _campaign_dir(d / "man_garbage", None, "{not json")
    f["man_list"] = _campaign_dir(d / "man_list", None, [1, 2])
    f["man_kind_path"] = _campaign_dir(d / "man_kind_path", None, {"kind": "../../os"})
    f["man_kind_unknown"] = _campaign_dir(d / "man_kind_unknown", None, {"kind": "nosuchkind"})
    f["man_kind_int"] = _campaign_dir(d / "man_kind_int", None, {"kind": 3})

    # search folders with a broken state
    (d / "search_trunc").mkdir()
    torch.save({"format": "x", "blob": torch.zeros(5000)}, d / "t.pt")
    (d / "search_trunc" / "search_state.pt").write_bytes((d / "t.pt").read_bytes()[:3000])
    (d / "search_foreign").mkdir()
    (d / "search_foreign" / "search_state.pt").write_bytes((d / "t.pt").read_bytes())
    (d / "search_empty").mkdir()
    (d / "search_empty" / "search_state.pt").write_bytes(b"")
    (d / "t.pt").unlink()
    for k in ("search_trunc", "search_foreign", "search_empty"):
        f[k] = str(d / k)

    # config and per-layer map files
    (d / "cfg_unknown.yaml").write_text("bogus_section:\n  a: 1\n")
    (d / "cfg_unknown_key.yaml").write_text("train:\n  epochz: 3\n")
    (d / "map_bad.json").write_text('{"default": "sanity", "op:conv": "bogus"}')
    (d / "map_garbage.json").write_text("{bad json")
    (d / "map_garbage.yaml").write_text("a: [1,\n")
    (d / "map_list.json").write_text("[1, 2]")
    for k in ("map_garbage.json", "map_garbage.yaml", "map_list.json"):
        f[k.replace(".", "_")] = str(d / k)
    (d / "cfg_bad_yaml.yaml").write_text("train: [1,\n")
    (d / "cfg_bad_json.json").write_text("{not json")
    (d / "cfg_scalar.yaml").write_text("train: 5\n")
    (d / "cfg_type.json").write_text('{"train": {"epochs": "ten"}}')
    (d / "cfg_negative.yaml").write_text("train:\n  epochs: -1\n")
    (d / "cfg_list.yaml").write_text("- 1\n- 2\n")
    for k in ("cfg_unknown", "cfg_unknown_key", "cfg_bad_yaml", "cfg_scalar", "cfg_negative", "cfg_list"):
        f[k] = str(d / f"{k}.yaml")
    for k in ("cfg_bad_json", "cfg_type"):
        f[k] = str(d / f"{k}.json")
    f["map_bad"] = str(d / "map_bad.json")
    return f


# ---------------------------------------------------------------------------------------------- the cases
class Case(NamedTuple):
    id: str
    argv: tuple          # ``{name}`` is a fixture path, ``{out}`` a fresh path in the working folder
    msg: str             # must appear in the one error line (same placeholders)


def C(id_, cmd: str, msg: str) -> Case:
    return Case(id_, tuple(cmd.split()), msg)


G = "golden --checkpoint"
TRAIN = "train --out {out}/m.pt --quiet"
INJ = "inject --checkpoint {ok} --out {out} --quiet"
PROT = "protect --checkpoint {ok} --out {out} --quiet"
SEARCH = "search --out {out} --quiet"
CK_SHA = "checkpoint content does not match its sha256"
SHAPE28 = "checkpoint expects inputs of shape (1, 28, 28), dataset digits has (1, 8, 8)"

CASES = [
    # --- usage: unknown commands and options, missing arguments
    C("no-command", "", "the following arguments are required: COMMAND"),
    C("unknown-command", "fly", "argument COMMAND: invalid choice: 'fly'"),
    C("unknown-option", f"{TRAIN} --bogus 3", "unrecognized arguments: --bogus 3"),
    C("train-no-out", "train", "train: the following arguments are required: --out"),
    C("golden-no-ckpt", "golden", "golden: the following arguments are required: --checkpoint"),
    C("inject-no-out", "inject --checkpoint {ok}", "the following arguments are required: --out"),
    C("report-no-dir", "report", "the following arguments are required: dir"),
    C("option-no-value", f"{TRAIN} --epochs", "argument --epochs: expected one argument"),
    # --- numbers out of range or not numbers
    C("train-epochs-neg", f"{TRAIN} --epochs -1", "argument --epochs: must be >= 0, got -1"),
    C("train-epochs-float", f"{TRAIN} --epochs 1.5", "argument --epochs: expected an integer, got '1.5'"),
    C("train-epochs-word", f"{TRAIN} --epochs ten", "argument --epochs: expected an integer, got 'ten'"),
    C("train-batch-0", f"{TRAIN} --batch-size 0", "argument --batch-size: must be >= 1, got 0"),
    C("train-batch-neg", f"{TRAIN} --batch-size -64", "argument --batch-size: must be >= 1, got -64"),
    C("train-lr-0", f"{TRAIN} --lr 0", "argument --lr: must be > 0, got 0"),
    C("train-lr-neg", f"{TRAIN} --lr -0.1", "argument --lr: must be > 0, got -0.1"),
    C("train-lr-nan", f"{TRAIN} --lr nan", "argument --lr: expected a finite number, got 'nan'"),
    C("train-lr-inf", f"{TRAIN} --lr inf", "argument --lr: expected a finite number, got 'inf'"),
    C("train-seed-word", f"{TRAIN} --seed abc", "argument --seed: expected an integer, got 'abc'"),
    C("hls-limit-0", "hls --checkpoint {ok} --out {out} --limit 0", "argument --limit: must be >= 1, got 0"),
    C("hls-limit-neg", "hls --checkpoint {ok} --out {out} --limit -5", "argument --limit: must be >= 1, got -5"),
    C("board-limit-neg", "board --checkpoint {ok} --limit -5", "argument --limit: must be >= 1, got -5"),
    C("board-limit-0", "board --checkpoint {ok} --limit 0", "argument --limit: must be >= 1, got 0"),
    C("flow-epochs-neg", "flow --out {out} --epochs -1", "argument --epochs: must be >= 0, got -1"),
    C("inject-faults-0", f"{INJ} --faults 0", "argument --faults: must be >= 1, got 0"),
    C("inject-faults-neg", f"{INJ} --faults -10", "argument --faults: must be >= 1, got -10"),
    C("inject-inputs-0", f"{INJ} --inputs 0", "argument --inputs: must be >= 1, got 0"),
    C("inject-chunk-0", f"{INJ} --chunk-rows 0", "argument --chunk-rows: must be >= 1, got 0"),
    C("inject-workers-0", f"{INJ} --workers 0", "argument --workers: must be >= 1, got 0"),
    C("inject-timeout-0", f"{INJ} --connect-timeout 0", "argument --connect-timeout: must be > 0, got 0"),
    C("inject-rate-big", f"{INJ} --fault ber --rates 0.1,1.5", "must be a probability in [0, 1], got 1.5"),
    C("inject-rate-neg", f"{INJ} --fault ber --rates -0.01", "must be a probability in [0, 1], got -0.01"),
    C("inject-rate-nan", f"{INJ} --fault ber --rates nan", "expected a finite number, got 'nan'"),
    C("inject-rate-word", f"{INJ} --fault ber --rates low", "expected a number, got 'low'"),
    C("inject-rate-empty", f"{INJ} --fault ber --rates ,", "expected a comma list of rates in [0, 1]"),
    C("protect-campaign-neg", f"{PROT} --campaign -1", "argument --campaign: must be >= 0, got -1"),
    C("protect-state-neg", f"{PROT} --state-faults -1", "argument --state-faults: must be >= 0, got -1"),
    C("protect-clean-neg", f"{PROT} --clean -3", "argument --clean: must be >= 0, got -3"),
    C("protect-hunt-neg", f"{PROT} --hunt -1", "argument --hunt: must be >= 0, got -1"),
    C("protect-timing-0", f"{PROT} --timing-batch 0", "argument --timing-batch: must be >= 1, got 0"),
    C("search-final-neg", f"{SEARCH} --final-epochs -1", "argument --final-epochs: must be >= 0, got -1"),
    C("search-samples-0", f"{SEARCH} --test-fault-samples 0", "argument --test-fault-samples: must be >= 1, got 0"),
    C("search-budget-neg", f"{SEARCH} --budget -1", "argument --budget: must be >= 0, got -1"),
    C("search-epochs-neg", f"{SEARCH} --epochs -2", "argument --epochs: must be >= 0, got -2"),
    C("search-warmup-neg", f"{SEARCH} --warmup -1", "argument --warmup: must be >= 0, got -1"),
    C("search-baseline-ep", f"{SEARCH} --baseline-epochs -1", "argument --baseline-epochs: must be >= 0, got -1"),
    C("search-cells-0", f"{SEARCH} --cells 0", "argument --cells: must be >= 1, got 0"),
    C("search-topk-0", f"{SEARCH} --topk 0", "argument --topk: must be >= 1, got 0"),
    C("search-workers-0", f"{SEARCH} --workers 0", "argument --workers: must be >= 1, got 0"),
    C("search-rate-2", f"{SEARCH} --rate 2", "argument --rate: must be a probability in [0, 1], got 2"),
    C("search-rate-nan", f"{SEARCH} --rate nan", "argument --rate: expected a finite number, got 'nan'"),
    C("search-alpha-neg", f"{SEARCH} --alpha -1", "argument --alpha: must be >= 0, got -1"),
    C("search-beta-inf", f"{SEARCH} --beta inf", "argument --beta: expected a finite number, got 'inf'"),
    C("search-max-macs", f"{SEARCH} --max-macs lots", "--max-macs must be an integer, 'auto' or 'none'"),
    C("search-reductions", f"{SEARCH} --reductions 1,x",
      "argument --reductions: cannot parse comma-separated list '1,x'"),
    C("rtl-rows-0", "rtl --out {out} --rows 0", "argument --rows: must be >= 1, got 0"),
    C("rtl-cols-neg", "rtl --out {out} --cols -4", "argument --cols: must be >= 1, got -4"),
    C("rtl-width-0", "rtl --out {out} --data-width 0", "argument --data-width: must be >= 1, got 0"),
    # --- names: one line listing the valid ones
    C("train-model", f"{TRAIN} --model alexnet",
      "argument --model: unknown model 'alexnet' (choose from lenet5, mobilenetv2, resnet20, vgg)"),
    C("train-dataset", f"{TRAIN} --dataset imagenet",
      "argument --dataset: unknown dataset 'imagenet' (choose from cifar10, digits, mnist)"),
    C("search-controller", f"{SEARCH} --controller genetic",
      "argument --controller: unknown controller 'genetic' (choose from evolution, random, rl)"),
    C("search-space", f"{SEARCH} --space huge", "argument --space: unknown space 'huge' (choose from"),
    C("search-fault", f"{SEARCH} --fault cosmic", "argument --fault: unknown fault model 'cosmic' (choose from"),
    C("search-engine", f"{SEARCH} --engine spark",
      "argument --engine: unknown engine 'spark' (choose from dask, local)"),
    C("search-baselines", f"{SEARCH} --baselines lenet5,alexnet", "argument --baselines: unknown model 'alexnet'"),
    C("search-protect-scheme", f"{SEARCH} --protect-scheme magic", "unknown protection scheme 'magic'"),
    C("search-dataset", f"{SEARCH} --dataset svhn", "unknown dataset 'svhn'"),
    C("protect-scheme", f"{PROT} --scheme magic",
      "argument --scheme: unknown protection scheme 'magic' (choose from none, sanity, dmr, tmr"),
    C("protect-scheme-part", f"{PROT} --scheme sanity+magic", "argument --scheme: unknown protection scheme 'magic'"),
    C("protect-scheme-opt", f"{PROT} --scheme sanity:fast", "sanity option must be lazy or eager, got 'fast'"),
    C("protect-compare", f"{PROT} --compare none,magic", "argument --compare: unknown protection scheme 'magic'"),
    C("inject-fault", f"{INJ} --fault cosmic", "argument --fault: unknown fault model 'cosmic' (choose from"),
    C("inject-backend", f"{INJ} --backend gpu", "argument --backend: unknown backend 'gpu' (choose from fast, golden)"),
    C("inject-engine", f"{INJ} --engine ray", "argument --engine: unknown engine 'ray'"),
    C("inject-dataset", f"{INJ} --dataset svhn", "argument --dataset: unknown dataset 'svhn'"),
    C("inject-site", f"{INJ} --site weight,cache", "unknown site 'cache'"),
    C("inject-array-site", f"{INJ} --site pe_acc",
      "unknown site 'pe_acc' (choose from weight, bias, acc, output, input)"),
    C("golden-backend", "golden --checkpoint {ok} --backend f32", "argument --backend: unknown backend 'f32'"),
    C("board-backend", "board --checkpoint {ok} --backend zynq", "argument --backend: unknown backend 'zynq'"),
    C("board-ip", "board --checkpoint {ok} --backend fake --ip gold", "argument --ip: unknown fake IP 'gold'"),
    C("board-scheme", "board --checkpoint {ok} --backend fake --scheme sanity+bogus", "argument --scheme:"),
    C("board-faults-sim", "board --checkpoint {ok} --backend sim --faults 3",
      "--faults needs the IP's fault-injection registers: backend sim has none"),
    C("flow-steps", "flow --out {out} --steps train,bogus", "unknown flow step(s): bogus"),
    # --- devices
    C("train-device-tpu", f"{TRAIN} --device tpu", "argument --device: unknown device 'tpu'"),
    C("inject-device-word", f"{INJ} --device gpu0", "argument --device: unknown device 'gpu0'"),
    C("train-device-cuda99", f"{TRAIN} --device cuda:99", "argument --device: cuda:99:"),
    # --- output paths: a file, under a file, a folder for a file, not writable
    C("train-out-dir", "train --out {adir} --quiet", "argument --out: {adir} is a folder, not a file path"),
    C("train-out-under-file", "train --out {afile}/m.pt",
      "argument --out: cannot create {afile}/m.pt: {afile} is a file"),
    C("golden-save-dir", "golden --checkpoint {ok} --save {adir}", "argument --save: {adir} is a folder"),
    C("golden-save-under-file", "golden --checkpoint {ok} --save {afile}/g.npz", "{afile} is a file, not a folder"),
    C("hls-out-file", "hls --checkpoint {ok} --out {afile}", "argument --out: {afile} exists and is not a folder"),
    C("hls-out-under-file", "hls --checkpoint {ok} --out {afile}/p", "{afile} is a file, not a folder"),
    C("rtl-out-file", "rtl --out {afile}", "argument --out: {afile} exists and is not a folder"),
    C("flow-out-file", "flow --out {afile}", "argument --out: {afile} exists and is not a folder"),
    C("flow-report-file", "flow --out {out} --report {afile}", "argument --report: {afile} exists and is not a folder"),
    C("inject-out-file", "inject --checkpoint {ok} --out {afile}",
      "argument --out: {afile} exists and is not a folder"),
    C("protect-out-file", "protect --checkpoint {ok} --out {afile}", "argument --out: {afile} exists and is not"),
    C("search-out-file", "search --out {afile}", "argument --out: {afile} exists and is not a folder"),
    C("search-out-deep-file", "search --out {afile}/a/b/c", "cannot create {afile}/a/b/c: {afile} is a file"),
    C("csim-build-file", "csim --build-dir {afile}", "argument --build-dir: {afile} exists and is not a folder"),
    C("train-out-proc", "train --out /proc/sanitas-test/m.pt",
      "cannot create /proc/sanitas-test/m.pt: /proc is not writable"),
    C("inject-out-proc", "inject --checkpoint {ok} --out /proc/sanitas-test", "/proc is not writable"),
    # --- input paths
    C("golden-ckpt-missing", f"{G} {{root}}/nope.pt", "argument --checkpoint: file not found: {root}/nope.pt"),
    C("golden-ckpt-dir", f"{G} {{adir}}", "argument --checkpoint: not a file: {adir}"),
    C("hls-ckpt-missing", "hls --checkpoint {root}/nope.pt --out {out}", "file not found: {root}/nope.pt"),
    C("inject-ckpt-missing", "inject --checkpoint {root}/nope.pt --out {out}", "file not found: {root}/nope.pt"),
    C("protect-ckpt-2nd-missing", "protect --checkpoint {ok} --checkpoint {root}/nope.pt --out {out}",
      "file not found: {root}/nope.pt"),
    C("board-bitfile-missing", "board --checkpoint {ok} --bitfile {root}/x.bit", "file not found: {root}/x.bit"),
    C("golden-datadir-missing", "golden --checkpoint {ok} --data-dir {root}/nodata", "folder not found: {root}/nodata"),
    C("train-datadir-file", f"{TRAIN} --dataset mnist --data-dir {{afile}}",
      "argument --data-dir: not a folder: {afile}"),
    C("train-mnist-no-dir", f"{TRAIN} --dataset mnist", "mnist needs --data-dir"),
    C("search-cifar-no-dir", f"{SEARCH} --dataset cifar10", "cifar10 needs --data-dir"),
    C("flow-config-missing", "flow --config {root}/cfg.yaml --out {out}", "file not found: {root}/cfg.yaml"),
    C("flow-config-section", "flow --config {cfg_unknown} --out {out}",
      "config {cfg_unknown}: unknown section(s): bogus_section (valid: array, data"),
    C("flow-config-key", "flow --config {cfg_unknown_key} --out {out}",
      "config {cfg_unknown_key}: unknown key(s) in [train]: epochz (valid: model, epochs"),
    C("flow-config-yaml", "flow --config {cfg_bad_yaml} --out {out}",
      "config {cfg_bad_yaml}: not valid YAML at line 2, column 1"),
    C("flow-config-json", "flow --config {cfg_bad_json} --out {out}",
      "config {cfg_bad_json}: not valid JSON at line 1, column 2"),
    C("flow-config-scalar-section", "flow --config {cfg_scalar} --out {out}",
      "config {cfg_scalar}: [train] must be a mapping of keys, got int 5"),
    C("flow-config-wrong-type", "flow --config {cfg_type} --out {out}",
      "config {cfg_type}: [train] epochs: expected int, got str 'ten'"),
    C("flow-config-negative", "flow --config {cfg_negative} --out {out}",
      "config {cfg_negative}: [train] epochs must be >= 0, got -1"),
    C("flow-config-list", "flow --config {cfg_list} --out {out}",
      "config {cfg_list}: expected a mapping of sections, got list [1, 2]"),
    C("train-config-wrong-type", "train --config {cfg_type} --out {out}/m.pt",
      "config {cfg_type}: [train] epochs: expected int"),
    C("inject-config-yaml", "inject --config {cfg_bad_yaml} --checkpoint {ok} --out {out}",
      "config {cfg_bad_yaml}: not valid YAML"),
    C("protect-per-layer-missing", f"{PROT} --per-layer {{root}}/map.json", "file not found: {root}/map.json"),
    C("protect-per-layer-bad", f"{PROT} --per-layer {{map_bad}}", "unknown protection scheme 'bogus'"),
    C("protect-per-layer-json", f"{PROT} --per-layer {{map_garbage_json}}",
      "{map_garbage_json}: cannot parse per-layer scheme map (JSONDecodeError)"),
    C("protect-per-layer-yaml", f"{PROT} --per-layer {{map_garbage_yaml}}",
      "{map_garbage_yaml}: cannot parse per-layer scheme map (ParserError)"),
    C("protect-per-layer-list", f"{PROT} --per-layer {{map_list_json}}",
      "{map_list_json}: per-layer scheme map must map layer names/patterns to scheme strings"),
    C("board-unknown-board", "board --checkpoint {ok} --board nosuch --backend fake", "unknown board 'nosuch'"),
    C("inject-unknown-layer", f"{INJ} --layer nolayer", "layer 'nolayer' does not exist"),
    C("report-missing", "report {root}/norun", "argument dir: folder not found: {root}/norun"),
    C("report-file", "report {afile}", "argument dir: not a folder: {afile}"),
    # --- checkpoints: corrupted, truncated, crafted, foreign
    C("ckpt-flip-tensor", f"{G} {{flip_tensor}}", "{flip_tensor}: " + CK_SHA),
    C("ckpt-flip-middle", f"{G} {{flip_middle}}", "{flip_middle}: "),
    C("ckpt-flip-head", f"{G} {{flip_head}}", "{flip_head}: cannot read checkpoint"),
    C("ckpt-edited-tensor", f"{G} {{edited_tensor}}", "{edited_tensor}: " + CK_SHA),
    C("ckpt-edited-metrics", f"{G} {{edited_metrics}}", "{edited_metrics}: " + CK_SHA),
    C("ckpt-edited-dataset", f"{G} {{edited_dataset}}", "{edited_dataset}: " + CK_SHA),
    C("ckpt-empty", f"{G} {{empty}}", "{empty}: empty file (not a checkpoint)"),
    C("ckpt-truncated", f"{G} {{trunc}}", "{trunc}: cannot read checkpoint"),
    C("ckpt-garbage", f"{G} {{garbage}}", "{garbage}: cannot read checkpoint"),
    C("ckpt-code", f"{G} {{evil_pt}}", "{evil_pt}: cannot read checkpoint (UnpicklingError"),
    C("ckpt-list", f"{G} {{list_pt}}", "{list_pt}: not a sanitas checkpoint (a list, not a dict)"),
    C("ckpt-no-spec", f"{G} {{nospec}}", "{nospec}: checkpoint has no valid 'spec'"),
    C("ckpt-spec-list", f"{G} {{spec_list}}", "{spec_list}: checkpoint has no valid 'spec'"),
    C("ckpt-no-state", f"{G} {{nostate}}", "{nostate}: checkpoint has no valid 'state_dict'"),
    C("ckpt-no-hash", f"{G} {{nohash}}", "{nohash}: checkpoint has no valid 'sha256'"),
    C("ckpt-no-dataset", f"{G} {{nodataset}}", "{nodataset}: checkpoint has no valid 'dataset'"),
    C("ckpt-format", f"{G} {{badformat}}", "{badformat}: not a sanitas checkpoint (format 'other-ckpt-9'"),
    C("ckpt-old-format", f"{G} {{old_format}}",
      "{old_format}: checkpoint format sanitas-ckpt-1 has no content hash; if you trust the file, re-save it with "
      "`python -m sanitas.train --rehash {old_format}`"),
    C("ckpt-unknown-model", f"{G} {{unknown_model}}", "{unknown_model}: unknown model 'alexnet'"),
    C("ckpt-bad-in-shape", f"{G} {{bad_in_shape}}", "{bad_in_shape}: checkpoint spec has no valid in_shape"),
    C("ckpt-neg-in-shape", f"{G} {{neg_in_shape}}", "{neg_in_shape}: checkpoint spec has no valid in_shape"),
    C("ckpt-bad-spec-arg", f"{G} {{bad_spec_arg}}", "{bad_spec_arg}: cannot build the network of its spec"),
    C("ckpt-unknown-dataset", f"{G} {{unknown_dataset}}", "unknown dataset 'imagenet'"),
    C("ckpt-wrong-shape", f"{G} {{wrong_shape}}", "{wrong_shape}: tensor {key} has shape"),
    C("ckpt-extra-key", f"{G} {{extra_key}}", "{extra_key}: checkpoint does not match its architecture (1 keys differ"),
    C("ckpt-missing-key", f"{G} {{missing_key}}", "{missing_key}: checkpoint does not match its architecture"),
    C("ckpt-non-tensor", f"{G} {{non_tensor}}", "{non_tensor}: checkpoint state_dict holds non-tensor values"),
    C("hls-ckpt-corrupt", "hls --checkpoint {flip_tensor} --out {out}", "{flip_tensor}: " + CK_SHA),
    C("board-ckpt-corrupt", "board --checkpoint {flip_tensor}", "{flip_tensor}: " + CK_SHA),
    C("inject-ckpt-corrupt", "inject --checkpoint {flip_tensor} --out {out} --quiet", "{flip_tensor}: " + CK_SHA),
    C("protect-ckpt-corrupt", "protect --checkpoint {flip_tensor} --out {out} --quiet", "{flip_tensor}: " + CK_SHA),
    C("inject-ckpt-empty", "inject --checkpoint {empty} --out {out} --quiet", "{empty}: empty file"),
    C("protect-ckpt-old", "protect --checkpoint {old_format} --out {out} --quiet", "has no content hash"),
    # --- a checkpoint for another input shape than its dataset's: refused before any work
    C("golden-shape", f"{G} {{ck28}}", "{ck28}: " + SHAPE28),
    C("golden-shape-rgb", f"{G} {{rgb}}", "{rgb}: checkpoint expects inputs of shape (3, 8, 8), dataset digits has"),
    C("hls-shape", "hls --checkpoint {ck28} --out {out}", "{ck28}: " + SHAPE28),
    C("board-shape", "board --checkpoint {ck28} --backend fake", "{ck28}: " + SHAPE28),
    C("inject-shape", "inject --checkpoint {ck28} --out {out} --quiet", "{ck28}: " + SHAPE28),
    C("protect-shape", "protect --checkpoint {ck28} --out {out} --quiet", "{ck28}: " + SHAPE28),
    C("protect-shape-2nd", "protect --checkpoint {ok} --checkpoint {ck28} --out {out} --quiet", "{ck28}: " + SHAPE28),
    # --- MNIST files
    C("mnist-missing-file", "train --dataset mnist --data-dir {mnist_missing} --out {out}/m.pt",
      "MNIST not found under"),
    C("mnist-gz-garbage", "train --dataset mnist --data-dir {gz_garbage} --out {out}/m.pt",
      "train-labels-idx1-ubyte.gz: cannot read (BadGzipFile"),
    C("mnist-gz-truncated", "train --dataset mnist --data-dir {gz_truncated} --out {out}/m.pt",
      "train-labels-idx1-ubyte.gz: cannot read (EOFError"),
    C("mnist-gz-not-gzip", "train --dataset mnist --data-dir {gz_not_gzip} --out {out}/m.pt",
      "train-labels-idx1-ubyte.gz: cannot read (BadGzipFile"),
    C("mnist-200-dims", "train --dataset mnist --data-dir {idx_200_dims} --out {out}/m.pt",
      "train-images-idx3-ubyte: IDX header claims 200 dimensions (1..4 expected)"),
    C("mnist-0-dims", "train --dataset mnist --data-dir {idx_0_dims} --out {out}/m.pt",
      "IDX header claims 0 dimensions"),
    C("mnist-bad-magic", "train --dataset mnist --data-dir {idx_bad_magic} --out {out}/m.pt",
      "train-images-idx3-ubyte: not an IDX uint8 file (bad magic)"),
    C("mnist-float-idx", "train --dataset mnist --data-dir {idx_float_type} --out {out}/m.pt", "(bad magic)"),
    C("mnist-empty-file", "train --dataset mnist --data-dir {idx_empty} --out {out}/m.pt",
      "t10k-images-idx3-ubyte: not an IDX uint8 file (bad magic)"),
    C("mnist-short-header", "train --dataset mnist --data-dir {idx_short_header} --out {out}/m.pt",
      "truncated IDX header"),
    C("mnist-truncated-body", "train --dataset mnist --data-dir {idx_truncated_body} --out {out}/m.pt",
      "truncated IDX body (23420 bytes read, header says 23520)"),
    C("mnist-trailing", "train --dataset mnist --data-dir {idx_trailing} --out {out}/m.pt",
      "trailing data after the IDX body"),
    C("mnist-huge-claim", "train --dataset mnist --data-dir {idx_huge_claim} --out {out}/m.pt",
      "IDX header claims 216000000000000 values (more than 2147483648)"),
    C("mnist-27x27", "train --dataset mnist --data-dir {idx_27x27} --out {out}/m.pt", "have inconsistent shapes"),
    C("mnist-test-27x27", "train --dataset mnist --data-dir {idx_test_27x27} --out {out}/m.pt",
      "have inconsistent shapes"),
    C("mnist-2d-images", "train --dataset mnist --data-dir {idx_2d_images} --out {out}/m.pt", "inconsistent shapes"),
    C("mnist-count", "train --dataset mnist --data-dir {idx_count_mismatch} --out {out}/m.pt", "inconsistent shapes"),
    C("mnist-label-10", "train --dataset mnist --data-dir {idx_label_10} --out {out}/m.pt",
      "t10k-labels-idx1-ubyte: labels outside 0..9 (min 1, max 10)"),
    C("mnist-2d-labels", "train --dataset mnist --data-dir {idx_2d_labels} --out {out}/m.pt", "inconsistent shapes"),
    C("mnist-no-images", "train --dataset mnist --data-dir {idx_no_images} --out {out}/m.pt",
      "t10k-labels-idx1-ubyte: no samples"),
    C("mnist-flat-dir", "train --dataset mnist --data-dir {cifar_ok} --out {out}/m.pt", "MNIST not found under"),
    # --- CIFAR-10 batches: no code runs, malformed batches refused
    C("cifar-evil", "train --dataset cifar10 --data-dir {cifar_evil} --out {out}/m.pt",
      "test_batch: refused to load global posix.system (a CIFAR-10 batch holds only dicts, lists, bytes and "
      "numpy arrays)"),
    C("cifar-evil-p0", "train --dataset cifar10 --data-dir {cifar_evil_p0} --out {out}/m.pt",
      "refused to load global posix.system"),
    C("cifar-eval", "train --dataset cifar10 --data-dir {cifar_eval} --out {out}/m.pt",
      "test_batch: refused to load global builtins.eval"),
    C("cifar-popen", "train --dataset cifar10 --data-dir {cifar_popen} --out {out}/m.pt",
      "refused to load global subprocess.Popen"),
    C("cifar-obj-array", "train --dataset cifar10 --data-dir {cifar_obj_array} --out {out}/m.pt",
      "refused to load global posix.system"),
    C("cifar-not-dict", "train --dataset cifar10 --data-dir {cifar_not_dict} --out {out}/m.pt",
      "malformed CIFAR-10 batch (not a dict with b'data' and b'labels')"),
    C("cifar-no-labels", "train --dataset cifar10 --data-dir {cifar_no_labels} --out {out}/m.pt",
      "not a dict with b'data' and b'labels'"),
    C("cifar-float", "train --dataset cifar10 --data-dir {cifar_float_data} --out {out}/m.pt",
      "(data is float64 (4, 3072), expected uint8 (N, 3072))"),
    C("cifar-width", "train --dataset cifar10 --data-dir {cifar_wrong_width} --out {out}/m.pt",
      "(data is uint8 (4, 1000), expected uint8 (N, 3072))"),
    C("cifar-label-count", "train --dataset cifar10 --data-dir {cifar_label_count} --out {out}/m.pt",
      "test_batch: 4 images but 3 labels"),
    C("cifar-label-range", "train --dataset cifar10 --data-dir {cifar_label_range} --out {out}/m.pt",
      "test_batch: labels outside 0..9 (min 0, max 12)"),
    C("cifar-label-type", "train --dataset cifar10 --data-dir {cifar_label_type} --out {out}/m.pt",
      "labels are not a list of ints"),
    C("cifar-truncated", "train --dataset cifar10 --data-dir {cifar_truncated} --out {out}/m.pt",
      "test_batch: malformed CIFAR-10 batch"),
    C("cifar-empty", "train --dataset cifar10 --data-dir {cifar_empty} --out {out}/m.pt",
      "test_batch: malformed CIFAR-10 batch (EOFError"),
    C("cifar-garbage", "train --dataset cifar10 --data-dir {cifar_garbage} --out {out}/m.pt", "test_batch: "),
    C("cifar-missing", "train --dataset cifar10 --data-dir {cifar_missing} --out {out}/m.pt",
      "CIFAR-10 not found under"),
    # --- run folders: campaign databases, manifests, search state
    C("report-db-garbage", "report {db_garbage}",
      "{db_garbage}/results.sqlite: not a sanitas campaign database (not an SQLite file)"),
    C("report-db-empty", "report {db_empty}",
      "{db_empty}/results.sqlite: not a sanitas campaign database (not an SQLite file)"),
    C("report-db-bad-pages", "report {db_text}", "{db_text}/results.sqlite: "),
    C("report-db-foreign", "report {db_foreign}", "not a sanitas campaign database (no table meta)"),
    C("report-db-truncated", "report {db_truncated}", "{db_truncated}/results.sqlite: "),
    C("report-db-missing", "report {db_missing}", "{db_missing}: the manifest names results.sqlite, which is missing"),
    C("report-db-traversal", "report {db_traversal}", "bad \"db\" entry '../ok.pt'"),
    C("report-no-manifest", "report {man_missing}", "{man_missing}: no manifest.json"),
    C("report-manifest-garbage", "report {man_garbage}", "{man_garbage}/manifest.json: not valid JSON"),
    C("report-manifest-list", "report {man_list}", "manifest has no \"kind\""),
    C("report-kind-path", "report {man_kind_path}", "bad report kind '../../os'"),
    C("report-kind-unknown", "report {man_kind_unknown}", "no report writer for kind 'nosuchkind'"),
    C("report-kind-int", "report {man_kind_int}", "bad report kind 3"),
    C("inject-resume-db-garbage", "inject --checkpoint {ok} --out {db_garbage} --resume --quiet",
      "{db_garbage} holds manifest.json but no settings.json (an older or damaged campaign folder)"),
    C("inject-resume-db-foreign", "inject --checkpoint {ok} --out {db_foreign} --resume --quiet",
      "{db_foreign} holds manifest.json but no settings.json"),
    C("search-state-truncated", f"{SEARCH.replace('{out}', '{search_trunc}')} --budget 0",
      "{search_trunc}/search_state.pt: not a readable sanitas search state (RuntimeError); use another --out"),
    C("search-state-foreign", f"{SEARCH.replace('{out}', '{search_foreign}')} --budget 0",
      "{search_foreign}/search_state.pt: not a sanitas search state; use another --out"),
    C("search-state-empty", f"{SEARCH.replace('{out}', '{search_empty}')} --budget 0",
      "{search_empty}/search_state.pt: not a readable sanitas search state (EOFError)"),
]


def _snapshot(root: Path) -> dict:
    """Every file under ``root`` with its size and modification time, and every folder (by name only: probing
    that a folder is writable creates and removes a file, which moves the folder's own mtime)."""
    return {str(p.relative_to(root)): (0, 0) if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def _fill(s: str, fx: dict, out: Path) -> str:
    return s.format(**fx, out=out)


def test_case_count():
    assert len(CASES) == len({c.id for c in CASES}) == 226


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, fx, tmp_path, monkeypatch, capsys):
    if case.id.endswith("-proc") and not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    if "cuda" in case.id and torch.cuda.is_available() and torch.cuda.device_count() > 99:
        pytest.skip("this machine has 100 CUDA devices")
    monkeypatch.chdir(tmp_path)                   # relative default outputs (build/...) land here too
    out = tmp_path / "out"
    argv = [_fill(a, fx, out) for a in case.argv]
    before, inputs = _snapshot(tmp_path), _snapshot(Path(fx["root"]))
    rc = main(argv)
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert rc == 2, (rc, cap.err[-2000:])
    assert len(lines) == 1, cap.err[-2000:]
    assert lines[0].startswith("sanitas: error: "), lines
    assert _fill(case.msg, fx, out) in lines[0]
    assert "Traceback" not in cap.err + cap.out
    assert _snapshot(tmp_path) == before           # nothing new in the working folder / --out
    assert _snapshot(Path(fx["root"])) == inputs   # the inputs untouched
    assert not Path(fx["marker"]).exists()         # no payload ran


def test_cuda_without_gpu(fx, tmp_path, monkeypatch, capsys):
    """``--device cuda`` on a machine without CUDA: one line, before any work (every command taking --device)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    for argv in (["train", "--out", "m.pt", "--device", "cuda"],
                 ["inject", "--checkpoint", fx["ok"], "--out", "c", "--device", "cuda"],
                 ["search", "--out", "s", "--device", "cuda:0"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].endswith(
            f"argument --device: {argv[-1]}: no CUDA GPU is available (use --device cpu)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through mode bits (the /proc cases cover it)")
def test_unwritable_out(fx, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["train", "--out", str(ro / "m.pt")]) == 2
        assert capsys.readouterr().err.strip() == (f"sanitas: error: train: argument --out: cannot create "
                                                   f"{ro / 'm.pt'}: {ro} is not writable")
        assert main(["rtl", "--out", str(ro)]) == 2
        assert capsys.readouterr().err.strip() == f"sanitas: error: rtl: argument --out: {ro} is not writable"
    finally:
        ro.chmod(0o755)


def test_malicious_batch_payload_never_runs(fx):
    """The restricted unpickler refuses the payload: the marker file a plain ``pickle.load`` creates is absent."""
    from sanitas.data import read_cifar_batch
    from sanitas.errors import DatasetError
    bad = Path(fx["cifar_evil"]) / "cifar-10-batches-py" / "test_batch"
    with pytest.raises(DatasetError) as e:
        read_cifar_batch(bad)
    assert str(e.value) == (f"{bad}: refused to load global posix.system (a CIFAR-10 batch holds only dicts, "
                            "lists, bytes and numpy arrays)")
    assert not Path(fx["marker"]).exists()
    # the control: plain pickle would have run it (in a child process, so this one stays clean)
    probe = Path(fx["root"]) / "control-marker"
    code = ("import pickle,os,sys\n"
            "class E:\n    def __reduce__(self): return (os.system, ('touch ' + sys.argv[1],))\n"
            "pickle.loads(pickle.dumps(E()))\n")
    subprocess.run([sys.executable, "-c", code, str(probe)], check=True)
    assert probe.exists()
    probe.unlink()


def test_valid_inputs_still_load(fx):
    """The fixtures' valid files pass the same checks (the cases fail for the broken part only)."""
    from sanitas.data import load_cifar10, load_mnist
    from sanitas.train import load_checkpoint
    m = load_mnist(fx["mnist_ok"])
    assert m.in_shape == (1, 28, 28) and len(m.test) == 10 and len(m.train) + len(m.val) == 30
    c = load_cifar10(fx["cifar_ok"])
    assert c.in_shape == (3, 32, 32) and len(c.test) == 4 and len(c.train) + len(c.val) == 20
    _, ck = load_checkpoint(fx["ok"])
    assert len(ck["sha256"]) == 64 and ck["format"] == "sanitas-ckpt-2"


def test_rehash_old_checkpoint(fx, tmp_path):
    """The way out the refusal names: ``python -m sanitas.train --rehash FILE`` makes an old file loadable."""
    import shutil

    from sanitas.train import _main as _rehash_main
    from sanitas.train import load_checkpoint
    p = tmp_path / "old.pt"
    shutil.copy(fx["old_format"], p)
    assert _rehash_main(["--rehash", str(p)]) == 0
    model, ck = load_checkpoint(p)
    ref, _ = load_checkpoint(fx["ok"])
    assert ck["sha256"] == torch.load(fx["ok"], weights_only=True)["sha256"]   # same content, same hash
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    assert list(tmp_path.iterdir()) == [p]                                      # no temp file left


def test_strict_json_summary(capsys):
    """``--json`` lines are strict JSON: NaN / Infinity become null, numpy values become plain numbers."""
    _print_summary({"acc": float("nan"), "ci": [float("inf"), -float("inf"), 0.5], "n": np.int64(3),
                    "x": np.float32(0.25), "nested": {"a": (1, float("nan"))}}, True)
    line = capsys.readouterr().out.strip()

    def refuse(c):
        raise ValueError(c)
    assert json.loads(line, parse_constant=refuse) == {"acc": None, "ci": [None, None, 0.5], "n": 3, "x": 0.25,
                                                       "nested": {"a": [1, None]}}
    assert strict_json(float("nan")) is None and strict_json(True) is True


@pytest.mark.parametrize("argv,msg", [
    (["train", "--out", "x.pt", "--epochs", "-1"], "sanitas: error: train: argument --epochs: must be >= 0, got -1"),
    (["golden", "--checkpoint", "{flip_tensor}"], "sanitas: error: {flip_tensor}: " + CK_SHA + " (corrupted or "
                                                  "edited file)"),
    (["train", "--dataset", "cifar10", "--data-dir", "{cifar_evil}", "--out", "x.pt"],
     "sanitas: error: {cifar_evil}/cifar-10-batches-py/test_batch: refused to load global posix.system"),
])
def test_real_entry_point(argv, msg, fx, tmp_path):
    """The same through ``python -m sanitas.cli`` in a fresh process: one line, exit 2, nothing written."""
    argv = [a.format(**fx) for a in argv]
    r = subprocess.run([sys.executable, "-m", "sanitas.cli", *argv], check=False, cwd=tmp_path, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "python")}, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith(msg.format(**fx)), r.stderr
    assert r.stdout == "" and list(tmp_path.iterdir()) == []
    assert not Path(fx["marker"]).exists()

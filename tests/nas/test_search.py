"""The search driver: determinism from the seed, resume after an interruption gives the same result, the dask
engine (local cluster) gives the same rewards as in-process evaluation, and the CLI end to end (summary with
``best`` and ``baselines``, genotype.json, golden bit-exact best net, report of kind "search").

Tiny budgets: a 2-cell space with C=2, one float and two INT8 supernet epochs at batch 256, four candidates.
"""
import json

import pytest
import torch

from sanitas.cli import main
from sanitas.nas.search import Search, SearchConfig
from sanitas.nas.space import load_genotype

TINY = dict(cells=2, nodes=2, channels=2, stem_multiplier=1, reductions=(1,), float_epochs=1, float_batch=256,
            epochs=2, batch_size=256, budget=4, arch_batch=2, eval_fault_samples=1, baselines=(), topk=1,
            max_macs=None)


class Interrupt(Exception):
    pass


def _search(out, **kw):
    cfg = SearchConfig(**{**TINY, **kw})
    s = Search(cfg, out, progress=False)
    threads = torch.get_num_threads()
    try:
        res = s.search()
    finally:
        torch.set_num_threads(threads)
    return res, {k: v.clone() for k, v in s.supernet.state_dict().items()}


def _same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _rewards(res):
    return [(h["genotype"], h["reward"], h["clean"], h["faulty"]) for h in res["history"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _search(tmp_path_factory.mktemp("ref"), controller="rl")


def test_determinism_from_seed(reference, tmp_path):
    res, state = _search(tmp_path, controller="rl")
    assert len(res["history"]) == 4
    assert _rewards(res) == _rewards(reference[0])
    _same_state(state, reference[1])
    other, _ = _search(tmp_path / "seed1", controller="rl", seed=1)
    assert _rewards(other) != _rewards(res)


def test_resume_after_interruption_gives_same_result(reference, tmp_path):
    def stop(stage, epoch):
        if stage == "search" and epoch == 1:       # after the first INT8 epoch (and its controller step)
            raise Interrupt
    cfg = SearchConfig(**{**TINY, "controller": "rl"})
    with pytest.raises(Interrupt):
        Search(cfg, tmp_path, progress=False, callback=stop).search()
    st = torch.load(tmp_path / "search_state.pt", weights_only=True)
    assert st["epoch"] == 2 and len(st["history"]) == 2
    res, state = _search(tmp_path, controller="rl")     # resumes from epoch 2
    assert _rewards(res) == _rewards(reference[0])
    _same_state(state, reference[1])
    # a different configuration must not silently continue this state
    with pytest.raises(Exception, match="another configuration"):
        _search(tmp_path, controller="rl", budget=6)


def test_dask_engine_gives_same_result_as_local(tmp_path):
    ref, ref_state = _search(tmp_path / "a", controller="evolution")
    dk, dk_state = _search(tmp_path / "b", controller="evolution", engine="dask", workers=2)
    assert _rewards(dk) == _rewards(ref)
    _same_state(dk_state, ref_state)


def test_cli_end_to_end_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["search", "--dataset", "digits", "--space", "mibb", "--controller", "evolution", "--budget", "4",
               "--float-epochs", "1", "--epochs", "2", "--cells", "2", "--nodes", "2", "--channels", "2",
               "--topk", "1", "--final-epochs", "1", "--baselines", "lenet5", "--baseline-epochs", "1",
               "--test-fault-samples", "3", "--max-macs", "auto", "--out", str(out), "--quiet", "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0
    for part in (summary["best"], summary["baselines"]["lenet5"]):
        assert {"clean_acc", "faulty_acc", "faulty_ci", "macs", "params", "overhead"} <= set(part)
        assert 0.0 <= part["faulty_acc"] <= 1.0
    assert summary["max_macs"] == summary["baselines"]["lenet5"]["macs"] == 66600
    assert summary["best"]["golden"]["bitexact"] and summary["best"]["golden"]["mismatches"] == 0
    g, space, extra = load_genotype(out / "genotype.json")
    assert g.to_dict() == summary["best"]["genotype"] and space.channels == 2
    assert json.loads((out / "manifest.json").read_text())["kind"] == "search"
    rc = main(["report", str(out), "--json"])
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and rep["kind"] == "search"
    assert {"reward.png", "pareto.png", "cells.png"} <= set(rep["figures"])
    assert "lenet5" in (out / "report.md").read_text()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_search_on_cuda_matches_its_own_resume(tmp_path):
    res, state = _search(tmp_path / "a", controller="evolution", device="cuda")
    assert len(res["history"]) == 4 and all(0 <= h["clean"] <= 1 for h in res["history"])
    assert all(v.device.type == "cuda" for v in state.values() if v.is_floating_point())


def test_cli_settings_come_from_the_search_section(tmp_path):
    """``sanitas search`` builds its SearchConfig from [search] and [data] (``--config``), the options win."""
    from sanitas.commands._config import command_args
    from sanitas.commands.search import config_from_args
    from sanitas.config import Config
    assert config_from_args(command_args("search", ["--out", "o"])) == SearchConfig(dataset="digits")
    assert Config().search == SearchConfig()
    p = tmp_path / "c.yaml"
    p.write_text("data: {dataset: mnist, data_dir: d}\nsearch: {cells: 5, space: adsaf, max_macs: 9000, "
                 "arch_batch: 3, baselines: [vgg]}\n")
    cfg = config_from_args(command_args("search", ["--out", "o", "--config", str(p), "--nodes", "4",
                                                   "--baselines", "lenet5,vgg"]))
    assert (cfg.dataset, cfg.data_dir, cfg.cells, cfg.nodes, cfg.space, cfg.max_macs, cfg.arch_batch) == (
        "mnist", "d", 5, 4, "adsaf", 9000, 3)
    assert cfg.baselines == ("lenet5", "vgg") and cfg.fault is None
    r = cfg.resolved()
    assert (r.fault, r.alpha) == ("adsaf", 0.2)                    # the space's, as before
    cfg = config_from_args(command_args("search", ["--out", "o", "--max-macs", "none", "--paper-space"]))
    assert cfg.max_macs is None and (cfg.cells, cfg.channels, cfg.reductions) == (8, 20, (2, 5))

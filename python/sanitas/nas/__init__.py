"""FT-NAS / FTT-NAS fault-tolerant architecture search producing Brevitas INT8 ``QNet``s (issue 5; Ning et al.,
TODAES 2021, seed 000).

* ``space``       — cell search space (FTT-NAS primitive sets for feature / weight faults), genotypes, encoding
* ``ops``         — the INT8 primitives as graph nodes (one emitter for the supernet and derived nets)
* ``supernet``    — weight-sharing supernet with per-op sampling (float warm-up path, resumable quantiser state)
* ``controllers`` — LSTM + REINFORCE (the paper's), regularized evolution, random search
* ``reward``      — (1-alpha) clean + alpha faulty, MACs and protection-overhead cost terms
* ``ftt``         — fault-tolerant training loss and faulty evaluation (mean ± 95% CI)
* ``derive``      — genotype -> ``QNet`` (``build_from_genotype``, used by ``sanitas.models.build_from_spec``)
* ``search``      — the driver: search, derive top-k, final FTT training, zoo baselines, evaluation
* ``search_tasks`` — its work units (candidate evaluation, FTT training of one net) and the local/dask engine
"""

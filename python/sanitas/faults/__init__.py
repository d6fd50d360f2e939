"""Fault models, injectors and the campaign engine of sanitas (issue 3).

* ``fault``        — ``Fault`` records (site/layer/index/bit/kind), sites registry, validation, sampling
* ``torch_inject`` — rate-based FTT-NAS models (MiBB, adSAF, BER) as context managers on any Brevitas module
* ``executors``    — apply ``Fault`` records on the golden integer model (exact) and on the Brevitas model
* ``engine``       — the batched, exact campaign executor (faults along the batch, prefix reuse, early stop)
* ``campaign``     — campaigns: classification, Wilson CIs, the SQLite store, resume, dask scale-out
"""
from .fault import (KINDS, SITES, Fault, Site, SiteInfo, apply_fault_value, apply_masks, enumerate_faults,
                    fault_masks, population, register_site, sample_faults, site_info, validate)


def __getattr__(name):
    """Lazy access to the heavier modules' entry points (keeps ``import sanitas.faults`` light)."""
    lazy = {"run_golden": "executors", "run_brevitas": "executors", "golden_hook": "executors",
            "FastGolden": "engine", "EngineStats": "engine", "classify": "engine",
            "CampaignSpec": "campaign", "run_campaign": "campaign", "run_fault_list": "campaign",
            "Store": "store", "wilson": "stats", "sample_size": "stats",
            # torch is imported only by those who use the rate-based models (the RTL benches do not)
            "MiBB": "torch_inject", "ADSAF": "torch_inject", "BER": "torch_inject", "inject": "torch_inject",
            "FAULT_MODELS": "torch_inject"}
    if name in lazy:
        import importlib
        return getattr(importlib.import_module(f".{lazy[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["Fault", "KINDS", "SITES", "Site", "SiteInfo", "register_site", "site_info", "validate", "fault_masks",
           "apply_masks", "apply_fault_value", "sample_faults", "enumerate_faults", "population",
           "MiBB", "ADSAF", "BER", "inject", "FAULT_MODELS", "run_golden", "run_brevitas", "golden_hook", "FastGolden",
           "EngineStats", "classify", "CampaignSpec", "run_campaign", "run_fault_list", "Store", "wilson",
           "sample_size"]

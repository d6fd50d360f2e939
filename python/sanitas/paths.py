"""Where sanitas's source checkout is: the one place the package looks up the repository root.

The package lives at ``<repo>/python/sanitas/`` (src layout, installed editable by ``make setup``), so the root is
two folders above this file's folder. Parts of the flow read data kept beside the package rather than inside it
(``boards/<board>/board.json``, the cocotb benches in ``rtl_tests/``, the HLS kernels in ``hls/``) and write their
default outputs under ``<repo>/build/``; they all take the root from here instead of counting ``parents[N]`` of
their own ``__file__``. Scripts outside the package (``tests/``, ``benchmarks/``, ``rtl_tests/``) locate their
own checkout from their own path.
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT: Path = Path(__file__).resolve().parents[2]   # <repo>: holds pyproject.toml, boards/, hls/, rtl_tests/

__all__ = ["REPO_ROOT"]

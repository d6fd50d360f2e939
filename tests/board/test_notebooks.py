"""Notebooks delivered the PYNQ way: the wheel's ``pynq.notebooks`` entry point, and ``pynq get-notebooks sanitas``
run against an install of that wheel, which copies the repository's notebooks (the package links them)."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("pynq", reason="pynq not installed")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def test_package_links_every_notebook():
    pkg = ROOT / "python" / "sanitas" / "notebooks"
    missing = sorted(set(NOTEBOOKS) - {p.name for p in pkg.glob("*.ipynb")})
    assert missing == [], f"link each new notebook into the package: ln -s ../../../notebooks/NAME {pkg}/NAME"
    assert sorted(p.name for p in pkg.glob("*.ipynb")) == NOTEBOOKS and "02_board.ipynb" in NOTEBOOKS
    assert not (pkg / "__init__.py").exists()       # a namespace folder: pynq copies it whole
    for name in NOTEBOOKS:
        assert (pkg / name).resolve() == (ROOT / "notebooks" / name).resolve()


def test_pynq_get_notebooks_delivers_them(tmp_path):
    pynq_cli = Path(sys.executable).parent / "pynq"
    if not pynq_cli.is_file():
        pytest.skip("the pynq command is not installed beside this Python")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "python", src / "python", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                        "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("sanitas-*.whl")
    z = zipfile.ZipFile(wheel)
    (ep,) = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "[pynq.notebooks]\nsanitas = sanitas.notebooks\n" in z.read(ep).decode()
    for name in NOTEBOOKS:
        assert z.read(f"sanitas/notebooks/{name}") == (ROOT / "notebooks" / name).read_bytes()
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                        str(site), str(wheel)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    dest = tmp_path / "jupyter"
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run([str(pynq_cli), "get-notebooks", "sanitas", "-p", str(dest), "-o"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, check=False, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    assert sorted(p.name for p in (dest / "sanitas").iterdir()) == NOTEBOOKS
    for name in NOTEBOOKS:
        assert (dest / "sanitas" / name).read_bytes() == (ROOT / "notebooks" / name).read_bytes()

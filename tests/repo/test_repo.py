"""Repository hygiene: packaging globs, the one repository-root lookup, no machine paths, nothing binary committed.

These read the checkout this file is in (``ROOT``) and the tracked files of its git index; the wheel test builds
the package from a copy of its sources with the installed setuptools (no network, no build isolation).
"""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sanitas.paths import REPO_ROOT

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "python" / "sanitas"

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _tracked() -> list[Path]:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    r = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / p for p in r.stdout.decode().split("\0") if p]


def test_repo_root_is_this_checkout():
    assert REPO_ROOT == ROOT
    assert (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "boards").is_dir()


def test_repo_root_is_looked_up_only_in_paths_py():
    lookups = sorted(str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                     if re.search(r"__file__\)\.resolve\(\)\.parents\[", p.read_text()))
    assert lookups == ["paths.py"]


def test_package_data_globs_each_match_files():
    data = _pyproject()["tool"]["setuptools"]["package-data"]
    assert list(data) == ["sanitas"]
    for pattern in data["sanitas"]:
        assert sorted(PKG.glob(pattern)), f"package-data glob {pattern!r} matches no file under python/sanitas"


def test_wheel_ships_every_package_file_and_nothing_else(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "python", src / "python", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("sanitas-*.whl")
    names = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("sanitas/")}
    files = {"sanitas/" + str(p.relative_to(PKG)) for p in PKG.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    assert names == files
    data = _pyproject()["tool"]["setuptools"]["package-data"]["sanitas"]
    globbed = {"sanitas/" + str(p.relative_to(PKG)) for g in data for p in PKG.glob(g)}
    assert {n for n in names if not n.endswith(".py")} == globbed    # the data files are the globbed ones
    assert "sanitas/rtl/templates/systolic_array.v.j2" in globbed


def test_no_machine_paths_or_out_of_tree_docs_are_cited():
    machine = re.compile(r"(?<![\w.])/(?:work|home|Users|opt|root|mnt|tmp)/")
    outside = re.compile("(?:DESIGN|REFERENCES)" + r"\.md")
    hits = []
    for p in _tracked():
        if not p.is_file() or b"\0" in p.read_bytes()[:8192]:
            continue
        for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if machine.search(line) or outside.search(line):
                hits.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()[:80]}")
    assert hits == []


def test_nothing_binary_or_archived_is_committed():
    suffixes = (".whl", ".tar.gz", ".tgz", ".zip", ".so", ".o", ".a", ".pt", ".pkl", ".npz", ".bit")
    bad = [str(p.relative_to(ROOT)) for p in _tracked()
           if p.name.endswith(suffixes) or (p.is_file() and b"\0" in p.read_bytes()[:8192])]
    assert bad == []


def test_every_package_module_opens_with_a_docstring():
    missing = sorted(str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                     if "__pycache__" not in p.parts and not ast.get_docstring(ast.parse(p.read_text())))
    assert missing == []


def test_architecture_page_names_every_top_level_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    names = sorted(p.name for p in PKG.iterdir()
                   if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file())
    assert len(names) >= 17
    assert [n for n in names if f"`{n}" not in text and f"{n}/" not in text] == []

"""The optional compiled build (mypyc): a compiled module whose source was edited after the build
is named in a RuntimeWarning, never shadows the edit silently. Builds are slow, so the check is
tested on a fake tree and manifest; what needs a real compiled build is skipped without one."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import actors
from actors import _compiled
from actors._compiled import COMPILED, MANIFEST, check, compiled_modules, stale_modules

ROOT = Path(__file__).resolve().parent.parent
MODULE = "actors/_patterns.py"


def fake_tree(tmp_path: Path, *, compiled: bool = True) -> Path:
    """A copy of one compiled module's source, its manifest, and (if `compiled`) an empty file
    where its extension module would be."""
    (tmp_path / "actors").mkdir()
    (tmp_path / MODULE).write_bytes((ROOT / MODULE).read_bytes())
    _compiled.write_manifest_for(str(tmp_path), [MODULE])
    if compiled:
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        (tmp_path / MODULE.replace(".py", suffix)).write_bytes(b"")
    return tmp_path


def test_a_fresh_build_is_not_stale(tmp_path):
    root = fake_tree(tmp_path)
    assert compiled_modules(str(root)) == [MODULE]
    assert stale_modules(str(root)) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check(str(root)) == []


def test_an_edited_source_of_a_compiled_module_warns_naming_it_and_the_rebuild(tmp_path):
    root = fake_tree(tmp_path)
    with open(root / MODULE, "a") as f:
        f.write("\n# edited after the build\n")
    assert stale_modules(str(root)) == [MODULE]
    with pytest.warns(RuntimeWarning, match=r"actors/_patterns\.py.*make compiled"):
        assert check(str(root)) == [MODULE]


def test_a_compiled_module_missing_from_the_manifest_is_stale(tmp_path):
    root = fake_tree(tmp_path)
    (root / MANIFEST).write_text(json.dumps({}))
    assert stale_modules(str(root)) == [MODULE]
    (root / MANIFEST).unlink()
    assert stale_modules(str(root)) == [MODULE]


def test_the_pure_build_has_nothing_to_check(tmp_path):
    root = fake_tree(tmp_path, compiled=False)
    with open(root / MODULE, "a") as f:
        f.write("\n# edited, but nothing compiled shadows it\n")
    assert compiled_modules(str(root)) == []
    assert stale_modules(str(root)) == []


def test_every_listed_module_exists_and_mypyc_can_take_it():
    """A listed module that moved or became a msgspec Struct module would break the build."""
    for rel in COMPILED:
        source = (ROOT / rel).read_text()
        assert "msgspec.Struct" not in source, rel


compiled_here = compiled_modules(str(ROOT))
needs_build = pytest.mark.skipif(
    not compiled_here, reason="no compiled build here (pure Python); `make test-compiled` runs it")


@needs_build
def test_the_compiled_build_runs_compiled_modules():
    assert set(compiled_here) == set(COMPILED)
    for rel in COMPILED:
        module = sys.modules.get(rel[:-3].replace("/", ".")) or __import__(
            rel[:-3].replace("/", "."), fromlist=["_"])
        assert not module.__file__.endswith(".py"), module.__file__
    assert actors  # imported above: the import itself checked the manifest


@needs_build
def test_importing_the_compiled_build_after_an_edit_warns(tmp_path):
    """A real import, in a fresh interpreter, after the manifest says a source changed."""
    manifest = ROOT / MANIFEST
    saved = manifest.read_bytes()
    hashes = json.loads(saved)
    hashes[MODULE] = "0" * 64
    try:
        manifest.write_text(json.dumps(hashes))
        out = subprocess.run([sys.executable, "-W", "always", "-c", "import actors"], cwd=ROOT,
                             capture_output=True, text=True, env={**os.environ}, check=True)
    finally:
        manifest.write_bytes(saved)
    assert "RuntimeWarning" in out.stderr and MODULE in out.stderr, out.stderr

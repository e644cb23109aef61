"""The optional compiled build: which modules mypyc compiles, and the check that none of them is
stale. Always interpreted; run by `actors/__init__.py`, loaded by setup.py from its path.

`make compiled` (`SUBJECTS_COMPILE=1 python setup.py build_ext --inplace`) compiles `COMPILED`
and writes `MANIFEST`, the SHA-256 of each compiled module's source at build time. At import,
a compiled module whose source no longer matches is named in a RuntimeWarning with the command
to rebuild: Python loads the extension module before the edited `.py`, so the edit would not run."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import warnings
from collections.abc import Iterable

# Paths relative to the project root; the hot path of a turn, profiled (see README, Benchmarks).
COMPILED: tuple[str, ...] = (
    "actors/_patterns.py",
    "actors/_values.py",
    "actors/_state.py",
    "actors/_behaviours.py",
    "runtime/_clock.py",
    "runtime/_batch.py",
    "runtime/_scheduler.py",
    "runtime/_supervision.py",
    "runtime/_turn.py",
    "runtime/_directory.py",
    "runtime/_persistence.py",
    "runtime/_engine.py",
    "runtime/_runtime.py",
)
MANIFEST = "actors/_compiled_manifest.json"
REBUILD = (
    "make compiled (SUBJECTS_COMPILE=1 python setup.py build_ext --inplace); pure Python: "
    "make pure")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_manifest(root: str) -> None:
    """Record the hash of every module about to be compiled (called by setup.py)."""
    write_manifest_for(root, COMPILED)


def write_manifest_for(root: str, modules: Iterable[str]) -> None:
    hashes = {rel: source_hash(os.path.join(root, rel)) for rel in modules}
    with open(os.path.join(root, MANIFEST), "w") as f:
        json.dump(hashes, f, indent=1, sort_keys=True)
        f.write("\n")


def is_compiled(root: str, rel: str) -> bool:
    """Whether an extension module sits beside the source `rel` (and so shadows it)."""
    stem = os.path.join(root, rel[: -len(".py")])
    return any(os.path.exists(stem + suffix)
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def stale_modules(root: str, compiled: Iterable[str] | None = None) -> list[str]:
    """The compiled modules under `root` whose source changed since the build (or that have no
    entry in the manifest). `compiled` defaults to the ones with an extension module present."""
    compiled = compiled_modules(root) if compiled is None else list(compiled)
    if not compiled:
        return []
    try:
        with open(os.path.join(root, MANIFEST)) as f:
            recorded: dict[str, str] = json.load(f)
    except (OSError, ValueError):
        recorded = {}
    return [rel for rel in compiled
            if not os.path.exists(os.path.join(root, rel))
            or recorded.get(rel) != source_hash(os.path.join(root, rel))]


def check(root: str = _ROOT) -> list[str]:
    """Warn (RuntimeWarning) naming every stale compiled module; return them."""
    stale = stale_modules(root)
    if stale:
        warnings.warn(
            f"subjects: compiled modules older than their sources: {', '.join(stale)}; the "
            f"compiled code runs, not your edits. Rebuild: {REBUILD}",
            RuntimeWarning, stacklevel=3)
    return stale


def compiled_modules(root: str = _ROOT) -> list[str]:
    """The modules of this install that run compiled (empty for the pure-Python build)."""
    return [rel for rel in COMPILED if is_compiled(root, rel)]

"""The build. Without SUBJECTS_COMPILE it is pyproject.toml's pure-Python package and nothing
else: no compiler, no mypy. With SUBJECTS_COMPILE=1 (or `make compiled`), the hot modules listed
in `actors/_compiled.py` are compiled with mypyc (the way black and mypy build theirs), and a
manifest of their source hashes is written beside them, so that an edited source is noticed at
import instead of being shadowed silently by its stale compiled module."""

from __future__ import annotations

import os

from setuptools import setup

ext_modules = []
if os.environ.get("SUBJECTS_COMPILE", "") not in ("", "0"):
    import importlib.util

    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit("SUBJECTS_COMPILE=1 needs mypy (the dev extra) and a C compiler in the "
                         "building environment: use `make compiled`, or pip's "
                         "--no-build-isolation in a venv with '.[dev]' installed") from None

    root = os.path.dirname(os.path.abspath(__file__))
    # Loaded by path: importing the package would need its dependencies in the build environment.
    path = os.path.join(root, "actors", "_compiled.py")
    spec = importlib.util.spec_from_file_location("_compiled", path)
    assert spec is not None and spec.loader is not None
    compiled = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compiled)
    compiled.write_manifest(root)
    ext_modules = mypycify(list(compiled.COMPILED),
                           opt_level=os.environ.get("MYPYC_OPT_LEVEL", "3"))

setup(ext_modules=ext_modules)

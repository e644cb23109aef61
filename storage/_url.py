"""Choosing a store from a URL, so that configuration is one string (flag, env var, argument)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ._protocol import SnapshotStore


def open_store(spec: str | SnapshotStore) -> SnapshotStore:
    """A store for `memory://`, `sqlite:///relative.db`, `sqlite:////absolute.db`,
    `postgresql://...` or `redis://...`; a store object is returned as it is."""
    if not isinstance(spec, str):
        if isinstance(spec, SnapshotStore):
            return spec
        raise TypeError(f"store must be a URL or a SnapshotStore, not {spec!r}")
    scheme = urlsplit(spec).scheme
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        path = spec[len("sqlite://"):]
        if path.startswith("/"):
            path = path[1:]  # sqlite:///state.db is relative, sqlite:////abs/state.db absolute
        if not path:
            raise ValueError("a sqlite URL needs a file: sqlite:///state.db")
        return SQLiteStore(path)
    if scheme in ("postgres", "postgresql"):
        from .postgres import PostgresStore

        return PostgresStore(spec)
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisStore

        return RedisStore(spec)
    raise ValueError(
        f"unknown store URL {spec!r}: use memory://, sqlite:///file.db, postgresql://... "
        "or redis://..."
    )

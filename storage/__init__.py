"""Snapshot stores: where subjects' state lives between activations."""

from ._protocol import (
    Delete,
    Snapshot,
    SnapshotRefused,
    SnapshotStore,
    StoreError,
    StoreUnavailable,
    Write,
)
from ._url import open_store
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = [
    "Delete",
    "MemoryStore",
    "SQLiteStore",
    "Snapshot",
    "SnapshotRefused",
    "SnapshotStore",
    "StoreError",
    "StoreUnavailable",
    "Write",
    "open_store",
]

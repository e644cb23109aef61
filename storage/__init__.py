"""Snapshot stores: where subjects' state lives between activations."""

from ._protocol import (
    Delete,
    Snapshot,
    SnapshotCorrupt,
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
    "SnapshotCorrupt",
    "SnapshotRefused",
    "SnapshotStore",
    "StoreError",
    "StoreUnavailable",
    "Write",
    "open_store",
]

"""The in-memory store: the zero-setup default for scripts and tests.

It keeps what a real store keeps (encoded bytes and versions, with the same version checks), so
that code tested on it behaves the same on a durable store; only durability across processes is
missing.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._protocol import Delete, Snapshot, Write


class MemoryStore:
    """Snapshots in a dictionary of this process."""

    def __init__(self) -> None:
        self._rows: dict[str, Snapshot] = {}
        self.writes = 0  # batches written, for tests and benchmarks

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._rows)} subjects>"

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def load_many(self, names: Sequence[str]) -> dict[str, Snapshot]:
        rows = self._rows
        return {name: rows[name] for name in names if name in rows}

    async def save_many(self, writes: Sequence[Write]) -> list[str]:
        rows = self._rows
        refused = []
        for w in writes:
            current = rows.get(w.name)
            if (0 if current is None else current.version) != w.expected_version:
                refused.append(w.name)
                continue
            rows[w.name] = Snapshot(w.name, w.version, w.properties, w.ext)
        self.writes += 1
        return refused

    async def delete_many(self, deletes: Sequence[Delete]) -> list[str]:
        rows = self._rows
        refused = []
        for d in deletes:
            current = rows.get(d.name)
            if current is None:
                continue
            if current.version != d.expected_version:
                refused.append(d.name)
            else:
                del rows[d.name]
        return refused

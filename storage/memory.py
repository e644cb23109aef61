"""The in-memory store: the zero-setup default for scripts and tests.

It keeps what a real store keeps (encoded bytes and versions, with the same version checks), so
that code tested on it behaves the same on a durable store; only durability across processes is
missing.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._protocol import WRITERS_KEPT, Delete, Snapshot, Write


class MemoryStore:
    """Snapshots in a dictionary of this process."""

    def __init__(self) -> None:
        self._rows: dict[str, Snapshot] = {}
        self._writers: dict[str, dict[str, int]] = {}  # by subject: writer -> version stored
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
            if w.expected_version == 0:
                self._writers.pop(w.name, None)
            if w.writer:
                _record(self._writers.setdefault(w.name, {}), w.writer, w.version)
        self.writes += 1
        return refused

    async def versions(self, names: Sequence[str], writer: str) -> dict[str, tuple[int, int]]:
        rows, writers = self._rows, self._writers
        return {name: (rows[name].version, writers.get(name, {}).get(writer, 0))
                for name in names if name in rows}

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
                self._writers.pop(d.name, None)
        return refused


def _record(writers: dict[str, int], writer: str, version: int) -> None:
    writers[writer] = version
    if len(writers) > WRITERS_KEPT:
        del writers[min(writers, key=writers.__getitem__)]

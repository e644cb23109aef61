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
        self._writer: dict[str, str] = {}  # by subject: the writer of its stored version
        # by subject, only after a handover: writer -> the last version it stored
        self._history: dict[str, dict[str, int]] = {}
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
                self._history.pop(w.name, None)
            elif (previous := self._writer[w.name]) != w.writer:
                _hand_over(self._history.setdefault(w.name, {}), previous,
                           w.expected_version, w.writer)
            self._writer[w.name] = w.writer
        self.writes += 1
        return refused

    async def versions(self, names: Sequence[str], writer: str) -> dict[str, tuple[int, int]]:
        found = {}
        for name in names:
            if name in self._rows:
                version = self._rows[name].version
                found[name] = (version, version if self._writer[name] == writer else
                               self._history.get(name, {}).get(writer, 0))
        return found

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
                del self._writer[d.name]
                self._history.pop(d.name, None)
        return refused


def _hand_over(history: dict[str, int], previous: str, version: int, writer: str) -> None:
    """`writer` writes on top of `version`, stored by `previous`: the history keeps that, and
    drops the entry of `writer`, whose latest version is now the stored one."""
    history.pop(writer, None)
    if previous:
        history[previous] = version
        if len(history) > WRITERS_KEPT:
            del history[min(history, key=history.__getitem__)]

"""The SQLite store: the embedded, durable default (standard library only, one file).

sqlite3 blocks, so every call runs on one dedicated thread that owns the connection; a batch is
one transaction. WAL with synchronous=FULL: a committed batch survives a crash of the process and
of the machine. Properties are kept as JSON text, so `json_extract` queries work on them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ._protocol import Delete, Snapshot, StoreUnavailable, Write

T = TypeVar("T")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS subjects (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    properties TEXT NOT NULL,
    ext TEXT NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subjects_schema (version INTEGER NOT NULL);
"""
_INSERT = ("INSERT INTO subjects VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING")
_UPDATE = ("UPDATE subjects SET version = ?, properties = ?, ext = ?, updated_at = ? "
           "WHERE name = ? AND version = ?")
_LOAD_CHUNK = 500  # below SQLite's default limit of bound parameters


class SQLiteStore:
    """Snapshots in one SQLite database file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None or self._db is None:
            raise StoreUnavailable(f"{self!r} is not open")
        db = self._db
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, db)
        except sqlite3.OperationalError as exc:  # locked, disk full, I/O error: transient
            raise StoreUnavailable(f"SQLite {self.path!r}: {exc}") from exc

    async def open(self) -> None:
        if self._db is not None:
            return
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="subjects-sqlite")

        def connect() -> sqlite3.Connection:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT version FROM subjects_schema").fetchone()
            if row is None:
                db.execute("INSERT INTO subjects_schema VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"{self.path!r} has schema version {row[0]}; this version of subjects "
                    f"understands up to {SCHEMA_VERSION}: upgrade subjects"
                )
            return db

        try:
            self._db = await asyncio.get_running_loop().run_in_executor(self._thread, connect)
        except sqlite3.Error as exc:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise StoreUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from exc

    async def close(self) -> None:
        db, thread = self._db, self._thread
        self._db = self._thread = None
        if thread is not None:
            if db is not None:
                await asyncio.get_running_loop().run_in_executor(thread, db.close)
            thread.shutdown(wait=True)

    async def ping(self) -> None:
        await self._call(lambda db: db.execute("SELECT 1").fetchone())

    async def load_many(self, names: Sequence[str]) -> dict[str, Snapshot]:
        def load(db: sqlite3.Connection) -> dict[str, Snapshot]:
            found: dict[str, Snapshot] = {}
            for start in range(0, len(names), _LOAD_CHUNK):
                chunk = names[start:start + _LOAD_CHUNK]
                marks = ",".join("?" * len(chunk))
                for name, version, props, ext in db.execute(
                    f"SELECT name, version, properties, ext FROM subjects WHERE name IN ({marks})",
                    chunk,
                ):
                    found[name] = Snapshot(name, version, props.encode(), ext.encode())
            return found

        return await self._call(load)

    async def save_many(self, writes: Sequence[Write]) -> list[str]:
        def save(db: sqlite3.Connection) -> list[str]:
            now = time.time()
            fresh = [(w.name, w.version, w.properties.decode(), w.ext.decode(), now)
                     for w in writes if w.expected_version == 0]
            known = [(w.version, w.properties.decode(), w.ext.decode(), now, w.name,
                      w.expected_version) for w in writes if w.expected_version != 0]
            db.execute("BEGIN IMMEDIATE")
            try:
                refused = self._apply(db, _INSERT, fresh, 0) + self._apply(db, _UPDATE, known, 4)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return refused

        return await self._call(save)

    @staticmethod
    def _apply(db: sqlite3.Connection, statement: str, rows: Sequence[tuple[object, ...]],
               name_at: int) -> list[str]:
        """Run `statement` for every row; return the names of the rows it did not change. One
        executemany when every row applies (the normal case); row by row only to find out which
        ones did not."""
        if not rows:
            return []
        db.execute("SAVEPOINT batch")
        if db.executemany(statement, rows).rowcount == len(rows):
            db.execute("RELEASE batch")
            return []
        db.execute("ROLLBACK TO batch")
        db.execute("RELEASE batch")
        return [str(row[name_at]) for row in rows if db.execute(statement, row).rowcount != 1]

    async def delete_many(self, deletes: Sequence[Delete]) -> list[str]:
        def delete(db: sqlite3.Connection) -> list[str]:
            refused = []
            db.execute("BEGIN IMMEDIATE")
            try:
                for d in deletes:
                    cur = db.execute(
                        "DELETE FROM subjects WHERE name = ? AND version = ?",
                        (d.name, d.expected_version),
                    )
                    if cur.rowcount != 1 and db.execute(
                        "SELECT 1 FROM subjects WHERE name = ?", (d.name,)
                    ).fetchone():
                        refused.append(d.name)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return refused

        return await self._call(delete)

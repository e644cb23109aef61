"""The SQLite store: the embedded, durable default (standard library only, one file).

sqlite3 blocks, so every call runs on one dedicated thread that owns the connection; a batch is
one transaction. WAL with synchronous=FULL: a committed batch survives a crash of the process and
of the machine. Properties are kept as JSON text, so `json_extract` queries work on them.

A batch travels as one JSON parameter, unpacked by `json_each` inside one statement. sqlite3
hands the GIL back and forth around every step of a statement, so an `executemany` of 1,000 rows
would wait for the event loop's thread 1,000 times: under load that turned a 2 ms batch into
hundreds of milliseconds. One statement is one step, whatever the size of the batch.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import msgspec

from ._protocol import Delete, Snapshot, StoreUnavailable, Write

T = TypeVar("T")

SCHEMA_VERSION = 1
OLDEST_SQLITE = (3, 33, 0)  # UPDATE ... FROM
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
# Rows of a batch: [name, version, expected version, properties, ext], the JSON as strings.
_ROWS = ("SELECT json_extract(value, '$[0]') AS name, json_extract(value, '$[1]') AS version, "
         "json_extract(value, '$[2]') AS expected, json_extract(value, '$[3]') AS properties, "
         "json_extract(value, '$[4]') AS ext FROM json_each(?1)")
_INSERT = (f"INSERT INTO subjects SELECT name, version, properties, ext, ?2 FROM ({_ROWS}) "
           "WHERE true ON CONFLICT (name) DO NOTHING")  # `WHERE true`: SQLite's upsert grammar
_UPDATE = ("UPDATE subjects SET version = b.version, properties = b.properties, ext = b.ext, "
           f"updated_at = ?2 FROM ({_ROWS}) AS b "
           "WHERE subjects.name = b.name AND subjects.version = b.expected")
_LOAD = ("SELECT json_group_array(json_array(name, version, properties, ext)) FROM subjects "
         "WHERE name IN (SELECT value FROM json_each(?1))")
_encode_rows = msgspec.json.Encoder().encode
_decode_rows = msgspec.json.Decoder(list[tuple[str, int, str, str]]).decode


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
        if sqlite3.sqlite_version_info < OLDEST_SQLITE:
            raise StoreUnavailable(
                f"SQLite {sqlite3.sqlite_version} is too old for the SQLite store: it needs "
                f"{'.'.join(map(str, OLDEST_SQLITE))} or newer (Python linked against a newer "
                "libsqlite3)")
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
        keys = _encode_rows(names)

        def load(db: sqlite3.Connection) -> str:
            return str(db.execute(_LOAD, (keys,)).fetchone()[0])

        rows = _decode_rows(await self._call(load))
        return {name: Snapshot(name, version, props.encode(), ext.encode())
                for name, version, props, ext in rows}

    async def save_many(self, writes: Sequence[Write]) -> list[str]:
        fresh = [(w.name, w.version, 0, w.properties.decode(), w.ext.decode())
                 for w in writes if w.expected_version == 0]
        known = [(w.name, w.version, w.expected_version, w.properties.decode(), w.ext.decode())
                 for w in writes if w.expected_version != 0]

        def save(db: sqlite3.Connection) -> list[str]:
            now = time.time()
            db.execute("BEGIN IMMEDIATE")
            try:
                refused = self._apply(db, _INSERT, fresh, now) + self._apply(db, _UPDATE, known, now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return refused

        return await self._call(save)

    @staticmethod
    def _apply(db: sqlite3.Connection, statement: str, rows: list[tuple[str, int, int, str, str]],
               now: float) -> list[str]:
        """Apply `statement` to every row; return the names of the rows it did not change. The
        whole batch in one statement when every row applies (the normal case); row by row only
        to find out which ones did not."""
        if not rows:
            return []
        db.execute("SAVEPOINT batch")
        if db.execute(statement, (_encode_rows(rows), now)).rowcount == len(rows):
            db.execute("RELEASE batch")
            return []
        db.execute("ROLLBACK TO batch")
        db.execute("RELEASE batch")
        return [row[0] for row in rows
                if db.execute(statement, (_encode_rows([row]), now)).rowcount != 1]

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

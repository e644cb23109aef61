"""The SQLite store: the embedded, durable default (standard library only, one file).

WAL with synchronous=FULL: a committed batch survives a crash of the process and of the machine.
Properties are kept as JSON text, so `json_extract` queries work on them. `writer` is the writer
of the stored version, and `writers` (JSON text, rewritten only at a handover) the subject's
history: earlier writer -> the last version it stored (see storage._protocol).

Statements run on the event loop's thread, deliberately. On a thread of its own, every statement
must take the GIL back from the busy event loop, which holds it for up to the 5 ms switch
interval (longer during a garbage collection): measured at half the peak rate, a 1 ms batch then
took 40-200 ms and acknowledgements waited 20-45 ms at p50, 120-170 ms at p99; on the loop's
thread (and with the checkpoints below), 2.4 ms and 4-5 ms at 20,000 updates/s, and the peak
rate rose by a quarter. (A thread for the fsync alone brings the wait for the GIL back.) A batch
is one transaction of one or two statements (a batch travels as one JSON parameter, unpacked by
`json_each`), about a millisecond per few hundred rows plus the commit's fsync.

Nothing here may block the loop for long. There is no busy timeout: when the write lock is held
elsewhere, a write waits for it without blocking, by trying again every millisecond for up to
BUSY_WAIT, then fails with `StoreUnavailable` (another runtime on this file, someone's open
transaction) and the persistence pipeline retries with backoff. And checkpoints (copying the WAL
into the database file, with its own fsync) are not left to the commit that crosses SQLite's
threshold, which stalled the loop for 15-50 ms each time: a thread with a connection of its own
runs them in the background. PASSIVE ones never get in the writer's way, but under continuous
writes they never find the WAL all copied, and it is restarted only then: once it passes
WAL_LIMIT, writes pause (without blocking the loop) while the thread copies the few frames
written since and empties it (TRUNCATE).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import msgspec

from ._protocol import (
    WRITERS_KEPT,
    Delete,
    Snapshot,
    SnapshotRefused,
    StoreUnavailable,
    Write,
    by_writer,
)

T = TypeVar("T")
log = logging.getLogger("subjects.storage")
CHECKPOINT_EVERY = 0.5  # seconds between background checkpoints while writes go on
WAL_LIMIT = 32 << 20  # bytes of WAL past which a checkpoint restarts it from the beginning
BUSY_WAIT = 0.1  # seconds a write waits for a write lock held elsewhere
_SQLITE_BUSY = 5

OLDEST_SQLITE = (3, 33, 0)  # UPDATE ... FROM
# Step i (its statements in order) takes the schema from version i to i + 1. Append steps,
# never edit published ones.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    ("""CREATE TABLE IF NOT EXISTS subjects (
        name TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        properties TEXT NOT NULL,
        ext TEXT NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID""",),
    # the writer of the stored version, and the history of earlier ones (see storage._protocol)
    ("ALTER TABLE subjects ADD COLUMN writer TEXT NOT NULL DEFAULT ''",
     "ALTER TABLE subjects ADD COLUMN writers TEXT NOT NULL DEFAULT '{}'"),
)
SCHEMA_VERSION = len(_MIGRATIONS)
# Rows of a batch: [name, version, expected version, properties, ext], the JSON as strings. Their
# writer is a parameter of its own (?3), one statement per writer in the batch (one in a
# runtime's): each json_extract parses the row again, and one more per row cost a fifth of an
# UPDATE.
_ROWS = ("SELECT json_extract(value, '$[0]') AS name, json_extract(value, '$[1]') AS version, "
         "json_extract(value, '$[2]') AS expected, json_extract(value, '$[3]') AS properties, "
         "json_extract(value, '$[4]') AS ext FROM json_each(?1)")


def _path(writer: str) -> str:
    """SQL for the JSON path of a writer's entry (quoted: an id may start with a digit)."""
    return f"""'$."' || {writer} || '"'"""


_INSERT = ("INSERT INTO subjects (name, version, properties, ext, updated_at, writer) "
           "SELECT name, version, properties, ext, ?2, ?3 "
           f"FROM ({_ROWS}) WHERE expected = 0 ON CONFLICT (name) DO NOTHING")
# A write by the writer of the version it replaces leaves the history alone. At a handover the
# previous writer goes into it with the stored version (only the WRITERS_KEPT highest kept), and
# the new writer's own entry leaves it. (SET reads the row as it was before the UPDATE.)
_UPDATE = ("UPDATE subjects SET version = b.version, properties = b.properties, ext = b.ext, "
           "updated_at = ?2, writer = ?3, writers = CASE "
           "WHEN subjects.writer = ?3 THEN subjects.writers "
           f"WHEN subjects.writer = '' THEN json_remove(subjects.writers, {_path('?3')}) "
           "ELSE (SELECT json_group_object(key, value) FROM (SELECT key, value FROM json_each("
           f"json_set(json_remove(subjects.writers, {_path('?3')}), "
           f"{_path('subjects.writer')}, subjects.version)) "
           f"ORDER BY value DESC LIMIT {WRITERS_KEPT})) END "
           f"FROM ({_ROWS}) AS b WHERE subjects.name = b.name AND subjects.version = b.expected")
# The names of the rows whose expected version is not the stored one (0: none stored).
_STALE = (f"SELECT json_group_array(b.name) FROM ({_ROWS}) AS b "
          "LEFT JOIN subjects AS s ON s.name = b.name WHERE coalesce(s.version, 0) != b.expected")
_VERSIONS = ("SELECT name, version, CASE writer WHEN ?2 THEN version "
             f"ELSE coalesce(json_extract(writers, {_path('?2')}), 0) END "
             "FROM subjects WHERE name IN (SELECT value FROM json_each(?1))")
_decode_names = msgspec.json.Decoder(list[str]).decode
_LOAD = ("SELECT json_group_array(json_array(name, version, properties, ext)) FROM subjects "
         "WHERE name IN (SELECT value FROM json_each(?1))")
_LOAD_ROWS = ("SELECT name, version, properties, ext FROM subjects "
              "WHERE name IN (SELECT value FROM json_each(?1))")
_encode_rows = msgspec.json.Encoder().encode
_decode_rows = msgspec.json.Decoder(list[tuple[str, int, str, str]]).decode


class SQLiteStore:
    """Snapshots in one SQLite database file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpoint: asyncio.Future[None] | None = None  # the one running, if any
        self._checkpointed_at = 0.0
        self._abspath = os.path.abspath(path)  # for the checkpoint thread, whatever the cwd
        self._restarting = False  # a TRUNCATE checkpoint runs: writes wait for it

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_WAIT
        while True:
            if self._db is None:
                raise StoreUnavailable(f"{self!r} is not open")
            try:
                return fn(self._db)
            except sqlite3.DataError as exc:  # a value over SQLite's limits (SQLITE_TOOBIG)
                raise SnapshotRefused(f"SQLite {self.path!r}: {exc}") from exc
            except sqlite3.OperationalError as exc:  # locked, disk full, I/O error: transient
                if exc.sqlite_errorcode != _SQLITE_BUSY or loop.time() > deadline:
                    raise StoreUnavailable(f"SQLite {self.path!r}: {exc}") from exc
            await asyncio.sleep(0.001)  # the lock is held elsewhere: let the loop run meanwhile

    async def open(self) -> None:
        if self._db is not None:
            return
        if sqlite3.sqlite_version_info < OLDEST_SQLITE:
            raise StoreUnavailable(
                f"SQLite {sqlite3.sqlite_version} is too old for the SQLite store: it needs "
                f"{'.'.join(map(str, OLDEST_SQLITE))} or newer (Python linked against a newer "
                "libsqlite3)")
        db = None
        try:
            # Waiting for a lock is allowed while opening (nothing is served yet: runtimes
            # starting together on one new file), never after (see above).
            db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA wal_autocheckpoint=0")  # see _maybe_checkpoint
            _migrate(db, self.path)
            db.execute("PRAGMA busy_timeout=0")
        except (sqlite3.Error, StoreUnavailable) as exc:
            if db is not None:
                db.close()
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        self._db = db
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="subjects-checkpoint")

    async def close(self) -> None:
        db, self._db = self._db, None
        checkpointer, self._checkpointer = self._checkpointer, None
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        if checkpointer is not None:
            checkpointer.shutdown()
        if db is not None:
            db.close()  # the last connection to close checkpoints what is left

    def _maybe_checkpoint(self) -> None:
        """After a commit: start a background checkpoint if none ran for CHECKPOINT_EVERY."""
        now = time.monotonic()
        if self._checkpoint is not None or self._checkpointer is None or \
                now - self._checkpointed_at < CHECKPOINT_EVERY:
            return
        self._checkpointed_at = now
        self._start_checkpoint("PASSIVE")

    def _start_checkpoint(self, mode: str) -> None:
        assert self._checkpointer is not None
        checkpoint = asyncio.get_running_loop().run_in_executor(
            self._checkpointer, _checkpoint, self._abspath, mode)
        checkpoint.add_done_callback(lambda done: self._checkpoint_done(done, mode))
        self._checkpoint = checkpoint

    def _checkpoint_done(self, done: asyncio.Future[None], mode: str) -> None:
        self._checkpoint = None
        self._restarting = False
        if done.cancelled():
            return
        if done.exception() is not None:
            log.warning("background checkpoint of %s failed (retried later): %s", self.path,
                        done.exception())
            return
        # A PASSIVE checkpoint under continuous writes leaves the frames written meanwhile,
        # and the WAL grows. Past its limit, writes wait for a TRUNCATE of those few frames.
        wal = self._abspath + "-wal"
        if mode == "PASSIVE" and self._checkpointer is not None and os.path.exists(wal) and \
                os.path.getsize(wal) > WAL_LIMIT:
            self._restarting = True
            self._start_checkpoint("TRUNCATE")

    async def _writable(self) -> None:
        """Wait while the checkpoint thread restarts the WAL (writes must leave it the lock)."""
        while self._restarting and self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])

    async def ping(self) -> None:
        await self._call(lambda db: db.execute("SELECT 1").fetchone())

    async def load_many(self, names: Sequence[str]) -> dict[str, Snapshot]:
        keys = _encode_rows(names)

        def load(db: sqlite3.Connection) -> list[tuple[str, int, str, str]]:
            try:  # one text for the batch: the fewest handovers of the GIL
                return _decode_rows(str(db.execute(_LOAD, (keys,)).fetchone()[0]))
            except sqlite3.DataError:  # over SQLite's length limit: big states, row by row
                return db.execute(_LOAD_ROWS, (keys,)).fetchall()

        rows = await self._call(load)
        return {name: Snapshot(name, version, props.encode(), ext.encode())
                for name, version, props, ext in rows}

    async def save_many(self, writes: Sequence[Write]) -> list[str]:
        groups = [(writer, _encode_rows([(w.name, w.version, w.expected_version,
                                          w.properties.decode(), w.ext.decode()) for w in ws]),
                   sum(1 for w in ws if w.expected_version == 0), len(ws))
                  for writer, ws in by_writer(writes).items()]

        def save(db: sqlite3.Connection) -> list[str]:
            # Every statement hands the GIL over and back: the common case takes the fewest.
            # Each statement skips the stale rows itself; only if some were skipped does the
            # batch run again, finding out first which ones.
            now = time.time()
            db.execute("BEGIN IMMEDIATE")
            try:
                applied = 0
                for writer, rows, fresh, count in groups:
                    if fresh < count:
                        applied += db.execute(_UPDATE, (rows, now, writer)).rowcount
                    if fresh:
                        applied += db.execute(_INSERT, (rows, now, writer)).rowcount
                refused: list[str] = []
                if applied != len(writes):
                    db.execute("ROLLBACK")
                    db.execute("BEGIN IMMEDIATE")
                    for writer, rows, _, _ in groups:
                        refused += _decode_names(db.execute(_STALE, (rows,)).fetchone()[0])
                        db.execute(_UPDATE, (rows, now, writer))
                        db.execute(_INSERT, (rows, now, writer))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return refused

        await self._writable()
        refused = await self._call(save)
        self._maybe_checkpoint()
        return refused

    async def versions(self, names: Sequence[str], writer: str) -> dict[str, tuple[int, int]]:
        keys = _encode_rows(names)
        rows = await self._call(lambda db: db.execute(_VERSIONS, (keys, writer)).fetchall())
        return {name: (version, mine) for name, version, mine in rows}

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
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return refused

        await self._writable()
        refused = await self._call(delete)
        self._maybe_checkpoint()
        return refused


def _migrate(db: sqlite3.Connection, path: str) -> None:
    """Bring the schema up to SCHEMA_VERSION, in one transaction: runtimes opening one file
    together apply each step once."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS subjects_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM subjects_schema").fetchone()
        found = 0 if row is None else row[0]
        if found > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"{path!r} has schema version {found}; this version of subjects "
                f"understands up to {SCHEMA_VERSION}: upgrade subjects")
        for step in _MIGRATIONS[found:]:
            for statement in step:
                db.execute(statement)
        if row is None:
            db.execute("INSERT INTO subjects_schema VALUES (?)", (SCHEMA_VERSION,))
        elif found < SCHEMA_VERSION:
            db.execute("UPDATE subjects_schema SET version = ?", (SCHEMA_VERSION,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _checkpoint(path: str, mode: str) -> None:
    """Run one checkpoint, PASSIVE (copy what the WAL holds into the database file, blocking
    nobody) or TRUNCATE (also empty the WAL; the writer waits meanwhile, see above). A
    connection per checkpoint: it runs at most every CHECKPOINT_EVERY, and holds nothing open
    between them."""
    db = sqlite3.connect(path, isolation_level=None, timeout=1.0)
    try:
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA wal_checkpoint({mode})")
    finally:
        db.close()

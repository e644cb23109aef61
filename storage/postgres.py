"""The PostgreSQL store: snapshots shared by many runtimes, queryable with SQL.

One row per subject in a table (default `subjects`): `name` text primary key, `version` bigint,
`properties` and `ext` as JSONB so that users can query state (`properties->>'balance'`),
`updated_at`, `writer` (the writer of the stored version) and `writers` (JSONB, rewritten only at
a handover: earlier writer -> the last version it stored, see storage._protocol). Every batch is
one statement, hence one round trip and one transaction; the version check happens inside that
statement, so concurrent runtimes cannot overwrite each other.

JSONB keeps the meaning of the JSON, not its bytes: PostgreSQL reorders keys and reformats
whitespace, so `load_many` returns an equivalent, canonicalised document. It also rejects what
JSONB cannot hold (a `\\u0000` escape; the runtime refuses NUL in text before it gets here), which
fails the whole batch with `SnapshotRefused`.

Connection settings come from the URL (`postgresql://user:password@host:port/database?...`).
Whatever the URL leaves out comes, as usual for asyncpg and libpq, from the environment: PGHOST,
PGPORT, PGUSER, PGPASSWORD (or the ~/.pgpass file), PGDATABASE, PGSSLMODE...; so
`postgresql://` alone means "what the PG* variables say".

Failures that a later retry may fix (server unreachable or restarting, connection lost, timeout,
failover to a read-only standby, serialization failure) raise `StoreUnavailable`. The pool
survives them: dead connections are replaced on the next call. When `save_many` raises, its
outcome is unknown (the commit may or may not have happened before the connection died).

Schema upgrades: `<table>_schema` holds one row with the schema version. `_MIGRATIONS[i]` takes
a database from version i to i + 1; `open()` applies the missing steps in order, under an
advisory lock so that runtimes starting together do not race. A database newer than this code
is refused rather than misread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
from asyncpg.exceptions import (  # type: ignore[import-untyped]
    ClientConfigurationError,
    TargetServerAttributeNotMatched,
)

from ._protocol import (
    WRITERS_KEPT,
    Delete,
    Snapshot,
    SnapshotRefused,
    StoreError,
    StoreUnavailable,
    Write,
    by_writer,
    unavailable,
)

T = TypeVar("T")

# Step i takes the schema from version i to i + 1. Append steps, never edit published ones.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {table} (
        name text PRIMARY KEY,
        version bigint NOT NULL,
        properties jsonb NOT NULL,
        ext jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # the writer of the stored version, and the history of earlier ones (see storage._protocol)
    "ALTER TABLE {table} ADD COLUMN writer text NOT NULL DEFAULT '', "
    "ADD COLUMN writers jsonb NOT NULL DEFAULT '{{}}'",
)
SCHEMA_VERSION = len(_MIGRATIONS)

# Errors after which the same call may succeed later: connectivity, server restarts and
# shutdowns (57P0x), cancelled statements, resource exhaustion (53xxx: too many connections),
# serialization failures and deadlocks (40xxx), a read-only standby after a failover.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # includes ConnectionError and TimeoutError
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # "connection is closed", "pool is closing"
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.TransactionRollbackError,
    asyncpg.ReadOnlySQLTransactionError,
    TargetServerAttributeNotMatched,
)
# InterfaceError subclasses that are mistakes, not outages: a retry would fail the same way.
_PERMANENT: tuple[type[BaseException], ...] = (asyncpg.DataError, ClientConfigurationError)
# Errors about what a statement's data holds (22xxx data exceptions: a character JSONB cannot
# keep; 54xxx program limits: a value too big): the same data fails again.
_REFUSED: tuple[type[BaseException], ...] = (asyncpg.DataError,
                                             asyncpg.ProgramLimitExceededError)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,54}")  # room for "_schema" within 63 bytes


def _encode_jsonb(data: bytes) -> bytes:
    return b"\x01" + data  # JSONB's binary wire format: a version byte, then the JSON text


def _decode_jsonb(data: bytes) -> bytes:
    return data[1:]


async def _setup_connection(con: asyncpg.Connection) -> None:
    # Pass JSON through as bytes: the runtime encoded it once, nobody decodes it here.
    await con.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb,
        format="binary",
    )


async def _keep_session(con: asyncpg.Connection) -> None:
    """Pool `reset` hook: skip asyncpg's default reset query (`SELECT pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL;`), one round trip per release. No call leaves session
    state behind; asyncpg still rolls back a transaction left open before calling this."""


class PostgresStore:
    """Snapshots in a PostgreSQL table, through an asyncpg connection pool."""

    def __init__(
        self,
        url: str,
        *,
        table: str = "subjects",
        min_size: int | None = None,
        max_size: int = 4,
        timeout: float = 10.0,
    ) -> None:
        if not _IDENTIFIER.fullmatch(table):
            raise ValueError(f"table must be a plain SQL identifier, not {table!r}")
        self.url = url
        self.table = table
        # All connections open from the start by default: the runtime writes up to max_size
        # batches at once, and a batch that must wait for a new connection (and the first
        # preparation of its statement) took 40-50 ms instead of 1-2.
        self.min_size = max_size if min_size is None else min_size
        self.max_size = max_size
        # Batches the runtime may write at once: one per pooled connection. Group commit on
        # several connections is how PostgreSQL goes past one connection's fsync rate.
        self.write_concurrency = max_size
        self.timeout = timeout  # bound on each call: connecting, waiting for the pool, the query
        parts = urlsplit(url)
        self._password = parts.password
        host = parts.hostname or "$PGHOST"
        where = f"{host}:{parts.port}" if parts.port else host
        self._where = f"{where}/{parts.path.lstrip('/') or '$PGDATABASE'}"
        self._pool: asyncpg.Pool | None = None
        self._load_sql = f"SELECT name, version, properties, ext FROM {table} WHERE name = ANY($1)"
        # expected 0 means "must not exist": those rows are inserted, an existing row wins and
        # the write is refused. The others update only a row still at the expected version
        # (re-checked after waiting on a concurrent writer). Both in one statement, which
        # answers with the refused names only (usually none: nothing to send back and decode).
        # The writer is one parameter ($6::text), not an array: one statement per writer in the
        # batch (one in a runtime's), and 1,000 rows went 7% faster than with an array.
        # A write by the writer of the version it replaces leaves the history alone. At a
        # handover the previous writer goes into it with the stored version (only the
        # WRITERS_KEPT highest kept), and the new writer's own entry leaves it. (SET reads the
        # row as it was before the UPDATE.)
        self._save_sql = f"""
            WITH w AS (
                SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::jsonb[],
                                     $5::jsonb[])
                    AS w(name, expected, version, properties, ext)
            ), updated AS (
                UPDATE {table} AS s
                SET version = w.version, properties = w.properties, ext = w.ext,
                    updated_at = now(), writer = $6,
                    writers = CASE
                        WHEN s.writer = $6 THEN s.writers
                        WHEN s.writer = '' THEN s.writers - $6
                        ELSE (SELECT jsonb_object_agg(key, value) FROM (
                            SELECT key, value FROM jsonb_each(
                                (s.writers - $6) || jsonb_build_object(s.writer, s.version))
                            ORDER BY value::bigint DESC LIMIT {WRITERS_KEPT}) AS kept)
                    END
                FROM w
                WHERE w.expected <> 0 AND s.name = w.name AND s.version = w.expected
                RETURNING s.name
            ), inserted AS (
                INSERT INTO {table} (name, version, properties, ext, writer)
                SELECT name, version, properties, ext, $6 FROM w WHERE expected = 0
                ON CONFLICT (name) DO NOTHING
                RETURNING name
            )
            SELECT name FROM w
            WHERE name NOT IN (SELECT name FROM updated UNION ALL SELECT name FROM inserted)
        """
        self._versions_sql = (f"SELECT name, version, CASE writer WHEN $2 THEN version "
                              f"ELSE coalesce((writers->>$2)::bigint, 0) END "
                              f"FROM {table} WHERE name = ANY($1)")
        # All parts of a statement see the same snapshot: `s` below still holds the deleted
        # rows, so "present but not deleted" is exactly the refused set; absent names are not.
        self._delete_sql = f"""
            WITH d AS (
                SELECT * FROM unnest($1::text[], $2::bigint[]) AS d(name, expected)
            ), deleted AS (
                DELETE FROM {table} AS s USING d
                WHERE s.name = d.name AND s.version = d.expected
                RETURNING s.name
            )
            SELECT s.name FROM {table} AS s JOIN d USING (name)
            WHERE s.name NOT IN (SELECT name FROM deleted)
        """

    def __repr__(self) -> str:
        return f"<PostgresStore {self._where} table={self.table}>"

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        return unavailable(f"PostgreSQL {self._where}", what, exc, self.timeout, self._password)

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            async with asyncio.timeout(self.timeout):
                pool = await asyncpg.create_pool(
                    self.url,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    init=_setup_connection,
                    reset=_keep_session,
                    # Statements get no command_timeout: _call bounds the whole call and drops
                    # a connection it interrupts, rather than waiting for the server to cancel.
                    timeout=self.timeout,  # connecting
                )
        except _PERMANENT as exc:
            raise StoreError(f"PostgreSQL {self._where}: {exc}") from exc
        except _TRANSIENT as exc:
            raise self._unavailable("connecting", exc) from exc
        self._pool = pool
        try:
            await self._call("creating the schema", self._migrate)
            await self._prepare_all(pool)
        except BaseException:
            self._pool = None
            pool.terminate()
            raise

    async def _prepare_all(self, pool: asyncpg.Pool) -> None:
        """Prepare the load and save statements on every open connection (asyncpg caches
        them per connection), with empty batches: the first real ones find them ready. On
        failure the caller terminates the pool, connections held here included."""
        async def prepare() -> None:
            held = [await pool.acquire() for _ in range(pool.get_size())]
            for con in held:
                await con.fetch(self._load_sql, [])
                await con.fetch(self._save_sql, [], [], [], [], [], "")
            for con in held:
                await pool.release(con)

        await self._guarded("preparing statements", prepare())

    async def _migrate(self, con: asyncpg.Connection) -> None:
        versions = f"{self.table}_schema"
        async with con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", versions)
            await con.execute(f"CREATE TABLE IF NOT EXISTS {versions} (version integer NOT NULL)")
            found = await con.fetchval(f"SELECT version FROM {versions}")
            if found is not None and found > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"PostgreSQL {self._where}: table {self.table} has schema version {found}; "
                    f"this version of subjects understands up to {SCHEMA_VERSION}: "
                    "upgrade subjects"
                )
            current = found or 0
            for step in _MIGRATIONS[current:]:
                await con.execute(step.format(table=self.table))
            if found is None:
                await con.execute(f"INSERT INTO {versions} VALUES ($1)", SCHEMA_VERSION)
            elif found < SCHEMA_VERSION:
                await con.execute(f"UPDATE {versions} SET version = $1", SCHEMA_VERSION)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    await pool.close()
            except _TRANSIENT:
                pool.terminate()  # a server that is gone cannot be said goodbye to

    async def _call(self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn` on a pooled connection within `timeout`, translating failures."""
        pool = self._pool
        if pool is None:
            raise StoreUnavailable(f"{self!r} is not open")

        async def on_connection() -> T:
            async with pool.acquire() as con:
                try:
                    return await fn(con)
                except asyncio.CancelledError:
                    # Interrupted mid-statement (timeout or caller): drop the connection
                    # instead of letting the release wait for the server to confirm a cancel.
                    con.terminate()
                    raise

        return await self._guarded(what, on_connection())

    async def _guarded(self, what: str, work: Awaitable[T]) -> T:
        """`work` within `timeout`, its failures as StoreUnavailable (worth retrying) or
        StoreError (not)."""
        try:
            async with asyncio.timeout(self.timeout):
                return await work
        except _REFUSED as exc:
            raise SnapshotRefused(f"PostgreSQL {self._where}: {what} failed: {exc}") from exc
        except _PERMANENT as exc:
            raise StoreError(f"PostgreSQL {self._where}: {what} failed: {exc}") from exc
        except _TRANSIENT as exc:
            raise self._unavailable(what, exc) from exc
        except asyncpg.PostgresError as exc:
            raise StoreError(f"PostgreSQL {self._where}: {what} failed: {exc}") from exc

    async def ping(self) -> None:
        await self._call("ping", lambda con: con.fetchval("SELECT 1"))

    async def load_many(self, names: Sequence[str]) -> dict[str, Snapshot]:
        if not names:
            return {}
        rows: list[Any] = await self._call(
            "load", lambda con: con.fetch(self._load_sql, list(names))
        )
        return {r[0]: Snapshot(r[0], r[1], r[2], r[3]) for r in rows}

    async def save_many(self, writes: Sequence[Write]) -> list[str]:
        if not writes:
            return []
        groups = [([w.name for w in ws], [w.expected_version for w in ws],
                   [w.version for w in ws], [w.properties for w in ws], [w.ext for w in ws],
                   writer) for writer, ws in by_writer(writes).items()]

        async def save(con: asyncpg.Connection) -> list[Any]:
            if len(groups) == 1:
                rows: list[Any] = await con.fetch(self._save_sql, *groups[0])
                return rows
            async with con.transaction():  # a batch is applied whole or not at all
                return [row for args in groups for row in await con.fetch(self._save_sql, *args)]

        rows = await self._call("save", save)
        if not rows:
            return []
        refused = {r[0] for r in rows}
        return [w.name for w in writes if w.name in refused]

    async def versions(self, names: Sequence[str], writer: str) -> dict[str, tuple[int, int]]:
        if not names:
            return {}
        rows: list[Any] = await self._call(
            "versions", lambda con: con.fetch(self._versions_sql, list(names), writer)
        )
        return {r[0]: (r[1], r[2]) for r in rows}

    async def delete_many(self, deletes: Sequence[Delete]) -> list[str]:
        if not deletes:
            return []
        names = [d.name for d in deletes]
        expected = [d.expected_version for d in deletes]
        rows: list[Any] = await self._call(
            "delete", lambda con: con.fetch(self._delete_sql, names, expected)
        )
        refused = {r[0] for r in rows}
        return [name for name in names if name in refused]

"""Schema versioning of the SQL stores: recorded on creation, and a newer schema is refused."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest

from storage import SQLiteStore, StoreError, StoreUnavailable, Write, postgres, sqlite
from storage.postgres import PostgresStore


async def test_sqlite_schema_version(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM subjects_schema").fetchall() == [
            (sqlite.SCHEMA_VERSION,)]
        db.execute("UPDATE subjects_schema SET version = 99")
    with pytest.raises(StoreUnavailable, match=r"schema version 99.*upgrade subjects"):
        await SQLiteStore(path).open()


async def test_postgres_schema_version(postgres_url: str, postgres_table: str) -> None:
    store = PostgresStore(postgres_url, table=postgres_table, timeout=5)
    await store.open()
    await store.close()
    con = await asyncpg.connect(postgres_url)
    try:
        rows = await con.fetch(f"SELECT version FROM {postgres_table}_schema")
        assert [r["version"] for r in rows] == [postgres.SCHEMA_VERSION]
        columns = dict(await con.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = $1", postgres_table,
        ))
        assert columns == {
            "name": "text", "version": "bigint", "properties": "jsonb", "ext": "jsonb",
            "updated_at": "timestamp with time zone", "writer": "text", "writers": "jsonb",
        }
        await store.open()  # opening again applies nothing and keeps one version row
        await store.close()
        assert await con.fetchval(f"SELECT count(*) FROM {postgres_table}_schema") == 1

        await con.execute(f"UPDATE {postgres_table}_schema SET version = 99")
        with pytest.raises(StoreUnavailable, match=r"schema version 99.*upgrade subjects"):
            await store.open()
        with pytest.raises(StoreUnavailable, match="not open"):
            await store.load_many(["x"])
    finally:
        await con.close()


async def test_postgres_state_is_queryable_jsonb(postgres_url: str, postgres_table: str) -> None:
    store = PostgresStore(postgres_url, table=postgres_table, timeout=5)
    await store.open()
    try:
        await store.save_many([
            Write(f"acct-{i}", 0, 1, msgspec.json.encode({"balance": i * 10})) for i in range(5)
        ])
    finally:
        await store.close()
    con = await asyncpg.connect(postgres_url)
    try:
        rich = await con.fetch(
            f"SELECT name FROM {postgres_table} WHERE (properties->>'balance')::int >= 30 "
            "AND updated_at > now() - interval '1 minute' ORDER BY name"
        )
        assert [r["name"] for r in rich] == ["acct-3", "acct-4"]
    finally:
        await con.close()


def test_postgres_table_must_be_an_identifier() -> None:
    with pytest.raises(ValueError, match="identifier"):
        PostgresStore("postgresql://", table="subjects; DROP TABLE x")


async def test_sqlite_checkpoints_in_the_background(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer never checkpoints (that would stall the event loop); a background thread
    copies the WAL into the database file."""
    monkeypatch.setattr(sqlite, "CHECKPOINT_EVERY", 0.0)
    path = str(tmp_path / "state.db")
    store = SQLiteStore(path)
    await store.open()
    try:
        body = msgspec.json.encode({"n": 1})
        assert await store.save_many([Write("a", 0, 1, body, b"{}")]) == []
        assert store._checkpoint is not None  # started by that commit, not run by it
        await store._checkpoint
        # immutable=1 reads the database file alone, ignoring the WAL.
        with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as main_file:
            assert main_file.execute("SELECT name, version FROM subjects").fetchall() == [
                ("a", 1)]
    finally:
        await store.close()


async def test_sqlite_wal_stays_bounded_under_continuous_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Background PASSIVE checkpoints alone never let a continuously written WAL restart; past
    WAL_LIMIT the checkpoint thread truncates it."""
    monkeypatch.setattr(sqlite, "CHECKPOINT_EVERY", 0.0)
    monkeypatch.setattr(sqlite, "WAL_LIMIT", 256 << 10)
    path = str(tmp_path / "state.db")
    store = SQLiteStore(path)
    await store.open()
    try:
        names = [f"s:{i}" for i in range(300)]
        body = msgspec.json.encode({"pad": "x" * 400})
        largest = 0
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.5
        version = 0
        while loop.time() < until:
            refused = await store.save_many(
                [Write(n, version, version + 1, body, b"{}") for n in names])
            assert refused == []
            version += 1
            largest = max(largest, os.path.getsize(path + "-wal"))
            await asyncio.sleep(0)  # back to back, the checkpoint thread running alongside
        # Each batch adds about 150 KiB of WAL: 1.5 s of them, unchecked, is tens of MiB.
        assert version > 50
        assert largest < 8 << 20, f"the WAL grew to {largest >> 20} MiB"
    finally:
        await store.close()


async def test_postgres_open_without_rights_on_the_table_is_a_store_error(
        postgres_url: str, postgres_table: str) -> None:
    """open() prepares its statements on every connection: a server refusing them (here, a role
    without rights on the table) is a StoreError, not an asyncpg exception."""
    admin = PostgresStore(postgres_url, table=postgres_table)
    await admin.open()
    await admin.close()
    role = f"{postgres_table}_ro"
    con = await asyncpg.connect(postgres_url)
    try:
        await con.execute(f"CREATE ROLE {role} LOGIN")
        await con.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
        await con.execute(f"GRANT SELECT ON {postgres_table}_schema TO {role}")  # not the table
        url = postgres_url.replace("://postgres@", f"://{role}@")
        assert url != postgres_url
        with pytest.raises(StoreError, match=r"preparing statements failed.*permission denied"):
            await PostgresStore(url, table=postgres_table, timeout=5).open()
    finally:
        await con.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
        await con.execute(f"REVOKE ALL ON {postgres_table}_schema FROM {role}")
        await con.execute(f"DROP ROLE IF EXISTS {role}")
        await con.close()


async def test_sqlite_write_waits_for_a_briefly_held_lock_without_blocking(
        tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = SQLiteStore(path)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock, for 30 ms
        loop = asyncio.get_running_loop()
        loop.call_later(0.03, other.execute, "ROLLBACK")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        ticking = asyncio.create_task(tick())
        body = msgspec.json.encode({"n": 1})
        assert await store.save_many([Write("a", 0, 1, body, b"{}")]) == []
        ticking.cancel()
        assert ticks >= 5  # the loop ran while the write waited
        assert (await store.load_many(["a"]))["a"].version == 1
    finally:
        other.close()
        await store.close()

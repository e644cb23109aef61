"""Schema versioning of the SQL stores: recorded on creation, and a newer schema is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest

from storage import SQLiteStore, StoreUnavailable, Write, postgres, sqlite
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
            "updated_at": "timestamp with time zone",
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

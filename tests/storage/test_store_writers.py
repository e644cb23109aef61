"""The stores' record of writers (what makes a lost reply safe with two writers), on every
backend, and the migration of tables and files written before it existed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import msgspec

from storage import SnapshotStore, SQLiteStore, Write
from storage._protocol import WRITERS_KEPT, Delete
from storage.postgres import PostgresStore


def write(name: str, expected: int, version: int, writer: str) -> Write:
    return Write(name, expected, version, msgspec.json.encode({"v": version}), b"{}", writer)


async def test_a_writer_learns_its_write_landed_under_another(store: SnapshotStore) -> None:
    assert await store.versions(["d"], "a") == {}
    assert await store.save_many([write("d", 0, 1, "a"), write("e", 0, 1, "")]) == []
    assert await store.save_many([write("d", 1, 3, "a")]) == []  # its reply "lost"
    assert await store.save_many([write("d", 3, 4, "b")]) == []  # another writer, on top
    assert await store.save_many([write("d", 1, 2, "a")]) == ["d"]  # the retry
    assert await store.versions(["d", "e", "x"], "a") == {"d": (4, 3), "e": (1, 0)}
    assert await store.versions(["d"], "b") == {"d": (4, 4)}
    assert await store.versions(["d"], "c") == {"d": (4, 0)}


async def test_a_subject_created_again_starts_a_new_record(store: SnapshotStore) -> None:
    assert await store.save_many([write("d", 0, 5, "a")]) == []
    assert await store.delete_many([Delete("d", 5)]) == []
    assert await store.versions(["d"], "a") == {}
    assert await store.save_many([write("d", 0, 1, "b")]) == []
    assert await store.versions(["d"], "a") == {"d": (1, 0)}  # "a" wrote an earlier life


async def test_the_record_keeps_the_latest_writers(store: SnapshotStore) -> None:
    writers = [f"w{i:02d}" for i in range(WRITERS_KEPT + 4)]
    for version, writer in enumerate(writers):
        assert await store.save_many([write("d", version, version + 1, writer)]) == []
    kept = {w: (await store.versions(["d"], w))["d"][1] for w in writers}
    assert kept == {w: (i + 1 if i >= 4 else 0) for i, w in enumerate(writers)}


async def test_a_sqlite_file_of_schema_1_is_upgraded(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    with sqlite3.connect(path) as db:  # as schema 1 made it
        db.executescript("""
            CREATE TABLE subjects (name TEXT PRIMARY KEY, version INTEGER NOT NULL,
                properties TEXT NOT NULL, ext TEXT NOT NULL, updated_at REAL NOT NULL)
                WITHOUT ROWID;
            CREATE TABLE subjects_schema (version INTEGER NOT NULL);
            INSERT INTO subjects_schema VALUES (1);
            INSERT INTO subjects VALUES ('d', 7, '{"v":7}', '{}', 0);
        """)
    store = SQLiteStore(path)
    await store.open()
    try:
        assert (await store.load_many(["d"]))["d"].version == 7
        assert await store.versions(["d"], "a") == {"d": (7, 0)}
        assert await store.save_many([write("d", 7, 8, "a")]) == []
        assert await store.versions(["d"], "a") == {"d": (8, 8)}
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM subjects_schema").fetchall() == [(2,)]


async def test_a_postgres_table_of_schema_1_is_upgraded(postgres_url: str,
                                                        postgres_table: str) -> None:
    con = await asyncpg.connect(postgres_url)
    try:
        await con.execute(f"""
            CREATE TABLE {postgres_table} (name text PRIMARY KEY, version bigint NOT NULL,
                properties jsonb NOT NULL, ext jsonb NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now());
            CREATE TABLE {postgres_table}_schema (version integer NOT NULL);
            INSERT INTO {postgres_table}_schema VALUES (1);
            INSERT INTO {postgres_table} (name, version, properties, ext)
                VALUES ('d', 7, '{{"v": 7}}', '{{}}')""")
        store = PostgresStore(postgres_url, table=postgres_table, timeout=5)
        await store.open()
        try:
            assert (await store.load_many(["d"]))["d"].version == 7
            assert await store.versions(["d"], "a") == {"d": (7, 0)}
            assert await store.save_many([write("d", 7, 8, "a")]) == []
            assert await store.versions(["d"], "a") == {"d": (8, 8)}
        finally:
            await store.close()
        assert await con.fetchval(f"SELECT version FROM {postgres_table}_schema") == 2
    finally:
        await con.close()

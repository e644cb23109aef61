"""The stores' record of writers (what makes a lost reply safe with two writers), on every
backend, and the migration of tables and files written before it existed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
import redis.asyncio as aioredis

from storage import MemoryStore, SnapshotRefused, SnapshotStore, SQLiteStore, Write
from storage._protocol import WRITERS_KEPT, Delete
from storage.postgres import PostgresStore
from storage.redis import RedisStore


def write(name: str, expected: int, version: int, writer: str) -> Write:
    return Write(name, expected, version, msgspec.json.encode({"v": version}), b"{}", writer)


async def record(store: SnapshotStore, name: str) -> tuple[str, dict[str, int]] | None:
    """What the store holds of a subject's writers, read from the store itself: the writer of
    its stored version and the history, or None if it holds no record at all."""
    if isinstance(store, MemoryStore):
        if name not in store._writer:
            return None
        return store._writer[name], dict(store._history.get(name, {}))
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            row = db.execute("SELECT writer, writers FROM subjects WHERE name = ?",
                             (name,)).fetchone()
        return None if row is None else (row[0], msgspec.json.decode(row[1]))
    if isinstance(store, PostgresStore):
        con = await asyncpg.connect(store.url)
        try:
            pg = await con.fetchrow(
                f"SELECT writer, writers::text FROM {store.table} WHERE name = $1", name)
        finally:
            await con.close()
        return None if pg is None else (pg[0], msgspec.json.decode(pg[1]))
    assert isinstance(store, RedisStore)
    client = aioredis.Redis.from_url(store.url)
    try:
        value = await client.get(store.prefix + name)
        history = await client.hget(store.prefix + " writers", store.prefix + name)
    finally:
        await client.aclose()
    if value is None:
        assert history is None
        return None
    assert history != b""  # an empty history is no field at all
    entries = dict(entry.split("=") for entry in (history or b"").decode().split())
    head = value.partition(b":")[0].decode()
    return head.partition("@")[2], {writer: int(v) for writer, v in entries.items()}


async def test_a_writer_learns_its_write_landed_under_another(store: SnapshotStore) -> None:
    assert await store.versions(["d"], "a") == {}
    assert await store.save_many([write("d", 0, 1, "a"), write("e", 0, 1, "")]) == []
    assert await store.save_many([write("d", 1, 3, "a")]) == []  # its reply "lost"
    assert await store.save_many([write("d", 3, 4, "b")]) == []  # another writer, on top
    assert await store.save_many([write("d", 1, 2, "a")]) == ["d"]  # the retry
    assert await store.versions(["d", "e", "x"], "a") == {"d": (4, 3), "e": (1, 0)}
    assert await store.versions(["d"], "b") == {"d": (4, 4)}
    assert await store.versions(["d"], "c") == {"d": (4, 0)}


async def test_one_writer_again_and_again_leaves_the_history_alone(
        store: SnapshotStore) -> None:
    assert await store.save_many([write("d", 0, 1, "a")]) == []
    for version in range(1, 30):
        assert await store.save_many([write("d", version, version + 1, "a")]) == []
    assert await record(store, "d") == ("a", {})
    assert await store.versions(["d"], "a") == {"d": (30, 30)}
    assert await store.save_many([write("d", 30, 31, "b")]) == []  # a handover
    for version in range(31, 40):
        assert await store.save_many([write("d", version, version + 1, "b")]) == []
        assert await record(store, "d") == ("b", {"a": 30})
    assert await store.versions(["d"], "a") == {"d": (40, 30)}


async def test_each_handover_records_the_previous_writer(store: SnapshotStore) -> None:
    steps = [  # writer of the write, then what versions() tells "a" and "b", and the record
        ("a", 1, 0, ("a", {})),
        ("a", 2, 0, ("a", {})),
        ("b", 2, 3, ("b", {"a": 2})),
        ("b", 2, 4, ("b", {"a": 2})),
        ("a", 5, 4, ("a", {"b": 4})),  # "a" is the writer again: its old entry goes
        ("a", 6, 4, ("a", {"b": 4})),
        ("", 6, 4, ("", {"a": 6, "b": 4})),  # a write naming no writer hands over too
        ("b", 6, 8, ("b", {"a": 6})),  # and is not recorded
        ("a", 9, 8, ("a", {"b": 8})),
    ]
    for version, (writer, a, b, held) in enumerate(steps, 1):
        assert await store.save_many([write("d", version - 1, version, writer)]) == []
        assert await store.versions(["d"], "a") == {"d": (version, a)}, version
        assert await store.versions(["d"], "b") == {"d": (version, b)}, version
        assert await record(store, "d") == held, version
    assert await store.save_many([write("d", 5, 10, "a")]) == ["d"]  # stale: nothing changes
    assert await record(store, "d") == ("a", {"b": 8})


async def test_the_history_keeps_the_latest_writers(store: SnapshotStore) -> None:
    writers = [f"w{i:02d}" for i in range(WRITERS_KEPT + 4)]
    for version, writer in enumerate(writers):
        assert await store.save_many([write("d", version, version + 1, writer)]) == []
    kept = {w: (await store.versions(["d"], w))["d"][1] for w in writers}
    assert kept == {w: (i + 1 if i >= 3 else 0) for i, w in enumerate(writers)}
    held = await record(store, "d")
    assert held is not None and len(held[1]) == WRITERS_KEPT
    # A writer of the history writing again leaves it: the one it hands over from takes its
    # place, and nobody is dropped.
    assert await store.save_many([write("d", 20, 21, "w10")]) == []
    assert await record(store, "d") == (
        "w10", {w: i + 1 for i, w in enumerate(writers) if i >= 3 and w != "w10"})
    assert await store.save_many([write("d", 21, 22, "new")]) == []  # now the lowest goes
    assert (await store.versions(["d"], "w03"))["d"] == (22, 0)
    assert (await store.versions(["d"], "w04"))["d"] == (22, 5)
    assert (await store.versions(["d"], "w10"))["d"] == (22, 21)


async def test_a_batch_of_many_writers(store: SnapshotStore) -> None:
    """A runtime's batches have one writer; a store takes any mix, stale rows among them."""
    assert await store.save_many([write("a1", 0, 1, "a"), write("b1", 0, 1, "b"),
                                  write("n1", 0, 1, ""), write("a2", 0, 1, "a")]) == []
    refused = await store.save_many([
        write("a1", 1, 2, "b"), write("b1", 1, 2, "b"), write("n1", 1, 2, "a"),
        write("a2", 5, 6, "a"), write("new", 0, 1, "b")])
    assert refused == ["a2"]
    assert await record(store, "a1") == ("b", {"a": 1})
    assert await record(store, "b1") == ("b", {})
    assert await record(store, "n1") == ("a", {})
    assert await record(store, "a2") == ("a", {})
    assert await record(store, "new") == ("b", {})
    assert await store.versions(["a1", "b1", "n1", "a2", "new"], "a") == {
        "a1": (2, 1), "b1": (2, 0), "n1": (2, 2), "a2": (1, 1), "new": (1, 0)}


async def test_a_postgres_batch_of_many_writers_is_applied_whole_or_not_at_all(
        postgres_url: str, postgres_table: str) -> None:
    store = PostgresStore(postgres_url, table=postgres_table, timeout=5)
    await store.open()
    try:
        with pytest.raises(SnapshotRefused):  # JSONB cannot hold \u0000
            await store.save_many([write("x", 0, 1, "a"),
                                   Write("y", 0, 1, b'{"s": "\\u0000"}', b"{}", "b")])
        assert await store.load_many(["x", "y"]) == {}
    finally:
        await store.close()


async def test_a_subject_created_again_starts_a_new_record(store: SnapshotStore) -> None:
    assert await store.save_many([write("d", 0, 5, "a")]) == []
    assert await store.save_many([write("d", 5, 6, "b")]) == []
    assert await store.delete_many([Delete("d", 6)]) == []
    assert await store.versions(["d"], "a") == {}
    assert await record(store, "d") is None  # deleting drops the record with the subject
    assert await store.save_many([write("d", 0, 1, "c")]) == []
    assert await record(store, "d") == ("c", {})
    assert await store.versions(["d"], "a") == {"d": (1, 0)}  # "a" wrote an earlier life
    assert await store.versions(["d"], "b") == {"d": (1, 0)}
    assert await store.versions(["d"], "c") == {"d": (1, 1)}


async def writes_on_an_upgraded_store(store) -> None:
    """Subject `d`, stored at v7 under schema 1, reads and takes writes with their writers."""
    assert (await store.load_many(["d"]))["d"].version == 7
    assert await store.versions(["d"], "a") == {"d": (7, 0)}
    assert await store.save_many([write("d", 7, 8, "a")]) == []
    assert await store.versions(["d"], "a") == {"d": (8, 8)}
    assert await store.save_many([write("d", 8, 9, "b")]) == []
    assert await store.versions(["d"], "a") == {"d": (9, 8)}
    assert await record(store, "d") == ("b", {"a": 8})


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
        await writes_on_an_upgraded_store(store)
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
            await writes_on_an_upgraded_store(store)
        finally:
            await store.close()
        assert await con.fetchval(f"SELECT version FROM {postgres_table}_schema") == 2
    finally:
        await con.close()

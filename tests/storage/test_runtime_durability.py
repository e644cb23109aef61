"""The runtime on real stores: acknowledged writes survive a SIGKILL of the process, outages are
ridden out (state kept in memory, durable acknowledgements wait, writing resumes by itself), and
two runtimes on one database never overwrite each other."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from runtime import BatchFailed, NotDurable, Runtime, StaleVersion
from storage import SnapshotCorrupt, SnapshotRefused, SnapshotStore, SQLiteStore
from storage.postgres import PostgresStore
from storage.redis import RedisStore
from tests.faultproxy import FaultProxy
from tests.storage.conftest import with_port
from tests.storage.crash_child import make_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    kind = request.param
    if kind == "postgres":
        return {"kind": kind, "url": request.getfixturevalue("postgres_url"),
                "table": request.getfixturevalue("postgres_table")}
    if kind == "redis":
        return {"kind": kind, "url": request.getfixturevalue("redis_url"),
                "prefix": request.getfixturevalue("redis_prefix")}
    return {"kind": kind, "path": str(tmp_path / "crash.db")}


async def test_acknowledged_durable_writes_survive_sigkill(spec: dict[str, Any]) -> None:
    seed = random.randrange(1 << 30)
    kill_after = random.Random(seed).randrange(20, 400)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.storage.crash_child", json.dumps(spec),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    acked: dict[str, int] = {}
    assert child.stdout is not None
    try:
        async with asyncio.timeout(60):
            while len(acked) < 5 or sum(acked.values()) < kill_after:
                line = await child.stdout.readline()
                assert line, (await child.stderr.read()).decode() if child.stderr else "no output"
                _, subject, n = line.decode().split()
                acked[subject] = max(acked.get(subject, 0), int(n))
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    # Lines printed before the kill but not read yet are acknowledgements too.
    rest = await child.stdout.read()
    for line in rest.decode().splitlines():
        parts = line.split()
        if len(parts) == 3:
            acked[parts[1]] = max(acked.get(parts[1], 0), int(parts[2]))
    async with Runtime(make_store(spec)) as rt:
        for subject, n in acked.items():
            stored = await rt.subject(subject).get("n")
            assert stored is not None and stored >= n, (
                f"seed {seed}: {subject} acknowledged n={n} but the store has {stored}")


async def outage(proxy: FaultProxy, store: SnapshotStore, check: SnapshotStore) -> None:
    """Writes during an outage stay in memory, durable ones time out clearly, and everything is
    written once the server is back, without restarting anything."""
    async with Runtime(store, passivate_after=None, flush_delay=0.002,
                       durable_timeout=0.5) as rt:
        dev = rt.subject("dev:outage")
        await dev.set("n", 1, durable=True)
        await rt.subject("dev:outage2").set("m", 0, durable=True)
        proxy.cut()
        proxy.refuse()
        await dev.set("n", 2)  # acknowledged in memory; the writer keeps retrying
        with pytest.raises(NotDurable, match=r"not committed within 0\.5 s"):
            await dev.set("n", 3, durable=True)
        with pytest.raises(BatchFailed) as batch:
            await rt.patch_many({"dev:outage": {"m": 1}, "dev:outage2": {"m": 1}}, durable=True)
        assert batch.value.results == {}
        assert all(isinstance(e, NotDurable) for e in batch.value.errors.values())
        assert await dev.get("n") == 3  # nothing lost in memory, nothing reported as stored
        assert (await check.load_many(["dev:outage"]))["dev:outage"].version == 1
        proxy.restore()
        async with asyncio.timeout(15):
            await rt.flush()
        await dev.set("n", 5, durable=True)
    stored = await check.load_many(["dev:outage", "dev:outage2"])
    assert stored["dev:outage"].version == 5
    assert stored["dev:outage2"].version == 2


@pytest.fixture(params=["postgres", "redis"])
def outage_setup(request: pytest.FixtureRequest) -> tuple[FaultProxy, SnapshotStore,
                                                           SnapshotStore]:
    """A network store behind the fault proxy, and one straight to the server to check with."""
    kind: str = request.param
    proxy: FaultProxy = request.getfixturevalue(f"{kind}_proxy")
    url: str = request.getfixturevalue(f"{kind}_url")
    proxied_url = with_port(url, proxy.port)
    if kind == "postgres":
        table: str = request.getfixturevalue("postgres_table")
        return (proxy, PostgresStore(proxied_url, table=table, timeout=0.5),
                PostgresStore(url, table=table))
    prefix: str = request.getfixturevalue("redis_prefix")
    return (proxy, RedisStore(proxied_url, prefix=prefix, timeout=0.5),
            RedisStore(url, prefix=prefix))


async def test_an_outage_is_ridden_out(
        outage_setup: tuple[FaultProxy, SnapshotStore, SnapshotStore]) -> None:
    proxy, proxied, direct = outage_setup
    await direct.open()
    try:
        await outage(proxy, proxied, direct)
    finally:
        await direct.close()


async def test_sqlite_locked_by_another_writer_is_ridden_out(tmp_path: Path) -> None:
    """Another connection holding SQLite's write lock must not freeze the event loop (statements
    run on it): writes fail at once, the pipeline retries, and the loop keeps serving."""
    path = str(tmp_path / "locked.db")
    async with Runtime(SQLiteStore(path), passivate_after=None, flush_delay=0.002,
                       durable_timeout=0.5) as rt:
        dev = rt.subject("dev:locked")
        await dev.set("n", 1, durable=True)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the write lock, held
        try:
            loop = asyncio.get_running_loop()
            began = loop.time()
            await dev.set("n", 2)  # acknowledged in memory
            with pytest.raises(NotDurable, match=r"not committed within 0\.5 s.*locked"):
                await dev.set("n", 3, durable=True)
            assert loop.time() - began < 2.0  # the loop was never stuck waiting for the lock
            assert await dev.get("n") == 3
            assert other.execute("SELECT version FROM subjects").fetchall() == [(1,)]
        finally:
            other.execute("ROLLBACK")
            other.close()
        async with asyncio.timeout(15):
            await rt.flush()
        await dev.set("n", 4, durable=True)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version, properties FROM subjects").fetchall() == [
            (4, '{"n":4}')]


async def test_two_runtimes_on_postgres_never_overwrite_each_other(
        postgres_url: str, postgres_table: str) -> None:
    def store() -> PostgresStore:
        return PostgresStore(postgres_url, table=postgres_table)

    async with Runtime(store(), passivate_after=None, flush_delay=0) as one, \
            Runtime(store(), passivate_after=None, flush_delay=0) as two:
        assert await one.subject("d").get("x") is None
        assert await two.subject("d").get("x") is None
        await one.subject("d").set("x", "one", durable=True)
        with pytest.raises(StaleVersion):
            await two.subject("d").set("x", "two", durable=True)
        await two.idle()
        assert await two.subject("d").get("x") == "one"


async def test_a_snapshot_over_sqlites_limits_is_refused_alone(tmp_path: Path,
                                                               caplog: Any) -> None:
    """SQLite refuses a batch whose text is over its length limit (lowered here from 1 GB):
    the batch is split until the one subject too big for it is alone; the others are stored."""
    path = str(tmp_path / "limits.db")
    store = SQLiteStore(path)
    async with Runtime(store, passivate_after=None, flush_delay=0.01) as rt:
        await rt.subject("big:1").set("v", "small", durable=True)
        assert store._db is not None
        store._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 20_000)
        updates = {f"ok:{i}": {"v": "x" * 1000} for i in range(30)}
        updates["big:1"] = {"v": "y" * 30_000}
        with pytest.raises(BatchFailed) as failed:
            await rt.patch_many(updates, durable=True)
        assert set(failed.value.results) == {f"ok:{i}" for i in range(30)}
        assert list(failed.value.errors) == ["big:1"]
        assert isinstance(failed.value.errors["big:1"], SnapshotRefused)
        assert "too big" in str(failed.value.errors["big:1"])
        await rt.idle()
        assert await rt.subject("big:1").get("v") == "small"  # reloaded as stored
    with sqlite3.connect(path) as db:
        stored = db.execute("SELECT count(*) FROM subjects WHERE name LIKE 'ok:%'").fetchone()
    assert stored == (30,)
    assert "big:1: the store cannot take its snapshot" in caplog.text


async def test_a_snapshot_postgres_refuses_is_refused_alone(postgres_url: str,
                                                            postgres_table: str) -> None:
    """A snapshot PostgreSQL refuses for what it holds (here a NUL, which the runtime refuses at
    `set`; put into the state by hand) fails only its own subject's write."""
    store = PostgresStore(postgres_url, table=postgres_table)
    async with Runtime(store, passivate_after=None) as rt:
        await rt.subject("bad:1").set("v", 0, durable=True)
        rt._actors["bad:1"].props["w"] = "a\x00b"
        with pytest.raises(BatchFailed) as failed:
            await rt.patch_many({f"ok:{i}": {"v": i} for i in range(10)} | {"bad:1": {"v": 1}},
                                durable=True)
        assert list(failed.value.errors) == ["bad:1"]
        assert "\\u0000 cannot be converted to text" in str(failed.value.errors["bad:1"])
        assert await rt.subject("ok:2").set("v", 3, durable=True) == 3
    check = PostgresStore(postgres_url, table=postgres_table)
    await check.open()
    try:
        found = await check.load_many(["bad:1", "ok:0", "ok:2"])
    finally:
        await check.close()
    assert found["bad:1"].version == 1 and found["ok:0"].version == 1
    assert found["ok:2"].version == 2


async def test_splitting_a_refused_batch_never_writes_one_subject_twice_at_once(
        postgres_url: str, postgres_table: str, caplog: pytest.LogCaptureFixture) -> None:
    """While a refused batch is split, a subject of it already stored may be written again by
    another writer (PostgreSQL writes several batches at once). It must stay in flight until
    that write ends: a third write based on the same version would be refused as stale, and an
    acknowledged change lost. A trigger slows writes of `a` and refuses `bad`'s, to pace it."""
    store = PostgresStore(postgres_url, table=postgres_table)
    async with Runtime(store, passivate_after=None, flush_delay=0.005) as rt:
        a = rt.subject("a")
        await a.set("n", 0, durable=True)
        con = await asyncpg.connect(postgres_url)
        try:
            await con.execute(f"""
                CREATE FUNCTION {postgres_table}_pace() RETURNS trigger AS $$
                BEGIN
                  IF NEW.name = 'a' THEN PERFORM pg_sleep(0.2); END IF;
                  IF NEW.properties::text LIKE '%poison%' THEN
                    PERFORM pg_sleep(0.1);
                    RAISE EXCEPTION 'poison' USING ERRCODE = '22023';
                  END IF;
                  RETURN NEW;
                END $$ LANGUAGE plpgsql;
                CREATE TRIGGER pace BEFORE INSERT OR UPDATE ON {postgres_table}
                  FOR EACH ROW EXECUTE FUNCTION {postgres_table}_pace()""")
            # One batch [a, bad] is refused, then split: [a] is stored, then [bad] refused.
            poisoned = asyncio.create_task(
                rt.patch_many({"bad": {"x": "poison"}}, durable=True))
            await a.set("n", 1, durable=True)  # returns once [a] is stored, while [bad] runs
            await a.set("n", 2)  # a second writer takes [a] (0.2 s)...
            with pytest.raises(BatchFailed):
                await poisoned  # ...and the split batch ends meanwhile
            await a.set("n", 3)  # written only after the second writer is done
            with pytest.raises(SnapshotRefused) as flushed:
                await rt.flush()
            assert flushed.value.subjects == ("bad",)
            assert await a.get("n") == 3
            row = await con.fetchrow(f"SELECT version, properties->>'n' FROM {postgres_table}"
                                     " WHERE name = 'a'")
            assert tuple(row) == (4, "3")
        finally:
            await con.execute(f"DROP FUNCTION {postgres_table}_pace() CASCADE")
            await con.close()
    assert "stale" not in caplog.text


async def test_a_snapshot_that_cannot_be_read_fails_its_subject_alone(
        postgres_url: str, postgres_table: str) -> None:
    """A row whose state is not a JSON object (written by hand) refuses its own subject with a
    precise error; the subjects loaded in the same batch are served."""
    async with Runtime(PostgresStore(postgres_url, table=postgres_table)) as rt:
        await rt.subject("bad").set("v", 1, durable=True)
        await rt.subject("good").set("v", 1, durable=True)
    con = await asyncpg.connect(postgres_url)
    try:
        await con.execute(f"UPDATE {postgres_table} SET properties = '[1, 2]' WHERE name = 'bad'")
    finally:
        await con.close()
    async with Runtime(PostgresStore(postgres_url, table=postgres_table), shutdown_timeout=5,
                       passivate_after=None) as rt:
        bad, good = await asyncio.gather(rt.subject("bad").get("v"), rt.subject("good").get("v"),
                                         return_exceptions=True)
        assert isinstance(bad, SnapshotCorrupt) and "'bad' cannot be read" in str(bad)
        assert good == 1
        assert rt.stats()["busy"] == 0


async def test_redis_keys_that_hold_no_snapshot_fail_their_subject_alone(
        redis_url: str, redis_prefix: str) -> None:
    """A key under the prefix written by someone else: unreadable text refuses its subject at
    activation; a key of another type refuses its subject's writes, and nothing else of their
    batch is held back or half applied."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.set(f"{redis_prefix}garbage", b"not a snapshot")
        await client.rpush(f"{redis_prefix}listed", b"x")
        async with Runtime(RedisStore(redis_url, prefix=redis_prefix)) as rt:
            with pytest.raises(SnapshotCorrupt):
                await rt.subject("garbage").get("v")
            with pytest.raises(BatchFailed) as failed:
                await rt.patch_many({"a": {"v": 1}, "listed": {"v": 1}, "c": {"v": 1}},
                                    durable=True)
            assert list(failed.value.errors) == ["listed"]
            assert isinstance(failed.value.errors["listed"], SnapshotRefused)
            assert failed.value.results == {"a": 1, "c": 1}
            assert await rt.subject("d").set("v", 1, durable=True) == 1
        assert await client.type(f"{redis_prefix}listed") == b"list"
    finally:
        await client.delete(f"{redis_prefix}garbage", f"{redis_prefix}listed")
        await client.aclose()


async def test_activating_more_than_sqlites_length_limit_at_once(tmp_path: Path) -> None:
    """A batch of loads whose states together pass SQLite's length limit (lowered here) loads
    row by row instead of failing."""
    path = str(tmp_path / "loads.db")
    names = [f"d:{i}" for i in range(30)]
    async with Runtime(SQLiteStore(path)) as rt:
        await rt.patch_many({name: {"v": "x" * 1000} for name in names}, durable=True)
    store = SQLiteStore(path)
    async with Runtime(store, passivate_after=None) as rt:
        assert store._db is not None
        store._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 20_000)
        values = await asyncio.gather(*(rt.subject(name).get("v") for name in names))
        assert values == ["x" * 1000] * 30


async def test_a_store_that_lost_writes_gets_the_state_in_memory_again(
        redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    """Redis restarted without persistence, a database restored from a backup: the store holds
    less than it had committed. Versions never go back otherwise, so the state in memory is
    the newest there is: it is written again, not thrown away as stale."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with Runtime(RedisStore(redis_url, prefix=redis_prefix),
                           passivate_after=None) as rt:
            account = rt.subject("account")
            await account.set("balance", 10, durable=True)
            await account.set("owner", "ada", durable=True)
            await client.delete(f"{redis_prefix}account")  # the store loses it
            assert await account.set("balance", 12, durable=True) == 12
        async with Runtime(RedisStore(redis_url, prefix=redis_prefix)) as rt:
            view = await rt.subject("account").state()
        assert (view.version, view.properties) == (3, {"balance": 12, "owner": "ada"})
        assert "the store holds nothing of account, which had v2 stored" in caplog.text
    finally:
        await client.delete(f"{redis_prefix}account")
        await client.aclose()


async def test_a_subject_created_afresh_by_another_runtime_after_a_loss_is_not_overwritten(
        redis_url: str, redis_prefix: str) -> None:
    """After the store lost a subject, another runtime created it again and had its write
    acknowledged: the first runtime's state, older knowledge, must not replace it."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with Runtime(RedisStore(redis_url, prefix=redis_prefix), passivate_after=None,
                           flush_delay=0) as one, \
                Runtime(RedisStore(redis_url, prefix=redis_prefix), passivate_after=None,
                        flush_delay=0) as two:
            for n in range(3):
                await one.subject("d").set("x", f"one-{n}", durable=True)
            await client.delete(f"{redis_prefix}d")  # the store loses it
            await two.subject("d").set("x", "two", durable=True)  # created afresh: v1
            with pytest.raises(StaleVersion):
                await one.subject("d").set("y", "one-later", durable=True)
            await one.idle()
            assert await one.subject("d").get("x") == "two"  # reloaded what the store holds
        stored = await client.get(f"{redis_prefix}d")
        assert stored is not None and b'"two"' in stored and b"one-later" not in stored
    finally:
        await client.delete(f"{redis_prefix}d")
        await client.aclose()


async def test_a_redis_user_who_may_not_read_keys_loses_no_write(
        redis_url: str, redis_prefix: str) -> None:
    """A Redis error that is not about the data (an ACL forbidding GETRANGE) is an outage: the
    write waits in memory, it is not refused and thrown away."""
    client = aioredis.Redis.from_url(redis_url)
    user = redis_prefix.rstrip(":") + "_user"
    await client.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "+@all",
                                 "-getrange")
    try:
        parts = urlsplit(redis_url)
        url = f"redis://{user}:pw@{parts.hostname}:{parts.port or 6379}{parts.path}"
        async with Runtime(RedisStore(url, prefix=redis_prefix), passivate_after=None,
                           durable_timeout=0.5, shutdown_timeout=1) as rt:
            with pytest.raises(NotDurable, match="can't run this command"):
                await rt.subject("d").set("x", 1, durable=True)
            assert await rt.subject("d").get("x") == 1  # kept, to be written when allowed
    finally:
        await client.execute_command("ACL", "DELUSER", user)
        await client.aclose()

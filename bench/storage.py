"""Storage benchmark: durable throughput through the runtime against each database's raw ceiling.

For SQLite, PostgreSQL and Redis in turn:
1. raw ceiling: the same 100,000 rows written straight to the database the fastest plain way
   (SQLite: executemany, one transaction per batch; PostgreSQL: asyncpg `INSERT ... SELECT FROM
   unnest(...) ON CONFLICT DO UPDATE`, one statement per batch, on as many connections as the
   runtime's pool; Redis: redis-py pipelines of SET), batches of the runtime's `flush_batch`;
2. peak: 100,000 subjects each updated once through the runtime with durable acknowledgements
   (every update returns only once its snapshot is committed), from SENDERS concurrent senders;
   then again batched: `patch_many` calls of BATCH subjects each, from BATCH_CALLERS callers.
   The subjects are activated first (batched loads, timed and printed apart): the update phase
   measures what the ceiling measures, writes;
3. latency: the same at half the measured peak rate, arrivals on a fixed schedule (open loop),
   reporting p50/p99 acknowledgement latency (per call, batched).

Also, once: the asyncio floor of the peak phase's shape, SENDERS tasks each awaiting one future
per update, resolved in batches of BATCH, with no actor and no database. No design where each
update has an awaiting caller goes faster on this interpreter; its ratio to a ceiling bounds
what the runtime's ratio can be. And the runtime without persistence: both shapes on the memory
store, not durable (callers do not wait for writes); the runtime's ratio to it is the share of
its own throughput that durable persistence leaves.

Targets: peak >= 0.7 of the raw ceiling; p99 < 20 ms at half the peak rate.
Run: python bench/storage.py [--quick] [--only sqlite,postgres,redis]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import asyncpg
import msgspec
import redis.asyncio as aioredis

from runtime import Runtime
from storage import MemoryStore, SnapshotStore, SQLiteStore
from storage.postgres import PostgresStore
from storage.redis import RedisStore

PG_URL = os.environ.get("SUBJECTS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SUBJECTS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BATCH = 1000
SENDERS = 2000
BATCH_CALLERS = 4  # callers of patch_many in the batched shape, each BATCH subjects per call
encode = msgspec.json.encode


def rows(n: int) -> list[tuple[str, int, bytes]]:
    return [(f"bench:{i:06d}", 1, encode({"v": i, "health": "ok"})) for i in range(n)]


async def raw_sqlite(path: str, data: list[tuple[str, int, bytes]]) -> float:
    def write() -> float:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE raw (name TEXT PRIMARY KEY, version INTEGER, properties TEXT,"
                   " ext TEXT, updated_at REAL) WITHOUT ROWID")
        t0 = time.perf_counter()
        for start in range(0, len(data), BATCH):
            db.execute("BEGIN")
            db.executemany("INSERT INTO raw VALUES (?, ?, ?, '{}', ?) ON CONFLICT (name) DO "
                           "UPDATE SET version = excluded.version, properties = "
                           "excluded.properties",
                           [(n, v, p.decode(), 0.0) for n, v, p in data[start:start + BATCH]])
            db.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        db.close()
        return elapsed

    return await asyncio.to_thread(write)


async def raw_postgres(data: list[tuple[str, int, bytes]], connections: int) -> float:
    pool = await asyncpg.create_pool(PG_URL, min_size=connections, max_size=connections)
    try:
        await pool.execute("DROP TABLE IF EXISTS bench_raw")
        await pool.execute("CREATE TABLE bench_raw (name text PRIMARY KEY, version bigint NOT NULL,"
                           " properties jsonb NOT NULL, ext jsonb NOT NULL,"
                           " updated_at timestamptz NOT NULL DEFAULT now())")
        statement = (
            "INSERT INTO bench_raw (name, version, properties, ext) "
            "SELECT n, v, p::jsonb, '{}'::jsonb FROM unnest($1::text[], $2::bigint[], $3::text[])"
            " AS u(n, v, p) ON CONFLICT (name) DO UPDATE SET version = excluded.version,"
            " properties = excluded.properties, updated_at = now()")
        batches = [data[s:s + BATCH] for s in range(0, len(data), BATCH)]
        queue = list(reversed(batches))

        async def worker() -> None:
            async with pool.acquire() as con:
                while queue:
                    batch = queue.pop()
                    await con.execute(statement, [n for n, _, _ in batch],
                                      [v for _, v, _ in batch], [p.decode() for _, _, p in batch])

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - t0
        await pool.execute("DROP TABLE bench_raw")
        return elapsed
    finally:
        await pool.close()


async def raw_redis(data: list[tuple[str, int, bytes]]) -> float:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        t0 = time.perf_counter()
        for start in range(0, len(data), BATCH):
            pipe = client.pipeline(transaction=False)
            for n, v, p in data[start:start + BATCH]:
                pipe.set(f"benchraw:{n}", b"%d:%d:" % (v, len(p)) + p + b"{}")
            await pipe.execute()
        elapsed = time.perf_counter() - t0
        keys = [k async for k in client.scan_iter(match="benchraw:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start:start + 1000])
        return elapsed
    finally:
        await client.aclose()


async def through_runtime(make: Callable[[], SnapshotStore], n: int, rate: float | None,
                          batched: bool = False, durable: bool = True
                          ) -> tuple[float, list[float], float]:
    """Update n subjects once each with durable acknowledgements; at `rate` per second on a
    fixed schedule, or as fast as SENDERS senders go. `batched`: BATCH subjects per call
    (`patch_many`), from BATCH_CALLERS callers; latencies are then per call. Returns (elapsed,
    latencies, activation time)."""
    latencies: list[float] = []
    async with Runtime(make(), durable=durable, passivate_after=None, flush_batch=BATCH,
                       flush_delay=0.002, mailbox_size=10_000) as rt:
        refs = [rt.subject(f"bench:{i:06d}") for i in range(n)]
        t0 = time.perf_counter()
        for start in range(0, n, BATCH):
            await asyncio.gather(*(ref.get("v") for ref in refs[start:start + BATCH]))
        activation = time.perf_counter() - t0
        # As `subjects serve` does once the application is loaded: what lives as long as the
        # process is kept out of the collector's sight (full collections walk the rest only).
        gc.freeze()

        async def one(i: int) -> None:
            t = time.perf_counter()
            await refs[i].patch({"v": i, "health": "ok"})
            latencies.append(time.perf_counter() - t)

        async def many(i: int) -> None:  # subjects i to i + BATCH
            t = time.perf_counter()
            await rt.patch_many({ref: {"v": j, "health": "ok"}
                                 for j, ref in enumerate(refs[i:i + BATCH], i)})
            latencies.append(time.perf_counter() - t)

        step, send, senders = (BATCH, many, BATCH_CALLERS) if batched else (1, one, SENDERS)
        t0 = time.perf_counter()
        if rate is None:
            async def sender(k: int) -> None:
                for i in range(k * step, n, senders * step):
                    await send(i)
            await asyncio.gather(*(sender(k) for k in range(senders)))
        else:
            # Open loop: arrivals on a fixed schedule, whatever the acknowledgements do. Only
            # the requests in flight are held (a list of every task would be the garbage
            # collector's biggest burden here, not the runtime's).
            in_flight: set[asyncio.Task[None]] = set()
            for i in range(0, n, step):
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(send(i))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            while in_flight:
                await asyncio.gather(*in_flight)
        elapsed = time.perf_counter() - t0
    gc.unfreeze()
    return elapsed, latencies, activation


async def asyncio_floor(n: int) -> float:
    """Updates/s of SENDERS tasks that each await one future per update, the futures resolved
    BATCH at a time: the peak phase without the runtime and without a database."""
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[None]] = []
    state: dict[int, dict[str, object]] = {}
    running = True

    async def flusher() -> None:
        while running:
            await asyncio.sleep(0)
            batch = pending[:BATCH]
            del pending[:BATCH]
            for fut in batch:
                fut.set_result(None)

    async def sender(k: int) -> None:
        for i in range(k, n, SENDERS):
            state[i] = {"v": i, "health": "ok"}
            fut = loop.create_future()
            pending.append(fut)
            await fut

    flushing = asyncio.create_task(flusher())
    t0 = time.perf_counter()
    await asyncio.gather(*(sender(k) for k in range(SENDERS)))
    elapsed = time.perf_counter() - t0
    running = False
    await flushing
    return n / elapsed


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def bench(name: str, make: Callable[[], SnapshotStore],
                raw: Callable[[], Awaitable[float]], reset: Callable[[], Awaitable[None]],
                n: int, floor: float, unpersisted: tuple[float, float]) -> None:
    await reset()
    raw_time = await raw()
    await reset()
    peak_time, peak_lat, activation = await through_runtime(make, n, None)
    await reset()
    peak = n / peak_time
    half_n = max(1000, n // 4)
    _, half_lat, _ = await through_runtime(make, half_n, peak / 2)
    await reset()
    batch_time, _, _ = await through_runtime(make, n, None, batched=True)
    await reset()
    batch_peak = n / batch_time
    _, batch_lat, _ = await through_runtime(make, half_n, batch_peak / 2, batched=True)
    await reset()
    ceiling = n / raw_time
    print(f"{name:9} raw ceiling {ceiling:>9,.0f} rows/s | runtime durable {peak:>9,.0f} updates/s"
          f" = {peak / ceiling:.2f} of ceiling (target >= 0.7) | at peak p50 "
          f"{percentile(peak_lat, 50) * 1e3:.1f} ms p99 {percentile(peak_lat, 99) * 1e3:.1f} ms"
          f" | at {peak / 2:,.0f}/s (half peak) p50 {percentile(half_lat, 50) * 1e3:.1f} ms p99 "
          f"{percentile(half_lat, 99) * 1e3:.1f} ms (target < 20 ms) | activation of all "
          f"{n / activation:,.0f}/s | asyncio floor = {floor / ceiling:.2f} of ceiling | "
          f"{peak / unpersisted[0]:.2f} of the runtime without persistence", flush=True)
    print(f"{name:9} batched: patch_many of {BATCH} subjects from {BATCH_CALLERS} callers "
          f"{batch_peak:>9,.0f} updates/s = {batch_peak / ceiling:.2f} of ceiling, "
          f"{batch_peak / unpersisted[1]:.2f} of the runtime without persistence | at "
          f"{batch_peak / 2:,.0f}/s (half peak) per call p50 {percentile(batch_lat, 50) * 1e3:.1f}"
          f" ms p99 {percentile(batch_lat, 99) * 1e3:.1f} ms", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 subjects instead of 100,000")
    parser.add_argument("--only", default="sqlite,postgres,redis")
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    data = rows(n)
    print(f"{n:,} subjects, batches of {BATCH}, {SENDERS} senders, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    floor = await asyncio_floor(n)
    print(f"asyncio floor (one awaited future per update, no actor, no database): "
          f"{floor:,.0f} updates/s", flush=True)
    single, _, _ = await through_runtime(MemoryStore, n, None, durable=False)
    batched, _, _ = await through_runtime(MemoryStore, n, None, batched=True, durable=False)
    unpersisted = (n / single, n / batched)
    print(f"the runtime without persistence (memory store, not durable): {n / single:,.0f} "
          f"updates/s one per call, {n / batched:,.0f} batched", flush=True)
    only = args.only.split(",")
    if "sqlite" in only:
        with tempfile.TemporaryDirectory() as tmp:
            counter = iter(range(1_000_000))
            path = f"{tmp}/bench.db"

            async def reset_sqlite() -> None:
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(path + suffix):
                        os.remove(path + suffix)

            await bench("sqlite", lambda: SQLiteStore(path),
                        lambda: raw_sqlite(f"{tmp}/raw{next(counter)}.db", data),
                        reset_sqlite, n, floor, unpersisted)
    if "postgres" in only:
        async def reset_pg() -> None:
            con = await asyncpg.connect(PG_URL)
            await con.execute("DROP TABLE IF EXISTS bench_subjects, bench_subjects_schema")
            await con.close()

        store = PostgresStore(PG_URL, table="bench_subjects")
        await bench("postgres", lambda: PostgresStore(PG_URL, table="bench_subjects"),
                    lambda: raw_postgres(data, store.write_concurrency), reset_pg, n, floor,
                    unpersisted)
    if "redis" in only:
        async def reset_redis() -> None:
            client = aioredis.Redis.from_url(REDIS_URL)
            keys = [k async for k in client.scan_iter(match="benchrt:*", count=1000)]
            for start in range(0, len(keys), 1000):
                await client.delete(*keys[start:start + 1000])
            await client.aclose()

        await bench("redis", lambda: RedisStore(REDIS_URL, prefix="benchrt:"),
                    lambda: raw_redis(data), reset_redis, n, floor, unpersisted)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())

"""Micro-benchmark: milliseconds per `save_many` of 1,000 rows, per store, median of ROUNDS.

Three shapes: creations (1,000 new subjects a batch), updates by the writer of the stored
versions (almost every write in practice), and handovers (every row's writer changes: the worst
case, rare in practice). For Redis, also the server's time per script call (EVALSHA, from INFO
commandstats; the server may be shared, so others' calls can blur it).

The store's own cost, without the runtime, of the code tree this file lies in. To compare two
commits, put a copy of it in a worktree of each (it also runs on trees from before
`Write.writer`, without the handover shape) and run them in turn, in the same session.
Machines are noisy: several runs, medians.
Run: python bench/save_many.py [rounds]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import asyncpg
import msgspec
import redis.asyncio as aioredis

from storage import SnapshotStore, SQLiteStore, Write
from storage.postgres import PostgresStore
from storage.redis import RedisStore

PG_URL = os.environ.get("SUBJECTS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SUBJECTS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROWS = 1000
WRITER = "a1b2c3d4e5f60718"  # as a runtime's: 16 hex digits
HAS_WRITER = "writer" in Write.__struct_fields__
BODY = msgspec.json.encode({"v": 1, "health": "ok", "cpu": 42.5})


def write(name: str, expected: int, version: int, writer: str) -> Write:
    if HAS_WRITER:
        return Write(name, expected, version, BODY, b"{}", writer)
    return Write(name, expected, version, BODY, b"{}")


async def script_time(client: aioredis.Redis | None) -> tuple[int, int]:
    """EVALSHA calls and microseconds so far, from the server's statistics."""
    if client is None:
        return 0, 0
    stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


async def timed(store: SnapshotStore, batches: Sequence[Sequence[Write]],
                client: aioredis.Redis | None) -> str:
    times = []
    calls, usec = await script_time(client)
    for batch in batches:
        t = time.perf_counter()
        assert await store.save_many(batch) == []
        times.append(time.perf_counter() - t)
    figure = f"{statistics.median(times) * 1e3:.2f} ms"
    if client is not None:
        calls_after, usec_after = await script_time(client)
        if calls_after > calls:
            figure += f" (script {(usec_after - usec) / (calls_after - calls) / 1e3:.2f} ms)"
    return figure


async def measure(name: str, store: SnapshotStore, rounds: int,
                  client: aioredis.Redis | None = None) -> None:
    await store.open()
    try:
        tag = uuid.uuid4().hex[:6]
        shapes = {"create": await timed(store, [
            [write(f"b{tag}:{r}:{i}", 0, 1, WRITER) for i in range(ROWS)] for r in range(rounds)
        ], client)}
        names = [f"b{tag}:0:{i}" for i in range(ROWS)]
        shapes["update"] = await timed(store, [
            [write(n, v, v + 1, WRITER) for n in names] for v in range(1, rounds + 1)], client)
        if HAS_WRITER:
            shapes["handover"] = await timed(store, [
                [write(n, v, v + 1, f"w{v % 20}") for n in names]
                for v in range(rounds + 1, 2 * rounds + 1)], client)
    finally:
        await store.close()
    print(f"{name:9} " + " | ".join(f"{shape} {figure}" for shape, figure in shapes.items()),
          flush=True)


async def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(f"save_many of {ROWS:,} rows, median of {rounds}, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        await measure("sqlite", SQLiteStore(f"{tmp}/bench.db"), rounds)
    table = f"bench_save_{uuid.uuid4().hex[:8]}"
    try:
        await measure("postgres", PostgresStore(PG_URL, table=table), rounds)
    finally:
        con = await asyncpg.connect(PG_URL)
        await con.execute(f"DROP TABLE IF EXISTS {table}, {table}_schema")
        await con.close()
    prefix = f"benchsave{uuid.uuid4().hex[:8]}:"
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await measure("redis", RedisStore(REDIS_URL, prefix=prefix), rounds, client)
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start:start + 1000])
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())

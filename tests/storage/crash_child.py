"""A runtime in a child process that acknowledges durable updates until it is killed.

Usage: python -m tests.storage.crash_child '<json spec>'. Writers each own one subject and set its
counter `n` to 1, 2, 3...; after each durable acknowledgement a line `ack <subject> <n>` is
printed and flushed. Some writers own five subjects and update them with one `patch_many`.
Whatever was acknowledged must be in the store after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import sys

from runtime import Runtime, run
from storage import SnapshotStore, SQLiteStore
from storage.postgres import PostgresStore
from storage.redis import RedisStore


def make_store(spec: dict[str, str]) -> SnapshotStore:
    """The store a test's spec names (an isolated table, key prefix or file)."""
    if spec["kind"] == "postgres":
        return PostgresStore(spec["url"], table=spec["table"])
    if spec["kind"] == "redis":
        return RedisStore(spec["url"], prefix=spec["prefix"])
    return SQLiteStore(spec["path"])


async def main(spec: dict[str, str]) -> None:
    async with Runtime(make_store(spec), durable=True, flush_delay=0.002) as rt:
        async def writer(i: int) -> None:
            ref = rt.subject(f"crash:{i}")
            n = 0
            while True:
                n += 1
                await ref.set("n", n)
                sys.stdout.write(f"ack crash:{i} {n}\n")
                sys.stdout.flush()

        async def batch_writer(i: int) -> None:
            group = [f"crash:{i}.{j}" for j in range(5)]
            n = 0
            while True:
                n += 1
                await rt.patch_many({name: {"n": n} for name in group})
                sys.stdout.write("".join(f"ack {name} {n}\n" for name in group))
                sys.stdout.flush()

        writers = int(spec.get("writers", 20))
        await asyncio.gather(*(writer(i) for i in range(writers)),
                             *(batch_writer(i) for i in range(writers // 4)))


if __name__ == "__main__":
    run(main(json.loads(sys.argv[1])))

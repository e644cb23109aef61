"""Fixtures for the store tests: each backend in an isolated namespace that is removed afterwards.

PostgreSQL tests get a table of their own and Redis tests a key prefix of their own, so runs can
share a server with each other and with real data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis

from storage import MemoryStore, SnapshotStore, SQLiteStore
from storage.postgres import PostgresStore
from storage.redis import RedisStore
from tests.faultproxy import FaultProxy
from tests.services import require_postgres, require_redis

BACKENDS = ["memory", "sqlite", "postgres", "redis"]


class Backend:
    """Makes stores of one kind that all see the same data, and closes them at the end."""

    def __init__(self, kind: str, factory: Callable[[], SnapshotStore]) -> None:
        self.kind = kind
        self._factory = factory
        self._made: list[SnapshotStore] = []

    @property
    def durable(self) -> bool:
        """Whether a new store object sees what a closed one wrote."""
        return self.kind != "memory"

    @property
    def keeps_bytes(self) -> bool:
        """Whether JSON comes back byte for byte (JSONB keeps the meaning, not the bytes)."""
        return self.kind != "postgres"

    def make(self) -> SnapshotStore:
        store = self._factory()
        self._made.append(store)
        return store

    async def close_all(self) -> None:
        for store in self._made:
            await store.close()


def with_port(url: str, port: int, host: str = "127.0.0.1") -> str:
    """`url` pointed at host:port instead, credentials kept."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:10]}"


async def drop_table(url: str, table: str) -> None:
    con = await asyncpg.connect(url)
    try:
        await con.execute(f"DROP TABLE IF EXISTS {table}, {table}_schema")
    finally:
        await con.close()


async def delete_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def postgres_url() -> str:
    return await require_postgres()


@pytest.fixture
async def redis_url() -> str:
    return await require_redis()


@pytest.fixture
async def postgres_table(postgres_url: str) -> AsyncIterator[str]:
    table = unique("subjects_test")
    yield table
    await drop_table(postgres_url, table)


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = unique("subjects_test") + ":"
    yield prefix
    await delete_prefix(redis_url, prefix)


@pytest.fixture(params=BACKENDS)
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    # Synchronous on purpose: getfixturevalue cannot set up the async service fixtures from
    # inside a running event loop, and only the chosen backend's server is required.
    kind: str = request.param
    factory: Callable[[], SnapshotStore]
    if kind == "memory":
        shared = MemoryStore()  # the only way two "opens" of a memory store share data
        factory = lambda: shared  # noqa: E731
    elif kind == "sqlite":
        path = str(tmp_path / "state.db")
        factory = lambda: SQLiteStore(path)  # noqa: E731
    elif kind == "postgres":
        url = request.getfixturevalue("postgres_url")
        table = request.getfixturevalue("postgres_table")
        factory = lambda: PostgresStore(url, table=table, timeout=5)  # noqa: E731
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        factory = lambda: RedisStore(url, prefix=prefix, timeout=5)  # noqa: E731
    return Backend(kind, factory)


@pytest.fixture
async def backend(backend_factory: Backend) -> AsyncIterator[Backend]:
    yield backend_factory
    await backend_factory.close_all()


@pytest.fixture
async def store(backend: Backend) -> SnapshotStore:
    store = backend.make()
    await store.open()
    return store


@pytest.fixture
async def postgres_proxy(postgres_url: str) -> AsyncIterator[FaultProxy]:
    parts = urlsplit(postgres_url)
    async with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        yield proxy


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[FaultProxy]:
    parts = urlsplit(redis_url)
    async with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        yield proxy

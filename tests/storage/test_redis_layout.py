"""Redis specifics: the stored layout, and scripts surviving a server that forgot them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from storage import StoreError, StoreUnavailable, Write
from storage.redis import RedisStore


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix, timeout=5)
    await store.open()
    yield store
    await store.close()


async def test_one_readable_key_per_subject(
    store: RedisStore, client: aioredis.Redis, redis_prefix: str
) -> None:
    await store.save_many([Write("ann", 0, 7, b'{"a":1}', b'{"e":2}')])
    assert await client.get(redis_prefix + "ann") == b'7:7:{"a":1}{"e":2}'


async def test_scripts_reloaded_after_flush(store: RedisStore, client: aioredis.Redis) -> None:
    await store.save_many([Write("s", 0, 1, b"{}")])
    await client.script_flush()  # as after a restart of the server
    assert await store.save_many([Write("s", 1, 2, b"{}"), Write("t", 5, 6, b"{}")]) == ["t"]


async def test_foreign_value_is_an_error_not_an_outage(
    store: RedisStore, client: aioredis.Redis, redis_prefix: str
) -> None:
    await client.rpush(redis_prefix + "list", b"x")  # a key of the wrong type
    with pytest.raises(StoreError) as caught:
        await store.save_many([Write("list", 1, 2, b"{}")])
    assert not isinstance(caught.value, StoreUnavailable)
    assert "WRONGTYPE" in str(caught.value)

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


async def test_writers_beside_the_key_and_a_foreign_one_ignored(
    store: RedisStore, client: aioredis.Redis, redis_prefix: str
) -> None:
    await store.save_many([Write("w", 0, 3, b"{}", b"{}", "me")])
    assert await client.hgetall(f"{redis_prefix}w writers") == {b"me": b"3"}
    await client.rpush(f"{redis_prefix}f writers", b"not ours")
    await store.save_many([Write("f", 0, 1, b"{}", b"{}", "me")])  # DEL: a new subject
    await client.delete(f"{redis_prefix}f writers")
    await client.rpush(f"{redis_prefix}f writers", b"not ours")
    assert await store.save_many([Write("f", 1, 2, b"{}", b"{}", "me")]) == []
    assert await store.versions(["f", "w"], "me") == {"f": (2, 0), "w": (3, 3)}

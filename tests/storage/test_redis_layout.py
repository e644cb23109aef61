"""Redis specifics: the stored layout, and scripts surviving a server that forgot them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from storage import Delete, Snapshot, StoreError, StoreUnavailable, Write
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
    await store.save_many([Write("ann", 0, 7, b'{"a":1}', b'{"e":2}', "w1")])
    assert await client.get(redis_prefix + "ann") == b'7@w1:7:{"a":1}{"e":2}'
    await store.save_many([Write("bob", 0, 7, b'{"a":1}', b'{"e":2}')])  # no writer
    assert await client.get(redis_prefix + "bob") == b'7:7:{"a":1}{"e":2}'


async def test_the_layout_before_writers_is_read_and_written_over(
    store: RedisStore, client: aioredis.Redis, redis_prefix: str
) -> None:
    await client.set(redis_prefix + "old", b'12:7:{"a":1}{"e":2}')  # as stored before writers
    assert (await store.load_many(["old"]))["old"] == Snapshot("old", 12, b'{"a":1}', b'{"e":2}')
    assert await store.versions(["old"], "me") == {"old": (12, 0)}
    assert await store.save_many([Write("old", 11, 13, b"{}", b"{}", "me")]) == ["old"]
    assert await store.save_many([Write("old", 12, 13, b"{}", b"{}", "me")]) == []
    assert await client.get(redis_prefix + "old") == b"13@me:2:{}{}"
    assert not await client.exists(redis_prefix + " writers")  # nobody to record
    assert await store.versions(["old"], "me") == {"old": (13, 13)}
    assert await store.delete_many([Delete("old", 12)]) == ["old"]
    assert await store.delete_many([Delete("old", 13)]) == []
    assert await store.load_many(["old"]) == {}


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


async def test_histories_in_one_hash_and_a_foreign_one_ignored(
    store: RedisStore, client: aioredis.Redis, redis_prefix: str
) -> None:
    histories = redis_prefix + " writers"
    await store.save_many([Write("w", 0, 3, b"{}", b"{}", "me")])
    assert not await client.exists(histories)  # one writer: no history
    await store.save_many([Write("w", 3, 4, b"{}", b"{}", "you"),
                           Write("v", 0, 1, b"{}", b"{}", "me")])
    await store.save_many([Write("w", 4, 5, b"{}", b"{}", "him"),
                           Write("v", 1, 2, b"{}", b"{}", "you")])
    assert await client.hgetall(histories) == {(redis_prefix + "w").encode(): b"me=3 you=4",
                                               (redis_prefix + "v").encode(): b"me=1"}
    assert await store.delete_many([Delete("v", 2)]) == []
    assert await client.hgetall(histories) == {(redis_prefix + "w").encode(): b"me=3 you=4"}
    await client.delete(histories)
    await client.rpush(histories, b"not ours")
    assert await store.save_many([Write("w", 5, 6, b"{}", b"{}", "me"),
                                  Write("f", 0, 1, b"{}", b"{}", "me")]) == []
    assert await store.save_many([Write("f", 1, 2, b"{}", b"{}", "you")]) == []
    assert await client.lrange(histories, 0, -1) == [b"not ours"]
    assert await store.versions(["f", "w"], "me") == {"f": (2, 0), "w": (6, 6)}
    assert await store.versions(["f"], "you") == {"f": (2, 2)}
    assert await store.delete_many([Delete("f", 2)]) == []


async def test_a_history_left_without_its_key_is_dropped_when_the_subject_is_created(
    store: RedisStore, client: aioredis.Redis, redis_prefix: str
) -> None:
    await store.save_many([Write("k", 0, 5, b"{}", b"{}", "me")])
    await store.save_many([Write("k", 5, 6, b"{}", b"{}", "you")])
    await client.delete(redis_prefix + "k")  # lost: by hand, an eviction, a restart
    assert await store.save_many([Write("k", 0, 1, b"{}", b"{}", "you")]) == []
    assert await store.versions(["k"], "me") == {"k": (1, 0)}
    assert not await client.exists(redis_prefix + " writers")

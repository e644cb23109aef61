"""Outages of the network stores, made with a fault-injecting proxy in front of the real server.

What the runtime relies on: during an outage every call fails promptly (within the store's
timeout) with StoreUnavailable, and once the server is back the same store object serves again,
without being reopened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest

from storage import Delete, SnapshotStore, StoreUnavailable, Write
from storage.postgres import PostgresStore
from storage.redis import RedisStore
from tests.faultproxy import FaultProxy
from tests.storage.conftest import with_port

TIMEOUT = 0.5  # the stores' timeout in these tests
SLACK = 1.0  # what a failing call may take beyond it


class Proxied:
    """Stores of one kind whose traffic goes through `proxy`."""

    def __init__(self, kind: str, proxy: FaultProxy, make: Callable[[str], SnapshotStore]):
        self.kind = kind
        self.proxy = proxy
        self._make = make
        self.stores: list[SnapshotStore] = []

    def make(self, password: str | None = None) -> SnapshotStore:
        store = self._make(password or "")
        self.stores.append(store)
        return store


@pytest.fixture(params=["postgres", "redis"])
def proxied_setup(request: pytest.FixtureRequest) -> Proxied:
    # Synchronous, like backend_factory: it sets up the chosen service's fixtures on demand.
    kind: str = request.param
    proxy: FaultProxy = request.getfixturevalue(f"{kind}_proxy")
    url: str = request.getfixturevalue(f"{kind}_url")
    namespace: str = request.getfixturevalue(
        "postgres_table" if kind == "postgres" else "redis_prefix"
    )

    def make(password: str) -> SnapshotStore:
        target = with_port(url, proxy.port)
        if password:  # trust auth ignores it; it is here to be kept out of messages
            scheme, rest = target.split("://", 1)
            user = "postgres" if kind == "postgres" else ""
            target = f"{scheme}://{user}:{password}@{rest.rpartition('@')[2]}"
        if kind == "postgres":
            return PostgresStore(target, table=namespace, timeout=TIMEOUT)
        return RedisStore(target, prefix=namespace, timeout=TIMEOUT)

    return Proxied(kind, proxy, make)


@pytest.fixture
async def proxied(proxied_setup: Proxied) -> AsyncIterator[Proxied]:
    yield proxied_setup
    for store in proxied_setup.stores:
        await store.close()


async def fails_promptly(call: Callable[[], Awaitable[object]]) -> StoreUnavailable:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await call()
    assert time.monotonic() - started < TIMEOUT + SLACK
    return caught.value


def write(name: str, expected: int, version: int) -> Write:
    return Write(name, expected, version, msgspec.json.encode({"v": version}))


async def test_server_down_then_back(proxied: Proxied) -> None:
    store = proxied.make()
    await store.open()
    assert await store.save_many([write("a", 0, 1)]) == []
    assert proxied.proxy.connections > 0  # the traffic does go through the proxy

    proxied.proxy.cut()
    proxied.proxy.refuse()
    for call in (
        store.ping,
        lambda: store.load_many(["a"]),
        lambda: store.save_many([write("a", 1, 2)]),
        lambda: store.delete_many([Delete("a", 1)]),
    ):
        error = await fails_promptly(call)
        assert str(error).startswith(("PostgreSQL 127.0.0.1", "Redis 127.0.0.1"))
    assert await store.load_many([]) == {}  # an empty batch needs no server

    proxied.proxy.restore()
    assert (await store.load_many(["a"]))["a"].version == 1  # the failed save was not applied
    assert await store.save_many([write("a", 1, 2)]) == []
    await store.ping()


async def test_server_hangs_then_recovers(proxied: Proxied) -> None:
    store = proxied.make()
    await store.open()
    await store.save_many([write("h", 0, 1)])

    proxied.proxy.delay(30)
    error = await fails_promptly(lambda: store.load_many(["h"]))
    assert "no answer within 0.5 s" in str(error) or "Timeout" in str(error)

    proxied.proxy.restore()
    assert (await store.load_many(["h"]))["h"].version == 1
    assert await store.save_many([write("h", 1, 2)]) == []


async def test_connections_reset_while_idle(proxied: Proxied) -> None:
    store = proxied.make()
    await store.open()
    await store.ping()
    # The server is fine; only the pooled connections are gone, as after a server restart or a
    # firewall dropping idle connections. Once the client has seen the reset, the next call
    # must reconnect instead of failing on a dead connection.
    proxied.proxy.cut()
    await asyncio.sleep(0.1)
    assert await store.save_many([write("r", 0, 1)]) == []
    assert proxied.proxy.connections > 0


async def test_open_while_down_then_retry(proxied: Proxied) -> None:
    proxied.proxy.refuse()
    store = proxied.make(password="s3cret-pw")
    error = await fails_promptly(store.open)
    assert "s3cret-pw" not in str(error)
    assert "127.0.0.1" in str(error)
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.ping()

    proxied.proxy.restore()
    await store.open()
    assert await store.save_many([write("late", 0, 1)]) == []

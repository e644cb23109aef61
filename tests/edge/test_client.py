"""The Python client against a real edge: requests, errors, and a watch that survives a
restart of the server."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

from runtime.client import Client, State
from runtime.edge import EdgeConfig, EdgeError, Token
from tests.edge.apps import make_edge
from tests.edge.conftest import start


async def test_requests(edge):
    async with Client(edge.url) as c:
        await c.tell("counter:1", "count", 2)
        assert await c.ask("a:1", "echo", {"k": "v"}) == {"subject": "a:1",
                                                          "payload": {"k": "v"}}
        assert await c.set("device:1", "cpu", 95) == 1
        assert await c.patch("device:1", {"mem": 3, "tags": ["a"]}) == 2
        assert await c.get("device:1", "tags") == ["a"]
        assert await c.get("device:1", "missing", "default") == "default"
        assert await c.delete("device:1", "mem") is True
        assert await c.state("device:1") == State("device:1", 3, {"cpu": 95, "tags": ["a"]})
        await c.set("site/eu:1", "a", 1)
        assert await edge.rt.subject("site/eu:1").get("a") == 1
        assert await c.patch_many({"device:1": {"cpu": 90}, "site/eu:1": {"a": 2}},
                                  durable=True) == {"device:1": 4, "site/eu:1": 2}
        await edge.rt.idle()
        assert await c.get("counter:1", "n") == 2


async def test_refusals_raise_edge_errors(serve):
    edge = await serve(tokens=(Token.from_secret("t", "s3cret", subjects=["device:*"]),))
    async with Client(edge.url, token="s3cret") as c:
        with pytest.raises(EdgeError) as refused:
            await c.set("user:1", "a", 1)
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
        with pytest.raises(EdgeError) as refused:
            await c.patch_many({"device:1": {"a": 1}, "user:1": {"a": 1}})
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
        assert edge.rt.active_subjects() == []  # refused whole: nothing was sent
        with pytest.raises(EdgeError) as refused:
            await c.tell("device:1", "reboot", {"delay": "soon"})
        assert refused.value.status == 422
        with pytest.raises(EdgeError) as refused:
            await c.ask("device:1", "sleep", 1, timeout=0.05)
        assert refused.value.code == "ask_timeout"
    async with Client(edge.url, token="wrong") as c:
        with pytest.raises(EdgeError) as refused:
            await c.get("device:1", "a")
        assert refused.value.status == 401
        with pytest.raises(EdgeError) as refused:
            async for _ in c.watch("device:*"):
                pass
        assert refused.value.status == 401


async def test_watch_reconnects_after_the_server_restarts(serve):
    first = await serve()
    port = first.server.port
    changes: asyncio.Queue = asyncio.Queue()

    async def follow(c: Client) -> None:
        async for change in c.watch("w:*"):
            await changes.put(change)

    async def until_seen(edge, value: int) -> None:
        """Change w:1 until the watch reports it (the watch may not be connected yet)."""
        while True:
            await edge.rt.subject("w:1").set("v", value)
            try:
                change = await asyncio.wait_for(changes.get(), 0.2)
            except TimeoutError:
                value += 1000
                continue
            assert change.subject == "w:1" and change.property == "v"
            return

    async with Client(first.url, backoff=(0.05, 0.2)) as c:
        follower = asyncio.ensure_future(follow(c))
        await asyncio.wait_for(until_seen(first, 1), 10)
        await first.stop()
        second = await start(make_edge(), EdgeConfig(port=port, access_log=False))
        try:
            await asyncio.wait_for(until_seen(second, 2), 10)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await second.stop()


async def test_a_watch_refused_for_the_server_s_watch_limit_retries_until_there_is_room(serve):
    edge = await serve(max_watches=1)
    changes: asyncio.Queue = asyncio.Queue()

    async def follow(c: Client) -> None:
        async for change in c.watch("w:*"):
            await changes.put(change)

    async with connect(edge.ws_url) as holder, Client(edge.url, backoff=(0.05, 0.2)) as c:
        await holder.send('{"op": "watch", "pattern": "other:*"}')
        await holder.recv()
        follower = asyncio.ensure_future(follow(c))
        try:
            await asyncio.sleep(0.3)  # refused, retrying
            await holder.close()  # room for one watch
            async with asyncio.timeout(10):
                value = 0
                while changes.empty():  # until the watch is back and sees a change
                    value += 1
                    await edge.rt.subject("w:1").set("v", value)
                    await asyncio.sleep(0.05)
            assert (await changes.get()).subject == "w:1"
        finally:
            follower.cancel()

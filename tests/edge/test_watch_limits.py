"""Watches are client input: a pattern is refused past its length limit before any work on it,
matches in bounded time, and the watches of a connection and of the server are bounded and
released when the connection closes."""

from __future__ import annotations

import asyncio
import json
import time

from websockets.asyncio.client import connect


async def send(ws, **message) -> None:
    await ws.send(json.dumps(message))


async def recv(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def test_a_huge_pattern_is_refused_without_freezing_other_clients(edge):
    async with connect(edge.ws_url) as bad, connect(edge.ws_url) as other:
        # fnmatch compiled this for 16 s on the event loop, every client waiting.
        # The server runs in this test's event loop: a freeze stops the test's timeouts too,
        # so the time the other client waited is measured.
        started = time.perf_counter()
        await send(bad, op="watch", pattern="[" * 32000, id="w")
        await asyncio.sleep(0.5)  # the server has it: the other client's tell comes after
        await send(other, op="tell", subject="a:1", type="count", id="t")
        assert await recv(other) == {"op": "ack", "id": "t"}
        assert time.perf_counter() - started < 5
        error = await recv(bad)
        assert (error["id"], error["status"], error["error"]) == ("w", 400, "invalid_pattern")
        assert "32000 characters long; the limit is 1024" in error["message"]
        await send(bad, op="watch", pattern="[" * 1024, id="ok")
        assert (await recv(bad))["op"] == "watching"


async def test_an_adversarial_pattern_matches_in_bounded_time(edge):
    name = "a" * 255
    async with connect(edge.ws_url) as ws, edge.http() as http:
        for i, pattern in enumerate(("*a" * 500 + "b", "*" + "a" * 254 + "b*", "a*")):
            await send(ws, op="watch", pattern=pattern, id=i)
            assert (await recv(ws))["op"] == "watching"
        answer = await http.patch(f"/subjects/{name}/properties", json={"v": 1})
        assert answer.status_code == 200
        change = await recv(ws)
        assert (change["subject"], change["new_value"]) == (name, 1)


async def test_watches_are_bounded_per_connection_and_in_total_and_released_at_close(serve):
    edge = await serve(ws_max_watches=3, max_watches=5)
    sessions = edge.server.service.sessions
    async with connect(edge.ws_url) as b:
        async with connect(edge.ws_url) as a:
            for i in range(3):
                await send(a, op="watch", pattern=f"a{i}:*")
                assert (await recv(a))["op"] == "watching"
            await send(a, op="watch", pattern="a0:*")  # a repeat takes no more room
            assert (await recv(a))["op"] == "watching"
            await send(a, op="watch", pattern="a3:*", id="over")
            error = await recv(a)
            assert (error["id"], error["status"], error["error"]) == (
                "over", 429, "too_many_watches")
            assert error["message"] == "at most 3 patterns may be watched per connection"
            for i in range(2):
                await send(b, op="watch", pattern=f"b{i}:*")
                assert (await recv(b))["op"] == "watching"
            await send(b, op="watch", pattern="b2:*")
            error = await recv(b)
            assert error["error"] == "too_many_watches"
            assert "limit of 5 watches, over all connections" in error["message"]
            await send(a, op="unwatch", pattern="a0:*")
            assert (await recv(a))["op"] == "unwatched"
            await send(b, op="watch", pattern="b2:*")
            assert (await recv(b))["op"] == "watching"
        async with asyncio.timeout(5):  # the server notices the close
            while len(sessions) > 1:
                await asyncio.sleep(0.01)
        async with connect(edge.ws_url) as c:
            for i in range(2):  # a's two watches were released with its connection
                await send(c, op="watch", pattern=f"c{i}:*")
                assert (await recv(c))["op"] == "watching"

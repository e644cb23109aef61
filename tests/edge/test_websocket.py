"""The WebSocket protocol: tell, ask with correlation ids, watch and unwatch, bad messages, slow
consumers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def send(ws, **message) -> None:
    await ws.send(json.dumps(message))


async def recv(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def test_tell_is_acknowledged_once_in_the_mailbox(edge):
    async with connect(edge.ws_url) as ws:
        await send(ws, op="tell", subject="counter:1", type="count", payload=2, id="t1")
        assert await recv(ws) == {"op": "ack", "id": "t1"}
        await send(ws, op="tell", subject="counter:1", type="count")  # no id: no ack
        await send(ws, op="tell", subject="counter:1", type="count", id=7)
        assert await recv(ws) == {"op": "ack", "id": 7}
    await edge.rt.idle()
    assert await edge.rt.subject("counter:1").get("n") == 4


async def test_asks_are_answered_by_correlation_id(edge):
    async with connect(edge.ws_url) as ws:
        await send(ws, op="ask", id="slow", subject="a:1", type="sleep", payload=0.3)
        await send(ws, op="ask", id="fast", subject="a:2", type="echo", payload=[1])
        first, second = await recv(ws), await recv(ws)
        assert first == {"op": "reply", "id": "fast",
                         "result": {"subject": "a:2", "payload": [1]}}
        assert second == {"op": "reply", "id": "slow", "result": "slept"}
        await send(ws, op="ask", id=3, subject="a:3", type="sleep", payload=1, timeout=0.05)
        error = await recv(ws)
        assert (error["id"], error["error"], error["status"]) == (3, "ask_timeout", 504)
        await send(ws, op="ask", id=4, subject="a:3", type="nobody")
        assert (await recv(ws))["error"] == "no_handler"
        await send(ws, op="ask", id=5, subject="device:1", type="reboot", payload={"delay": 1})
        assert (await recv(ws))["result"] == {"delay": 1, "reason": "unspecified"}


async def test_watch_delivers_exactly_the_changes_made(edge):
    async with connect(edge.ws_url) as ws, edge.http() as http:
        await send(ws, op="watch", pattern="device:*", id="w")
        assert await recv(ws) == {"op": "watching", "pattern": "device:*", "id": "w"}
        await http.patch("/subjects/device:1/properties", json={"cpu": 1, "mem": 2})
        await http.patch("/subjects/device:1/properties", json={"cpu": 1})  # no change
        await http.patch("/subjects/other:1/properties", json={"cpu": 9})  # not watched
        await http.post("/subjects/device:2/events/count", json=3)
        await http.delete("/subjects/device:1/properties/mem")
        await edge.rt.idle()
        got = [await recv(ws) for _ in range(4)]
        assert [(c["subject"], c["property"], c["old_value"], c["new_value"], c["deleted"],
                 c["version"]) for c in got] == [
            ("device:1", "cpu", None, 1, False, 1),
            ("device:1", "mem", None, 2, False, 1),
            ("device:2", "n", None, 3, False, 1),
            ("device:1", "mem", 2, None, True, 2),
        ]
        await send(ws, op="unwatch", pattern="device:*", id="u")
        assert await recv(ws) == {"op": "unwatched", "pattern": "device:*", "id": "u"}
        await http.patch("/subjects/device:1/properties", json={"cpu": 5})
        await send(ws, op="tell", subject="x:1", type="count", id="after")
        assert await recv(ws) == {"op": "ack", "id": "after"}  # and no change before it
        await send(ws, op="unwatch", pattern="device:*")
        assert (await recv(ws))["error"] == "not_watching"


async def test_bad_messages_get_errors_and_the_connection_stays(edge):
    cases = [
        ("{nope", None, "bad_json"),
        (json.dumps({"op": "tell", "id": "m1"}), "m1", "invalid_message"),
        (json.dumps({"op": "launch", "id": "m2"}), "m2", "invalid_message"),
        (json.dumps({"op": "tell", "subject": "a:1", "type": "count", "paylod": 1,
                     "id": "m3"}), "m3", "invalid_message"),
        (json.dumps({"op": "tell", "subject": "bad name", "type": "count", "id": "m4"}), "m4",
         "invalid_subject"),
        (json.dumps({"op": "tell", "subject": "device:1", "type": "reboot", "payload": {},
                     "id": "m5"}), "m5", "invalid_payload"),
        (json.dumps({"op": "ask", "subject": "a:1", "type": "echo", "id": "m6",
                     "timeout": -1}), "m6", "bad_request"),
        (json.dumps({"op": "watch", "pattern": "", "id": "m7"}), "m7", "invalid_pattern"),
        (json.dumps([1, 2]), None, "invalid_message"),
    ]
    async with connect(edge.ws_url) as ws:
        for text, id, code in cases:
            await ws.send(text)
            error = await recv(ws)
            assert (error["op"], error["id"], error["error"]) == ("error", id, code), text
            await send(ws, op="tell", subject="ok:1", type="count", id="fine")
            assert await recv(ws) == {"op": "ack", "id": "fine"}


async def test_messages_over_the_limit_are_refused(serve):
    edge = await serve(max_body=1000)
    async with connect(edge.ws_url) as ws:
        await send(ws, op="tell", subject="a:1", type="count", payload="x" * 1000, id=1)
        assert (await recv(ws))["error"] == "too_large"
        await ws.send(b'{"op": "tell", "subject": "a:1", "type": "count", "id": 2}')
        assert await recv(ws) == {"op": "ack", "id": 2}  # binary frames are JSON too
        await ws.send("x" * 5000)  # past twice the limit: the protocol itself refuses it
        with pytest.raises(ConnectionClosed):
            await recv(ws)
    assert ws.close_code == 1009


async def test_a_client_that_keeps_misbehaving_is_closed_with_1008(serve):
    edge = await serve(ws_max_errors=3)
    async with connect(edge.ws_url) as ws:
        for _ in range(3):
            await ws.send("{")
        for _ in range(3):
            assert (await recv(ws))["error"] == "bad_json"
        with pytest.raises(ConnectionClosed):
            await recv(ws)
    assert ws.close_code == 1008
    async with connect(edge.ws_url) as ws:  # others are served as before
        await send(ws, op="tell", subject="a:1", type="count", id=1)
        assert await recv(ws) == {"op": "ack", "id": 1}


async def test_a_slow_consumer_is_closed_with_1013_and_others_keep_their_messages(serve, caplog):
    caplog.set_level(logging.WARNING, "subjects.edge")
    edge = await serve(ws_queue_limit=10)
    rt = edge.rt
    big = os.urandom(75_000).hex()  # incompressible (permessage-deflate)
    # This client stops reading after a message or two (max_queue=1) and its socket buffers
    # little (a fixed SO_RCVBUF), so the server's send buffers fill up quickly.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(("127.0.0.1", edge.server.port))
    sock.setblocking(False)
    async with connect(edge.ws_url, max_queue=1, sock=sock) as slow, \
            connect(edge.ws_url) as fast:
        for ws in (slow, fast):
            await send(ws, op="watch", pattern="big:*", id="w")
            assert (await recv(ws))["op"] == "watching"
        fast_got = []
        for i in range(200):  # in step with the fast client, which reads each change
            await rt.subject("big:1").set("v", f"{i}{big}")
            fast_got.append(await recv(fast))
        assert [c["new_value"][:-len(big)] for c in fast_got] == [str(i) for i in range(200)]
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(slow.recv(), 10)
    # The server closed it as a slow consumer. The client sees 1013 if the close frame gets
    # through its full buffers before the server's close timeout, else 1006 (a busy machine).
    assert any("slow consumer" in r.getMessage() for r in caplog.records), caplog.text
    assert slow.close_code in (1013, 1006)
    if slow.close_code == 1013:
        assert "slow consumer" in slow.close_reason

"""Graceful shutdown: pending asks get a clear error, acknowledged events are never lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from storage import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]


async def until_serving(http: httpx.AsyncClient) -> None:
    """Wait up to ~10 s for the edge process to answer its probe."""
    for _ in range(200):
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            await asyncio.sleep(0.05)
    pytest.fail("the edge did not start")


async def test_pending_asks_get_a_shutdown_error_and_quick_ones_their_reply(serve):
    edge = await serve(shutdown_grace=0.3)
    async with edge.http() as http, connect(edge.ws_url) as ws:
        await ws.send(json.dumps({"op": "ask", "id": "w", "subject": "s:1", "type": "sleep",
                                  "payload": 1.5}))
        slow = asyncio.ensure_future(
            http.post("/subjects/s:2/events/sleep?reply=true&timeout=30", json=1.5))
        quick = asyncio.ensure_future(
            http.post("/subjects/s:3/events/sleep?reply=true", json=0.1))
        await asyncio.sleep(0.05)
        stopping = asyncio.ensure_future(edge.stop())
        r = await slow
        assert r.status_code == 503 and r.json()["error"] == "shutting_down"
        assert r.headers["retry-after"] == "1"
        assert (await quick).json() == "slept"
        error = json.loads(await ws.recv())
        assert (error["op"], error["id"], error["error"]) == ("error", "w", "shutting_down")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1001
        await stopping
    # The runtime drained its mailboxes before closing: the slow turns did complete.
    assert edge.rt.dead_letters.for_subject("s:1") == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigterm_loses_no_acknowledged_event(tmp_path):
    db = tmp_path / "edge.db"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "serve", "tests.edge.apps:edge", "--port",
         str(port), "--store", f"sqlite:///{db}", "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            await until_serving(http)

            async def sender(worker: int) -> None:
                for i in range(10_000):
                    name = f"rec:{worker}-{i}"
                    try:
                        r = await http.post(f"/subjects/{name}/events/record")
                    except httpx.TransportError:
                        return
                    if r.status_code == 202:
                        acknowledged.append(name)
                    else:
                        assert r.status_code == 503 and r.json()["error"] == "shutting_down"
                        return

            senders = [asyncio.ensure_future(sender(w)) for w in range(8)]
            while len(acknowledged) < 400:
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*senders), 30)
        returncode = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert returncode == 0, proc.stderr.read() if proc.stderr else ""
    store = SQLiteStore(str(db))
    await store.open()
    try:
        found = await store.load_many(acknowledged)
    finally:
        await store.close()
    missing = [name for name in acknowledged if name not in found]
    assert not missing and len(acknowledged) >= 400
    assert all(json.loads(found[name].properties) == {"seen": 1} for name in acknowledged)


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request and its whole response on a raw connection; an error if the connection ends
    (EOF, reset) before the response does."""
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines if line)
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 15)
    return int(status_line.split()[1]), headers, body


def post(path: str, body: bytes) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))


async def test_sigterm_answers_requests_on_kept_alive_connections(tmp_path):
    """Requests on kept-alive connections around a SIGTERM: one in flight completes, those
    that arrive later on an idle connection get 503, all with `Connection: close`; none is
    cut by a closed or reset connection. Continuous senders see answers, then a refused
    connection (the server stopped listening), never a connection lost mid-request."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "serve", "tests.edge.apps:edge", "--port",
         str(port), "--no-access-log", "--log-level", "warning", "--shutdown-grace", "5"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    lost: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as http:
            await until_serving(http)
            idle = []
            for i in range(20):  # kept alive after one request each
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                status, _, _ = await exchange(reader, writer,
                                              post(f"/subjects/idle:{i}/events/count", b"1"))
                assert status == 202
                idle.append((reader, writer))
            busy = []
            for i in range(3):  # a request in flight when the signal arrives
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                busy.append(asyncio.ensure_future(exchange(
                    reader, writer, post(f"/subjects/busy:{i}/events/sleep?reply=true", b"1"))))

            async def sender(worker: int) -> None:
                for i in range(100_000):
                    try:
                        r = await http.post(f"/subjects/loop:{worker}/events/count", json=i)
                    except httpx.ConnectError:
                        return  # refused: the server no longer listens
                    except httpx.TransportError as exc:
                        lost.append(f"sender {worker}: {exc!r}")
                        return
                    if r.status_code == 503:
                        assert r.json()["error"] == "shutting_down"
                        return
                    assert r.status_code == 202

            senders = [asyncio.ensure_future(sender(w)) for w in range(4)]
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            refused = 0
            for i, (reader, writer) in enumerate(idle):  # over 1.5 s after the signal
                await asyncio.sleep(0.075)
                try:
                    status, headers, body = await exchange(
                        reader, writer, post(f"/subjects/idle:{i}/events/count", b"1"))
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                    lost.append(f"idle connection {i}: {exc!r}")
                    continue
                assert status in (202, 503), body
                if status == 503:  # once the shutdown began (before: served as usual)
                    assert headers.get("connection") == "close", headers
                    refused += 1
                writer.close()
            for done in await asyncio.gather(*busy):
                status, headers, body = done
                assert (status, body) == (200, b'"slept"')
                assert headers.get("connection") == "close"
            await asyncio.wait_for(asyncio.gather(*senders), 30)
            assert refused >= 5  # the window after the signal was covered
        returncode = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not lost
    assert returncode == 0, proc.stderr.read() if proc.stderr else ""

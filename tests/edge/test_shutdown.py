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
            for _ in range(200):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the edge did not start")

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

"""Slow and half-open clients: a request must arrive within its deadlines (headers, then body),
or it is answered 408 and its connection closed, and what it held is freed."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAD = b"POST /subjects/s:1/events/count HTTP/1.1\r\nHost: localhost\r\n"
HALF_BODY = (HEAD + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
             + b" " * 5000)


async def answer(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), within)


@pytest.mark.parametrize("sent", [b"", HEAD, HALF_BODY], ids=["nothing", "headers", "body"])
async def test_a_late_request_gets_408_and_is_closed(serve, sent):
    edge = await serve(header_timeout=0.3, body_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.server.port)
    writer.write(sent)
    started = time.monotonic()
    data = await answer(reader, 10)
    assert 0.25 < time.monotonic() - started < 5
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head
    assert json.loads(body)["error"] == "request_timeout"
    writer.close()
    for _ in range(100):  # the request's task (waiting for the body) is gone too
        if not edge.server.server_state.tasks:
            break
        await asyncio.sleep(0.05)
    assert not edge.server.server_state.tasks


async def test_deadlines_are_totals_not_gaps_between_bytes(serve):
    edge = await serve(header_timeout=0.5, body_timeout=10)
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.server.port)
    started = time.monotonic()
    reading = asyncio.ensure_future(answer(reader, 10))
    for byte in HEAD:  # a byte every 0.1 s, for longer than the deadline
        if reading.done():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.1)
    assert (await reading).startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 3
    writer.close()


async def test_requests_in_time_and_kept_alive_connections_are_unaffected(serve):
    edge = await serve(header_timeout=0.3, body_timeout=0.3)
    async with edge.http() as http:
        for _ in range(3):  # one connection, idle between requests longer than the deadlines
            r = await http.post("/subjects/s:1/events/echo?reply=true", json=1)
            assert r.status_code == 200
            await asyncio.sleep(0.5)
        r = await http.post("/subjects/s:1/events/sleep?reply=true", json=0.6)
        assert r.json() == "slept"  # a slow answer is not a slow request


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
async def test_half_open_requests_are_cut_and_their_memory_reused(tmp_path):
    """200 half-open requests at a time (nothing, half the headers, half a body), three times,
    against `subjects serve`: each burst is answered 408 and closed by the server, and the
    memory of one burst is reused by the next instead of adding up."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "serve", "tests.edge.apps:edge", "--port",
         str(port), "--header-timeout", "1", "--body-timeout", "1", "--no-access-log",
         "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            try:
                _, probe = await asyncio.open_connection("127.0.0.1", port)
                probe.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        base = rss_mib(proc.pid)
        after = []
        for _ in range(3):
            connections = []
            for i in range(200):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write((b"", HEAD, HALF_BODY)[i % 3])
                connections.append((reader, writer))
            await asyncio.sleep(0.3)
            held = rss_mib(proc.pid)
            answers = await asyncio.gather(*(answer(r, 20) for r, _ in connections))
            assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
            for _, writer in connections:
                writer.close()
            await asyncio.sleep(0.5)  # the server notices the burst is over
            after.append(rss_mib(proc.pid))
        print(f"RSS: base {base:.1f} MiB, first burst held {held - base:+.1f}, after each "
              f"burst {', '.join(f'{a - base:+.1f}' for a in after)}")
        assert after[2] - after[0] < 1.5  # reused, not added up
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err

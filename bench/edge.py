"""Edge benchmark: the edge's routes against bare Starlette endpoints of the same server.

The server (a child process: uvicorn, httptools, uvloop, one worker, access log off) serves the
edge for a runtime whose `ping` behaviour counts into a property (one actor turn per message),
plus two bare endpoints that do no actor work: `POST /bare/{name}/events/{type}` (reads the body,
answers 202) and the WebSocket `/bare-ws` (answers each message with a fixed ack).

The load generator (this process) holds keep-alive HTTP connections, each sending its next
request when the previous answer arrives, and WebSocket connections, each keeping a window of
unacknowledged messages in flight. Phases alternate bare / edge twice so that drift on a shared
machine hits both sides alike. Measured:
- HTTP tell: `POST /subjects/bench:<i>/events/ping` (202 once in the mailbox; the turns run in
  the same server process), vs the bare endpoint. The phase's time runs until every one of its
  turns is done (one ask per subject at its end, queued behind its pings), so that no phase
  leaves its turns to the next;
- HTTP ask: the same with `?reply=true` (the answer comes after the turn), vs the bare endpoint;
- WebSocket: `tell` messages with an id, each acknowledged once in the mailbox, vs `/bare-ws`;
  its time too runs until its turns are done.
Finally the server's counts are checked against the acknowledged messages.

Run: python bench/edge.py [--seconds 5] [--quick]   (about 70 s by default)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time
from collections import Counter, deque

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HTTP_CONNECTIONS = 32
WS_CONNECTIONS = 4
WS_WINDOW = 64
SUBJECTS = 256


# -- the server ------------------------------------------------------------------------------

def serve(port: int) -> None:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    from runtime import Runtime, run
    from runtime.edge import EdgeConfig, EdgeServer, create_app

    rt = Runtime(passivate_after=None)

    @rt.on("ping", subject="bench:*")
    async def ping(ctx):
        ctx.subject.set("n", lambda n: (n or 0) + 1)
        return "pong"

    @rt.on("count", subject="bench:*")
    async def count(ctx):
        return ctx.subject.get("n", 0)

    async def bare(request: Request) -> Response:
        await request.body()
        return Response(b'{"accepted":true}', 202, media_type="application/json")

    async def bare_ws(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            await ws.send_text('{"op":"ack"}')

    app = create_app(rt, EdgeConfig(port=port, access_log=False))
    app.router.routes[:0] = [Route("/bare/{name}/events/{event_type}", bare, methods=["POST"]),
                             WebSocketRoute("/bare-ws", bare_ws)]
    gc.freeze()  # as `subjects serve` does once the application is loaded
    run(EdgeServer(app, log_level="warning").serve())


# -- the load generator ----------------------------------------------------------------------

class Result:
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.seconds = 0.0
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100)[int(p) - 1] * 1000


def request(path: str) -> bytes:
    body = b'{"v":1}'
    return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


async def http_phase(port: int, paths: list[str], seconds: float, result: Result,
                     settle: bool = False) -> None:
    async def connection(i: int, deadline: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        message = request(paths[i % len(paths)])
        try:
            while (start := time.perf_counter()) < deadline:
                writer.write(message)
                head = await reader.readuntil(b"\r\n\r\n")
                at = head.index(b"content-length:") + 15
                await reader.readexactly(int(head[at:head.index(b"\r\n", at)]))
                result.latencies.append(time.perf_counter() - start)
                result.statuses[int(head[9:12])] += 1
                result.count += 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(connection(i, began + seconds) for i in range(HTTP_CONNECTIONS)))
    if settle:
        await total_count(port)
    result.seconds += time.perf_counter() - began


async def ws_phase(port: int, path: str, edge: bool, seconds: float, result: Result) -> None:
    from websockets.asyncio.client import connect

    async def connection(i: int, deadline: float) -> None:
        async with connect(f"ws://127.0.0.1:{port}{path}", compression=None) as ws:
            sent: deque[float] = deque()
            window = asyncio.Semaphore(WS_WINDOW)
            done = asyncio.Event()

            async def receive() -> None:
                async for _ in ws:  # acks come in order: match them to send times
                    result.latencies.append(time.perf_counter() - sent.popleft())
                    result.count += 1
                    window.release()
                    if not sent and done.is_set():
                        return

            receiver = asyncio.ensure_future(receive())
            n = 0
            while time.perf_counter() < deadline:
                await window.acquire()
                n += 1
                message = (f'{{"op":"tell","subject":"bench:{i}","type":"ping","id":{n}}}'
                           if edge else '{"op":"tell"}')
                sent.append(time.perf_counter())
                await ws.send(message)
            done.set()
            if sent:
                await receiver
            receiver.cancel()

    began = time.perf_counter()
    await asyncio.gather(*(connection(i, began + seconds) for i in range(WS_CONNECTIONS)))
    if edge:
        await total_count(port)
    result.seconds += time.perf_counter() - began


async def total_count(port: int) -> int:
    """Sum of the subjects' counters, asked through the edge (each ask queues behind pings)."""
    total = 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in range(SUBJECTS):
        writer.write(request(f"/subjects/bench:{i}/events/count?reply=true"))
        head = await reader.readuntil(b"\r\n\r\n")
        at = head.index(b"content-length:") + 15
        total += int(await reader.readexactly(int(head[at:head.index(b"\r\n", at)])))
    writer.close()
    return total


async def measure(port: int, seconds: float) -> None:
    bare_paths = [f"/bare/bench:{i}/events/ping" for i in range(SUBJECTS)]
    tell_paths = [f"/subjects/bench:{i}/events/ping" for i in range(SUBJECTS)]
    ask_paths = [p + "?reply=true" for p in tell_paths]
    results = {name: Result(name) for name in (
        "http bare", "http tell", "http ask", "ws bare", "ws tell")}
    await http_phase(port, bare_paths, 1.0, Result("warm-up"))
    await http_phase(port, tell_paths, 1.0, Result("warm-up"))
    for _ in range(2):
        await http_phase(port, bare_paths, seconds, results["http bare"])
        await http_phase(port, tell_paths, seconds, results["http tell"], settle=True)
        await http_phase(port, ask_paths, seconds, results["http ask"])
        await ws_phase(port, "/bare-ws", False, seconds, results["ws bare"])
        await ws_phase(port, "/ws", True, seconds, results["ws tell"])
    pings = sum(r.statuses[202] + r.statuses[200] for r in (
        results["http tell"], results["http ask"])) + results["ws tell"].count
    counted = await total_count(port)
    # Warm-up pings count too; every acknowledged ping must have been counted.
    assert counted >= pings, (counted, pings)

    print(f"{'':10} {'req or msg/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}  statuses")
    for name, result in results.items():
        bare = results["ws bare" if name.startswith("ws") else "http bare"]
        ratio = result.rate / bare.rate if bare.rate else float("nan")
        statuses = dict(result.statuses) if result.statuses else "-"
        print(f"{name:10} {result.rate:12,.0f} {result.percentile(50):8.2f} "
              f"{result.percentile(99):8.2f} {ratio:6.2f}  {statuses}")
    print(f"server counted {counted:,} pings; acknowledged {pings:,} (plus warm-up)")
    for name, bare_name in (("http tell", "http bare"), ("http ask", "http bare"),
                            ("ws tell", "ws bare")):
        ratio = results[name].rate / results[bare_name].rate
        print(f"RATIO {name} / {bare_name}: {ratio:.2f} (target >= 0.70)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase and round")
    parser.add_argument("--quick", action="store_true", help="1 s phases")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the edge server did not start") from None
                time.sleep(0.05)
        print(f"load: {os.getloadavg()[0]:.2f} (1-min average), {os.cpu_count()} cores; "
              f"{HTTP_CONNECTIONS} HTTP connections, {WS_CONNECTIONS} WebSockets x "
              f"{WS_WINDOW} in flight")
        from runtime import run

        run(measure(port, 1.0 if args.quick else args.seconds))
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()

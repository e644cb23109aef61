"""A real edge server per test: uvicorn on an ephemeral port of 127.0.0.1, in the test's event
loop, spoken to with real HTTP (httpx) and WebSocket (websockets) clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from runtime.edge import Edge, EdgeConfig, EdgeServer, create_app
from tests.edge.apps import make_edge


class Served:
    def __init__(self, edge: Edge, server: EdgeServer, task: asyncio.Task[None]) -> None:
        self.edge = edge
        self.rt = edge.runtime
        self.server = server
        self.task = task
        self.url = f"http://127.0.0.1:{server.port}"
        self.ws_url = f"ws://127.0.0.1:{server.port}/ws"

    def http(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10, **kw)

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 30)


Serve = Callable[..., Awaitable[Served]]


async def start(edge: Edge, config: EdgeConfig) -> Served:
    server = EdgeServer(create_app(edge, config), handle_signals=False, log_level="warning")
    task = asyncio.ensure_future(server.serve())
    ready = asyncio.ensure_future(server.ready.wait())
    await asyncio.wait((task, ready), return_when=asyncio.FIRST_COMPLETED, timeout=10)
    ready.cancel()
    if not server.ready.is_set():
        raise RuntimeError(f"the edge did not start: {task}")
    return Served(edge, server, task)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """`await serve(edge=None, **config)`: start an edge; every one is stopped after the test."""
    running: list[Served] = []

    async def serve(edge: Edge | None = None, **config: Any) -> Served:
        config.setdefault("port", 0)
        config.setdefault("access_log", False)
        served = await start(edge or make_edge(), EdgeConfig(**config))
        running.append(served)
        return served

    yield serve
    for served in running:
        gate = getattr(served.rt, "gate", None)
        if gate is not None:
            gate.set()  # a failed test may have left handlers waiting
        if not served.task.done():
            await served.stop()


@pytest.fixture
async def edge(serve: Serve) -> Served:
    return await serve()


@pytest.fixture
async def http(edge: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with edge.http() as client:
        yield client

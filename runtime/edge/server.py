"""Serving the edge: uvicorn (httptools, uvloop when installed), with the edge's shutdown order.

uvicorn alone would close WebSockets and cancel slow requests before the app hears of the
shutdown, and close idle kept-alive connections under requests on their way; here, on SIGTERM or
SIGINT (or `should_exit`), the server stops accepting connections, every HTTP connection closes
after its next answer (an idle one when its keep-alive expires: `EdgeHttpProtocol.shutdown`),
the edge answers what is pending (`Service.stop`), then uvicorn finishes in-flight requests and
runs the lifespan's end: the runtime drains its mailboxes, flushes and closes the store.
A second SIGINT forces the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn
from starlette.applications import Starlette

from .connection import EdgeHttpProtocol, protocol_for
from .service import Service

log = logging.getLogger("subjects.edge")
_KEEP_ALIVE = 5  # seconds a connection may stay idle between requests (uvicorn's default)
_BURST = 64  # connections open at once for the end of a burst to be worth a trim of the heap


def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: its allocator returns memory its own way
    return trim


_malloc_trim = _libc_malloc_trim()


def listen(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets on every address `host` resolves to, made as asyncio's `create_server`
    makes them (address reuse; IPv6 sockets for IPv6 only)."""
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class EdgeServer(uvicorn.Server):
    def __init__(self, app: Starlette, *, handle_signals: bool = True,
                 log_level: str = "info") -> None:
        self.service: Service = app.state.service
        config = self.service.config
        super().__init__(uvicorn.Config(
            app, host=config.host, port=config.port, loop="auto", http=protocol_for(config),
            ws="websockets-sansio", lifespan="on", access_log=config.access_log,
            log_level=log_level, server_header=False,
            # Above our own limit, so that an oversized message gets an error reply and only a
            # grossly oversized one closes the connection (1009).
            ws_max_size=2 * config.max_body, timeout_keep_alive=_KEEP_ALIVE,
            # In-flight requests get a second past the asks' grace; idle connections are
            # closed when their keep-alive expires (EdgeHttpProtocol.shutdown).
            timeout_graceful_shutdown=int(config.shutdown_grace) + 1 + _KEEP_ALIVE))
        self.handle_signals = handle_signals
        self.ready = asyncio.Event()
        self._peak = 0  # most connections open at once since the last burst ended

    @property
    def port(self) -> int:
        """The port listened on (useful with port 0)."""
        port: int = self.servers[0].sockets[0].getsockname()[1]
        return port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Listen, start the runtime, then let uvicorn serve. A port in use or a store that
        cannot be opened is logged in one line and ends `serve()` with `started` false: uvicorn
        would log a traceback and raise SystemExit out of the event loop."""
        if sockets is None:
            try:
                sockets = listen(self.config.host, self.config.port, self.config.backlog)
            except OSError as exc:
                log.error("cannot listen on %s port %d: %s", self.config.host, self.config.port,
                          exc.strerror or exc)
                self.should_exit = True
                return
        try:
            await self.service.start()
        except Exception as exc:
            log.error("cannot start the runtime: %s", exc)
            for sock in sockets:
                sock.close()
            self.should_exit = True
            return
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn's way out when it cannot serve, after logging why
            self.should_exit = True
            await self.service.rt.close()
            return
        if self.started:
            self.ready.set()

    async def on_tick(self, counter: int) -> bool:
        self._after_bursts()
        return await super().on_tick(counter)

    def _after_bursts(self) -> None:
        """Give memory back to the system once a burst of connections is over (a peak of load,
        half-open requests cut by their deadlines). Python frees what they held, but glibc
        keeps freed memory in its heap: 1,000 half-open requests left 20 MB of RSS behind,
        8-10 MB after this (pymalloc arenas pinned by a few survivors, reused by the next
        burst)."""
        open_now = len(self.server_state.connections)
        if open_now > self._peak:
            self._peak = open_now
        elif self._peak >= _BURST and open_now <= self._peak // 4:
            self._peak = open_now
            if _malloc_trim is not None:
                gc.collect()  # what only the collector frees (exceptions and their frames)
                _malloc_trim(0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in getattr(self, "servers", ()):
            server.close()  # stop accepting first: nothing new while we drain
        for connection in list(self.server_state.connections):
            if isinstance(connection, EdgeHttpProtocol):  # WebSockets: Service.stop
                connection.shutdown()  # every answer from now on closes its connection
        await self.service.stop()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT start the graceful shutdown; the process then exits normally
        (uvicorn would re-raise the signal once done)."""
        if not self.handle_signals:
            yield
            return
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        for sig in handled:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

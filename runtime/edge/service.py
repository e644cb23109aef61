"""What every route shares: the runtime, the rules (auth, limits, schemas), the WebSocket
sessions, and the shutdown sequence.

Shutdown, in order (`stop`, then the runtime's `close`): refuse new requests with 503, give
pending asks `shutdown_grace` seconds to be answered, answer the rest with a `shutting_down`
error, close WebSockets with 1001 once their queued messages are sent; then the runtime drains
every mailbox (so every acknowledged event is handled), flushes snapshots and closes the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp

from .auth import Authenticator, Principal
from .cloudevents import RecentIds
from .config import EdgeConfig, is_loopback
from .errors import EdgeError, from_exception, shutting_down
from .schemas import Edge
from .watch import WatchHub

if TYPE_CHECKING:
    from .websocket import Session

log = logging.getLogger("subjects.edge")
T = TypeVar("T")


class Service:
    def __init__(self, edge: Edge, config: EdgeConfig) -> None:
        self.edge = edge
        self.rt = edge.runtime
        self.config = config
        self.auth = Authenticator(config)
        self.recent = RecentIds(config.dedup_size)
        self.hub = WatchHub(self.rt, config.ws_max_watches, config.max_watches)
        self.sessions: set[Session] = set()
        self.stopping = False
        self._asking: set[asyncio.Task[Any]] = set()  # tasks waiting in `ask`
        self._cut: set[asyncio.Task[Any]] = set()  # those cancelled by shutdown
        self._stopped: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one serving, from lifespan
        self._servers: dict[Any, bool] = {}  # local addresses seen, and whether they are allowed

    # -- every request ------------------------------------------------------------------------

    def enter(self, conn: HTTPConnection) -> Principal:
        """Admit a request: the server is running, the address and Host are acceptable, the
        caller is authenticated. Returns who the caller is."""
        if self.stopping:
            raise shutting_down(self.config.retry_after)
        server = conn.scope.get("server")
        allowed = self._servers.get(server)
        if allowed is None:
            allowed = self._servers[server] = self._may_serve(server)
        if not allowed:
            raise EdgeError(403, "insecure_binding",
                            "this edge listens beyond loopback without authentication")
        host = authorization = None
        for key, value in conn.scope["headers"]:  # one pass, no Headers object
            if key == b"host":
                host = value
            elif key == b"authorization":
                authorization = value.decode("latin-1")
        if not self.auth.host_allowed(host):
            raise EdgeError(400, "bad_host", "Host header not allowed", client_fault=True)
        return self.auth.principal(authorization)

    def _may_serve(self, server: Any) -> bool:
        """Defence in depth for apps served by another command than `subjects serve`: an
        unauthenticated edge answers only on loopback, unless configured insecure."""
        if self.auth.required or self.config.insecure or not server:
            return True
        if not is_loopback(str(server[0])):
            log.error("refusing requests on %s: no tokens configured and not --insecure",
                      server[0])
            return False
        return True

    async def guarded(self, call: Awaitable[T]) -> T:
        """Await a runtime call, turning its exceptions into the edge's answers."""
        try:
            return await call
        except EdgeError:
            raise
        except Exception as exc:
            raise from_exception(exc, self.config.retry_after) from exc

    async def tell(self, subject: str, event_type: str, payload: Any) -> None:
        """Put an event in the subject's mailbox, or refuse at once if it is full (503)."""
        try:
            await self.rt.tell(subject, event_type, payload, wait=False)
        except Exception as exc:
            raise from_exception(exc, self.config.retry_after) from exc

    async def ask(self, subject: str, event_type: str, payload: Any, timeout: float) -> Any:
        """The reply of the subject's handlers. An ask still pending when the shutdown grace
        ends is cut short (its task cancelled by `stop`) and answered `shutting_down`."""
        if self.stopping:
            raise shutting_down(self.config.retry_after)
        # The loop passed explicitly: finding the running one checks the process id, a system
        # call on some virtual machines, and it was a tenth of the cost of an ask.
        task = asyncio.current_task(self._loop)
        assert task is not None
        self._asking.add(task)
        try:
            return await self.rt.ask(subject, event_type, payload, timeout=timeout)
        except asyncio.CancelledError:
            if task in self._cut and task.uncancel() == 0:  # our cancel, and nobody else's
                raise shutting_down(self.config.retry_after) from None
            raise
        except Exception as exc:
            raise from_exception(exc, self.config.retry_after) from exc
        finally:
            self._asking.discard(task)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the runtime, once: `EdgeServer` does it before serving, to report a store that
        cannot be opened in one line; the lifespan does it under any other ASGI server."""
        if self._loop is None:
            await self.rt.start()
            self._loop = asyncio.get_running_loop()

    @asynccontextmanager
    async def lifespan(self, _app: ASGIApp) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()
            log.info("draining mailboxes and flushing snapshots")
            await self.rt.close()

    async def stop(self) -> None:
        """The edge's part of shutdown (idempotent; see the module's docstring)."""
        if self._stopped is None:
            self._stopped = asyncio.get_running_loop().create_task(self._stop())
        await asyncio.shield(self._stopped)

    async def _stop(self) -> None:
        self.stopping = True
        grace = self.config.shutdown_grace
        if self._asking:
            log.info("waiting up to %s s for %d pending asks", grace, len(self._asking))
            await asyncio.wait(set(self._asking), timeout=grace)
        late = set(self._asking)
        if late:
            log.warning("answering %d asks still pending with a shutdown error", len(late))
        for task in late:
            self._cut.add(task)
            task.cancel()
        sessions = list(self.sessions)
        if sessions:
            await asyncio.gather(*(session.shutdown() for session in sessions))
            closing = [asyncio.ensure_future(s.finished.wait()) for s in sessions]
            _, stuck = await asyncio.wait(closing, timeout=5.0)
            for waiter in stuck:  # clients that do not read: uvicorn's keepalive drops them
                waiter.cancel()


"""HTTP connections with deadlines: uvicorn's httptools protocol, plus what it lacks against slow
and half-open clients.

uvicorn times out only the wait between two requests of a kept-alive connection. A connection
that sends nothing, half a request line and headers, or half a body kept its memory (and, once
its headers were in, a task waiting for the body) for as long as the client held it open:
1,000 of them held 21-26 MB. Here every request has two deadlines: its headers must be in within
`header_timeout` of its first byte (of the connection's opening, for the first one), then its
body within `body_timeout`. Past either, the client gets a 408 if nothing was answered yet, and
the connection is closed. Deadlines are totals, not gaps between reads, so that trickling a byte
at a time does not keep a request alive.

At shutdown (`shutdown`), connections are closed without cutting a request on its way.
"""

from __future__ import annotations

import asyncio

import msgspec
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .config import EdgeConfig


class EdgeHttpProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 30.0
    _timer: asyncio.TimerHandle | None = None  # one per request, not one per deadline
    _due = 0.0  # the loop's time by which the part of the request being read must be in
    _in_request = False  # from a request's first byte to its last
    _reading_body = False
    _draining = False  # shutting down: every answer closes its connection

    # -- the deadlines --------------------------------------------------------------------------

    def _expect(self, within: float) -> None:
        """What is being read now (headers, body) must be in within `within` seconds."""
        self._due = self.loop.time() + within
        if self._timer is None or self._timer.when() > self._due:
            self._stop_timer()
            self._timer = self.loop.call_at(self._due, self._check)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # we stopped reading (a full buffer, a pipelined request)
            self._expect(self.body_timeout if self._reading_body else self.header_timeout)
            return
        if self.loop.time() < self._due:  # the deadline moved on (the headers came in)
            self._timer = self.loop.call_at(self._due, self._check)
            return
        cycle = self.cycle
        if not self._reading_body and cycle is not None and not cycle.response_complete:
            # A pipelined request is late while an earlier one is being answered: that answer
            # goes out whole, then the connection closes.
            cycle.keep_alive = False
            return
        if self._reading_body and cycle is not None:
            if not cycle.response_complete:
                # The application may be waiting for the body: its receive() now says
                # "disconnected", and whatever it answers goes nowhere.
                cycle.disconnected = True
                cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
                return
        self._send_408()
        self.transport.close()

    def _send_408(self) -> None:
        what, delay = (("body", self.body_timeout) if self._reading_body
                       else ("headers", self.header_timeout))
        body = msgspec.json.encode({"error": "request_timeout", "message":
                                    f"the request's {what} did not arrive within {delay:g} s"})
        head = [STATUS_LINE[408]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
                 b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))

    # -- where a request's reading starts and ends ------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect(self.header_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_request = True
        if self._timer is None:  # not the connection's first request: from its first byte
            self._expect(self.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._reading_body = True
        self._expect(self.body_timeout)
        if self._draining and self.cycle is not None:  # None: a WebSocket upgrade
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_request = self._reading_body = False
        self._stop_timer()

    def handle_websocket_upgrade(self) -> None:
        self._stop_timer()  # the WebSocket protocol takes the connection over
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    # -- shutdown -------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """uvicorn closed an idle connection at once, so a request already on its way there was
        cut (the client read a reset, not an answer). Here every answer from now on (the
        in-flight request's own, or 503 from the stopping edge) says `Connection: close` and
        closes its connection, and an idle connection stays open until its keep-alive expires,
        as it would have anyway: shutting down adds no race that keep-alive does not have."""
        if self._draining:
            return
        self._draining = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
        elif not self._in_request and self.timeout_keep_alive_task is None:
            # Opened, and nothing received yet: treated as idle after a request.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler)


def protocol_for(config: EdgeConfig) -> type[EdgeHttpProtocol]:
    """The protocol class of one server: uvicorn makes each connection from a class, so the
    server's settings are class attributes."""
    return type("EdgeHttpProtocol", (EdgeHttpProtocol,), {
        "header_timeout": config.header_timeout, "body_timeout": config.body_timeout})

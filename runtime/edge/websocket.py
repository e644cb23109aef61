"""The WebSocket endpoint `/ws`: one session per connection (see `protocol.py` for messages).

A session has a reader (the client's messages, handled in order; asks run concurrently, at most
`ws_max_asks` at a time) and a writer that sends a bounded queue of outgoing messages. Watch
changes are pushed into that queue from inside the runtime's commits, which must never wait:
when a client reads too slowly and its queue passes `ws_queue_limit`, the queue is dropped and
the connection closed with 1013 rather than letting memory grow. A client that sends
`ws_max_errors` bad messages in a row is closed with 1008; fewer bad messages only earn error
replies.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import msgspec
from starlette.responses import Response
from starlette.websockets import WebSocket

from .auth import Principal
from .errors import EdgeError, bad_request, from_exception, shutting_down
from .inputs import check_depth, event_type, malformed, subject_name
from .protocol import Ack, Ask, Inbound, Reply, Tell, Unwatched, Watch, Watching
from .service import Service

log = logging.getLogger("subjects.edge")
_decode = msgspec.json.Decoder(Inbound).decode
_encode = msgspec.json.encode

SLOW_CONSUMER = 1013  # "try again later": the client may reconnect and read faster
MISBEHAVING = 1008  # policy violation
GOING_AWAY = 1001


async def endpoint(service: Service, ws: WebSocket) -> None:
    try:
        principal = service.enter(ws)
        _check_origin(service, ws)
    except EdgeError as refused:
        await _deny(ws, refused)
        return
    await ws.accept()
    session = Session(service, ws, principal)
    service.sessions.add(session)
    try:
        await session.run()
    finally:
        service.sessions.discard(session)
        service.hub.drop(session)
        session.finished.set()


def _check_origin(service: Service, ws: WebSocket) -> None:
    """Browsers send Origin: only the configured CORS origins (or the edge's own) may open a
    WebSocket, or any web page could use the visitor's access to the edge."""
    origin = ws.headers.get("origin")
    if origin is None:
        return
    allowed = service.config.cors_origins
    if "*" in allowed or origin in allowed or urlsplit(origin).netloc == ws.headers.get("host"):
        return
    raise EdgeError(403, "forbidden_origin", f"origin {origin!r} is not allowed")


async def _deny(ws: WebSocket, refused: EdgeError) -> None:
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(Response(refused.encode(), refused.status,
                                               refused.headers(), "application/json"))
    else:
        await ws.close(MISBEHAVING, refused.message[:120])


class Session:
    def __init__(self, service: Service, ws: WebSocket, principal: Principal) -> None:
        self.service = service
        self.ws = ws
        self.principal = principal
        self.config = service.config
        self.finished = asyncio.Event()
        self._out: deque[str] = deque()
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None  # set once the session is to end
        self._errors = 0  # bad messages in a row
        self._asks: set[asyncio.Task[None]] = set()
        self._writer: asyncio.Task[None] | None = None
        self._sending = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read())
        self._writer = writer = loop.create_task(self._write())
        try:
            done, _ = await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
            if reader in done and self._close is not None:
                # The reader ended the session (misbehaving client): the error that says why
                # is queued; let the writer send it.
                await asyncio.wait((writer,), timeout=5.0)
        finally:
            for task in (reader, writer, *self._asks):
                task.cancel()
            await asyncio.gather(reader, writer, *self._asks, return_exceptions=True)
        if self._close is not None:
            code, reason = self._close
            try:  # a client that does not read may never take the close frame
                await asyncio.wait_for(self.ws.close(code, reason), 5.0)
            except Exception:
                log.debug("WebSocket close (%s) not delivered", code)

    # -- outgoing -----------------------------------------------------------------------------

    def push(self, text: str) -> None:
        """Queue a message for the client, never waiting (called from inside commits)."""
        if self._close is not None:
            return
        out = self._out
        if len(out) >= self.config.ws_queue_limit:
            out.clear()
            self.service.hub.drop(self)
            reason = f"slow consumer: more than {self.config.ws_queue_limit} messages queued"
            log.warning("closing WebSocket of %s: %s", self.principal.name, reason)
            self._end(SLOW_CONSUMER, reason)
            if self._writer is not None:
                self._writer.cancel()  # it may be stuck sending to a client that does not read
            return
        out.append(text)
        if not self._sending:
            self._wake.set()

    def send(self, message: msgspec.Struct) -> None:
        self.push(_encode(message).decode())

    def send_error(self, error: EdgeError, id: Any) -> None:
        self.push(error.encode(op="error", status=error.status, id=id).decode())

    async def shutdown(self) -> None:
        """Close with 1001 once the pending asks have queued their answers (shutdown has
        answered those still waiting) and the queue is sent."""
        if self._asks:
            await asyncio.wait(set(self._asks), timeout=1.0)
        self._end(GOING_AWAY, "server shutting down")

    def _end(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
            self._wake.set()

    async def _write(self) -> None:
        """Send what is pushed while the reader waits for the client (watch changes, replies
        of asks); the reader sends its own answers itself (`_flush`)."""
        wake = self._wake
        while True:
            await self._flush()
            if self._close is not None:
                return
            wake.clear()
            await wake.wait()

    async def _flush(self) -> None:
        """Send the queue, in order. One sender at a time; another caller finds `_sending` set
        and leaves its messages to the one sending."""
        if self._sending:
            return
        self._sending = True
        out, send = self._out, self.ws.send_text
        try:
            while out:
                await send(out.popleft())
        finally:
            self._sending = False

    # -- incoming -----------------------------------------------------------------------------

    async def _read(self) -> None:
        receive = self.ws.receive
        limit = self.config.max_body
        while self._close is None:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            size = len(data) if isinstance(data, bytes) or len(data) * 4 <= limit else len(
                data.encode())
            try:
                if size > limit:
                    raise EdgeError(413, "too_large", f"message over {limit} bytes",
                                    client_fault=True)
                await self._handle(_parse(data))
                self._errors = 0
            except _BadMessage as bad:
                self._refused(bad.error, bad.id)
            except EdgeError as error:
                self._refused(error, None)
            if self._out:
                # Answer right here: cheaper than waking the writer for every message.
                await self._flush()

    def _refused(self, error: EdgeError, id: Any) -> None:
        self.send_error(error, id)
        if error.client_fault:
            self._errors += 1
            if self._errors >= self.config.ws_max_errors:
                self._end(MISBEHAVING, f"{self._errors} bad messages in a row")

    async def _handle(self, msg: Inbound) -> None:
        id = msg.id
        try:
            if self.service.stopping:
                raise shutting_down(self.config.retry_after)
            if isinstance(msg, Tell):
                name = self._may("write", msg.subject)
                kind = event_type(msg.type)
                payload = self.service.edge.validate(kind, name, msg.payload)
                await self.service.tell(name, kind, payload)
                if id is not None:
                    self.send(Ack(id))
            elif isinstance(msg, Ask):
                self._ask(msg)
            elif isinstance(msg, Watch):
                self._watch(msg.pattern)
                self.send(Watching(msg.pattern, id))
            else:
                found = self.service.hub.unwatch(self, msg.pattern)
                if not found:
                    raise bad_request("not_watching", f"no watch of {msg.pattern!r}")
                self.send(Unwatched(msg.pattern, id))
        except EdgeError as error:
            raise _BadMessage(error, id) from None

    def _may(self, right: str, subject: str) -> str:
        name = subject_name(subject)
        self.principal.require(right, name)
        return name

    def _watch(self, pattern: str) -> None:
        if not pattern:
            raise bad_request("invalid_pattern", "a watch pattern must not be empty")
        if not self.principal.has("watch"):
            raise EdgeError(403, "forbidden", f"token {self.principal.name!r} may not watch",
                            client_fault=True)
        if not any(c in pattern for c in "*?["):
            self._may("watch", pattern)  # a plain name: say no now rather than stay silent
        self.service.hub.watch(self, pattern)

    def _ask(self, msg: Ask) -> None:
        name = self._may("write", msg.subject)
        kind = event_type(msg.type)
        config = self.config
        timeout = msg.timeout
        if timeout is None:
            timeout = config.ask_timeout
        elif not 0 < timeout <= config.max_ask_timeout:
            raise bad_request("bad_request",
                              f"timeout must be in (0, {config.max_ask_timeout}] seconds")
        payload = self.service.edge.validate(kind, name, msg.payload)
        if len(self._asks) >= config.ws_max_asks:
            raise EdgeError(429, "too_many_asks",
                            f"at most {config.ws_max_asks} asks may be pending per connection")
        task = asyncio.get_running_loop().create_task(
            self._answer(msg.id, name, kind, payload, timeout))
        self._asks.add(task)
        task.add_done_callback(self._asks.discard)

    async def _answer(self, id: str | int, name: str, kind: str, payload: Any,
                      timeout: float) -> None:
        try:
            result = await self.service.ask(name, kind, payload, timeout)
        except Exception as exc:
            self.send_error(from_exception(exc, self.config.retry_after), id)
            return
        try:
            text = _encode(Reply(id, result)).decode()
        except (TypeError, msgspec.EncodeError) as exc:
            self.send_error(EdgeError(500, "reply_not_json", f"the reply has no JSON form: "
                                      f"{type(exc).__name__}"), id)
            return
        self.push(text)


class _BadMessage(Exception):
    def __init__(self, error: EdgeError, id: Any) -> None:
        self.error = error
        self.id = id


def _parse(data: str | bytes) -> Inbound:
    try:
        check_depth(data)
    except EdgeError as error:
        raise _BadMessage(error, None) from None
    try:
        message: Inbound = _decode(data)
    except msgspec.ValidationError as exc:
        # Still answer with the id the client chose, when there is one to read.
        try:
            raw = msgspec.json.decode(data)
        except msgspec.DecodeError:
            raw = None
        id = raw.get("id") if isinstance(raw, dict) else None
        raise _BadMessage(bad_request("invalid_message", f"invalid message: {exc}"),
                          id if isinstance(id, str | int) else None) from None
    except msgspec.DecodeError as exc:
        raise _BadMessage(malformed(data, exc), None) from None
    return message

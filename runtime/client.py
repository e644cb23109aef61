"""A Python client of the edge server:

    async with Client("http://127.0.0.1:8000", token=secret) as c:
        await c.tell("device:1", "reboot", {"delay": 5})
        print(await c.ask("device:1", "status"))
        await c.set("device:1", "cpu", 95)
        print(await c.get("device:1", "health"))
        async for change in c.watch("device:*"):
            print(change.subject, change.property, change.new_value)

Requests go over HTTP (httpx, one keep-alive pool); a watch holds its own WebSocket and
reconnects with exponential backoff and jitter when the connection drops. Changes made while it
was disconnected are not replayed: read the state again (`state`) if they matter. Every refusal
raises `EdgeError` with the server's status, code and message.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .edge.errors import EdgeError
from .edge.protocol import Change, Error, Outbound, Watch, Watching

log = logging.getLogger("subjects.client")
_decode_out = msgspec.json.Decoder(Outbound).decode
_encode = msgspec.json.encode
_MISSING: Any = object()
# Refusals a reconnect cannot cure: a watch stops with them.
_FINAL = frozenset({"unauthorized", "forbidden", "forbidden_origin", "invalid_pattern",
                    "invalid_message", "bad_host", "insecure_binding"})


class State(msgspec.Struct, frozen=True):
    """A subject's properties and version, as the edge answered them."""

    name: str
    version: int
    properties: dict[str, Any]


class Client:
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 30.0,
                 backoff: tuple[float, float] = (0.1, 10.0)) -> None:
        """`backoff`: the first and the longest delay between watch reconnections, seconds."""
        self.base_url = base_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._backoff = backoff
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Client:
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers,
                                       timeout=self._timeout)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- messages -----------------------------------------------------------------------------

    async def tell(self, subject: str, event_type: str, payload: Any = None) -> None:
        """Returns once the event is in the subject's mailbox."""
        await self._request("POST", f"{_path(subject)}/events/{_segment(event_type)}",
                            json=payload)

    async def ask(self, subject: str, event_type: str, payload: Any = None, *,
                  timeout: float | None = None) -> Any:
        """The reply of the subject's handlers to the event."""
        params: dict[str, Any] = {"reply": "true"}
        if timeout is not None:
            params["timeout"] = timeout
        return await self._request("POST", f"{_path(subject)}/events/{_segment(event_type)}",
                                   json=payload, params=params,
                                   timeout=self._timeout if timeout is None else timeout + 5)

    # -- state --------------------------------------------------------------------------------

    async def state(self, subject: str) -> State:
        found = await self._request("GET", _path(subject))
        return msgspec.convert(found, State)

    async def get(self, subject: str, prop: str, default: Any = None) -> Any:
        """One property's value, or `default` when the subject has no such property."""
        try:
            found = await self._request("GET", f"{_path(subject)}/properties/{_segment(prop)}")
        except EdgeError as exc:
            if exc.status == 404 and exc.code == "not_found":
                return default
            raise
        return found["value"]

    async def set(self, subject: str, prop: str, value: Any, *,
                  durable: bool | None = None) -> int:
        """Set one property; returns the subject's new version."""
        return await self.patch(subject, {prop: value}, durable=durable)

    async def patch(self, subject: str, values: Mapping[str, Any], *,
                    durable: bool | None = None) -> int:
        """Set several properties in one turn; returns the subject's new version."""
        found = await self._request("PATCH", f"{_path(subject)}/properties", json=dict(values),
                                    params=_durable(durable))
        version: int = found["version"]
        return version

    async def patch_many(self, updates: Mapping[str, Mapping[str, Any]], *,
                         durable: bool | None = None) -> dict[str, int]:
        """Set properties of many subjects, one turn each; returns their new versions. If some
        fail, `EdgeError` carries the first failure, and `detail` what was applied and why the
        others failed."""
        found = await self._request("PATCH", "/subjects",
                                    json={name: dict(values) for name, values in updates.items()},
                                    params=_durable(durable))
        versions: dict[str, int] = found["versions"]
        return versions

    async def delete(self, subject: str, prop: str, *, durable: bool | None = None) -> bool:
        """Delete a property; returns whether it existed."""
        found = await self._request("DELETE", f"{_path(subject)}/properties/{_segment(prop)}",
                                    params=_durable(durable))
        deleted: bool = found["deleted"]
        return deleted

    # -- watching -----------------------------------------------------------------------------

    async def watch(self, pattern: str) -> AsyncIterator[Change]:
        """Property changes of the subjects whose names match `pattern`, as they happen, for as
        long as the caller iterates (reconnecting when the connection drops)."""
        url = _ws_url(self.base_url)
        first, longest = self._backoff
        failures = 0
        while True:
            reason: object = "the server closed the connection"
            try:
                async with connect(url, additional_headers=self._headers) as ws:
                    await ws.send(_encode(Watch(pattern)).decode())
                    async for raw in ws:
                        message = _decode_out(raw)
                        if isinstance(message, Change):
                            yield message
                        elif isinstance(message, Watching):
                            failures = 0
                        elif isinstance(message, Error):
                            error = EdgeError(message.status, message.error, message.message,
                                              retry_after=message.retry_after)
                            if message.error in _FINAL:
                                raise error
                            if message.error == "too_many_watches":
                                # The server holds all the watches it may: try again later.
                                reason = message.message
                                break
                            log.warning("watch %r: %s", pattern, message.message)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (400, 401, 403):
                    raise _error_of(status, bytes(exc.response.body or b"")) from None
                reason = exc
            except (OSError, ConnectionClosed) as exc:  # TimeoutError is an OSError
                reason = exc
            failures += 1
            delay = min(longest, first * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
            log.info("watch %r: connection lost (%s); reconnecting in %.2f s", pattern,
                     reason, delay)
            await asyncio.sleep(delay)

    # -- plumbing -----------------------------------------------------------------------------

    async def _request(self, method: str, path: str, *, json: Any = None,
                       params: Mapping[str, Any] | None = None,
                       timeout: float | None = None) -> Any:
        if self._http is None:
            raise RuntimeError("use the client inside `async with Client(...) as c:`")
        content = None if json is None else _encode(json)
        headers = {"content-type": "application/json"} if content is not None else None
        response = await self._http.request(method, path, content=content, params=params,
                                            headers=headers,
                                            timeout=self._timeout if timeout is None
                                            else timeout)
        if response.status_code >= 400:
            raise _error_of(response.status_code, response.content)
        return msgspec.json.decode(response.content) if response.content else None


def _error_of(status: int, body: bytes) -> EdgeError:
    try:
        found = msgspec.json.decode(body)
    except msgspec.DecodeError:
        found = None
    if not isinstance(found, dict):
        return EdgeError(status, "http_error", f"HTTP {status}")
    retry = found.get("retry_after")
    return EdgeError(status, str(found.get("error", "http_error")),
                     str(found.get("message", "")),
                     retry_after=retry if isinstance(retry, int) else None,
                     detail=found.get("detail"))


def _segment(text: str) -> str:
    return quote(text, safe=":@")  # a '/' inside a name travels as %2F


def _path(subject: str) -> str:
    return f"/subjects/{_segment(subject)}"


def _durable(durable: bool | None) -> dict[str, str] | None:
    return None if durable is None else {"durable": "true" if durable else "false"}


def _ws_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))

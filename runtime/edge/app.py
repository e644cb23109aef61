"""The HTTP routes of the edge, and `create_app`, which puts them together with the WebSocket
endpoint, CORS and the lifespan (the runtime starts with the app and closes after it).

Every route answers JSON; every refusal is `{"error": code, "message": ...}` with the status
listed in the README. Checks run cheapest and least revealing first: authentication (401), the
name (400), rights (403), then the body (413, 415, 400, 422), then the runtime (503...).
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, WebSocketRoute
from starlette.websockets import WebSocket

from .._errors import BatchFailed
from .._runtime import Runtime
from . import cloudevents, inputs, openapi, shapes, websocket
from .config import EdgeConfig
from .errors import EdgeError, bad_request, from_exception
from .schemas import Edge
from .service import Service

_encode = msgspec.json.encode
_JSON = "application/json"
_ACCEPTED = b'{"accepted":true}'
_MISSING: Any = object()
# Statuses for the OpenAPI document (401 is added where tokens are configured). Every route
# under /subjects answers 404 to a path of another number of segments (see `inputs.segments`).
_RUNTIME = (409, 500, 503)  # a stopped subject, a failed turn or corrupt snapshot, unavailable
_ERRORS_READ = (400, 403, 404, *_RUNTIME)
_ERRORS_BODY = (400, 403, 408, 413, 415, 422, *_RUNTIME)
_BOOLEAN: dict[str, Any] = {"type": "boolean"}
_DURABLE = {"durable": (_BOOLEAN, "wait until the snapshot is committed (default: true, "
                                  "unless the server runs with --no-durable)")}


_ACCEPTED_HEADERS = ((b"content-length", b"%d" % len(_ACCEPTED)),
                     (b"content-type", _JSON.encode()))


class _Accepted(Response):
    """The 202 of a delivered event: its headers are computed once, not per request."""

    def __init__(self) -> None:
        self.status_code = 202
        self.body = _ACCEPTED
        self.background = None
        self.raw_headers = list(_ACCEPTED_HEADERS)  # a copy: middleware may add to it


class _JsonResponse(Response):
    """A JSON answer, its headers built directly: Starlette's general header path costs more
    than the rest of a fast answer."""

    def __init__(self, body: bytes, status: int) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        self.raw_headers = [(b"content-length", b"%d" % len(body)), _CONTENT_TYPE_JSON]


_CONTENT_TYPE_JSON = (b"content-type", _JSON.encode())


def json(body: Any, status: int = 200) -> Response:
    return _JsonResponse(_encode(body), status)


class HttpApi:
    """The endpoints, bound to one service."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.rt = service.rt
        self.limit = service.config.max_body
        self.durable = service.config.durable
        self._openapi: bytes | None = None

    @openapi.operation(
        right="write", ok=202, errors=(*_ERRORS_BODY, 404, 504),
        also={200: "With `reply=true`: the reply of the subject's handlers"}, query={
            "reply": (_BOOLEAN, "wait for the handler's reply (an ask) and answer with it"),
            "timeout": (lambda config: {"type": "number", "exclusiveMinimum": 0,
                                        "maximum": config.max_ask_timeout},
                        "seconds to wait for the reply (checked even without `reply`)")},
        body=shapes.PAYLOAD)
    async def send_event(self, request: Request) -> Response:
        """Send an event to a subject
        202 once the event is safely in the subject's mailbox; with `?reply=true` the reply of
        the subject's handlers (200). The body is the payload (JSON; empty for none)."""
        service = self.service
        principal = service.enter(request)
        _, _, name, _, kind = inputs.segments(request.scope, 5)
        name = inputs.subject_name(name)
        kind = inputs.event_type(kind)
        principal.require("write", name)
        payload = await inputs.read_json(request, self.limit)
        payload = service.edge.validate(kind, name, payload)
        if request.scope["query_string"]:
            # `timeout` is checked even without `reply`: a request the document calls invalid
            # is refused, whatever else it asks for.
            config = service.config
            timeout = inputs.seconds(inputs.query(request, "timeout"), config.ask_timeout,
                                     config.max_ask_timeout)
            if inputs.flag(request, "reply"):
                return json(await service.ask(name, kind, payload, timeout))
        await service.tell(name, kind, payload)
        return _Accepted()

    @openapi.operation(right="read", errors=_ERRORS_READ)
    async def get_subject(self, request: Request) -> Response:
        """A subject's properties and version
        Every address exists: a subject never written has version 0 and no properties."""
        name, _ = self._subject(request, 3, "read")
        view = await self.service.guarded(self.rt.subject(name).state())
        return json({"name": name, "version": view.version, "properties": view.properties})

    @openapi.operation(right="read", errors=_ERRORS_READ)
    async def get_property(self, request: Request) -> Response:
        """One property of a subject (404 if it has none of that name)"""
        name, prop = self._subject(request, 5, "read")
        value = await self.service.guarded(self.rt.subject(name).get(prop, _MISSING))
        if value is _MISSING:
            raise inputs.not_found(f"{name!r} has no property {prop!r}")
        return json({"name": name, "property": prop, "value": value})

    def _durable(self, request: Request) -> bool:
        durable = inputs.flag(request, "durable")
        return self.durable if durable is None else durable

    @openapi.operation(right="write", errors=(*_ERRORS_BODY, 404), query=_DURABLE,
                       body=shapes.properties_body(), body_required=True)
    async def patch_properties(self, request: Request) -> Response:
        """Set several properties in one turn
        Answers the subject's new version once the turn is applied (and its snapshot committed
        when durable)."""
        name, _ = self._subject(request, 4, "write")
        values = await inputs.read_json(request, self.limit, required=True)
        if not isinstance(values, dict) or not all(values):
            raise bad_request("bad_request",
                              "the body must be a JSON object of property names to values")
        durable = self._durable(request)
        version = await self.service.guarded(
            self.rt.subject(name).patch(values, durable=durable))
        return json({"name": name, "version": version})

    @openapi.operation(right="write", errors=_ERRORS_BODY, query=_DURABLE,
                       body=shapes.batch_body(), body_required=True)
    async def patch_many(self, request: Request) -> Response:
        """Set properties of many subjects, one turn each
        Answers every subject's new version once all their turns are applied (and snapshots
        committed when durable). Each subject's turn stands alone: if some fail, the others
        are applied and the answer has the status of the first that failed (in the body's
        order), with `detail.versions` (applied) and `detail.errors` (by subject). Sending
        the same batch again is safe: a value already set changes nothing."""
        service = self.service
        principal = service.enter(request)
        updates = await inputs.read_json(request, self.limit, required=True)
        if not isinstance(updates, dict) or not updates:
            raise bad_request("bad_request", "the body must be a non-empty JSON object of "
                                             "subject names to objects of property values")
        for name, values in updates.items():
            principal.require("write", inputs.subject_name(name))
            if not isinstance(values, dict) or not all(values):
                raise bad_request("bad_request", f"the value for {name!r} must be a JSON "
                                                 "object of property names to values")
        try:
            versions = await self.rt.patch_many(updates, durable=self._durable(request))
        except BatchFailed as exc:
            retry = service.config.retry_after
            errors = {name: from_exception(e, retry).body() for name, e in exc.errors.items()}
            # The status is the first failure's in the request's order: in the order the
            # failures happened, it would change from one attempt to the next.
            first = from_exception(exc.errors[next(n for n in updates if n in exc.errors)],
                                   retry)
            first.message = (f"{len(errors)} of {len(updates)} subjects failed; the first: "
                             f"{first.message}")
            first.detail = {"versions": exc.results, "errors": errors}
            raise first from exc
        except Exception as exc:
            raise from_exception(exc, service.config.retry_after) from exc
        return json({"versions": versions})

    @openapi.operation(right="write", errors=(*_ERRORS_READ, 422), query=_DURABLE)
    async def delete_property(self, request: Request) -> Response:
        """Delete a property (`deleted` says whether it existed)"""
        name, prop = self._subject(request, 5, "write")
        durable = self._durable(request)
        deleted = await self.service.guarded(
            self.rt.subject(name).delete(prop, durable=durable))
        return json({"name": name, "property": prop, "deleted": deleted})

    @openapi.operation(right="write", ok=202, errors=_ERRORS_BODY, body_required=True,
                       content=shapes.cloudevents_content())
    async def cloudevents(self, request: Request) -> Response:
        """Deliver CloudEvents (structured, binary or batch mode)
        `subject` is the address, `type` the event type, `data` the payload. An event whose
        (source, id, subject) was delivered recently is dropped as a duplicate (still 202). A
        batch is checked whole before any event is delivered; if delivery stops (503), the
        events delivered so far are listed and the whole batch may be sent again. Binary mode
        is accepted too: the data as the body (JSON or text), attributes in ce-* headers."""
        service = self.service
        principal = service.enter(request)
        body = await inputs.read_body(request, self.limit)
        events, batch = cloudevents.parse(request.headers.get("content-type"), request.headers,
                                          body)
        payloads = []
        for event in events:
            name = inputs.subject_name(event.subject)
            kind = inputs.event_type(event.type)
            principal.require("write", name)
            payloads.append(service.edge.validate(kind, name, event.data))
        results: list[dict[str, str]] = []
        for event, payload in zip(events, payloads, strict=True):
            fresh = service.recent.claim(event.key)
            if fresh:
                try:
                    await service.tell(event.subject, event.type, payload)
                except EdgeError as error:
                    service.recent.release(event.key)
                    if batch:
                        error.detail = {"delivered": results}
                    raise
            results.append({"id": event.id, "status": "accepted" if fresh else "duplicate"})
        return json({"results": results} if batch else results[0], 202)

    @openapi.operation(right=None, errors=(503,))
    async def healthz(self, request: Request) -> Response:
        """The process is alive and its runtime is not halted"""
        return self._halted() or json({"status": "ok"})

    @openapi.operation(right=None, errors=(503,))
    async def readyz(self, request: Request) -> Response:
        """The store answers, the runtime is not halted and the server is not shutting down"""
        halted = self._halted()
        if halted is not None:
            return halted
        if self.service.stopping:
            return json({"error": "shutting_down", "message": "shutting down"}, 503)
        try:
            await self.rt.store.ping()
        except Exception as exc:
            return json({"error": "store_unavailable",
                         "message": f"{type(exc).__name__}: {exc}"}, 503)
        return json({"status": "ready"})

    def _halted(self) -> Response | None:
        # A halted runtime refuses every message until restarted: the process is alive, but
        # of no use, so an orchestrator should restart it.
        reason = self.rt.halted
        if reason is None:
            return None
        return json({"error": "halted", "message": f"the runtime is halted: {reason}"}, 503)

    @openapi.operation(right=None)
    async def openapi_json(self, request: Request) -> Response:
        """This document"""
        if self._openapi is None:
            self._openapi = _encode(openapi.document(
                request.app.routes, self.service.edge.schemas(), self.service.config))
        return Response(self._openapi, media_type=_JSON)

    def _subject(self, request: Request, count: int, right: str) -> tuple[str, str]:
        """The subject's name (checked, and the caller's right on it) and the last segment."""
        principal = self.service.enter(request)
        parts = inputs.segments(request.scope, count)
        name = inputs.subject_name(parts[2])
        principal.require(right, name)
        return name, parts[-1]


async def _edge_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EdgeError)
    return Response(exc.encode(), exc.status, exc.headers(), _JSON)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = (f"no route for {request.method} {request.url.path}" if exc.status_code in
               (404, 405) else str(exc.detail))
    headers = exc.headers
    if exc.status_code == 405:
        headers = {k: v for k, v in (headers or {}).items() if k.lower() != "allow"}
        headers["allow"] = _allowed(request)
    return Response(_encode({"error": code, "message": message}), exc.status_code,
                    headers, _JSON)


def _allowed(request: Request) -> str:
    """Every method of the path, not only those of the first route that matched it (Starlette's
    `Allow`): GET and DELETE of a property are two routes. Routes of another number of segments
    only match through a `{name:path}` and answer 404 (see `inputs.segments`)."""
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    count = raw.count(b"/")
    methods: set[str] = set()
    for route in request.app.routes:
        if (isinstance(route, Route) and route.path.count("/") == count
                and route.matches(request.scope)[0] != Match.NONE):
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def _server_error(request: Request, exc: Exception) -> Response:
    return Response(_encode({"error": "internal", "message": "internal server error"}), 500,
                    media_type=_JSON)


def create_app(target: Runtime | Edge, config: EdgeConfig | None = None) -> Starlette:
    """The edge as an ASGI app serving `target` (a runtime, or an `Edge` with payload schemas).
    The app starts the runtime on startup and closes it on shutdown."""
    edge = target if isinstance(target, Edge) else Edge(target)
    config = config or EdgeConfig()
    config.check()
    service = Service(edge, config)
    api = HttpApi(service)

    async def ws_endpoint(ws: WebSocket) -> None:
        await websocket.endpoint(service, ws)

    routes = [
        Route("/subjects/{name:path}/events/{event_type}", api.send_event, methods=["POST"],
              name="send_event"),
        Route("/subjects/{name:path}/properties/{prop}", api.get_property, methods=["GET"],
              name="get_property"),
        Route("/subjects/{name:path}/properties/{prop}", api.delete_property,
              methods=["DELETE"], name="delete_property"),
        Route("/subjects/{name:path}/properties", api.patch_properties, methods=["PATCH"],
              name="patch_properties"),
        Route("/subjects/{name:path}", api.get_subject, methods=["GET"], name="get_subject"),
        Route("/subjects", api.patch_many, methods=["PATCH"], name="patch_many"),
        Route("/events", api.cloudevents, methods=["POST"], name="cloudevents"),
        Route("/healthz", api.healthz, methods=["GET"], name="healthz"),
        Route("/readyz", api.readyz, methods=["GET"], name="readyz"),
        Route("/openapi.json", api.openapi_json, methods=["GET"], name="openapi"),
        WebSocketRoute("/ws", ws_endpoint, name="ws"),
    ]
    middleware = []
    if config.cors_origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["authorization", "content-type", "ce-specversion", "ce-id",
                           "ce-source", "ce-type", "ce-subject"],
            expose_headers=["retry-after"], max_age=600))
    app = Starlette(routes=routes, middleware=middleware, lifespan=service.lifespan,
                    exception_handlers={EdgeError: _edge_error, HTTPException: _http_error,
                                        Exception: _server_error})
    app.state.service = service
    return app

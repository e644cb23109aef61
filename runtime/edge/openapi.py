"""`GET /openapi.json`: the OpenAPI 3.1 document, generated from the app's routes (path, methods,
the endpoint's docstring and its `@operation` facts), from the declared payload schemas, each
of which also gets its own path, `/subjects/{name}/events/<event type>`, with its request body,
and from the server's configuration: a token is required only where tokens are configured, and
limits (the longest ask) are the server's own. tests/edge/test_openapi_conformance.py holds the
document to what the server answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
from starlette.routing import BaseRoute, Route

from . import shapes
from .config import EdgeConfig
from .schemas import Schema

F = TypeVar("F", bound=Callable[..., Any])
# A query parameter's schema, or a function of the configuration giving it.
QuerySchema = dict[str, Any] | Callable[[EdgeConfig], dict[str, Any]]

_STATUS = {
    200: "OK", 202: "Accepted",
    400: "Bad request: malformed JSON (or nested too deep), invalid name (or not UTF-8), "
         "parameter or body shape",
    401: "Missing or invalid bearer token",
    403: "The token has no such right on that subject (or the edge listens beyond loopback "
         "without tokens)",
    404: "No route, no handler or no such property",
    408: "The request's headers or body came too slowly",
    409: "The subject is stopped, or a write raced a newer version",
    413: "Body over the limit", 415: "Not JSON (or not a CloudEvent)",
    422: "The payload does not match the event type's schema, or a value cannot be stored "
         "(NUL in a text, an integer too large, nested too deep)",
    500: "The turn failed (see the dead-letter log), or a snapshot is corrupt",
    503: "Mailbox full, store unavailable, runtime halted or shutting down (see Retry-After)",
    504: "No reply within the timeout",
}
_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON = "application/json"
_CONVERTOR = re.compile(r"{(\w+)(:\w+)?}")
# Path parameters and the schema of their values.
_PATH_PARAMETERS = {"name": shapes.NAME, "event_type": shapes.NAME, "prop": shapes.PROPERTY}


def operation(*, right: str | None, ok: int = 200, errors: Sequence[int] = (),
              also: Mapping[int, str] | None = None,
              query: Mapping[str, tuple[QuerySchema, str]] | None = None,
              body: dict[str, Any] | None = None, body_required: bool = False,
              content: dict[str, Any] | None = None) -> Callable[[F], F]:
    """Describe an endpoint for the OpenAPI document: the right it needs, its success status
    (and other successes, `also`: status to description), the errors it may answer (401 is
    added where tokens are required), its query parameters (name: (schema, description)), its
    JSON body schema, or its body's `content` by media type."""
    def attach(func: F) -> F:
        func.__openapi__ = {  # type: ignore[attr-defined]
            "right": right, "ok": ok, "errors": errors, "also": also or {},
            "query": query or {}, "body": body, "body_required": body_required,
            "content": content}
        return func
    return attach


def document(routes: Sequence[BaseRoute], schemas: Sequence[Schema], config: EdgeConfig
             ) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        facts = getattr(route.endpoint, "__openapi__", None)
        if facts is None:
            continue
        path = _CONVERTOR.sub(r"{\1}", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = _operation(route, path, facts, config)
    types = [s.type for s in schemas]
    refs, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}")
    post = paths.get("/subjects/{name}/events/{event_type}", {}).get("post")
    if post is not None:
        _payload_schemas(paths, post, schemas, refs)
    components.update(shapes.components())
    components["Error"] = {
        "type": "object", "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                       "retry_after": {"type": "integer"}, "detail": {}}}
    security = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "subjects edge", "version": "1"},
        "paths": paths,
        "components": {"schemas": components, **(security if config.tokens else {})},
    }


def _payload_schemas(paths: dict[str, Any], post: dict[str, Any], schemas: Sequence[Schema],
                     refs: Sequence[dict[str, Any]]) -> None:
    """Each event type's declared payload schemas. One declared for every subject ("*", and
    first: the first that matches applies) gets its own path, whose body it is. One declared for
    some subjects cannot: its path would cover every name, and another subject takes any
    payload; it is listed in the generic operation's `x-payload-schemas` instead."""
    listed: list[dict[str, Any]] = []
    own: list[tuple[Schema, dict[str, Any]]] = []
    for schema, ref in zip(schemas, refs, strict=True):
        if schema.subject == "*" and not any(
                s["event_type"] == schema.event_type for s in listed):
            own.append((schema, ref))
        listed.append({"event_type": schema.event_type, "subjects": schema.subject,
                       "schema": ref})
    for schema, ref in own:
        paths[f"/subjects/{{name}}/events/{schema.event_type}"] = {"post": {
            **post, "summary": f"Send {schema.event_type!r}",
            "operationId": f"send_{schema.event_type}",
            "parameters": [p for p in post["parameters"] if p["name"] != "event_type"],
            "requestBody": {"required": True, "content": {_JSON: {"schema": ref}}}}}
    if listed:
        post["x-payload-schemas"] = listed


def _operation(route: Route, path: str, facts: dict[str, Any], config: EdgeConfig
               ) -> dict[str, Any]:
    doc = (route.endpoint.__doc__ or "").strip()
    summary, _, description = doc.partition("\n")
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _PATH_PARAMETERS[name]}
        for name in re.findall(r"{(\w+)}", path)]
    for name, (schema, text) in facts["query"].items():
        params.append({"name": name, "in": "query", "required": False,
                       "schema": schema(config) if callable(schema) else schema,
                       "description": text})
    responses: dict[str, Any] = {str(facts["ok"]): {"description": _STATUS[facts["ok"]]}}
    for status, text in facts["also"].items():
        responses[str(status)] = {"description": text,
                                  "content": {_JSON: {"schema": shapes.PAYLOAD}}}
    errors = set(facts["errors"])
    secured = facts["right"] is not None and bool(config.tokens)
    if secured:
        errors.add(401)
    for status in sorted(errors):
        responses[str(status)] = {"description": _STATUS[status],
                                  "content": {_JSON: {"schema": _ERROR}}}
    op: dict[str, Any] = {"summary": summary, "operationId": route.name,
                          "parameters": params, "responses": responses}
    if description.strip():
        op["description"] = " ".join(description.split())
    if facts["right"] is not None:
        op["x-right"] = facts["right"]
    # Without tokens nobody authenticates: an optional scheme would tell clients to send one.
    if secured:
        op["security"] = [{"bearer": []}]
    content = facts["content"]
    if facts["body"] is not None:
        content = {_JSON: {"schema": facts["body"]}}
    if content is not None:
        op["requestBody"] = {"required": facts["body_required"], "content": content}
    return op

"""`GET /openapi.json`: the OpenAPI 3.1 document, generated from the app's routes (path, methods,
the endpoint's docstring and its `@operation` facts) and from the declared payload schemas, each
of which also gets its own path, `/subjects/{name}/events/<event type>`, with its request body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec
from starlette.routing import BaseRoute, Route

from .schemas import Schema

F = TypeVar("F", bound=Callable[..., Any])

_STATUS = {
    200: "OK", 202: "Accepted",
    400: "Bad request: malformed JSON (or nested over 102 levels), invalid name (or not UTF-8) "
         "or parameter",
    401: "Missing or invalid bearer token", 403: "The token has no such right on that subject",
    404: "No route, no handler or no such property", 409: "The subject is stopped",
    413: "Body over the limit", 415: "Not JSON",
    422: "The payload does not match the event type's schema",
    500: "The turn failed (see the dead-letter log)",
    503: "Mailbox full, store unavailable or shutting down (see Retry-After)",
    504: "No reply within the timeout",
}
_ERROR = {"$ref": "#/components/schemas/Error"}
_CONVERTOR = re.compile(r"{(\w+)(:\w+)?}")


def operation(*, right: str | None, ok: int = 200, errors: Sequence[int] = (),
              query: dict[str, tuple[str, str]] | None = None,
              body: dict[str, Any] | None = None) -> Callable[[F], F]:
    """Describe an endpoint for the OpenAPI document: the right it needs, its success status,
    the errors it may answer, its query parameters (name: (JSON type, description)), its body
    schema."""
    def attach(func: F) -> F:
        func.__openapi__ = {  # type: ignore[attr-defined]
            "right": right, "ok": ok, "errors": errors, "query": query or {}, "body": body}
        return func
    return attach


def document(routes: Sequence[BaseRoute], schemas: Sequence[Schema]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        facts = getattr(route.endpoint, "__openapi__", None)
        if facts is None:
            continue
        path = _CONVERTOR.sub(r"{\1}", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = _operation(route, path, facts)
    types = [s.type for s in schemas]
    refs, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}")
    post = paths.get("/subjects/{name}/events/{event_type}", {}).get("post")
    for schema, ref in zip(schemas, refs, strict=True):
        if post is None:
            break
        op = {**post, "summary": f"Send {schema.event_type!r} (subjects {schema.subject!r})",
              "operationId": f"send_{schema.event_type}",
              "parameters": [p for p in post["parameters"] if p["name"] != "event_type"],
              "requestBody": {"required": True,
                              "content": {"application/json": {"schema": ref}}}}
        paths.setdefault(f"/subjects/{{name}}/events/{schema.event_type}", {})["post"] = op
    components["Error"] = {
        "type": "object", "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                       "retry_after": {"type": "integer"}, "detail": {}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "subjects edge", "version": "1"},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _operation(route: Route, path: str, facts: dict[str, Any]) -> dict[str, Any]:
    doc = (route.endpoint.__doc__ or "").strip()
    summary, _, description = doc.partition("\n")
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)]
    params += [{"name": name, "in": "query", "required": False, "schema": {"type": kind},
                "description": text} for name, (kind, text) in facts["query"].items()]
    responses: dict[str, Any] = {str(facts["ok"]): {"description": _STATUS[facts["ok"]]}}
    for status in facts["errors"]:
        responses[str(status)] = {"description": _STATUS[status],
                                  "content": {"application/json": {"schema": _ERROR}}}
    op: dict[str, Any] = {"summary": summary, "operationId": route.name,
                          "parameters": params, "responses": responses}
    if description.strip():
        op["description"] = " ".join(description.split())
    if facts["right"] is not None:
        op["security"] = [{"bearer": []}, {}]
        op["x-right"] = facts["right"]
    if facts["body"] is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": facts["body"]}}}
    return op

"""Reading what a client sent: path segments, bounded bodies, JSON, query flags. Each refusal is
an `EdgeError` with the status the README promises (400, 404, 413, 415).

Bodies must be declared JSON (`application/json` or `*+json`): a browser can send `text/plain`
to any address without asking (no CORS preflight), so accepting it would let any web page post
events to a local edge.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, unquote_plus

import msgspec
from starlette.requests import Request
from starlette.types import Scope

from actors import InvalidSubjectName, check_subject_name
from actors._values import MAX_DEPTH, too_deep

from .errors import EdgeError, bad_request

_decode = msgspec.json.decode
# Levels a request adds around a value: PATCH /subjects is {name: {property: value}}, a batch of
# CloudEvents [{"data": value}], a WebSocket message {"payload": value}.
MAX_JSON_DEPTH = MAX_DEPTH + 2
# A \uD800-\uDBFF escape not followed by a \uDC00-\uDFFF one, after an even number of
# backslashes: half a UTF-16 surrogate pair, which msgspec reports as "truncated".
_LONE_SURROGATE = re.compile(
    rb"(?<!\\)(?:\\\\)*(\\u[dD][89abAB][0-9a-fA-F]{2})(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def not_found(what: str) -> EdgeError:
    return EdgeError(404, "not_found", what)


def segments(scope: Scope, count: int) -> list[str]:
    """The percent-decoded segments of the raw path, so that a subject name may contain `/`
    (sent as %2F). A path with another number of segments names no route."""
    raw: bytes | None = scope.get("raw_path")
    path = raw.decode("latin-1") if raw is not None else scope["path"]
    parts = path.split("/")
    if len(parts) != count:
        raise not_found(f"no route for {scope['path']!r} (send a '/' inside a name as %2F)")
    return [_unquote(p) if "%" in p else p for p in parts]


def _unquote(segment: str) -> str:
    """A percent-decoded path segment. Bytes that are not UTF-8 are refused: replacing them
    with U+FFFD would map different raw names to one subject."""
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError as exc:
        raise bad_request("invalid_subject", f"path segment {segment!r} is not UTF-8 once "
                          f"percent-decoded ({exc.reason} at byte {exc.start}); names are "
                          "UTF-8 text") from None


def subject_name(name: str) -> str:
    try:
        return check_subject_name(name)
    except InvalidSubjectName as exc:
        raise bad_request("invalid_subject", str(exc)) from None


def event_type(name: str) -> str:
    """Event types follow the rules of subject names: they travel in URLs and logs too."""
    try:
        return check_subject_name(name)
    except InvalidSubjectName as exc:
        raise bad_request("invalid_event_type",
                          str(exc).replace("subject name", "event type")) from None


def is_json_type(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _body_headers(scope: Scope) -> tuple[str | None, str | None]:
    """Content-Length and Content-Type, in one pass over the raw headers."""
    length = kind = None
    for key, value in scope["headers"]:
        if key == b"content-length":
            length = value.decode("latin-1")
        elif key == b"content-type":
            kind = value.decode("latin-1")
    return length, kind


async def read_body(request: Request, limit: int) -> bytes:
    declared, _ = _body_headers(request.scope)
    if declared is not None:
        if not declared.isdigit():
            raise bad_request("bad_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise too_large(limit)
    # The ASGI messages themselves, counted as they come (cheaper than request.stream()).
    receive = request.receive
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            # Gone, or too slow (see connection.py): nobody reads this answer, but an answer
            # ends the request quietly where an exception would be logged as a server error.
            raise EdgeError(400, "disconnected", "the client left before sending its body",
                            client_fault=True)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(limit: int) -> EdgeError:
    return EdgeError(413, "too_large", f"the body is over the limit of {limit} bytes",
                     client_fault=True)


def decode_json(body: bytes) -> Any:
    check_depth(body)
    try:
        return _decode(body)
    except msgspec.DecodeError as exc:
        raise malformed(body, exc) from None


def check_depth(data: bytes | str) -> None:
    """Refuse JSON nested too deep to decode and store safely, before decoding it."""
    if too_deep(data, MAX_JSON_DEPTH):
        raise bad_request("bad_json", f"JSON nested more than {MAX_JSON_DEPTH} levels deep: "
                          f"values nest at most {MAX_DEPTH} levels of arrays and objects, "
                          "within at most 2 of the request's own")


def malformed(data: bytes | str, exc: msgspec.DecodeError) -> EdgeError:
    """The 400 for JSON msgspec could not decode, saying what is wrong where its message does
    not."""
    message = str(exc)
    if message == "Input data was truncated":
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        lone = _LONE_SURROGATE.search(raw)
        if lone is not None:
            message = (f"{lone.group(1).decode()} (byte {lone.start(1)}) is half of a UTF-16 "
                       "surrogate pair without its other half, which encodes no character")
    return bad_request("bad_json", f"malformed JSON: {message}")


async def read_json(request: Request, limit: int, *, required: bool = False) -> Any:
    """The JSON body, or None for an empty one (unless `required`)."""
    body = await read_body(request, limit)
    if not body:
        if required:
            raise bad_request("bad_json", "a JSON body is required")
        return None
    _, content_type = _body_headers(request.scope)
    if content_type is None or not is_json_type(content_type):
        raise EdgeError(415, "unsupported_media_type",
                        "send JSON with Content-Type: application/json", client_fault=True)
    return decode_json(body)


def query(request: Request, name: str) -> str | None:
    """One query parameter. Parsed once per request into a plain dict kept in the scope:
    Starlette's multi-dict costs more than the rest of a fast request."""
    params = request.scope.get("subjects.query")
    if params is None:
        params = _parse_query(request.scope["query_string"])
        request.scope["subjects.query"] = params
    return params.get(name)


def _parse_query(raw: bytes) -> dict[str, str]:
    """`a=1&b=x%20y` as a dict (the last of repeated names wins, as with `dict(parse_qsl())`),
    unquoting only the parts that need it."""
    params: dict[str, str] = {}
    if raw:
        for part in raw.decode("latin-1").split("&"):
            if part:
                name, _, value = part.partition("=")
                if "%" in part or "+" in part:
                    name, value = unquote_plus(name), unquote_plus(value)
                params[name] = value
    return params


def flag(request: Request, name: str) -> bool | None:
    value = query(request, name)
    if value is None:
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise bad_request("bad_request", f"query parameter {name} must be true or false")


def seconds(value: Any, default: float, maximum: float) -> float:
    """A timeout given by a client: a positive number of seconds, at most `maximum`."""
    if value is None:
        return default
    try:
        timeout = float(value)
    except (TypeError, ValueError):
        timeout = -1.0
    if not 0 < timeout <= maximum:
        raise bad_request("bad_request", f"timeout must be a number of seconds in (0, {maximum}]")
    return timeout

"""Payload schemas: an application declares the msgspec type an event's payload must have, and
the edge refuses a payload that does not fit (422) before it reaches any mailbox.

Handlers still receive plain JSON values (dicts, lists...), validated and with the type's
defaults filled in, so a handler sees the same shape whether the event came over HTTP, a
WebSocket, a CloudEvent or `rt.tell` in Python.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from actors._patterns import Matcher, compile_pattern

from .._runtime import Runtime
from .errors import EdgeError

T = TypeVar("T")


class Schema(msgspec.Struct, frozen=True):
    event_type: str
    subject: str  # a glob pattern
    type: Any
    matches: Matcher


class Edge:
    """A runtime as the edge serves it, with its payload schemas:

        edge = Edge(rt)
        edge.schema("reboot", RebootPayload, subject="device:*")

    `subjects serve module:edge` serves it (`module:rt` serves a runtime without schemas).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._schemas: dict[str, list[Schema]] = {}

    def schema(self, event_type: str, payload_type: type[T], *, subject: str = "*") -> type[T]:
        """Declare the payload type of `event_type` on subjects matching `subject`. The first
        declaration matching a subject applies. Returns the type, so it can decorate a class."""
        msgspec.json.schema(payload_type)  # refuse at once a type msgspec cannot describe
        self._schemas.setdefault(event_type, []).append(
            Schema(event_type, subject, payload_type, compile_pattern(subject)))
        return payload_type

    def schemas(self) -> list[Schema]:
        return [s for declared in self._schemas.values() for s in declared]

    def validate(self, event_type: str, subject: str, payload: Any) -> Any:
        """The payload as handlers get it, or `EdgeError` 422 when it breaks its schema."""
        declared = self._schemas.get(event_type)
        if declared is None:
            return payload
        for schema in declared:
            if schema.matches(subject):
                try:
                    value = msgspec.convert(payload, schema.type)
                except msgspec.ValidationError as exc:
                    raise EdgeError(422, "invalid_payload",
                                    f"payload of {event_type!r} does not match "
                                    f"{getattr(schema.type, '__name__', schema.type)}: {exc}",
                                    client_fault=True) from None
                return msgspec.to_builtins(value)
        return payload

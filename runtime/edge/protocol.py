"""The WebSocket protocol: JSON objects tagged by `op`. Shared by the server and the Python client.

Client to server: `tell`, `ask`, `watch`, `unwatch`. Server to client: `ack` (a tell with an id is
in the mailbox), `reply`, `watching`, `unwatched`, `change` (pushed) and `error`.
"""

from __future__ import annotations

from typing import Any

import msgspec

Id = str | int | None


class _In(msgspec.Struct, tag_field="op", forbid_unknown_fields=True):
    pass


class Tell(_In, tag="tell"):
    subject: str
    type: str
    payload: Any = None
    id: Id = None  # when set, the server acknowledges once the event is in the mailbox


class Ask(_In, tag="ask"):
    id: str | int
    subject: str
    type: str
    payload: Any = None
    timeout: float | None = None


class Watch(_In, tag="watch"):
    pattern: str
    id: Id = None


class Unwatch(_In, tag="unwatch"):
    pattern: str
    id: Id = None


Inbound = Tell | Ask | Watch | Unwatch


class _Out(msgspec.Struct, tag_field="op"):
    pass


class Ack(_Out, tag="ack"):
    id: str | int


class Reply(_Out, tag="reply"):
    id: str | int
    result: Any


class Watching(_Out, tag="watching"):
    pattern: str
    id: Id = None


class Unwatched(_Out, tag="unwatched"):
    pattern: str
    id: Id = None


class Change(_Out, tag="change"):
    """A property of a watched subject changed (or was deleted: `deleted`, `new_value` null)."""

    subject: str
    property: str
    old_value: Any
    new_value: Any
    deleted: bool
    version: int


class Error(_Out, tag="error"):
    """A refusal; `error`, `status` and `retry_after` mean what they mean over HTTP."""

    error: str
    message: str
    status: int
    id: Id = None
    retry_after: int | None = None
    detail: Any = None


Outbound = Ack | Reply | Watching | Unwatched | Change | Error

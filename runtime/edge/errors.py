"""Errors the edge answers with: one JSON shape, `{"error": code, "message": text}`, over HTTP and
WebSocket, and the mapping from the runtime's exceptions to status codes.

A handler's own exception is reported by type only: its message may carry internal details, and
the dead-letter log keeps the whole of it for the operator.
"""

from __future__ import annotations

from typing import Any

import msgspec

from actors import InvalidPayload, InvalidSubjectName, SubjectsError, ValueNotStorable
from storage import SnapshotCorrupt, SnapshotRefused, StoreUnavailable

from .._errors import (
    AskTimeout,
    MailboxFull,
    NoHandler,
    NotDurable,
    RuntimeNotRunning,
    StaleVersion,
    SubjectStopped,
)

_encode = msgspec.json.encode


class EdgeError(SubjectsError):
    """An answer other than success: HTTP status, a stable machine-readable code, a sentence."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None,
                 detail: Any = None, client_fault: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.detail = detail
        self.client_fault = client_fault  # counts against a WebSocket client's error budget

    def body(self, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message, **extra}
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        if self.detail is not None:
            body["detail"] = self.detail
        return body

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        if self.status == 401:
            headers["www-authenticate"] = 'Bearer realm="subjects"'
        return headers

    def encode(self, **extra: Any) -> bytes:
        return _encode(self.body(**extra))


def bad_request(code: str, message: str, **kw: Any) -> EdgeError:
    return EdgeError(400, code, message, client_fault=True, **kw)


def shutting_down(retry_after: int) -> EdgeError:
    return EdgeError(503, "shutting_down", "the edge server is shutting down",
                     retry_after=retry_after)


def from_exception(exc: BaseException, retry_after: int) -> EdgeError:
    """The answer for an exception raised by the runtime or a handler."""
    if isinstance(exc, EdgeError):
        return exc
    if isinstance(exc, MailboxFull):
        return EdgeError(503, "mailbox_full", str(exc), retry_after=retry_after)
    if isinstance(exc, RuntimeNotRunning):
        return shutting_down(retry_after)
    if isinstance(exc, SnapshotRefused):
        return EdgeError(500, "snapshot_refused", str(exc))
    if isinstance(exc, SnapshotCorrupt):
        return EdgeError(500, "snapshot_corrupt", str(exc))
    if isinstance(exc, StoreUnavailable):
        return EdgeError(503, "store_unavailable", str(exc), retry_after=retry_after)
    if isinstance(exc, NotDurable):
        return EdgeError(503, "not_durable", f"applied, but not confirmed durable: {exc}",
                         retry_after=retry_after)
    if isinstance(exc, SubjectStopped):
        return EdgeError(409, "subject_stopped", str(exc))
    if isinstance(exc, StaleVersion):
        return EdgeError(409, "stale_version", str(exc))
    if isinstance(exc, NoHandler):
        return EdgeError(404, "no_handler", str(exc))
    if isinstance(exc, AskTimeout):
        return EdgeError(504, "ask_timeout", str(exc))
    if isinstance(exc, InvalidSubjectName):
        return EdgeError(400, "invalid_subject", str(exc), client_fault=True)
    if isinstance(exc, InvalidPayload):  # written by the application for the sender
        return EdgeError(422, "invalid_payload", str(exc), client_fault=True)
    if isinstance(exc, ValueNotStorable):
        return EdgeError(422, "value_not_storable", str(exc), client_fault=True)
    return EdgeError(500, "handler_failed",
                     f"the turn failed with {type(exc).__name__}; see the dead-letter log")

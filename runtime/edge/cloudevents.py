"""CloudEvents over HTTP (spec 1.0): structured, binary and batch modes, and duplicate dropping.

An event's `subject` attribute is the address and its `type` the event type; `data` is the
payload. Senders retry, so the edge remembers the most recent (source, id, subject) keys it
delivered (`EdgeConfig.dedup_size`, 100,000 by default, in this process only: a restarted or
second edge process does not know them) and drops a repeat instead of delivering it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .errors import EdgeError, bad_request
from .inputs import decode_json, is_json_type

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_REQUIRED = ("id", "source", "type", "subject")


class CloudEvent(msgspec.Struct, frozen=True):
    id: str
    source: str
    type: str
    subject: str
    data: Any = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source, self.id, self.subject)


def parse(content_type: str | None, headers: Mapping[str, str], body: bytes
          ) -> tuple[list[CloudEvent], bool]:
    """The events of a request, and whether it was a batch."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media == STRUCTURED:
        return [_from_attributes(decode_json(body), None)], False
    if media == BATCH:
        events = decode_json(body)
        if not isinstance(events, list):
            raise bad_request("invalid_cloudevent", "a batch must be a JSON array of events")
        return [_from_attributes(event, i) for i, event in enumerate(events)], True
    if "ce-specversion" in headers:
        return [_binary(content_type, headers, body)], False
    raise EdgeError(415, "unsupported_media_type",
                    f"not a CloudEvent: use {STRUCTURED}, {BATCH} or ce-* headers",
                    client_fault=True)


def _binary(content_type: str | None, headers: Mapping[str, str], body: bytes) -> CloudEvent:
    attributes: dict[str, Any] = {"specversion": headers["ce-specversion"]}
    for name in _REQUIRED:
        value = headers.get("ce-" + name)
        if value is not None:
            attributes[name] = value
    if not body:
        data = None
    elif content_type is None or is_json_type(content_type):
        data = decode_json(body)
    elif content_type.lower().startswith("text/"):
        data = body.decode("utf-8", "replace")
    else:
        raise EdgeError(415, "unsupported_media_type",
                        "event data must be JSON or text: payloads are stored as JSON",
                        client_fault=True)
    attributes["data"] = data
    return _from_attributes(attributes, None)


def _from_attributes(event: Any, index: int | None) -> CloudEvent:
    where = "" if index is None else f" (event {index} of the batch)"
    if not isinstance(event, dict):
        raise bad_request("invalid_cloudevent", f"an event must be a JSON object{where}")
    if event.get("specversion") != "1.0":
        raise bad_request("invalid_cloudevent", f"specversion must be \"1.0\"{where}")
    for name in _REQUIRED:
        value = event.get(name)
        if not isinstance(value, str) or not value:
            raise bad_request("invalid_cloudevent",
                              f"attribute {name!r} must be a non-empty string{where}"
                              + (" (it is the subject's address)" if name == "subject" else ""))
    if "data_base64" in event:
        raise EdgeError(415, "unsupported_media_type",
                        f"data_base64 is not accepted: payloads are stored as JSON{where}",
                        client_fault=True)
    return CloudEvent(event["id"], event["source"], event["type"], event["subject"],
                      event.get("data"))


class RecentIds:
    """The most recent `size` event keys, oldest forgotten first. A key is claimed before its
    event is delivered and released if delivery fails, so a retry of a refused event goes
    through while a concurrent duplicate does not."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: dict[tuple[str, str, str], None] = {}

    def claim(self, key: tuple[str, str, str]) -> bool:
        """Remember `key`; False if it was remembered already (a duplicate)."""
        keys = self._keys
        if key in keys:
            return False
        keys[key] = None
        if len(keys) > self.size:
            del keys[next(iter(keys))]
        return True

    def release(self, key: tuple[str, str, str]) -> None:
        self._keys.pop(key, None)

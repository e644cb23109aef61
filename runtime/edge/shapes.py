"""JSON Schemas of what the edge accepts, derived from the checks that enforce it, so that the
OpenAPI document calls valid exactly the requests the server takes: a client (or a fuzzer)
that follows the document is never refused for what the document allows.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

from actors._names import MAX_NAME_BYTES
from actors._values import MAX_DEPTH

from .cloudevents import BATCH, STRUCTURED
from .inputs import MAX_JSON_DEPTH

_REF = "#/components/schemas/edge."  # "." is in no Python class name: no payload struct
NAME = {"$ref": _REF + "Name"}
PROPERTY = {"$ref": _REF + "Property"}
VALUE = {"$ref": _REF + "Value"}
PAYLOAD = {"$ref": _REF + "Payload"}


def _refused(char: str) -> bool:
    """The rule of `actors.check_subject_name` for one character (the same C-level test)."""
    return not char.isprintable() or char == " "


@cache
def name_pattern() -> str:
    """A regular expression of names: characters that the rule allows, listed as ranges for
    this Python's Unicode database (the server's own). A positive class, as generators of
    examples handle it far faster than the negated one. BMP characters are escaped (surrogates
    have no literal form in UTF-8 JSON); astral ones stand as themselves, which Python and
    ECMA-262 (`u` flag) regular expressions both read."""
    ranges: list[list[int]] = []
    for code in range(sys.maxunicode + 1):
        if not _refused(chr(code)):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])

    def char(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    body = "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)
    return f"^[{body}]+$"


def components() -> dict[str, Any]:
    """Names, properties, values and CloudEvents, as `components.schemas` entries."""
    text = {"type": "string", "pattern": "^[^\\x00]*$",
            "description": "Text without NUL (U+0000), which PostgreSQL's JSONB refuses"}
    return {
        "edge.Name": {
            "type": "string", "minLength": 1, "maxLength": MAX_NAME_BYTES,
            "pattern": name_pattern(),
            "description": f"A subject name or event type: at most {MAX_NAME_BYTES} bytes of "
                           "UTF-8, printable characters only (no whitespace, no control or "
                           "unassigned code points, per Python's str.isprintable). A '/' in "
                           "a path is sent as %2F."},
        "edge.Property": {**text, "minLength": 1,
                          "description": "A property name: non-empty text without NUL"},
        "edge.Text": text,
        "edge.Value": {
            "description": f"A property value: JSON whose texts (and keys) have no NUL and "
                           f"whose arrays and objects nest at most {MAX_DEPTH} levels deep",
            "x-max-depth": MAX_DEPTH,
            "anyOf": [{"type": ["null", "boolean", "number"]}, {"$ref": _REF + "Text"},
                      {"type": "array", "items": VALUE},
                      {"type": "object", "propertyNames": {"$ref": _REF + "Text"},
                       "additionalProperties": VALUE}]},
        "edge.Payload": {
            "description": f"An event payload: any JSON, nested at most {MAX_JSON_DEPTH} "
                           "levels deep (handlers that store it refuse what a property "
                           "value cannot hold, 422)",
            "x-max-depth": MAX_JSON_DEPTH},
        "edge.CloudEvent": {
            "type": "object", "required": ["specversion", "id", "source", "type", "subject"],
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string", "minLength": 1},
                "source": {"type": "string", "minLength": 1},
                "type": NAME, "subject": NAME, "data": PAYLOAD},
            "not": {"required": ["data_base64"]},
            "description": "`subject` is the address, `type` the event type, `data` the "
                           "payload; `data_base64` is refused (415): payloads are JSON"},
    }


def properties_body() -> dict[str, Any]:
    return {"type": "object", "propertyNames": PROPERTY, "additionalProperties": VALUE,
            "description": "property names to new values"}


def batch_body() -> dict[str, Any]:
    return {"type": "object", "minProperties": 1, "propertyNames": NAME,
            "additionalProperties": properties_body(),
            "description": "subject names to objects of property names to values"}


def cloudevents_content() -> dict[str, Any]:
    """The two structured content types (binary mode, ce-* headers, is described in text)."""
    event = {"$ref": _REF + "CloudEvent"}
    return {STRUCTURED: {"schema": event},
            BATCH: {"schema": {"type": "array", "items": event}}}

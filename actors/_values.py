"""Property values: normalised at `set` to exactly what a snapshot stores.

Snapshots are JSON (msgspec). Normalising at `set` time means a value that cannot be stored is
refused where the caller can see the error, and a value reads the same before and after a reload
(a tuple becomes a list, a datetime its ISO string), so a reload never fires a spurious change.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


# Values that JSON stores exactly as they are (floats are not: NaN and infinities are not JSON;
# nor are strings, see `check_text`, or integers, see MAX_INT_BITS).
PLAIN_TYPES = frozenset({bool, type(None)})
# Integers are written in decimal, and Python converts at most 4,300 digits (int_max_str_digits).
MAX_INT_BITS = 14_000  # 4,215 decimal digits
# A NUL escaped in encoded JSON: "\u0000" after an even number of backslashes (one of its own).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class ValueNotStorable(TypeError):
    """A property value has no JSON form that every store keeps, so no snapshot could hold it."""


def check_text(text: str) -> str:
    """Return `text` if every store can keep it, else raise `ValueNotStorable`. Snapshots are
    UTF-8 JSON, which has no form for a lone surrogate, and PostgreSQL's JSONB refuses the NUL
    character; one rule for every store keeps a subject's state portable between them, and
    refusing here keeps it from failing a write later, where no caller would see why."""
    if "\x00" in text:
        raise ValueNotStorable(f"text {text!r:.80} cannot be stored: it contains NUL (U+0000)")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueNotStorable(f"text {text!r:.80} cannot be stored: it contains a lone "
                                   "surrogate, which has no UTF-8 form") from None
    return text


def normalize(value: Any) -> Any:
    """Return `value` as it reads back from a snapshot, or raise `ValueNotStorable`."""
    kind = type(value)
    # Fast path for the scalars that JSON keeps as they are (the overwhelming majority).
    if kind is bool or value is None:
        return value
    if kind is int:
        if value.bit_length() <= MAX_INT_BITS:
            return value
        raise ValueNotStorable(f"an integer of {value.bit_length()} bits cannot be stored: "
                               f"snapshots hold integers of up to {MAX_INT_BITS} bits")
    if kind is str:
        return value if value.isascii() and "\x00" not in value else check_text(value)
    if kind is float and value - value == 0.0:  # finite; NaN and infinities become null below
        return value
    try:
        encoded = _encode(value)
    except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as exc:
        # ValueError: surrogates, huge integers; RecursionError: nesting too deep to encode
        raise ValueNotStorable(
            f"{kind.__name__} value {_shown(value)} cannot be stored in a snapshot: {exc}"
        ) from None
    if b"u0000" in encoded and _NUL_ESCAPE.search(encoded):
        raise ValueNotStorable(f"{kind.__name__} value {_shown(value)} cannot be stored: it "
                               "contains NUL (U+0000) in a text")
    return _decode(encoded)


def _shown(value: Any) -> str:
    """The start of a value's repr, for an error message; a value too big or too deep for
    `repr` itself is named by its type."""
    try:
        return f"{value!r:.80}"
    except (ValueError, RecursionError):
        return f"<a {type(value).__name__} too big to show>"


def copy_value(value: Any) -> Any:
    """A deep copy of a stored value: lists and dicts handed out must not alias the state,
    which only a turn's `set` may change."""
    if value.__class__ is list or value.__class__ is dict:
        return _decode(_encode(value))
    return value

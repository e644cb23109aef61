"""Property values: normalised at `set` to exactly what a snapshot stores.

Snapshots are JSON (msgspec). Normalising at `set` time means a value that cannot be stored is
refused where the caller can see the error, and a value reads the same before and after a reload
(a tuple becomes a list, a datetime its ISO string), so a reload never fires a spurious change.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import msgspec

from ._errors import ValueNotStorable

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


# Values that JSON stores exactly as they are (floats are not: NaN and infinities are not JSON;
# nor are strings, see `check_text`, or integers, see MAX_INT_BITS).
PLAIN_TYPES = frozenset({bool, type(None)})
# Integers are written in decimal, and Python converts at most 4,300 digits (int_max_str_digits).
MAX_INT_BITS = 14_000  # 4,215 decimal digits
# A NUL escaped in encoded JSON: "\u0000" after an even number of backslashes (one of its own).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# Lists and dicts nested in one value at most. JSON decoders and encoders recurse once per level,
# and Python's recursion limit (1,000 frames, fewer the deeper the stack already is) would fail a
# deeper value later, wherever it happened to be decoded, or a snapshot on reload.
MAX_DEPTH = 100
# For `too_deep`: brackets kept (objects read as arrays), quotes kept, all else dropped.
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_STEP = [0] * 256
_STEP[ord("[")], _STEP[ord("]")] = 1, -1
_PASSES = 8


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


def too_deep(text: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON text nests arrays and objects more than `limit` levels deep. Linear, without
    recursion (safe before decoding), and at C speed but for one step per bracket of values
    nested more than a few levels. Malformed text may be called too deep, never a deep one
    shallow."""
    if len(text) <= limit:  # too short to nest that deep
        return False
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    if b"\\" in text:  # escaped backslashes and quotes cannot end a string: drop them
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    data = text.translate(_BRACKETS, _NOT_BRACKETS)  # brackets and quotes, no more
    if data.count(b"[") <= limit:  # the common case: too few brackets to nest that deep
        return False
    # Two adjacent quotes change no bracket's inside-a-string parity.
    data = data.replace(b'""', b"")
    if b'"' in data:  # brackets inside strings: keep what lies between strings
        data = b"".join(data.split(b'"')[::2])
    if b"[" * (limit + 1) in data:
        return True
    # A pass removes the innermost pairs, one level; the nesting of what is left is what it
    # was, less one per pass. Shallow values (most) end here, at C speed.
    passes = min(limit, _PASSES)
    for _ in range(passes):
        data = data.replace(b"[]", b"")
        if not data:
            return False
    left = limit - passes
    if b"[" * (left + 1) in data:
        return True
    return max(accumulate(map(_STEP.__getitem__, data)), default=0) > left


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
    except RecursionError:
        raise _too_deep(value) from None
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        # ValueError: surrogates, huge integers
        raise ValueNotStorable(
            f"{kind.__name__} value {_shown(value)} cannot be stored in a snapshot: {exc}"
        ) from None
    if too_deep(encoded):
        raise _too_deep(value)
    if b"u0000" in encoded and _NUL_ESCAPE.search(encoded):
        raise ValueNotStorable(f"{kind.__name__} value {_shown(value)} cannot be stored: it "
                               "contains NUL (U+0000) in a text")
    return _decode(encoded)


def _too_deep(value: Any) -> ValueNotStorable:
    return ValueNotStorable(f"{type(value).__name__} value {_shown(value)} cannot be stored: "
                            f"it nests lists and dicts more than {MAX_DEPTH} levels deep, the "
                            "limit")


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

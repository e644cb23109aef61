"""Property values: normalised at `set` to exactly what a snapshot stores.

Snapshots are JSON (msgspec). Normalising at `set` time means a value that cannot be stored is
refused where the caller can see the error, and a value reads the same before and after a reload
(a tuple becomes a list, a datetime its ISO string), so a reload never fires a spurious change.
"""

from __future__ import annotations

from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


# Values that JSON stores exactly as they are (floats are not: NaN and infinities are not JSON).
PLAIN_TYPES = frozenset({str, int, bool, type(None)})


class ValueNotStorable(TypeError):
    """A property value has no JSON form, so no snapshot could hold it."""


def normalize(value: Any) -> Any:
    """Return `value` as it reads back from a snapshot, or raise `ValueNotStorable`."""
    kind = type(value)
    # Fast path for the scalars that JSON keeps as they are (the overwhelming majority).
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float and value - value == 0.0:  # finite; NaN and infinities become null below
        return value
    try:
        return _decode(_encode(value))
    except (TypeError, msgspec.EncodeError, OverflowError) as exc:
        raise ValueNotStorable(
            f"{kind.__name__} value {value!r:.80} cannot be stored in a snapshot: {exc}"
        ) from None


def copy_value(value: Any) -> Any:
    """A deep copy of a stored value: lists and dicts handed out must not alias the state,
    which only a turn's `set` may change."""
    if value.__class__ is list or value.__class__ is dict:
        return _decode(_encode(value))
    return value

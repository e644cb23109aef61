"""The state of one subject as its own behaviours see it inside a turn.

A `SubjectState` lives exactly as long as one turn. Every change is applied at once (later
handlers of the same turn see it) and journalled, so that the runtime can either commit the turn
or roll every change back. A change of a property's value queues a property event in the turn's
cascade instead of calling handlers recursively: handlers run breadth-first, in the order the
changes happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._errors import TurnClosed
from ._events import PROPERTY_CHANGED, PROPERTY_DELETED
from ._values import PLAIN_TYPES, check_text, copy_value, normalize

_MISSING: Any = object()

# One queued event of a turn's cascade:
# (event_type, property_name, old_value, new_value, extra, payload, depth)
CascadeEvent = tuple[str, str | None, Any, Any, Any, Any, int]


def check_property_name(prop: object) -> str:
    if type(prop) is not str or not prop:
        raise TypeError(f"property name must be a non-empty str, not {prop!r}")
    return check_text(prop)


class SubjectState:
    """Synchronous, transactional access to one subject's properties during its turn."""

    __slots__ = ("_changed", "_depth", "_ext", "_ext_undo", "_open", "_props", "_undo", "cascade",
                 "name")

    def __init__(self, name: str, props: dict[str, Any], ext: dict[str, Any] | None) -> None:
        self.name = name
        self._props = props
        self._ext = ext
        self._undo: dict[str, Any] | None = None
        self._ext_undo: dict[str, Any] | None = None
        self._changed = False
        self._open = True
        self._depth = 0
        self.cascade: list[CascadeEvent] = []

    def __repr__(self) -> str:
        return f"<SubjectState {self.name!r} {self._props!r}>"

    # -- reading -------------------------------------------------------------------------------

    def get(self, prop: str, default: Any = None) -> Any:
        """The value of a property (a copy, for lists and dicts: change it with `set`)."""
        return copy_value(self._props.get(prop, default))

    def __contains__(self, prop: str) -> bool:
        return prop in self._props

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._props))

    def properties(self) -> dict[str, Any]:
        """A copy of every property, for reading; changes go through `set`."""
        return copy_value(self._props)  # type: ignore[no-any-return]

    def get_ext(self, prop: str, default: Any = None) -> Any:
        return copy_value(default if self._ext is None else self._ext.get(prop, default))

    # -- writing -------------------------------------------------------------------------------

    def set(self, prop: str, value: Any, extra: Any = None) -> Any:
        """Set a property to `value`, or to `value(current)` when it is callable; return the new
        value. A property-changed event is queued only when the stored value really changes."""
        if not self._open:
            raise TurnClosed(f"the turn of {self.name!r} has ended; send it a message instead")
        if value.__class__ not in PLAIN_TYPES:  # plain values are stored as they are
            if callable(value):
                value = value(self._props.get(prop))
            value = normalize(value)
        return self.put(prop, value, extra)

    def put(self, prop: str, value: Any, extra: Any = None) -> Any:
        """`set` for a value already normalised (`normalize`): a message's value, checked by
        its sender, is not checked twice."""
        if not self._open:
            raise TurnClosed(f"the turn of {self.name!r} has ended; send it a message instead")
        props = self._props
        old = props.get(prop, _MISSING)
        if old is _MISSING:
            check_property_name(prop)
        elif old.__class__ is value.__class__ and old == value:
            return value
        undo = self._undo
        if undo is None:
            self._undo = undo = {}
        if prop not in undo:
            undo[prop] = old
        props[prop] = value
        self._changed = True
        self.cascade.append(
            (PROPERTY_CHANGED, prop, None if old is _MISSING else old, value, extra, None,
             self._depth)
        )
        return value

    def delete(self, prop: str, extra: Any = None) -> bool:
        """Delete a property; return whether it existed (only then an event is queued)."""
        if not self._open:
            raise TurnClosed(f"the turn of {self.name!r} has ended; send it a message instead")
        props = self._props
        if prop not in props:
            return False
        old = props.pop(prop)
        undo = self._undo
        if undo is None:
            self._undo = undo = {}
        if prop not in undo:
            undo[prop] = old
        self._changed = True
        self.cascade.append((PROPERTY_DELETED, prop, old, None, extra, None, self._depth))
        return True

    def set_ext(self, prop: str, value: Any) -> Any:
        """Set an extended property: stored with the subject, but never emits an event."""
        if not self._open:
            raise TurnClosed(f"the turn of {self.name!r} has ended; send it a message instead")
        check_property_name(prop)
        ext = self._ext
        if ext is None:
            self._ext = ext = {}
        old = ext.get(prop, _MISSING)
        if callable(value):
            value = value(None if old is _MISSING else old)
        value = normalize(value)
        if old is not _MISSING and type(old) is type(value) and old == value:
            return value
        self._journal_ext(prop, old)
        ext[prop] = value
        return value

    def delete_ext(self, prop: str) -> bool:
        if not self._open:
            raise TurnClosed(f"the turn of {self.name!r} has ended; send it a message instead")
        ext = self._ext
        if ext is None or prop not in ext:
            return False
        self._journal_ext(prop, ext.pop(prop))
        return True

    def _journal_ext(self, prop: str, old: Any) -> None:
        undo = self._ext_undo
        if undo is None:
            self._ext_undo = undo = {}
        if prop not in undo:
            undo[prop] = old
        self._changed = True

    # -- the runtime's side of the transaction ---------------------------------------------------

    def close(self) -> None:
        self._open = False

    def committed(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Copies of the properties and extended properties as they were before this turn:
        what a snapshot taken while the turn is in progress must hold."""
        props = dict(self._props)
        _restore(props, self._undo)
        ext = None
        if self._ext is not None:
            ext = dict(self._ext)
            _restore(ext, self._ext_undo)
        return props, ext

    def rollback(self) -> None:
        """Undo every change of this turn, leaving the dictionaries as they were before it."""
        _restore(self._props, self._undo)
        if self._ext is not None:
            _restore(self._ext, self._ext_undo)
        self._undo = self._ext_undo = None
        self._changed = False
        self.cascade.clear()


def _restore(target: dict[str, Any], undo: dict[str, Any] | None) -> None:
    if not undo:
        return
    for prop, old in undo.items():
        if old is _MISSING:
            target.pop(prop, None)
        else:
            target[prop] = old


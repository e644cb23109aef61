"""References: cheap addresses of subjects. Every method is a message to the subject's actor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from actors import normalize
from actors._state import check_property_name
from actors._values import PLAIN_TYPES

from ._actor import DELETE, DELETE_EXT, GET, GET_EXT, PATCH, READ, SET, SET_EXT, Message

if TYPE_CHECKING:
    from ._runtime import Runtime


def checked_patch(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a patch as they will be stored: what cannot be is refused here, at the
    caller, before anything is sent."""
    if values.__class__ is not dict and not isinstance(values, Mapping):
        raise TypeError(f"patch takes a mapping of property names to values, not {values!r}")
    return {prop: checked_value(prop, value) for prop, value in values.items()}


def checked_value(prop: str, value: Any) -> Any:
    """A property's name and value checked, and the value as it will be stored (a callable is
    applied inside the turn, and its result checked there)."""
    check_property_name(prop)
    if value.__class__ in PLAIN_TYPES or callable(value):
        return value
    return normalize(value)


class SubjectView(msgspec.Struct, frozen=True):
    """A subject's whole state at one moment (a copy: changing it changes nothing)."""

    name: str
    version: int
    properties: dict[str, Any]
    ext: dict[str, Any]


class SubjectRef(msgspec.Struct, frozen=True):
    """The address of one subject. Creating it activates nothing.

    Outside a handler every method sends a message and waits for its turn to be applied, cascade
    included. Inside a handler, `set`, `delete` and `tell` on a reference are sent when the
    handler's turn commits (and return None at once), while `get` and `ask` wait for the answer.

    Equal when they address the same subject of the same runtime. (Tracked by the garbage
    collector: a handler that closes over a reference makes a cycle through its runtime.)
    """

    _rt: Runtime
    name: str

    def __repr__(self) -> str:
        return f"<SubjectRef {self.name!r}>"

    async def set(self, prop: str, value: Any, *, extra: Any = None,
                  durable: bool | None = None) -> Any:
        """Set a property to a value, or to `value(current)` if callable (atomic: applied inside
        the turn). Returns the value stored."""
        value = checked_value(prop, value)  # refuse what cannot be stored here, at the caller
        return await self._rt._call(self.name, Message(SET, prop, value, extra), None, durable,
                                    write=True)

    async def patch(self, values: Mapping[str, Any], *, extra: Any = None,
                    durable: bool | None = None) -> int:
        """Set several properties in one turn; returns the subject's new version."""
        version: int = await self._rt._call(
            self.name, Message(PATCH, "", checked_patch(values), extra), None, durable,
            write=True)
        return version

    async def delete(self, prop: str, *, extra: Any = None, durable: bool | None = None) -> bool:
        """Delete a property; returns whether it existed."""
        deleted: bool = await self._rt._call(self.name, Message(DELETE, prop, None, extra), None,
                                             durable, write=True)
        return deleted

    async def get(self, prop: str, default: Any = None) -> Any:
        return await self._rt._read(self.name, GET, prop, default)

    async def set_ext(self, prop: str, value: Any, *, durable: bool | None = None) -> Any:
        """Set an extended property: stored with the subject, never an event."""
        value = checked_value(prop, value)  # refuse what cannot be stored here, at the caller
        return await self._rt._call(self.name, Message(SET_EXT, prop, value), None, durable,
                                    write=True)

    async def get_ext(self, prop: str, default: Any = None) -> Any:
        return await self._rt._read(self.name, GET_EXT, prop, default)

    async def delete_ext(self, prop: str, *, durable: bool | None = None) -> bool:
        deleted: bool = await self._rt._call(self.name, Message(DELETE_EXT, prop), None,
                                             durable, write=True)
        return deleted

    async def state(self) -> SubjectView:
        """All properties, extended properties and the version, as of this message's turn."""
        view: SubjectView = await self._rt._read(self.name, READ, "", None)
        return view

    async def store(self) -> int:
        """Write this subject's snapshot now and wait until it is committed; returns its
        version."""
        return await self._rt._store(self.name)

    async def tell(self, event_type: str, payload: Any = None, *, wait: bool = True) -> None:
        await self._rt.tell(self, event_type, payload, wait=wait)

    async def ask(self, event_type: str, payload: Any = None, *,
                  timeout: float | None = None) -> Any:
        return await self._rt.ask(self, event_type, payload, timeout=timeout)

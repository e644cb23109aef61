"""What a handler receives: the event, its own subject's state, and a way to reach others."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from ._state import SubjectState


class Turn(Protocol):
    """The runtime's side of a turn, as the programming model needs it."""

    def emit(self, event_type: str, subject: object, payload: Any = None) -> None: ...

    async def ask(
        self, subject: object, event_type: str, payload: Any = None, timeout: float | None = None
    ) -> Any: ...


class Context(msgspec.Struct, eq=False):
    """One event as handlers see it. Shared by every handler of that event within the turn.

    A struct, not a class with `__init__`: one is made for each event that has handlers, and
    a struct is built in C, with no Python call (measured: half the cost).
    Made by the runtime: `Context(turn, subject, event_type, payload, property_name,
    old_value, new_value, extra)`; `handler` names the handler being called."""

    _turn: Turn
    subject: SubjectState
    event_type: str
    payload: Any
    property_name: str | None
    old_value: Any
    new_value: Any
    extra: Any
    handler: str = ""

    def __repr__(self) -> str:
        return (f"<Context {self.event_type} subject={self.subject.name!r} "
                f"property={self.property_name!r}>")

    async def emit(self, event_type: str, subject: object, payload: Any = None) -> None:
        """Send an event to a subject (a name, a reference or `ctx.subject`). It is delivered
        through the target's mailbox once this turn commits, and dropped if the turn fails."""
        self._turn.emit(event_type, subject, payload)

    async def ask(
        self, subject: object, event_type: str, payload: Any = None, timeout: float | None = None
    ) -> Any:
        """Ask another subject and wait for its reply. A cycle of asks fails fast."""
        return await self._turn.ask(subject, event_type, payload, timeout)

"""What a handler receives: the event, its own subject's state, and a way to reach others."""

from __future__ import annotations

from typing import Any, Protocol

from ._state import SubjectState


class Turn(Protocol):
    """The runtime's side of a turn, as the programming model needs it."""

    def emit(self, event_type: str, subject: object, payload: Any = None) -> None: ...

    async def ask(
        self, subject: object, event_type: str, payload: Any = None, timeout: float | None = None
    ) -> Any: ...


class Context:
    """One event as handlers see it. Shared by every handler of that event within the turn."""

    __slots__ = ("_turn", "event_type", "extra", "handler", "new_value", "old_value", "payload",
                 "property_name", "subject")

    def __init__(
        self,
        turn: Turn,
        subject: SubjectState,
        event_type: str,
        payload: Any,
        property_name: str | None,
        old_value: Any,
        new_value: Any,
        extra: Any,
    ) -> None:
        self._turn = turn
        self.subject = subject
        self.event_type = event_type
        self.payload = payload
        self.property_name = property_name
        self.old_value = old_value
        self.new_value = new_value
        self.extra = extra
        self.handler: str = ""

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

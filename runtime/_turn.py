"""The runtime's side of one turn: messages the handlers send, delivered only on commit."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from actors import SubjectState, check_subject_name

from ._actor import EVENT, Message

if TYPE_CHECKING:
    from ._runtime import Runtime

_CURRENT: ContextVar[Turn | None] = ContextVar("subjects_current_turn", default=None)


def name_of(subject: object) -> str:
    """A subject name from a name, a reference or a `ctx.subject`."""
    if type(subject) is str:
        return check_subject_name(subject)
    name = getattr(subject, "name", None)
    if type(name) is str:
        return name
    raise TypeError(f"expected a subject name or reference, not {subject!r}")


def check_event_type(event_type: object) -> str:
    if type(event_type) is not str or not event_type:
        raise TypeError(f"event type must be a non-empty str, not {event_type!r}")
    return event_type


class Turn(SubjectState):
    """One turn of one actor: the state its handlers see (`ctx.subject`), the messages they send
    (the outbox, delivered on commit) and the ask chain the turn runs in. One object per turn."""

    __slots__ = ("chain", "outbox", "runtime")

    def __init__(self, runtime: Runtime, name: str, props: dict[str, Any],
                 ext: dict[str, Any] | None, chain: tuple[str, ...]) -> None:
        SubjectState.__init__(self, name, props, ext)
        self.runtime = runtime
        self.chain = chain  # the subjects waiting, through asks, on this turn's message
        self.outbox: list[tuple[str, Message]] | None = None

    def send(self, target: str, message: Message) -> None:
        outbox = self.outbox
        if outbox is None:
            self.outbox = outbox = []
        outbox.append((target, message))

    def emit(self, event_type: str, subject: object, payload: Any = None) -> None:
        self.send(name_of(subject), Message(EVENT, check_event_type(event_type), payload))

    async def ask(self, subject: object, event_type: str, payload: Any = None,
                  timeout: float | None = None) -> Any:
        return await self.runtime.ask(subject, event_type, payload, timeout=timeout)

    def asking_chain(self) -> tuple[str, ...]:
        """The chain an ask sent from this turn carries: everyone waiting, then this subject."""
        return (*self.chain, self.name)

"""Messages a test sends to subjects from outside, as values: hypothesis can generate, shrink and
print them, and a model can replay them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime import Runtime

CRASH = "subjects.testing.crash"  # the event type of an injected crash


class InjectedCrash(RuntimeError):
    """Raised by the turn of a `Crash` message: a failure the test asked for."""


class Message:
    """One message to one subject."""

    subject: str

    async def send(self, rt: Runtime) -> Any:
        """Deliver it; returns once the runtime took it (for property messages: once its turn
        and cascade are applied), with what the runtime returns."""
        raise NotImplementedError


@dataclass(frozen=True)
class Set(Message):
    """`rt.subject(subject).set(prop, value)`."""

    subject: str
    prop: str
    value: Any

    async def send(self, rt: Runtime) -> Any:
        return await rt.subject(self.subject).set(self.prop, self.value)


@dataclass(frozen=True)
class Delete(Message):
    """`rt.subject(subject).delete(prop)`."""

    subject: str
    prop: str

    async def send(self, rt: Runtime) -> bool:
        return await rt.subject(self.subject).delete(self.prop)


@dataclass(frozen=True)
class Patch(Message):
    """`rt.subject(subject).patch(values)`: several properties in one turn."""

    subject: str
    values: Mapping[str, Any]

    async def send(self, rt: Runtime) -> int:
        return await rt.subject(self.subject).patch(self.values)


@dataclass(frozen=True)
class Tell(Message):
    """`rt.tell(subject, event_type, payload)`: an event, fire and forget."""

    subject: str
    event_type: str
    payload: Any = None

    async def send(self, rt: Runtime) -> None:
        await rt.tell(self.subject, self.event_type, self.payload)


@dataclass(frozen=True)
class Crash(Message):
    """A turn of this subject that fails (`InjectedCrash`): nothing of it happens, and the
    supervisor restarts the actor from its last snapshot. Works on runtimes of this kit, which
    answer the crash event; to the model it is no change at all."""

    subject: str

    async def send(self, rt: Runtime) -> None:
        await rt.tell(self.subject, CRASH)

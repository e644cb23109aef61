"""Refusals: errors that say the sender's input is wrong, not that the actor is failing.

A turn that raises one of these rolls back like any failed turn and its caller gets the error,
but the actor's supervisor does not count it: a client that sends nonsense must not be able to
stop a subject (nor, through escalation, anything else) by sending it often enough.
"""

from __future__ import annotations

from ._errors import SubjectsError, ValueNotStorable
from ._names import InvalidSubjectName


class InvalidPayload(SubjectsError, ValueError):
    """Raised by a behaviour to refuse a message whose payload it cannot accept. The edge answers
    422 with this error's message, so write it for the sender."""


# Raised inside a turn, each of these is the caller's error (the runtime adds its NoHandler).
REFUSALS: tuple[type[Exception], ...] = (InvalidPayload, InvalidSubjectName, ValueNotStorable)

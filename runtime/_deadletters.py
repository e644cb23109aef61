"""Dead letters: messages that could not be handled, kept for inspection and re-delivery.

Nothing is dropped silently: a failed turn, a message to a stopped subject and an emit that could
not be delivered all land here with their error. The log is bounded; when it overflows, the
oldest letter is dropped and counted and a warning is logged.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("subjects.deadletters")


@dataclass(frozen=True)
class DeadLetter:
    """One message that was not handled.

    `kind` is "event", "ask", "set", "delete", "set_ext", "delete_ext" or "patch"; `name` is the
    event type or property name; `payload` the event payload or the value.
    """

    id: int
    subject: str
    kind: str
    name: str
    payload: Any
    error: BaseException
    time: float

    @property
    def reason(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


class DeadLetters:
    """The runtime's dead-letter log (`rt.dead_letters`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        self._letters: OrderedDict[int, tuple[DeadLetter, Any]] = OrderedDict()
        self._ids = itertools.count(1)

    def add(self, subject: str, kind: str, name: str, payload: Any, error: BaseException,
            time: float, message: Any) -> DeadLetter:
        letter = DeadLetter(next(self._ids), subject, kind, name, payload, error, time)
        self._letters[letter.id] = (letter, message)
        log.warning("dead letter #%d to %s (%s %s): %s", letter.id, subject, kind, name,
                    letter.reason)
        if len(self._letters) > self.limit:
            self._letters.popitem(last=False)
            self.dropped += 1
            log.error("dead-letter log full (%d); dropped the oldest letter", self.limit)
        return letter

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter([letter for letter, _ in self._letters.values()])

    def __len__(self) -> int:
        return len(self._letters)

    def __getitem__(self, index: int) -> DeadLetter:
        return list(self)[index]

    def for_subject(self, subject: str) -> list[DeadLetter]:
        return [letter for letter in self if letter.subject == subject]

    def take(self, letter: DeadLetter | int) -> tuple[DeadLetter, Any]:
        """Remove a letter and return it with its original message (for re-delivery)."""
        key = letter if isinstance(letter, int) else letter.id
        try:
            return self._letters.pop(key)
        except KeyError:
            raise KeyError(f"no dead letter #{key}") from None

    def clear(self) -> None:
        self._letters.clear()

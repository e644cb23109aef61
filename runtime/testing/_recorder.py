"""Recording what a runtime emitted, for tests to ask about afterwards."""

from __future__ import annotations

from collections.abc import Callable

from actors._patterns import compile_pattern
from runtime import Observed


class EventRecorder:
    """An observer (`rt.add_observer(recorder)`) that keeps every event of every committed turn,
    in order. Events of failed turns never happened, so they are never recorded."""

    def __init__(self) -> None:
        self._events: list[Observed] = []

    def __repr__(self) -> str:
        return f"<EventRecorder {len(self._events)} events>"

    def __call__(self, event: Observed) -> None:
        self._events.append(event)

    def events(self, type: str | None = None, subject: str | None = None,
               property: str | None = None) -> list[Observed]:
        """The events recorded so far, in order, whose type, subject name and property name
        (for property events) match these glob patterns; None matches anything."""
        tests: list[Callable[[Observed], object]] = []
        if type is not None:
            type_matches = compile_pattern(type)
            tests.append(lambda e: type_matches(e.event_type))
        if subject is not None:
            subject_matches = compile_pattern(subject)
            tests.append(lambda e: subject_matches(e.subject))
        if property is not None:
            property_matches = compile_pattern(property)
            tests.append(lambda e: e.property_name is not None
                         and property_matches(e.property_name))
        return [e for e in self._events if all(test(e) for test in tests)]

    def clear(self) -> None:
        """Forget what was recorded so far (what a test checks next starts here)."""
        self._events.clear()

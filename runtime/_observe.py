"""Observing committed turns: what the edge's watchers and the testing kit's recorder see.

An observer is called synchronously, in order, with every event of every turn that commits: the
event the turn handled (an emit, tell or ask) and the property events its cascade caused. Events
of failed turns are never observed, because they never happened. Observers must be quick and must
not raise (an error is logged and the observer kept); anything slow belongs behind a queue.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Observed(msgspec.Struct, frozen=True, gc=False):
    """One committed event. For property events `property_name`, `old_value` and `new_value` are
    set and `payload` is None; for other events `payload` is the event's payload. `version` is
    the subject's version after the turn."""

    subject: str
    event_type: str
    payload: Any = None
    property_name: str | None = None
    old_value: Any = None
    new_value: Any = None
    extra: Any = None
    version: int = 0

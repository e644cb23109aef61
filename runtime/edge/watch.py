"""Watching property changes: one runtime observer fans committed changes out to the WebSocket
sessions whose patterns match.

The observer is registered only while someone watches, so an edge without watchers costs the
runtime's turns nothing. It runs synchronously inside each commit: it encodes a change once,
however many sessions get it, and hands it to each session's bounded queue without waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

from actors import PROPERTY_CHANGED, PROPERTY_DELETED
from actors._behaviours import compile_pattern

from .._observe import Observed
from .._runtime import Runtime
from .auth import Principal
from .protocol import Change

_encode = msgspec.json.encode


class Subscriber(Protocol):
    principal: Principal

    def push(self, text: str) -> None: ...


class WatchHub:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._watches: dict[Subscriber, dict[str, Callable[[str], bool]]] = {}
        self._observing = False

    def watch(self, subscriber: Subscriber, pattern: str) -> None:
        self._watches.setdefault(subscriber, {})[pattern] = compile_pattern(pattern)
        if not self._observing:
            self._rt.add_observer(self._observe)
            self._observing = True

    def unwatch(self, subscriber: Subscriber, pattern: str) -> bool:
        patterns = self._watches.get(subscriber)
        if patterns is None or patterns.pop(pattern, None) is None:
            return False
        if not patterns:
            self.drop(subscriber)
        return True

    def drop(self, subscriber: Subscriber) -> None:
        self._watches.pop(subscriber, None)
        if not self._watches and self._observing:
            self._rt.remove_observer(self._observe)
            self._observing = False

    def _observe(self, seen: Observed) -> None:
        kind = seen.event_type
        if kind != PROPERTY_CHANGED and kind != PROPERTY_DELETED:
            return
        subject = seen.subject
        text = None
        # A copy: a push may overflow a session, which drops it from the hub.
        for subscriber, patterns in list(self._watches.items()):
            if not any(match(subject) for match in patterns.values()):
                continue
            # A watch pattern may be wider than the token's rights: those filter each change.
            if not subscriber.principal.allows("watch", subject):
                continue
            if text is None:
                assert seen.property_name is not None
                text = _encode(Change(subject, seen.property_name, seen.old_value,
                                      seen.new_value, kind == PROPERTY_DELETED,
                                      seen.version)).decode()
            subscriber.push(text)

"""Watching property changes: one runtime observer fans committed changes out to the WebSocket
sessions whose patterns match.

The observer is registered only while someone watches, so an edge without watchers costs the
runtime's turns nothing. It runs synchronously inside each commit: it encodes a change once,
however many sessions get it, and hands it to each session's bounded queue without waiting.

Every commit is matched against every watch pattern, so the number of watches is bounded, per
session and in total (`ws_max_watches`, `max_watches`): a pattern costs at most about
len(name) x len(pattern) to match (`actors._patterns`), tens of microseconds for the longest.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from actors import PROPERTY_CHANGED, PROPERTY_DELETED
from actors._patterns import Matcher, compile_pattern

from .._observe import Observed
from .._runtime import Runtime
from .auth import Principal
from .errors import EdgeError
from .protocol import Change

_encode = msgspec.json.encode


class Subscriber(Protocol):
    principal: Principal

    def push(self, text: str) -> None: ...


class WatchHub:
    def __init__(self, runtime: Runtime, per_subscriber: int, total: int) -> None:
        self._rt = runtime
        self._watches: dict[Subscriber, dict[str, Matcher]] = {}
        self._per_subscriber = per_subscriber
        self._total = total
        self._count = 0  # patterns watched, over all subscribers
        self._observing = False

    def watch(self, subscriber: Subscriber, pattern: str) -> None:
        """Start delivering changes of subjects matching `pattern` (a repeat changes nothing).
        Raises `EdgeError` 400 for a pattern over the length limit, 429 past a watch limit."""
        patterns = self._watches.get(subscriber, {})
        if pattern in patterns:
            return
        if len(patterns) >= self._per_subscriber:
            raise EdgeError(429, "too_many_watches", f"at most {self._per_subscriber} patterns "
                            "may be watched per connection", client_fault=True)
        if self._count >= self._total:
            raise EdgeError(429, "too_many_watches", f"the server already holds its limit of "
                            f"{self._total} watches, over all connections")
        try:
            match = compile_pattern(pattern)
        except ValueError as exc:
            raise EdgeError(400, "invalid_pattern", f"invalid watch pattern: {exc}",
                            client_fault=True) from None
        self._watches[subscriber] = patterns
        patterns[pattern] = match
        self._count += 1
        if not self._observing:
            self._rt.add_observer(self._observe)
            self._observing = True

    def unwatch(self, subscriber: Subscriber, pattern: str) -> bool:
        patterns = self._watches.get(subscriber)
        if patterns is None or patterns.pop(pattern, None) is None:
            return False
        self._count -= 1
        if not patterns:
            self.drop(subscriber)
        return True

    def drop(self, subscriber: Subscriber) -> None:
        """Forget every watch of `subscriber` (its connection closed)."""
        self._count -= len(self._watches.pop(subscriber, ()))
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

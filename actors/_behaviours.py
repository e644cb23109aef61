"""Behaviours: handlers attached by event type and subject-name pattern, filters, middleware.

Matching is done once per (event type, subject name) and cached, so the hot path of a turn is a
dictionary lookup, not a scan over every handler.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from ._context import Context
from ._patterns import Matcher, compile_pattern

HandlerFunc = Callable[[Context], Any]  # `async def` or plain `def`
Predicate = Callable[[Context], Any]
Next = Callable[[], Awaitable[Any]]
Middleware = Callable[[Context, Next], Awaitable[Any]]
F = TypeVar("F", bound=Callable[..., Any])

_FILTERS_ATTR = "__subjects_filters__"
_CACHE_LIMIT = 1 << 16


class Filter:
    __slots__ = ("is_async", "predicate")

    def __init__(self, predicate: Predicate) -> None:
        if not callable(predicate):
            raise TypeError(f"@when takes a callable, not {predicate!r}")
        self.predicate = predicate
        # Decided once here, never per event.
        self.is_async = inspect.iscoroutinefunction(predicate)


class Handler:
    """A registered behaviour: its function, what it listens to, and its filters."""

    __slots__ = ("event_patterns", "filters", "func", "is_async", "matches_event",
                 "matches_subject", "name", "properties", "subject_pattern")

    def __init__(self, func: HandlerFunc, event_patterns: tuple[str, ...], subject: str,
                 properties: frozenset[str] | None = None) -> None:
        if not callable(func):
            raise TypeError(f"a handler must be a function, not {func!r}")
        self.func = func
        # Decided once: a plain `def` is called without making a coroutine for it.
        self.is_async = inspect.iscoroutinefunction(func)
        self.name = getattr(func, "__qualname__", repr(func))
        self.event_patterns = event_patterns
        self.subject_pattern = subject
        self.properties = properties  # property events of these properties only (None: all)
        matchers = [compile_pattern(p) for p in event_patterns]
        self.matches_event: Matcher = (
            matchers[0] if len(matchers) == 1 else (lambda t: any(m(t) for m in matchers))
        )
        self.matches_subject = compile_pattern(subject)
        # The same list object as on the function, so an @when stacked above @on still applies.
        self.filters: list[Filter] = func.__dict__.setdefault(_FILTERS_ATTR, [])

    def __repr__(self) -> str:
        return f"<Handler {self.name} on {self.event_patterns} subject={self.subject_pattern!r}>"


class Registry:
    """Every behaviour and middleware of one runtime."""

    def __init__(self) -> None:
        self.handlers: list[Handler] = []
        self.middleware_chain: tuple[Middleware, ...] = ()
        # Per event type: its candidate handlers, whether all take any subject, and whether
        # any takes only some properties.
        self._by_event: dict[str, tuple[tuple[Handler, ...], bool, bool]] = {}
        self._cache: dict[tuple[str, str, str | None], tuple[Handler, ...]] = {}
        # The handlers of event types that depend on nothing else (every handler takes any
        # subject and any property): the turn looks here first, a dictionary lookup without a
        # call. Filled as event types are first matched.
        self.fixed: dict[str, tuple[Handler, ...]] = {}

    def on(self, *event_types: str, subject: str = "*",
           properties: Iterable[str] | None = None) -> Callable[[F], F]:
        """Attach a handler, `async def handler(ctx)` or a plain `def`, to event types (glob
        patterns) on subjects whose name matches `subject` (a glob pattern). `properties`
        narrows property events (changed, deleted) to those of the properties named: the
        turn then makes no context for the others, which a `@when` filter could not spare."""
        if not event_types:
            raise TypeError("@on needs at least one event type")
        for pattern in (*event_types, subject):
            compile_pattern(pattern)
        if isinstance(properties, str):
            raise TypeError("properties= takes names of properties, not one string: "
                            f"write properties=({properties!r},)")
        only = None if properties is None else frozenset(properties)

        def register(func: F) -> F:
            self.handlers.append(Handler(func, tuple(event_types), subject, only))
            self._invalidate()
            return func

        return register

    def when(self, predicate: Predicate) -> Callable[[F], F]:
        """Run the handler only when `predicate(ctx)` (sync or async) is true. Stack freely: all
        filters must pass."""
        condition = Filter(predicate)

        def attach(func: F) -> F:
            func.__dict__.setdefault(_FILTERS_ATTR, []).insert(0, condition)
            return func

        return attach

    def middleware(self, func: Middleware) -> Middleware:
        """Wrap every handler call: `async def mw(ctx, next): ... await next() ...`. Middleware
        runs in registration order, the first registered outermost."""
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"middleware {func!r} must be an `async def` function")
        self.middleware_chain = (*self.middleware_chain, func)
        return func

    def match(self, event_type: str, subject: str, prop: str | None = None) -> tuple[Handler, ...]:
        """The handlers of an event on a subject (of a property event, on property `prop`), in
        registration order. Decided once per event type, and per subject name or property only
        when a handler's pattern or properties need it, so that millions of subjects do not
        fill the cache with names nobody filters on."""
        by_event = self._by_event.get(event_type)
        if by_event is None:
            by_event = self._for_event(event_type)
        candidates, any_subject, some_properties = by_event
        if any_subject and not some_properties:
            return candidates
        key = (event_type, "" if any_subject else subject, prop if some_properties else None)
        found = self._cache.get(key)
        if found is None:
            found = tuple(h for h in candidates
                          if (any_subject or h.matches_subject(subject))
                          and (h.properties is None or prop in h.properties))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _for_event(self, event_type: str) -> tuple[tuple[Handler, ...], bool, bool]:
        """The handlers of an event type, whether all of them take any subject, and whether
        any takes only some properties."""
        by_event = self._by_event.get(event_type)
        if by_event is None:
            candidates = tuple(h for h in self.handlers if h.matches_event(event_type))
            by_event = (candidates, all(h.subject_pattern == "*" for h in candidates),
                        any(h.properties is not None for h in candidates))
            self._by_event[event_type] = by_event
            if by_event[1] and not by_event[2]:
                self.fixed[event_type] = candidates
        return by_event

    def listens_to(self, event_type: str) -> bool:
        """Whether any handler could receive this event type (on any subject)."""
        return bool(self._for_event(event_type)[0])

    def _invalidate(self) -> None:
        self._by_event.clear()
        self._cache.clear()
        self.fixed.clear()


async def call_handler(handler: Handler, ctx: Context, chain: tuple[Middleware, ...]) -> Any:
    """Run the filters, then the handler inside the middleware chain. Returns `SKIPPED` when a
    filter said no."""
    for f in handler.filters:
        verdict = f.predicate(ctx)
        if f.is_async or (type(verdict) is not bool and inspect.isawaitable(verdict)):
            verdict = await verdict
        if not verdict:
            return SKIPPED
    ctx.handler = handler.name
    if not chain:
        return await handler.func(ctx) if handler.is_async else handler.func(ctx)
    return await _through(chain, 0, ctx, handler)


def _through(chain: tuple[Middleware, ...], i: int, ctx: Context,
             handler: Handler) -> Awaitable[Any]:
    if i == len(chain):
        return handler.func(ctx) if handler.is_async else _returned(handler.func(ctx))
    return chain[i](ctx, lambda: _through(chain, i + 1, ctx, handler))


async def _returned(value: Any) -> Any:
    """A plain handler's result, as the awaitable middleware's `next()` returns."""
    return value


class _Skipped:
    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED: Any = _Skipped()

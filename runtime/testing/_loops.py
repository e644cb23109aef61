"""Event loops that count the callbacks they have pending, so that the kit can tell when a loop is
quiet (see `_quiet`) through public API alone, on asyncio's default loop and on uvloop alike.

Everything that wakes a task goes through the loop's public `call_soon`: a task's next step, a
future's done callbacks (asyncio's C `Task` and `Future` look the method up on the loop object,
so a subclass sees them), `asyncio.sleep(0)`. A loop that overrides it, and counts each callback
from the moment it is scheduled until it starts to run or is cancelled, knows how much work is
ready without reading its own private queue. Timers and I/O are not counted: they wait for time
or for the outside world, which is exactly what "quiet" allows.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import Any, TypeVarTuple

LOOP_KINDS = ("asyncio", "uvloop")  # what `new_event_loop` makes
Ts = TypeVarTuple("Ts")


class _Scheduled:
    """A callback scheduled through a counting loop: pending until it starts or is cancelled."""

    __slots__ = ("callback", "handle", "pending")

    def __init__(self, pending: set[_Scheduled], callback: Callable[..., object]) -> None:
        self.pending = pending
        self.callback = callback
        self.handle: asyncio.Handle | None = None  # set once the loop has scheduled it

    def __call__(self, *args: Any) -> None:
        self.pending.discard(self)  # running now: no longer pending, even if it raises
        self.callback(*args)

    def __repr__(self) -> str:  # what the loop shows of the handle in errors and debug logs
        return repr(self.callback)


class CountingLoop(asyncio.AbstractEventLoop):
    """A mixin for an event loop class (first among the bases) that counts the callbacks
    scheduled with `call_soon` or `call_soon_threadsafe` and neither started nor cancelled:
    `class MyLoop(CountingLoop, SomeLoop)`. `new_event_loop` makes the kit's own.

    Its own attributes start with `_counting_`, clear of the names of the loop it extends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._counting_pending: set[_Scheduled] = set()
        self._counting_pruned_at = 0
        super().__init__(*args, **kwargs)

    def call_soon(self, callback: Callable[[*Ts], object], *args: *Ts,
                  context: contextvars.Context | None = None) -> asyncio.Handle:
        return self._counting_schedule(super().call_soon, callback, args, context)

    def call_soon_threadsafe(self, callback: Callable[[*Ts], object], *args: *Ts,
                             context: contextvars.Context | None = None) -> asyncio.Handle:
        return self._counting_schedule(super().call_soon_threadsafe, callback, args, context)

    def pending_callbacks(self) -> int:
        """How many callbacks are scheduled to run as soon as the loop gets to them: zero
        means nothing can run until time passes or I/O arrives."""
        self._counting_prune()
        return len(self._counting_pending)

    def _counting_schedule(self, schedule: Callable[..., asyncio.Handle],
                           callback: Callable[..., object], args: tuple[Any, ...],
                           context: contextvars.Context | None) -> asyncio.Handle:
        pending = self._counting_pending
        if len(pending) > 2 * self._counting_pruned_at + 64:
            self._counting_prune()  # cancelled handles never run: forget them now and then
        entry = _Scheduled(pending, callback)
        # Counted before it is scheduled: from another thread (`call_soon_threadsafe`), the
        # loop's thread may run it before `schedule` returns.
        pending.add(entry)
        try:
            entry.handle = schedule(entry, *args, context=context)
        except BaseException:  # a closed loop, say: it will never run
            pending.discard(entry)
            raise
        return entry.handle

    def _counting_prune(self) -> None:
        pending = self._counting_pending
        # A copy first: another thread may schedule meanwhile (set.add is atomic, iteration not).
        for entry in list(pending):
            if entry.handle is not None and entry.handle.cancelled():
                pending.discard(entry)
        self._counting_pruned_at = len(pending)


class AsyncioLoop(CountingLoop, asyncio.SelectorEventLoop):
    """asyncio's default event loop, counting its pending callbacks."""


@functools.cache
def _uvloop_class() -> type[CountingLoop]:
    try:
        import uvloop
    except ImportError as exc:
        raise RuntimeError("the uvloop event loop needs uvloop installed "
                           "(pip install uvloop; it does not run on Windows)") from exc

    class UVLoop(CountingLoop, uvloop.Loop):  # type: ignore[misc]
        """uvloop's event loop, counting its pending callbacks."""

    return UVLoop


def new_event_loop(kind: str = "asyncio") -> CountingLoop:
    """A new event loop on which virtual time and chosen interleavings work: asyncio's default
    loop (`kind="asyncio"`) or uvloop (`kind="uvloop"`), counting its pending callbacks. Outside
    pytest: `asyncio.Runner(loop_factory=new_event_loop).run(main())`."""
    if kind == "asyncio":
        return AsyncioLoop()
    if kind == "uvloop":
        return _uvloop_class()()
    raise ValueError(f"unknown kind of event loop {kind!r}: one of {', '.join(LOOP_KINDS)}")

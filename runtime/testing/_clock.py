"""Virtual time: a clock that stands still until the test moves it.

Everything time-based in the runtime (passivation sweeps, restart backoff, ask and durability
timeouts, the writer's group-commit wait) goes through its `Clock`. With a `VirtualClock` those
waits become timers that fire only inside `advance`, in the order they are due, each at its own
moment, with everything they set off run to completion before the next: a test of a five-minute
passivation takes milliseconds and never sleeps.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from typing import Any

from runtime import Clock

from ._quiet import settle


class Timer:
    """A callback due at a virtual moment; `cancel()` keeps it from running."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Timer at {self.when} {self.callback!r}{state}>"

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock(Clock):
    """Time that jumps only when told: `await clock.advance(30)`."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, Timer]] = []  # a heap: due time, then order set
        self._count = 0

    def __repr__(self) -> str:
        return f"<VirtualClock now={self._now} timers={len(self._timers)}>"

    def now(self) -> float:
        return self._now

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_later(delay, _wake, woken)
        try:
            await woken
        finally:
            timer.cancel()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any:
        """Run `callback(*args)` once virtual time has advanced by `delay`. Something due now
        runs soon, like `loop.call_soon`: no time has to pass for it."""
        if delay <= 0:
            return asyncio.get_running_loop().call_soon(callback, *args)
        self._count += 1
        timer = Timer(self._now + delay, callback, args)
        heapq.heappush(self._timers, (timer.when, self._count, timer))
        return timer

    def next_deadline(self) -> float | None:
        """When the earliest pending timer is due (None: no timer is pending)."""
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, running every timer that falls due on the way, in
        order, each at its own moment, and letting everything it sets off run before the next.
        Timers set meanwhile run too if they fall due within the same span."""
        if seconds < 0:
            raise ValueError(f"time only moves forward; cannot advance by {seconds}")
        target = self._now + seconds
        await settle()  # what is runnable now runs now, before time moves
        while True:
            due = self.next_deadline()
            if due is None or due > target:
                break
            _, _, timer = heapq.heappop(self._timers)
            self._now = due
            timer.callback(*timer.args)
            await settle()
        self._now = target


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)

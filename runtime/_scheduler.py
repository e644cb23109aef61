"""Runs actors' mailboxes on a few worker tasks instead of one task per busy actor.

Most turns never wait on anything: they change state, queue events, and finish. Creating an
asyncio task for each of them would cost more than the turn itself. So a worker task takes
ready actors off one queue and steps each actor's drain coroutine itself: a drain that finishes
without suspending costs no task at all. When a drain does suspend (a handler awaits I/O or an
ask), its worker keeps it and waits with it, and hands the rest of the ready queue to another
worker (a parked one, or a new one), so one slow turn never holds up other actors. Workers park
when there is nothing to do; a few parked workers are kept for the next burst.

Because the worker steps the coroutine from inside its own task, `asyncio.current_task()`,
context variables and `asyncio.timeout()` inside handlers refer to the worker that runs the turn,
exactly as if the turn had its own task.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any, ClassVar, Generic, TypeVar

from mypy_extensions import mypyc_attr

log = logging.getLogger("subjects.scheduler")
T = TypeVar("T")
# Runs an actor's turns (up to the scheduler's throughput); returns how many it ran.
Drain = Callable[[Any], Coroutine[Any, Any, int]]

MAX_PARKED = 4  # idle workers kept for the next burst
FAIRNESS = 256  # turns a worker runs before it lets the event loop serve I/O and timers
THROUGHPUT = 64  # turns one drain runs before its actor goes back to the end of the line


# Subclassed by the testing kit: the compiled build allows interpreted subclasses.
@mypyc_attr(allow_interpreted_subclasses=True)
class Scheduler(Generic[T]):
    """A ready queue of actors and the worker tasks that drain them."""

    # Turns one drain may run before the actor goes back to the end of the ready queue (Akka's
    # dispatcher throughput): enough to amortise scheduling over a burst, few enough that an
    # actor whose mailbox never empties (one that emits to itself) cannot starve the others.
    throughput: ClassVar[int] = THROUGHPUT
    # Whether a caller may run a turn of an idle actor in its own task instead of queueing it
    # (cheaper: no task switch). A scheduler that must see every turn to choose the order of
    # turns (the testing kit's) says no, and has a throughput of one.
    inline: ClassVar[bool] = True

    def __init__(self, drain: Drain) -> None:
        self._drain = drain
        self._ready: deque[T] = deque()
        self._parked: list[asyncio.Future[None]] = []
        self._workers: set[asyncio.Task[None]] = set()
        self._running = False  # a worker is executing right now (it will see new ready work)
        self._waking = False  # a worker has been told to run and will see new ready work

    @property
    def workers(self) -> int:
        return len(self._workers)

    def schedule(self, item: T) -> None:
        """Queue an actor whose mailbox has work and that no worker holds."""
        self._ready.append(item)
        if not self._running and not self._waking:
            self._wake()

    def _wake(self) -> None:
        self._waking = True
        if self._parked:
            self._parked.pop().set_result(None)
        else:
            # An empty context: a worker must not inherit the context of whoever woke it.
            task = asyncio.get_running_loop().create_task(
                self._work(), name="subjects-worker", context=contextvars.Context())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def stop(self) -> list[T]:
        """Cancel every worker (their drains see CancelledError); return the actors that were
        still waiting in the ready queue."""
        for task in list(self._workers):
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        waiting = list(self._ready)
        self._ready.clear()
        self._parked.clear()
        self._running = self._waking = False
        return waiting

    async def _work(self) -> None:
        ready = self._ready
        loop = asyncio.get_running_loop()
        self._running, self._waking = True, False
        try:
            done = 0
            while True:
                while ready:
                    drain = self._drain(ready.popleft())
                    turns = 1
                    try:
                        suspended_on = drain.send(None)
                    except StopIteration as finished:  # the common case: it never waited
                        turns = finished.value or 1
                    except Exception:
                        log.exception("internal error in a drain")
                    else:
                        try:
                            turns = await drive(drain, suspended_on, self._waiting) or 1
                        except Exception:
                            log.exception("internal error in a drain")
                    done += turns
                    if done >= FAIRNESS and ready:
                        done = 0
                        await self._pause(asyncio.sleep(0))
                if len(self._parked) >= MAX_PARKED:
                    return
                parked = loop.create_future()
                self._parked.append(parked)
                self._running = False
                try:
                    await parked
                finally:
                    if not parked.done():
                        self._parked.remove(parked)
                self._running, self._waking = True, False
        finally:
            self._running = False

    async def _pause(self, awaitable: Coroutine[Any, Any, None]) -> None:
        """Let the loop run other tasks; this worker comes back to the ready queue."""
        self._running, self._waking = False, True
        try:
            await awaitable
        finally:
            self._running, self._waking = True, False

    def _waiting(self, waits: bool) -> None:
        """A drain this worker drives waits (True) or goes on (False): while it waits, ready
        work goes to another worker."""
        if waits:
            if self._ready and not self._waking:
                self._wake()
            self._running = False
        else:
            self._running = True


@types.coroutine
def drive(coro: Coroutine[Any, Any, T], suspended_on: Any,
          waiting: Callable[[bool], None] | None = None) -> Generator[Any, Any, T]:
    """Drive, from the awaiting task, a coroutine that was stepped by hand and suspended on
    `suspended_on`: what it waits on passes through to the task, what the task is sent or
    thrown (a cancellation) goes to the coroutine. `waiting(True)` is called before each wait,
    `waiting(False)` after it."""
    pending = suspended_on
    while True:
        if waiting is not None:
            waiting(True)
        try:
            sent = yield pending
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # cancellation or a thrown error: the coroutine decides
            if waiting is not None:
                waiting(False)
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            if waiting is not None:
                waiting(False)
            try:
                pending = coro.send(sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]

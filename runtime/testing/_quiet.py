"""Knowing when an event loop is quiet: nothing can run until time passes or I/O arrives.

Virtual time may only jump when everything that can run at the current instant has run, and a
chosen interleaving must choose among every turn that is ready at that instant. asyncio has no
public "all tasks are blocked" test, so we read the loop's queue of ready callbacks: after our
own task yields once, an empty queue means every other task waits on something.

Two kinds of waiters spin on the queue, and each must not mistake the other's spinning for work:
tasks that *settle* (a test advancing virtual time) and the dispatcher of a chosen interleaving,
which waits for quiet before each choice. Settling tasks are counted per loop; the dispatcher
ignores them, while a settling task treats a spinning dispatcher as work (it has turns to start).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from weakref import WeakKeyDictionary

MAX_PASSES = 10_000  # loop iterations a waiter gives a task that never blocks before going on

_settling: WeakKeyDictionary[asyncio.AbstractEventLoop, int] = WeakKeyDictionary()


async def settle() -> None:
    """Return once nothing else on this event loop can run without time passing."""
    loop = asyncio.get_running_loop()
    _settling[loop] = _settling.get(loop, 0) + 1
    try:
        await _quiet(loop, counted=True)
    finally:
        _settling[loop] -= 1


async def wait_for_quiet() -> None:
    """Return once nothing else can run but tasks that are settling (the dispatcher's wait)."""
    loop = asyncio.get_running_loop()
    await _quiet(loop, counted=False)


async def _quiet(loop: asyncio.AbstractEventLoop, counted: bool) -> None:
    """Spin until the queue holds nothing but other settling tasks; `counted`: whether the
    caller is one of the settling tasks counted."""
    ready = ready_queue(loop)
    for _ in range(MAX_PASSES):
        await asyncio.sleep(0)
        # Each settling task but the one running now (us) has exactly one callback queued: its
        # next spin. Anything beyond those is work.
        others = _settling.get(loop, 0) - (1 if counted else 0)
        if len(ready) <= others:
            return


def ready_queue(loop: asyncio.AbstractEventLoop) -> deque[Any]:
    """The loop's queue of ready callbacks (a private attribute of asyncio's own loops)."""
    ready = getattr(loop, "_ready", None)
    if not isinstance(ready, deque):
        raise RuntimeError(f"virtual time and chosen interleavings need asyncio's own event loop, "
                           f"not {type(loop).__name__}")
    return ready

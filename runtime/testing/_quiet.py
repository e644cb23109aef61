"""Knowing when an event loop is quiet: nothing can run until time passes or I/O arrives.

Virtual time may only jump when everything that can run at the current instant has run, and a
chosen interleaving must choose among every turn that is ready at that instant. asyncio has no
public "all tasks are blocked" test, so the kit runs on loops that count the callbacks they have
pending (`CountingLoop`): after our own task yields once, no other pending callback means every
other task waits on something.

Two kinds of waiters spin on the loop, and each must not mistake the other's spinning for work:
tasks that *settle* (a test advancing virtual time) and the dispatcher of a chosen interleaving,
which waits for quiet before each choice. Settling tasks are counted per loop; the dispatcher
ignores them, while a settling task treats a spinning dispatcher as work (it has turns to start).
"""

from __future__ import annotations

import asyncio
from weakref import WeakKeyDictionary

from ._loops import CountingLoop

MAX_PASSES = 10_000  # loop iterations a waiter gives a task that never blocks before going on

_settling: WeakKeyDictionary[asyncio.AbstractEventLoop, int] = WeakKeyDictionary()


async def settle() -> None:
    """Return once nothing else on this event loop can run without time passing. The loop
    must be able to tell: one of `new_event_loop` (a RuntimeError says so otherwise)."""
    loop = counting_loop()
    _settling[loop] = _settling.get(loop, 0) + 1
    try:
        await _quiet(loop, counted=True)
    finally:
        _settling[loop] -= 1


async def wait_for_quiet() -> None:
    """Return once nothing else can run but tasks that are settling (the dispatcher's wait)."""
    await _quiet(counting_loop(), counted=False)


async def _quiet(loop: CountingLoop, counted: bool) -> None:
    """Spin until nothing is pending but other settling tasks; `counted`: whether the caller is
    one of the settling tasks counted."""
    for _ in range(MAX_PASSES):
        await asyncio.sleep(0)
        # Each settling task but the one running now (us) has exactly one callback pending: its
        # next spin. Anything beyond those is work.
        others = _settling.get(loop, 0) - (1 if counted else 0)
        if loop.pending_callbacks() <= others:
            return


def counting_loop() -> CountingLoop:
    """The running loop, if it can tell when it is quiet; else a RuntimeError saying what to
    run on instead."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, CountingLoop):
        kind = type(loop)
        raise RuntimeError(
            f"virtual time and chosen interleavings need an event loop that counts its pending "
            f"callbacks, not {kind.__module__}.{kind.__qualname__}: run on "
            f"runtime.testing.new_event_loop() (asyncio or uvloop), as the pytest fixture "
            f"`runtime` and tests marked `@pytest.mark.subjects` do; outside pytest, "
            f"asyncio.Runner(loop_factory=runtime.testing.new_event_loop)")
    return loop

"""Chosen interleavings: which subject's turn runs next is decided by a seed or by hypothesis.

The runtime's own scheduler runs ready actors first-in first-out and lets each drain every
message waiting. That order is one of many the runtime allows, and a concurrency bug may hide in
the others. Here one dispatcher task starts one turn at a time: it waits until nothing else can
run (suspended turns resume, senders send, activations load), then asks a chooser which of the
ready subjects goes next. Given the same choices, the run is the same, so a bug found once is
found again; under hypothesis the choices are data it can shrink (towards first-in first-out).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from runtime import Scheduler

from ._quiet import wait_for_quiet

log = logging.getLogger("subjects.testing")
T = TypeVar("T")

# Given the ready subjects' names in the order they became ready, the index of the one whose
# turn starts next.
Chooser = Callable[[Sequence[str]], int]


def seeded_chooser(seed: int) -> Chooser:
    """Choices from a random generator seeded with `seed`: the same seed, the same run."""
    rng = random.Random(seed)
    return lambda ready: rng.randrange(len(ready))


class ChosenScheduler(Scheduler[T]):
    """Starts one turn at a time, each in a task of its own, in the order `choose` decides."""

    throughput = 1  # every turn is a choice of its own
    inline = False

    def __init__(self, drain: Callable[[T], Coroutine[Any, Any, int]],
                 choose: Callable[[Sequence[T]], int]) -> None:
        super().__init__(drain)
        self._choose = choose
        self._dispatcher: asyncio.Task[None] | None = None
        self._nudge: asyncio.Future[None] | None = None

    def schedule(self, item: T) -> None:
        self._ready.append(item)
        if self._dispatcher is None:
            self._dispatcher = self._start(self._dispatch(), "subjects-dispatcher")
        elif self._nudge is not None and not self._nudge.done():
            self._nudge.set_result(None)

    async def stop(self) -> list[T]:
        waiting = await super().stop()  # cancels the dispatcher and every running turn
        self._dispatcher = self._nudge = None
        return waiting

    async def _dispatch(self) -> None:
        ready = self._ready
        while True:
            if not ready:
                self._nudge = asyncio.get_running_loop().create_future()
                await self._nudge
            # Everything else that can run at this instant runs first, so that the choice is
            # among every turn ready now, and suspended turns go as far as they can.
            await wait_for_quiet()
            index = self._pick(ready) if len(ready) > 1 else 0
            item = ready[index]
            del ready[index]
            self._start(self._drain(item), "subjects-turn")

    def _pick(self, ready: Sequence[T]) -> int:
        try:
            index = self._choose(list(ready))
            if not 0 <= index < len(ready):
                raise IndexError(f"chose {index} among {len(ready)} ready subjects")
        except Exception:
            # A broken chooser must not stall the runtime: this one turn goes first-in first-out.
            log.exception("the chooser of the next turn failed")
            return 0
        return index

    def _start(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        # An empty context: a turn must not inherit the context of whoever scheduled it.
        task = asyncio.get_running_loop().create_task(coro, name=name,
                                                      context=contextvars.Context())
        self._workers.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._workers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("internal error in %s", task.get_name(), exc_info=task.exception())

"""A runtime for tests: in-memory store, virtual time, every event recorded, and (with a seed or
a chooser) a chosen interleaving of turns."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from actors import Context
from runtime import Observed, Runtime
from storage import SnapshotStore

from ._clock import VirtualClock
from ._messages import CRASH, InjectedCrash
from ._quiet import counting_loop, settle
from ._recorder import EventRecorder
from ._scheduling import Chooser, ChosenScheduler, seeded_chooser


class SimRuntime(Runtime):
    """A `Runtime` made for tests; takes every option a `Runtime` takes, and:

    - `clock` is a `VirtualClock` (time moves only in `await rt.clock.advance(seconds)`);
    - `events(type=, subject=, property=)` returns what committed turns emitted, in order;
    - `seed=` (or `choose=`, a `Chooser`) makes the interleaving of turns across subjects a
      choice: the same seed replays the same run. Without either, turns are scheduled as in
      production (first-in first-out), which is deterministic too under virtual time;
    - a `Crash` message makes a turn fail on purpose, so the actor restarts.

    Snapshots are written as soon as the loop is free (`flush_delay=0`), so that durable
    writes need no virtual time to pass. Whatever waits on time waits for virtual time: a
    message to an actor waiting out its restart backoff is handled once the clock is advanced
    (or `run_until_idle()` advances it).
    """

    clock: VirtualClock

    def __init__(self, store: str | SnapshotStore = "memory://", *, seed: int | None = None,
                 choose: Chooser | None = None, clock: VirtualClock | None = None,
                 flush_delay: float = 0.0, **options: Any) -> None:
        if seed is not None and choose is not None:
            raise TypeError("give a seed or a chooser, not both")
        if seed is not None:
            choose = seeded_chooser(seed)
        if choose is not None:
            chosen = _by_name(choose)
            options["scheduler"] = lambda drain: ChosenScheduler(drain, chosen)
        # The seed also drives the backoff jitter; without one the jitter is still fixed.
        super().__init__(store, clock=clock or VirtualClock(), seed=seed or 0,
                         flush_delay=flush_delay, **options)
        self.seed = seed
        self.recorder = EventRecorder()
        self.add_observer(self.recorder)

        @self.on(CRASH)
        async def crash(ctx: Context) -> None:
            raise InjectedCrash(f"{ctx.subject.name} crashed on purpose")

    async def start(self) -> None:
        counting_loop()  # fails here, not in the first settle, on a loop that cannot tell
        await super().start()

    async def close(self, timeout: float | None = None) -> None:
        """Let virtual time run until every mailbox is empty, then close: a restart waiting out
        its backoff would otherwise hold the shutdown until its real-time bound."""
        if self._started:
            with contextlib.suppress(TimeoutError):  # stuck: `close` reports what is left
                await self.run_until_idle()
        await super().close(timeout)

    def events(self, type: str | None = None, subject: str | None = None,
               property: str | None = None) -> list[Observed]:
        """What committed turns emitted, in order, filtered by glob patterns on the event type,
        the subject name and the property name: `rt.events(type="device.alert.*")`."""
        return self.recorder.events(type, subject, property)

    async def run_until_idle(self, *, within: float = 3600.0) -> None:
        """Let everything run, moving virtual time from timer to timer while work remains (a
        restart waiting out its backoff, say), until every mailbox is empty. Raises
        `TimeoutError` if work remains after `within` virtual seconds."""
        deadline = self.clock.now() + within
        while True:
            await settle()
            if not self.busy:
                return
            due = self.clock.next_deadline()
            if due is None or due > deadline:
                raise TimeoutError(
                    f"{self.busy} subjects still have work after {within} virtual seconds and "
                    "nothing more is due: are they waiting on something outside virtual time?")
            await self.clock.advance(due - self.clock.now())

    def live_subjects(self) -> list[str]:
        """The names of the activated subjects that take messages (not stopped), sorted."""
        stopped = self.stopped_subjects()
        return sorted(name for name in self.active_subjects() if name not in stopped)


def _by_name(choose: Chooser) -> Callable[[Sequence[Any]], int]:
    def choose_actor(ready: Sequence[Any]) -> int:
        return choose([actor.name for actor in ready])

    return choose_actor

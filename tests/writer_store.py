"""What the writer's tests run against: the real in-memory store, instrumented (`Recorder`),
and waits that are bounded (`within`, `until`), so that a broken writer fails in seconds saying
what did not happen, rather than hanging until the runner's timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from runtime import Runtime
from runtime.testing import VirtualClock, settle
from storage import MemoryStore, SnapshotRefused, StoreUnavailable

T = TypeVar("T")
BOUND = 3.0  # seconds any single wait may take before the test fails


class Recorder(MemoryStore):
    """The real in-memory store, recording its batches and how many are in flight at once;
    writes wait at `gate` while it is clear, fail while `down` is set, and a batch holding a
    snapshot with "poison" in it is refused whole, as PostgreSQL refuses a value it cannot keep."""

    def __init__(self, write_concurrency: int | None = None) -> None:
        super().__init__()
        if write_concurrency is not None:
            self.write_concurrency = write_concurrency
        self.gate = asyncio.Event()
        self.gate.set()
        self.down = False
        self.down_after: int | None = None  # then `down` from the batch after that many
        self.batches: list[list[str]] = []
        self.flying: set[str] = set()  # names in a batch being written
        self.in_flight = 0
        self.most_in_flight = 0
        self.overlaps: list[str] = []  # names sent while a batch in flight held them
        self.cancelled = 0
        self.holds: dict[str, asyncio.Event] = {}  # a batch of that subject alone waits on it
        self.losing: str | None = None  # the writer whose writes commit but lose their reply

    async def save_many(self, writes: Any) -> list[str]:
        names = [w.name for w in writes]
        self.batches.append(names)
        self.overlaps += [n for n in names if n in self.flying]
        self.flying.update(names)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if len(names) == 1 and names[0] in self.holds:
                await self.holds[names[0]].wait()
            await self.gate.wait()
            if self.down or (self.down_after is not None and
                             len(self.batches) > self.down_after):
                raise StoreUnavailable("the store is down (test)")
            if any(b"poison" in w.properties for w in writes):
                raise SnapshotRefused("a poisoned snapshot (test)")
            refused = await super().save_many(writes)
            if self.losing is not None and writes[0].writer == self.losing:
                raise StoreUnavailable("connection lost after commit (test)")
            return refused
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
            self.flying.difference_update(names)

    def written(self) -> list[str]:
        return [name for batch in self.batches for name in batch]


class BoundedRuntime(Runtime):
    """A runtime whose `async with` exit is bounded as a whole: draining and storing by
    `shutdown_timeout` (2 s here, not 30), and stopping the writer too, which a broken writer
    could otherwise hang."""

    async def __aexit__(self, *exc_info: object) -> None:
        await within(super().__aexit__(*exc_info), "the runtime's close", 2 * BOUND)


def runtime(store: MemoryStore, **options: Any) -> Runtime:
    """A runtime on `store`, its shutdown bounded (see `BoundedRuntime`)."""
    options.setdefault("passivate_after", None)
    options.setdefault("shutdown_timeout", 2.0)
    return BoundedRuntime(store, **options)


async def within(aw: Awaitable[T], what: str, seconds: float = BOUND) -> T:
    """`await aw`, failing the test with `what` if it takes over `seconds` (a `NotDurable` of
    its own, also a TimeoutError, passes through)."""
    bound = asyncio.timeout(seconds)
    try:
        async with bound:
            return await aw
    except TimeoutError:
        if bound.expired():
            pytest.fail(f"{what}: did not happen within {seconds} s", pytrace=False)
        raise


async def until(check: Callable[[], bool], what: str, seconds: float = BOUND) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.002)

    await within(poll(), what, seconds)


async def stored(store: MemoryStore, names: list[str]) -> dict[str, bytes]:
    return {name: snap.properties for name, snap in (await store.load_many(names)).items()}


async def next_wait(clock: VirtualClock) -> float:
    """How long until the next timer of virtual time, once everything runnable has run."""
    await settle()
    due = clock.next_deadline()
    assert due is not None, "the writer set no timer"
    return due - clock.now()

"""The persistence pipeline: write-behind snapshots with group commit.

A turn that changes state only marks its actor dirty. One writer task gathers the dirty actors
and stores them in batches (one `save_many`, one round trip, for many subjects), encoding each
snapshot at the moment the batch is formed: a change made while that batch is in flight marks the
actor dirty again and goes into the next batch, so it is never lost. Many turns of one actor
between two batches cost one write (coalescing).

If the store fails, the batch goes back to the dirty set and the writer retries with backoff;
state stays in memory, durable acknowledgements wait, and writing resumes by itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from itertools import islice
from typing import Any

import msgspec

from storage import SnapshotStore, Write

from ._actor import Actor
from ._clock import Clock
from ._errors import NotDurable, StaleVersion
from ._supervision import Backoff

log = logging.getLogger("subjects.persistence")
_encode = msgspec.json.Encoder().encode
_EMPTY = b"{}"
RETRY = Backoff(min=0.05, max=5.0)  # between attempts while the store fails


class Pipeline:
    """Owns every write to the store after activation."""

    def __init__(self, store: SnapshotStore, clock: Clock, *, batch_size: int, max_delay: float,
                 on_stale: Callable[[Actor], None]) -> None:
        self.store = store
        self._clock = clock
        self._batch_size = batch_size
        self._max_delay = max_delay
        self._on_stale = on_stale
        self._retry = RETRY
        self._rng = random.Random()
        self._dirty: dict[str, Actor] = {}
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._urgent = 0
        self._writing = False
        self._task: asyncio.Task[None] | None = None
        self._gathering: asyncio.Future[None] | None = None
        self.failures = 0  # consecutive failed batches
        self.last_error: BaseException | None = None
        self.batches = 0

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="subjects-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for waiters in self._waiters.values():
            for _, fut in waiters:
                if not fut.done():
                    fut.set_exception(NotDurable("the runtime stopped before the write"))
        self._waiters.clear()

    def mark_dirty(self, actor: Actor) -> None:
        self._dirty[actor.name] = actor
        if self._settled.is_set():
            self._settled.clear()
            self._wake.set()

    def forget(self, actor: Actor) -> None:
        self._dirty.pop(actor.name, None)

    async def durable(self, actor: Actor, version: int, timeout: float | None,
                      urgent: bool = False) -> None:
        """Return once the store holds `version` (or newer) of this actor."""
        if actor.stored_version >= version:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(actor.name, []).append((version, fut))
        timer = None
        if timeout is not None:
            timer = self._clock.call_later(timeout, _expire, fut, actor.name, timeout,
                                           self.last_error)
        if urgent:
            self._hurry()
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()
            if urgent:
                self._urgent -= 1

    async def flush(self) -> None:
        """Return once every snapshot marked so far is stored."""
        self._hurry()
        try:
            while self._dirty or self._writing:
                await self._settled.wait()
        finally:
            self._urgent -= 1

    async def _run(self) -> None:
        while True:
            if not self._dirty:
                self._settled.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._urgent and len(self._dirty) < self._batch_size:
                await self._gather()
            if not await self._write_batch():
                self.failures += 1
                await self._clock.sleep(self._retry.delay(self.failures, self._rng))

    async def _gather(self) -> None:
        """Let a batch gather for up to `max_delay` (group commit); cut short by `_hurry`."""
        gathering = asyncio.get_running_loop().create_future()
        self._gathering = gathering
        timer = self._clock.call_later(self._max_delay, _resolve, gathering)
        try:
            await gathering
        finally:
            timer.cancel()
            self._gathering = None

    def _hurry(self) -> None:
        self._urgent += 1
        self._wake.set()
        if self._gathering is not None:
            _resolve(self._gathering)

    async def _write_batch(self) -> bool:
        dirty = self._dirty
        if len(dirty) <= self._batch_size:
            actors = list(dirty.values())
            dirty.clear()
        else:
            actors = [dirty.pop(name) for name in list(islice(dirty, self._batch_size))]
        writes = [
            Write(a.name, a.stored_version, a.version, _encode(a.props),
                  _encode(a.ext) if a.ext else _EMPTY)
            for a in actors
        ]
        self._writing = True
        try:
            refused = await self.store.save_many(writes)
        except Exception as exc:  # the store is down or failing: keep everything, retry
            self.last_error = exc
            log.warning("snapshot batch of %d failed (attempt %d): %s", len(writes),
                        self.failures + 1, exc)
            for actor in actors:
                dirty.setdefault(actor.name, actor)
            return False
        finally:
            self._writing = False
        self.failures = 0
        self.last_error = None
        self.batches += 1
        stale = set(refused)
        for write, actor in zip(writes, actors, strict=True):
            if write.name in stale:
                self._fail_waiters(actor.name, StaleVersion(
                    f"the store holds a newer version of {actor.name!r} than "
                    f"v{write.expected_version}; its unsaved changes were discarded and it was "
                    "reloaded"))
                self._on_stale(actor)
            else:
                actor.stored_version = write.version
                self._release_waiters(actor.name, write.version)
        return True

    def _release_waiters(self, name: str, version: int) -> None:
        waiters = self._waiters.get(name)
        if not waiters:
            return
        keep = []
        for wanted, fut in waiters:
            if wanted <= version:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((wanted, fut))
        if keep:
            self._waiters[name] = keep
        else:
            del self._waiters[name]

    def _fail_waiters(self, name: str, error: BaseException) -> None:
        for _, fut in self._waiters.pop(name, ()):
            if not fut.done():
                fut.set_exception(error)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _expire(fut: asyncio.Future[Any], name: str, timeout: float,
            error: BaseException | None) -> None:
    if not fut.done():
        cause = f" (store error: {error})" if error else ""
        fut.set_exception(NotDurable(
            f"the snapshot of {name!r} was not committed within {timeout} s{cause}; the change is "
            "kept in memory and will be written when the store allows"))

"""The persistence pipeline: write-behind snapshots with group commit.

A turn that changes state only marks its actor dirty. One writer task gathers the dirty actors
and stores them in batches (one `save_many`, one round trip, for many subjects), encoding each
snapshot at the moment the batch is formed: a change made while that batch is in flight marks the
actor dirty again and goes into the next batch, so it is never lost. Many turns of one actor
between two batches cost one write (coalescing).

If the store fails, the batch goes back to the dirty set and the writer retries with backoff;
state stays in memory, durable acknowledgements wait, and writing resumes by itself: the first
batch that succeeds ends the backoff. Nothing is kept per failed attempt: a retry refused as
stale asks the store whether an earlier attempt of this writer landed (the store records the
latest version each writer stored of each subject).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator
from itertools import islice
from typing import Any

import msgspec

from storage import SnapshotRefused, SnapshotStore, Write

from ._actor import Actor, Reply
from ._backoff import Backoff
from ._clock import Clock
from ._errors import NotDurable, StaleVersion
from ._writer import run_writer

log = logging.getLogger("subjects.persistence")
_encode = msgspec.json.Encoder().encode
_EMPTY = b"{}"
EXPIRY_CHECK = 0.05  # how often overdue durable acknowledgements are looked for
INFINITY = float("inf")
# Bound on the encoded snapshots of one batch, beside `batch_size`: a batch is one statement, and
# SQLite runs its statements on the event loop's thread (a batch of big states would stall it).
BATCH_BYTES = 4 * 1024 * 1024
DISCARDS_KEPT = 10_000  # subjects a flush can name: the latest, for a runtime that never flushes


class Pipeline:
    """Owns every write to the store after activation."""

    def __init__(self, store: SnapshotStore, clock: Clock, *, batch_size: int, max_delay: float,
                 retry: Backoff) -> None:
        self.store = store
        self._clock = clock
        self._batch_size = batch_size
        self._max_delay = max_delay
        # Actors whose unsaved state the store will not take, and why: `run` hands them to its
        # consumer, which reloads them.
        self._refusals: list[tuple[Actor, StaleVersion | SnapshotRefused | None, str]] = []
        self.writer = secrets.token_hex(8)  # who wrote what, in the store's record
        self._retry = retry  # between attempts while the store fails
        self._rng = random.Random()
        self._dirty: dict[str, Actor] = {}
        # Actors with durable acknowledgements waiting (each holds its own, in `Actor.acks`),
        # by identity: a passivated and reactivated subject is another actor.
        self._acking: dict[int, Actor] = {}
        self._earliest = INFINITY  # no waiting acknowledgement has an earlier deadline
        # The writer's wait for work, while it waits: what gives it work resolves it. A future
        # made per wait, not an Event cleared and set per change: a change made while the
        # writer is busy (the common case under load) costs no call at all.
        self._wakeup: asyncio.Future[None] | None = None
        self._flushers: list[asyncio.Future[None]] = []  # resolved once nothing is unsaved
        self._urgent = 0
        self._concurrency = max(1, int(getattr(store, "write_concurrency", 1)))
        self._writers: set[asyncio.Task[None]] = set()
        self._in_flight: set[str] = set()  # names in a batch being written
        # Subjects whose unsaved changes were thrown away since the last flush returned (the
        # error their callers got), oldest first: the next flush reports them.
        self._discarded: dict[str, StaleVersion | SnapshotRefused] = {}
        self._gathering: asyncio.Future[None] | None = None
        self._backing_off: asyncio.Future[None] | None = None
        self._expiry: Any = None  # the timer of the next sweep for overdue acknowledgements
        self._expiry_at = INFINITY
        self._stopped = False  # nothing is written any more: acknowledgements fail at once
        self.failures = 0  # consecutive failed batches
        self.last_error: BaseException | None = None
        self.batches = 0

    @property
    def pending(self) -> int:
        return len(self._dirty)

    async def stop(self) -> None:
        """After the task consuming `run` is cancelled: cancel the batches in flight; waiting
        acknowledgements fail."""
        for task in self._writers:
            task.cancel()
        await asyncio.gather(*self._writers, return_exceptions=True)
        self._stopped = True
        for actor, error, _ in self._refusals:  # refused, and nobody left to reload them
            if error is not None:
                self._fail_acks(actor, error)
        self._refusals.clear()
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry, self._expiry_at, self._earliest = None, INFINITY, INFINITY
        for actor in list(self._acking.values()):
            self._fail_acks(actor, NotDurable("the runtime stopped before the write"))

    def mark_dirty(self, actor: Actor) -> None:
        """The actor has committed state to store; also called when a turn ends, since a
        batch skips actors in the middle of a turn."""
        self._dirty[actor.name] = actor
        if self._wakeup is not None:
            self._wake()

    def forget(self, actor: Actor) -> None:
        self._dirty.pop(actor.name, None)

    def acknowledge(self, actor: Actor, version: int, fut: Reply, result: Any,
                    timeout: float | None) -> None:
        """Resolve `fut` with `result` once the store holds `version` (or newer) of this actor:
        at once if it does already. It fails with `NotDurable` after `timeout` seconds (noticed
        up to EXPIRY_CHECK later), with `StaleVersion` if the version is thrown away for a
        newer one from the store. The caller's own future, not one more: one future per
        acknowledgement is what it costs."""
        if actor.stored_version >= version:
            fut.set_result(result)
            return
        if self._stopped:  # a turn that outlived the runtime's shutdown
            fut.set_exception(NotDurable("the runtime stopped before the write"))
            return
        if timeout is None:
            deadline = INFINITY
        else:
            deadline = self._clock.now() + timeout
            if deadline < self._earliest:
                self._earliest = deadline
                self._schedule_expiry()
        acks = actor.acks
        if acks is None:
            actor.acks = [(version, fut, result, deadline, timeout)]
            self._acking[id(actor)] = actor
        else:
            acks.append((version, fut, result, deadline, timeout))

    async def durable(self, actor: Actor, version: int, timeout: float | None = None,
                      urgent: bool = False) -> None:
        """Return once the store holds `version` (or newer) of this actor. `urgent`: write
        now, without waiting for a batch to gather."""
        if actor.stored_version >= version:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acknowledge(actor, version, fut, None, timeout)
        if urgent:
            self._hurry()
        try:
            await fut
        finally:
            if urgent:
                self._urgent -= 1

    def _schedule_expiry(self) -> None:
        """One timer for every acknowledgement, not one each (a timer per acknowledgement would
        cost more than the rest of it), set for the earliest deadline: with one timeout for
        all, it fires about once per timeout, and sweeps only when something can be overdue."""
        at = self._earliest + EXPIRY_CHECK
        if self._expiry is not None:
            if self._expiry_at <= at:
                return  # it fires in time
            self._expiry.cancel()
        self._expiry_at = at
        self._expiry = self._clock.call_later(max(0.0, at - self._clock.now()),
                                              self._expire_overdue)

    def _expire_overdue(self) -> None:
        self._expiry = None
        now = self._clock.now()
        earliest = INFINITY
        for key, actor in list(self._acking.items()):
            keep = []
            for ack in actor.acks or ():
                _, fut, _, deadline, timeout = ack
                if fut.done():
                    continue
                if deadline <= now:
                    fut.set_exception(NotDurable(
                        f"the snapshot of {actor.name!r} was not committed within {timeout:g} s"
                        f"{f' (store error: {self.last_error})' if self.last_error else ''}; "
                        "the change is kept in memory and will be written when the store "
                        "allows"))
                else:
                    keep.append(ack)
                    earliest = min(earliest, deadline)
            if keep:
                actor.acks = keep
            else:
                actor.acks = None
                del self._acking[key]
        self._earliest = earliest
        if earliest != INFINITY:
            self._schedule_expiry()

    async def flush(self) -> dict[str, StaleVersion | SnapshotRefused]:
        """Return once every snapshot marked so far is stored (or thrown away): the subjects
        whose changes were thrown away since the previous flush returned, and why. Each is
        reported by one flush only."""
        self._hurry()
        try:
            while self._dirty or self._in_flight:
                settled = asyncio.get_running_loop().create_future()
                self._flushers.append(settled)
                await settled
        finally:
            self._urgent -= 1
        discarded, self._discarded = self._discarded, {}
        return discarded

    def run(self) -> AsyncIterator[list[tuple[Actor, str]]]:
        """The writer: gathers dirty actors into batches and writes them, forever. Yields the
        actors whose unsaved changes the store refused (with why): they hold state nobody can
        store, and the consumer reloads them. Everything else it settles itself. (An async
        generator, which mypyc cannot compile: it lives in `_writer.py`, kept interpreted.)"""
        return run_writer(self)

    async def _back_off(self) -> None:
        """Wait before the next attempt while the store fails. A batch in flight that succeeds
        meanwhile ends the wait: the store is back, and the other batches must not wait for
        a step of backoff more (up to 5 s) to follow it."""
        waiting = asyncio.get_running_loop().create_future()
        self._backing_off = waiting
        timer = self._clock.call_later(self._retry.delay(self.failures, self._rng), _resolve,
                                       waiting)
        try:
            await waiting
        finally:
            timer.cancel()
            self._backing_off = None

    async def _sleep(self) -> None:
        """Wait until something gives the writer work: a change, a writer finishing, a
        refusal, a flush."""
        self._wakeup = wakeup = asyncio.get_running_loop().create_future()
        try:
            await wakeup
        finally:
            if self._wakeup is wakeup:
                self._wakeup = None

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            _resolve(wakeup)

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        self._writers.discard(writer)
        self._wake()

    def _take_batch(self) -> tuple[list[Actor], list[Write]]:
        """Up to `batch_size` dirty actors that no batch in flight is writing (an actor's next
        snapshot must be based on the version its previous one stored), with their snapshots
        encoded now, up to about BATCH_BYTES of them. An actor in the middle of a turn is
        snapshotted as it was before that turn: uncommitted changes never reach the store."""
        dirty, busy = self._dirty, self._in_flight
        if not busy and len(dirty) <= self._batch_size:
            actors = list(dirty.values())
            dirty.clear()
        else:
            names = [n for n in islice((n for n in dirty if n not in busy), self._batch_size)]
            actors = [dirty.pop(name) for name in names]
        taken, writes, size = [], [], 0
        for i, a in enumerate(actors):
            if size >= BATCH_BYTES:  # big states: the rest waits for the next batch
                for rest in actors[i:]:
                    dirty[rest.name] = rest
                break
            props, ext = a.committed()
            try:
                write = Write(a.name, a.stored_version, a.version, _encode(props),
                              _encode(ext) if ext else _EMPTY, self.writer)
            except Exception as exc:  # values are checked at `set`: only a state corrupted
                self._refuse(a, SnapshotRefused(f"cannot encode: {exc}"))  # behind our back
                continue
            size += len(write.properties) + len(write.ext)
            writes.append(write)
            taken.append(a)
        busy.update(a.name for a in taken)
        return taken, writes

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
        self._wake()
        if self._gathering is not None:
            _resolve(self._gathering)

    async def _write(self, actors: list[Actor], writes: list[Write]) -> None:
        split = False  # then each half takes its subjects out of flight as it ends, and only it
        try:
            refused = set(await self.store.save_many(writes))
            found = await self.store.versions(
                [w.name for w in writes if w.name in refused], self.writer) if refused else {}
        except SnapshotRefused as exc:
            # Something in this batch is refused for what it holds, and would be again: split
            # the batch until the snapshots at fault are alone, so that the others get stored.
            if len(writes) == 1:
                self._refuse(actors[0], exc)
            else:
                split = True
                half = len(writes) // 2
                await self._write(actors[:half], writes[:half])
                await self._write(actors[half:], writes[half:])
            return
        except Exception as exc:  # the store is down or failing: keep everything, retry
            self.failures += 1
            self.last_error = exc
            log.warning("snapshot batch of %d failed (attempt %d): %s", len(writes),
                        self.failures, exc)
            for actor in actors:  # the outcome is unknown: a refused retry asks the store
                self._dirty.setdefault(actor.name, actor)
            return
        finally:
            if not split:  # a subject of a half may be in another writer's batch by now
                self._in_flight.difference_update(a.name for a in actors)
        self.failures = 0
        self.last_error = None
        self.batches += 1
        if self._backing_off is not None:
            _resolve(self._backing_off)
        for write, actor in zip(writes, actors, strict=True):
            if write.name not in refused:
                actor.stored_version = write.version
                if actor.rare is not None and actor.rare.acks:
                    self._release_acks(actor)
            elif write.name not in found:
                # The store lost what it had committed (Redis restarted without persistence, a
                # row deleted by hand), and nobody wrote it since: the state in memory is the
                # newest there is, so it is written again rather than thrown away.
                log.error("the store holds nothing of %s, which had v%d stored: it lost it; "
                          "writing the state in memory again", actor.name,
                          write.expected_version)
                actor.stored_version = 0
                self.mark_dirty(actor)
            else:
                self._refused(actor, write, *found[write.name])

    def _refused(self, actor: Actor, write: Write, stored: int, ours: int) -> None:
        """The store refused `write` as stale, and holds version `stored` of the subject, of
        which this writer stored `ours` last. Above the version the write was based on, `ours`
        is an earlier attempt whose reply was lost: it is durable, whatever came after it."""
        if ours > write.expected_version:
            actor.stored_version = ours
            if actor.acks:
                self._release_acks(actor)
            if stored == ours:  # nobody wrote since: newer changes are written on top
                if actor.version > ours:
                    self.mark_dirty(actor)
                return
            if actor.version == ours:  # nothing of ours is lost: just load the newer version
                self._refusal(actor, None, f"another writer stored v{stored} on top of ours")
                return
        error = StaleVersion(
            f"the store holds another writer's version of {actor.name!r}, not the "
            f"v{actor.stored_version} this change was based on; its unsaved changes were "
            "discarded and it was reloaded", (actor.name,))
        self._discard(actor.name, error)
        self._refusal(actor, error, "its snapshot is stale: the store holds another writer's "
                                "version")

    def _refuse(self, actor: Actor, error: SnapshotRefused) -> None:
        """The store will never take this snapshot: waiting for it would hold the subject's
        writes back forever. Its waiting callers hear why; the actor is reloaded from its last
        stored snapshot, as after a crash."""
        self._in_flight.discard(actor.name)
        refused = SnapshotRefused(
            f"the snapshot v{actor.version} of {actor.name!r} cannot be stored ({error}); its "
            f"unsaved changes were discarded and it was reloaded from v{actor.stored_version}")
        refused.subjects = (actor.name,)
        self._discard(actor.name, refused)
        self._refusal(actor, refused, f"the store cannot take its snapshot ({error})")

    def _refusal(self, actor: Actor, error: StaleVersion | SnapshotRefused | None,
                 why: str) -> None:
        """The actor's unsaved changes are lost (`error`, for the callers waiting on them), or
        a newer version is in the store: `run` hands it over to be reloaded."""
        self._refusals.append((actor, error, why))
        self._wake()

    def _discard(self, name: str, error: StaleVersion | SnapshotRefused) -> None:
        discarded = self._discarded
        discarded.pop(name, None)
        discarded[name] = error
        if len(discarded) > DISCARDS_KEPT:
            del discarded[next(iter(discarded))]

    def _release_acks(self, actor: Actor) -> None:
        """Resolve the acknowledgements the actor's stored version now covers."""
        stored = actor.stored_version
        keep = None
        for ack in actor.acks or ():
            if ack[0] <= stored:
                fut = ack[1]
                if not fut.done():
                    fut.set_result(ack[2])
            elif keep is None:
                keep = [ack]
            else:
                keep.append(ack)
        actor.acks = keep
        if keep is None:
            self._acking.pop(id(actor), None)

    def _fail_acks(self, actor: Actor, error: BaseException) -> None:
        acks, actor.acks = actor.acks, None
        self._acking.pop(id(actor), None)
        for _, fut, _, _, _ in acks or ():
            if not fut.done():
                fut.set_exception(error)


def discarded_error(discarded: dict[str, StaleVersion | SnapshotRefused]) -> Exception:
    """What `flush()` raises for the subjects whose changes it could not store: `StaleVersion`
    if another writer's version threw any away, else `SnapshotRefused`; either names them all
    in `subjects`."""
    subjects = tuple(discarded)
    listed = "; ".join(f"{name}: {error}" for name, error in islice(discarded.items(), 3))
    more = f" (and {len(subjects) - 3} more)" if len(subjects) > 3 else ""
    message = (f"the unsaved changes of {len(subjects)} subject(s) were discarded since the "
               f"last flush: {listed}{more}")
    if any(isinstance(error, StaleVersion) for error in discarded.values()):
        return StaleVersion(message, subjects)
    refused = SnapshotRefused(message)
    refused.subjects = subjects
    return refused


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)

"""The engine below the front door: mailboxes, the drain, activation, and applying outcomes.

`Runtime` (the front door) takes calls and decides where a message goes; the engine runs what
arrives. Each actor's mailbox is drained by a worker of the scheduler, one turn at a time; the
turn runner returns each turn's outcome and the engine applies it: a commit (new version,
snapshot marked for the writer, observers told, outgoing messages posted, the caller answered)
or a failure (rolled back already: the caller and the dead-letter log are told, and the
supervisor's decision, restart or stop, is carried out). Activation loads snapshots in batches;
the writer's refusals come back here to be reloaded; the passivation sweep asks the directory
which actors go. As asyncpg keeps its protocol below its connection API, the engine holds no
public API of its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from actors import (
    SUBJECT_ACTIVATED,
    SUBJECT_PASSIVATED,
    SUBJECT_RESTARTED,
    SUBJECT_STOPPED,
    SUPERVISOR_ESCALATED,
    Registry,
)
from actors._state import CascadeEvent
from actors._values import copy_value
from storage import Snapshot, SnapshotCorrupt, SnapshotStore, StoreUnavailable

from ._actor import (
    ACTIVE,
    EVENT,
    GET,
    GET_EXT,
    KIND_NAMES,
    LOADING,
    PATCH,
    READ,
    STOPPED,
    STORE,
    Actor,
    Message,
    Trouble,
)
from ._backoff import Backoff
from ._clock import Clock
from ._deadletters import DeadLetters
from ._directory import Directory
from ._errors import REFUSALS, RuntimeNotRunning, SubjectStopped
from ._observe import Observed
from ._persistence import Pipeline
from ._ref import SubjectView
from ._scheduler import Drain, Scheduler
from ._supervision import Intensity, Stop, Supervisor, decide, escalate, siblings
from ._turn import TurnRunner

log = logging.getLogger("subjects.runtime")
_decode = msgspec.json.Decoder(dict[str, Any]).decode
LOAD_BATCH = 1000  # most snapshots one activation batch asks the store for


class Engine:
    """Runs the turns of one runtime's actors and applies their outcomes."""

    def __init__(self, *, store: SnapshotStore, clock: Clock, registry: Registry,
                 runner: TurnRunner, directory: Directory, root: Supervisor,
                 dead_letters: DeadLetters, scheduler: Callable[[Drain], Scheduler[Actor]],
                 mailbox_size: int, durable_timeout: float, store_retry: Backoff,
                 rng: random.Random) -> None:
        self.store = store
        self.clock = clock
        self.root = root
        self.dead_letters = dead_letters
        self.mailbox_size = mailbox_size
        self.durable_timeout = durable_timeout
        self.store_retry = store_retry
        self._registry = registry
        self._runner = runner
        self._directory = directory
        self._actors = directory.actors
        self._rng = rng
        self.scheduler = scheduler(self.drain)
        self.observers: list[Callable[[Observed], None]] = []
        self.pipeline: Pipeline | None = None  # while running
        self.accepting = False  # outside callers may send
        self._pending_loads: list[Actor] = []  # loading actors gathered for the next batch
        self._loads: set[asyncio.Task[None]] = set()

    def _writing(self) -> Pipeline:
        if self.pipeline is None:
            raise RuntimeNotRunning("the runtime is not started: use `async with rt:`")
        return self.pipeline

    async def abort(self) -> None:
        for task in list(self._loads):
            task.cancel()
        await asyncio.gather(*self._loads, return_exceptions=True)
        waiting, self._pending_loads = self._pending_loads, []
        for actor in waiting:
            self._refuse_all(actor, actor.mailbox, RuntimeNotRunning("the runtime stopped"))
            self._release(actor)
        for actor in await self.scheduler.stop():
            self._refuse_all(actor, actor.mailbox, RuntimeNotRunning("the runtime stopped"))

    # -- mailboxes -----------------------------------------------------------------------------

    def enqueue(self, name: str, msg: Message, bounded: bool = False) -> bool:
        """Put a message in a mailbox, activating its actor if needed. A `bounded` enqueue (a
        sender outside the runtime) returns False instead when the mailbox is full; messages of
        committed turns are never bounded."""
        actor = self._actors.get(name)
        if actor is None:
            actor = self._activate_later(name)
        elif actor.status == STOPPED:
            assert actor.trouble is not None
            raise SubjectStopped(name, actor.trouble.stop_reason or "stopped")
        box = actor.mailbox
        if box is None:
            actor.mailbox = box = deque()
        elif bounded and len(box) >= self.mailbox_size:
            return False
        box.append(msg)
        if not actor.busy:
            self._start_drain(actor)
        return True

    def post(self, outbox: list[tuple[str, Message]]) -> None:
        """Deliver what a committed turn sent. Committed messages are never refused for a full
        mailbox (that could deadlock two actors sending to each other); one that cannot be
        delivered at all becomes a dead letter."""
        for name, msg in outbox:
            try:
                self.enqueue(name, msg)
            except Exception as exc:
                self._dead_letter(name, msg, exc)

    # -- activation ----------------------------------------------------------------------------

    def _activate_later(self, name: str) -> Actor:
        supervisor = self.root.resolve(name)
        halted = supervisor.halted_reason()
        if halted is not None:
            raise SubjectStopped(name, halted)
        actor = Actor(name, supervisor)
        for passivated in self._directory.add(actor):
            self.lifecycle(passivated.supervisor, SUBJECT_PASSIVATED, passivated.name, None)
        return actor

    def _start_drain(self, actor: Actor) -> None:
        if actor.mailbox is None:
            actor.mailbox = deque()
        self._directory.working(actor)
        self.scheduler.schedule(actor)

    async def drain(self, actor: Actor) -> int:
        """Run the actor's turns, up to the scheduler's throughput; return how many ran."""
        if actor.status == LOADING:
            # Not loaded here: gathered with every other actor the workers find loading in this
            # pass, for one batched load. The actor stays busy; it is scheduled again once loaded.
            self._pending_loads.append(actor)
            if len(self._pending_loads) == 1:
                asyncio.get_running_loop().call_soon(self._start_loads)
            return 0
        box = actor.mailbox
        assert box is not None
        throughput = self.scheduler.throughput
        turns = 0
        again = False  # the actor has more work and goes back in line
        try:
            while True:
                rare = actor.rare
                if rare is not None and rare.trouble is not None and \
                        rare.trouble.restart_at is not None:
                    await self._restart(actor, rare.trouble)
                if not box or actor.status == STOPPED:
                    break
                msg = box.popleft()
                if actor.rare is not None and actor.rare.space:
                    make_room(actor.rare.space)
                await self.turn(actor, msg)
                turns += 1
                if turns == throughput:
                    # Its share is used up: with more work it goes back in line, still busy, so
                    # that an actor whose mailbox keeps refilling holds up nobody else.
                    again = self._has_work(actor)
                    break
        except asyncio.CancelledError:
            self._refuse_all(actor, box, RuntimeNotRunning("the runtime stopped"))
            raise
        finally:
            if again:
                self.scheduler.schedule(actor)
            else:
                self._release(actor)
        return turns

    def _has_work(self, actor: Actor) -> bool:
        """Messages wait in its mailbox, or a restart is pending."""
        trouble = actor.trouble
        return actor.status == ACTIVE and bool(
            actor.mailbox or (trouble is not None and trouble.restart_at is not None))

    def after_inline(self, actor: Actor) -> None:
        """After a turn run in the caller's task: messages that arrived meanwhile (or a pending
        restart) go to a worker, in order; otherwise the actor is idle again."""
        # `_has_work` and `_release` inline for an actor with neither queue nor trouble: this
        # is the hot path of an awaited write.
        if actor.mailbox is not None or actor.rare is not None:
            if self._has_work(actor):
                if actor.mailbox is None:
                    actor.mailbox = deque()
                self.scheduler.schedule(actor)  # still busy: a worker takes over
                return
            if not actor.mailbox:
                actor.mailbox = None
        self._directory.rested(actor)

    def _release(self, actor: Actor) -> None:
        """The actor has no more work: it becomes idle (or stays stopped)."""
        if not actor.mailbox:
            actor.mailbox = None  # an idle actor owns no queue
        self._directory.rested(actor)

    def _start_loads(self) -> None:
        batch, self._pending_loads = self._pending_loads, []
        for start in range(0, len(batch), LOAD_BATCH):
            task = asyncio.get_running_loop().create_task(
                self._load(batch[start:start + LOAD_BATCH]), name="subjects-activation")
            self._loads.add(task)
            task.add_done_callback(self._loads.discard)

    async def _load(self, actors: list[Actor]) -> None:
        """Activate a batch of actors with one `load_many`."""
        try:
            found = await self.store.load_many([a.name for a in actors])
        except asyncio.CancelledError:  # the runtime is stopping: nobody may wait forever
            for actor in actors:
                self._refuse_all(actor, actor.mailbox, RuntimeNotRunning("the runtime stopped"))
                self._release(actor)
            raise
        except Exception as exc:
            # The store is unreachable: refuse what waits (the callers see why) and forget the
            # actors, so that the next message tries the activation again.
            for actor in actors:
                self._not_activated(actor, StoreUnavailable(
                    f"cannot activate {actor.name!r}: loading its snapshot failed: {exc}"))
            return
        for actor in actors:
            if actor.status == STOPPED:  # stopped while loading (its supervisor gave up)
                self._release(actor)
                continue
            try:
                self._install(actor, found.get(actor.name))
            except SnapshotCorrupt as exc:  # that subject alone: the others of the batch load
                log.error("%s", exc)
                self._not_activated(actor, exc)
                continue
            self.lifecycle(actor.supervisor, SUBJECT_ACTIVATED, actor.name, None)
            self.scheduler.schedule(actor)

    def _not_activated(self, actor: Actor, error: Exception) -> None:
        """Refuse what waits for a loading actor (the callers see why) and forget it: the next
        message tries the activation again."""
        self._directory.forget(actor)
        actor.status = STOPPED
        self._refuse_all(actor, actor.mailbox, error)
        self._release(actor)

    def _install(self, actor: Actor, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            actor.props, actor.ext, actor.version = {}, None, 0
        else:
            try:
                props, ext = _decode(snapshot.properties), _decode(snapshot.ext)
            except msgspec.MsgspecError as exc:
                raise SnapshotCorrupt(
                    f"the stored snapshot v{snapshot.version} of {actor.name!r} cannot be read "
                    f"({exc}): repair or delete it in the store") from None
            actor.props, actor.ext, actor.version = props, ext or None, snapshot.version
        actor.stored_version = actor.version
        actor.status = ACTIVE

    def _refuse_all(self, actor: Actor, box: deque[Message] | None, error: Exception) -> None:
        while box:
            msg = box.popleft()
            self._dead_letter(actor.name, msg, error)
            if msg.future is not None and not msg.future.done():
                msg.future.set_exception(error)
        waiting = actor.space
        while waiting:
            room = waiting.popleft()
            if not room.done():
                room.set_result(None)  # the sender looks again and gets the error itself

    # -- outcomes of turns ---------------------------------------------------------------------

    async def turn(self, actor: Actor, msg: Message) -> None:
        """Run one message as a turn and apply its outcome: commit it, or report its failure."""
        kind = msg.kind
        fut = msg.future
        if kind >= GET:  # reads change nothing and run no behaviour
            if fut is not None and not fut.done():
                fut.set_result(self.read_now(actor, msg))
            return
        turn = await self._runner.run(actor, msg)
        error = turn.error
        if error is not None:
            self._failed(actor, msg, error)
            if not isinstance(error, Exception):
                raise error  # cancelled: the drain must end too
            return
        result = turn.result
        if turn._changed:
            actor.ext = turn._ext or None
            actor.version += 1
            assert self.pipeline is not None
            self.pipeline.mark_dirty(actor)
        if self.observers:
            self._notify(actor, turn.cascade)
        if turn.outbox is not None:
            self.post(turn.outbox)
        if fut is not None and not fut.done():
            if kind == PATCH:
                result = actor.version
            if msg.durable:  # the caller hears back once the snapshot is stored
                assert self.pipeline is not None
                self.pipeline.acknowledge(actor, actor.version, fut, result,
                                           self.durable_timeout)
            else:
                fut.set_result(result)

    def _notify(self, actor: Actor, events: list[CascadeEvent]) -> None:
        version = actor.version
        for event_type, prop, old, new, extra, payload, _ in events:
            seen = Observed(actor.name, event_type, payload, prop, old, new, extra, version)
            for observer in self.observers:
                try:
                    observer(seen)
                except Exception:
                    log.exception("observer %r failed on %s", observer, seen)

    def read_now(self, actor: Actor, msg: Message) -> Any:
        kind = msg.kind
        if kind == GET:
            return copy_value(actor.props.get(msg.name, msg.value))
        if kind == GET_EXT:
            ext = actor.ext
            return copy_value(msg.value if ext is None else ext.get(msg.name, msg.value))
        if kind == READ:
            return SubjectView(actor.name, actor.version, copy_value(actor.props),
                               copy_value(actor.ext or {}))
        assert kind == STORE
        return actor, actor.version

    # -- failures and supervisors' decisions ---------------------------------------------------

    def _failed(self, actor: Actor, msg: Message, error: BaseException) -> None:
        fut = msg.future
        # A refusal of the caller's input is the caller's error: it is told, and neither the
        # dead-letter log nor the supervisor hears of it (unless nobody waits for the reply).
        refused = isinstance(error, REFUSALS)
        if not isinstance(error, Exception) and fut is not None and fut.done() and \
                not fut.cancelled() and fut.exception() is not None:
            # Cancelled for a reason already given to the caller (an ask's timeout): keep that.
            self._dead_letter(actor.name, msg, fut.exception())  # type: ignore[arg-type]
        elif not refused or fut is None:
            self._dead_letter(actor.name, msg, error)
        if fut is not None and not fut.done():
            if isinstance(error, Exception):
                fut.set_exception(error)
            elif not self.accepting:  # cancelled by the runtime stopping: tell the caller
                fut.set_exception(RuntimeNotRunning("the runtime stopped during this turn"))
            else:  # cancelled with the caller's own task (an inline turn): nobody waits
                fut.cancel()
        if isinstance(error, Exception) and not refused:
            self._supervise(actor, error)

    def _dead_letter(self, name: str, msg: Message, error: BaseException) -> None:
        # What a redelivery needs, without the reply: a caller's future, or a whole batch's
        # results through its slot, must not live as long as the letter.
        kept = Message(msg.kind, msg.name, msg.value, msg.extra)
        self.dead_letters.add(name, KIND_NAMES[msg.kind], msg.name, msg.value, error,
                              self.clock.now(), kept)

    def _supervise(self, actor: Actor, error: Exception) -> None:
        """Apply the supervisor's decision on a failed turn."""
        policy = actor.supervisor.policy
        trouble = actor.trouble
        if trouble is None:
            actor.trouble = trouble = Trouble(Intensity(policy.max_restarts, policy.within))
        now = self.clock.now()
        decision = decide(policy, trouble, error, now, self._rng)
        if isinstance(decision, Stop):
            self._stop(actor, decision.reason)
            for supervisor, reason in escalate(actor.supervisor, actor.name, error, now):
                self._halt(supervisor, reason)
            return
        self._schedule_restart(actor, decision.at)
        for other in siblings(actor, list(self._actors.values())):
            self._schedule_restart(other, decision.at)

    def _schedule_restart(self, actor: Actor, at: float) -> None:
        trouble = actor.trouble
        if trouble is None:
            policy = actor.supervisor.policy
            actor.trouble = trouble = Trouble(Intensity(policy.max_restarts, policy.within))
        trouble.restart_at = at
        if not actor.busy:
            self._start_drain(actor)

    async def _restart(self, actor: Actor, trouble: Trouble) -> None:
        """Restart an actor from its last snapshot: wait out the backoff, make sure every
        committed change is stored (nothing acknowledged is lost), then load."""
        assert trouble.restart_at is not None
        delay = trouble.restart_at - self.clock.now()
        if delay > 0:
            await self.clock.sleep(delay)
        trouble.restart_at = None
        if actor.status == STOPPED:
            return  # stopped meanwhile (its supervisor gave up): it stays stopped
        pipeline = self._writing()
        attempt = 0
        while True:
            try:
                if not actor.clean:
                    await pipeline.durable(actor, actor.version, None, urgent=True)
                found = await self.store.load_many([actor.name])
                break
            except Exception as exc:
                attempt += 1
                log.warning("restart of %s waits for the store (attempt %d): %s", actor.name,
                            attempt, exc)
                await self.clock.sleep(self.store_retry.delay(attempt, self._rng))
        if actor.status == STOPPED:
            return
        try:
            self._install(actor, found.get(actor.name))
        except SnapshotCorrupt as exc:  # no restart can mend that: stop until repaired
            self._stop(actor, str(exc))
            return
        trouble.restarts += 1
        self.lifecycle(actor.supervisor, SUBJECT_RESTARTED, actor.name,
                        {"restarts": trouble.restarts})

    # -- the writer's refusals, passivation ----------------------------------------------------

    async def write_behind(self, pipeline: Pipeline) -> None:
        """Run the writer; reload the actors whose snapshots it could not store."""
        async for refused in pipeline.run():
            for actor, why in refused:
                self._reload(actor, why)

    def _reload(self, actor: Actor, why: str) -> None:
        """The store will not take the actor's snapshot (it holds another writer's version, or
        cannot keep what it holds): drop our changes, reload."""
        log.error("%s: %s; reloading it from the store", actor.name, why)
        actor.version = actor.stored_version  # nothing of ours is worth writing any more
        assert self.pipeline is not None
        self.pipeline.forget(actor)
        if actor.status == ACTIVE:
            self._schedule_restart(actor, self.clock.now())

    def _stop(self, actor: Actor, reason: str) -> None:
        assert actor.trouble is not None
        actor.status = STOPPED
        actor.trouble.stop_reason = reason
        actor.trouble.restart_at = None
        self._refuse_all(actor, actor.mailbox, SubjectStopped(actor.name, reason))
        log.error("subject %s stopped: %s", actor.name, reason)
        self.lifecycle(actor.supervisor, SUBJECT_STOPPED, actor.name, {"reason": reason})

    def _halt(self, supervisor: Supervisor, reason: str) -> None:
        """A supervisor stopped (escalation): stop every subject it watches, tell its parent."""
        log.error("supervisor %s stopped: %s", supervisor.name, reason)
        policy = supervisor.policy
        for actor in list(self._actors.values()):
            if actor.status != STOPPED and supervisor in actor.supervisor.chain():
                if actor.trouble is None:
                    actor.trouble = Trouble(Intensity(policy.max_restarts, policy.within))
                self._stop(actor, f"supervisor {supervisor.name!r} stopped")
        if supervisor.parent is not None:
            self.lifecycle(supervisor.parent, SUPERVISOR_ESCALATED, supervisor.subject,
                            {"supervisor": supervisor.name, "reason": reason})

    def lifecycle(self, supervisor: Supervisor, event_type: str, subject: str,
                   details: dict[str, Any] | None) -> None:
        """Tell the supervisor's subject what happened, if any behaviour listens."""
        if not self._registry.listens_to(event_type):
            return
        if event_type != SUPERVISOR_ESCALATED and subject.startswith("supervisor:"):
            return  # supervisor subjects' own lifecycle is not reported (it would loop)
        payload = {"subject": subject, "supervisor": supervisor.name, **(details or {})}
        self.post([(supervisor.subject, Message(EVENT, event_type, payload))])

    async def sweep(self, idle_for: float) -> None:
        """Every quarter of `idle_for`, passivate the actors idle long enough (see
        `Directory.sweep`)."""
        while True:
            await self.clock.sleep(idle_for / 4)
            for actor in self._directory.sweep():
                self.lifecycle(actor.supervisor, SUBJECT_PASSIVATED, actor.name, None)



def make_room(waiting: deque[asyncio.Future[None]]) -> None:
    """Wake the first sender still waiting for room in a mailbox."""
    while waiting:
        room = waiting.popleft()
        if not room.done():
            room.set_result(None)
            return

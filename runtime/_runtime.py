"""The runtime: activation, mailboxes, turns, supervision and passivation of subject actors.

Every subject is a virtual actor. Addressing one is free; its first message activates it (state
loaded from the store exactly once, however many messages race to it), and while its mailbox
has work a worker of the scheduler drains it; an idle actor owns no task. Each message is one
turn: the message, then the cascade of property events it causes, breadth-first. A turn commits
as a whole (state, version, outgoing messages) or, if any handler raises, rolls back as a whole
and is reported to the caller, the dead-letter log and the actor's supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

from actors import (
    SUBJECT_ACTIVATED,
    SUBJECT_PASSIVATED,
    SUBJECT_RESTARTED,
    SUBJECT_STOPPED,
    SUPERVISOR_ESCALATED,
    Middleware,
    Registry,
    check_subject_name,
)
from actors._behaviours import Predicate
from actors._state import CascadeEvent
from actors._values import copy_value
from storage import Snapshot, SnapshotCorrupt, SnapshotStore, StoreUnavailable, open_store

from ._actor import (
    ACTIVE,
    ASK,
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
from ._backoff import STORE_RETRY, Backoff
from ._batch import Batch, Slot
from ._clock import Clock
from ._deadletters import DeadLetter, DeadLetters
from ._directory import Directory
from ._errors import (
    REFUSALS,
    AskCycleError,
    AskTimeout,
    MailboxFull,
    RuntimeNotRunning,
    SubjectStopped,
)
from ._observe import Observed
from ._persistence import Pipeline, discarded_error
from ._ref import SubjectRef, SubjectView, checked_patch
from ._scheduler import Drain, Scheduler
from ._supervision import (
    Intensity,
    Policy,
    Stop,
    Strategy,
    Supervisor,
    decide,
    escalate,
    siblings,
)
from ._turn import _CURRENT, TurnRunner, check_event_type, name_of

log = logging.getLogger("subjects.runtime")
F = TypeVar("F", bound=Callable[..., Any])
_decode = msgspec.json.Decoder(dict[str, Any]).decode
LOAD_BATCH = 1000  # most snapshots one activation batch asks the store for
INLINE_BUDGET = 64  # turns a caller may run inline before it takes the mailbox path once


class Runtime:
    """Hosts subject actors: `async with Runtime() as rt: await rt.subject("a").set("x", 1)`.

    store: a URL (`memory://`, `sqlite:///state.db`, `postgresql://...`, `redis://...`) or a store.
    passivate_after: seconds an actor may stay idle before it is snapshotted and dropped (None:
        never). max_active: bound on activated actors; the least recently idle go first.
    mailbox_size: bound on messages waiting for one actor; senders from outside wait for room
        (or get `MailboxFull` with `wait=False`).
    max_cascade_depth: how many generations of property events one turn may cause.
    durable: whether writes wait for their snapshot to be committed (per call: `durable=`).
    root: the root supervisor's policy.
    shutdown_timeout: bound, in seconds, on draining and storing when the runtime closes.
    store_retry: how long to wait between attempts while the store fails (writes, and loads
        of restarting actors).
    clock: where time comes from (the testing kit's `VirtualClock` for virtual time).
    scheduler: makes the scheduler that runs actors' turns, given the function that drains one
        actor's mailbox (the testing kit's chooses the order of turns).
    seed: seeds the backoff jitter, for runs that replay exactly.
    """

    def __init__(
        self,
        store: str | SnapshotStore = "memory://",
        *,
        passivate_after: float | None = 300.0,
        max_active: int | None = None,
        mailbox_size: int = 1000,
        max_cascade_depth: int = 100,
        ask_timeout: float = 30.0,
        durable: bool = False,
        durable_timeout: float = 30.0,
        flush_batch: int = 1000,
        flush_delay: float = 0.005,
        root: Policy | None = None,
        dead_letter_limit: int = 10_000,
        shutdown_timeout: float = 30.0,
        store_retry: Backoff = STORE_RETRY,
        clock: Clock | None = None,
        scheduler: Callable[[Drain], Scheduler[Actor]] = Scheduler,
        seed: int | None = None,
    ) -> None:
        if mailbox_size < 1 or max_cascade_depth < 1 or flush_batch < 1:
            raise ValueError("mailbox_size, max_cascade_depth and flush_batch must be >= 1")
        if max_active is not None and max_active < 1:
            raise ValueError("max_active must be >= 1 or None")
        self.store: SnapshotStore = open_store(store)
        self.passivate_after = passivate_after
        self.max_active = max_active
        self.mailbox_size = mailbox_size
        self.max_cascade_depth = max_cascade_depth
        self.ask_timeout = ask_timeout
        self.durable = durable
        self.durable_timeout = durable_timeout
        self.shutdown_timeout = shutdown_timeout
        self.store_retry = store_retry
        self.clock = clock or Clock()
        self.dead_letters = DeadLetters(dead_letter_limit)
        self.root = Supervisor("root", "*", root or Policy(), None)
        self._flush_batch = flush_batch
        self._flush_delay = flush_delay
        self._rng = random.Random(seed)
        self._registry = Registry()
        self._runner = TurnRunner(self, self._registry, max_cascade_depth)
        self._directory = Directory(max_active)
        self._actors = self._directory.actors  # by name: the hot path's lookup
        self._scheduler = scheduler(self._drain)
        self._inline_budget = INLINE_BUDGET
        self._observers: list[Callable[[Observed], None]] = []
        self._pipeline: Pipeline | None = None
        self._pending_loads: list[Actor] = []  # loading actors gathered for the next batch
        self._loads: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False  # outside callers may send
        self._started = False

    def __repr__(self) -> str:
        return (f"<Runtime store={self.store!r} active={len(self._actors)} "
                f"busy={self._directory.busy}"
                f"{'' if self._started else ' stopped'}>")

    # -- behaviours ---------------------------------------------------------------------------

    def on(self, *event_types: str, subject: str = "*") -> Callable[[F], F]:
        """Attach an `async def handler(ctx)` to event types (glob patterns) on subjects whose
        names match `subject` (a glob pattern)."""
        return self._registry.on(*event_types, subject=subject)

    def when(self, predicate: Predicate) -> Callable[[F], F]:
        """A filter (sync or async) the handler's context must pass; stack as many as needed."""
        return self._registry.when(predicate)

    def middleware(self, func: Middleware) -> Middleware:
        """Wrap every handler call: `async def mw(ctx, next): ... await next() ...`."""
        return self._registry.middleware(func)

    def handlers(self) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any],
                                Callable[..., Any]]:
        """`on, when, middleware, emit = rt.handlers()`: the decorators and emit, bound here."""
        return self.on, self.when, self.middleware, self.emit

    def supervise(
        self,
        pattern: str,
        *,
        name: str | None = None,
        parent: str = "root",
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        escalate: bool = False,
    ) -> Supervisor:
        """Add a supervisor for subjects whose names match `pattern` (below `parent`). A subject
        is watched by the most specific matching supervisor, tried in the order they were added.
        Add supervisors before the subjects they watch are activated. With `escalate`, stops of
        its subjects count against its intensity: past it, it stops with all of them."""
        above = self.root.find(parent)
        if above is None:
            raise LookupError(f"no supervisor named {parent!r}")
        name = name or pattern
        if self.root.find(name) is not None:
            raise ValueError(f"a supervisor named {name!r} exists already")
        check_subject_name(f"supervisor:{name}")
        policy = Policy(strategy, max_restarts, within, backoff or Backoff(), escalate)
        supervisor = Supervisor(name, pattern, policy, above)
        above.children.append(supervisor)
        return supervisor

    def supervisor(self, name: str) -> Supervisor:
        found = self.root.find(name)
        if found is None:
            raise LookupError(f"no supervisor named {name!r}")
        return found

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("this runtime is running already")
        self._loop = asyncio.get_running_loop()
        await self.store.open()
        self._pipeline = Pipeline(self.store, self.clock, batch_size=self._flush_batch,
                                  max_delay=self._flush_delay, retry=self.store_retry)
        self._writer = self._loop.create_task(self._write_behind(self._pipeline),
                                              name="subjects-writer")
        if self.passivate_after is not None:
            self._sweeper = self._loop.create_task(self._sweep(self.passivate_after),
                                                   name="subjects-passivation")
        self._started = True
        self._accepting = True

    async def close(self, timeout: float | None = None) -> None:
        """Stop taking messages from outside, let every mailbox drain (cascades and messages
        between subjects included), store every pending snapshot, close the store.

        `timeout` (seconds of real time; default `shutdown_timeout`) bounds the draining and
        storing: past it, what is still unsaved is named in an error log and the runtime stops
        anyway, so that a store that never comes back cannot hang a shutdown forever."""
        if not self._started:
            return
        self._accepting = False
        assert self._pipeline is not None
        try:
            async with asyncio.timeout(self.shutdown_timeout if timeout is None else timeout):
                await self.idle()
                await self._pipeline.flush()
        except TimeoutError:
            unsaved = [a.name for a in self._actors.values() if not a.clean]
            log.error("shutdown timed out: %d busy subjects, %d with unsaved changes (%s)",
                      self._directory.busy, len(unsaved), ", ".join(unsaved[:20]))
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()
                await asyncio.gather(self._sweeper, return_exceptions=True)
                self._sweeper = None
            await self._abort_drains()
            if self._writer is not None:
                self._writer.cancel()
                await asyncio.gather(self._writer, return_exceptions=True)
                self._writer = None
            if self._pipeline is not None:
                await self._pipeline.stop()
            await self.store.close()
            self._directory.clear()
            self._started = False

    async def _abort_drains(self) -> None:
        for task in list(self._loads):
            task.cancel()
        await asyncio.gather(*self._loads, return_exceptions=True)
        waiting, self._pending_loads = self._pending_loads, []
        for actor in waiting:
            self._refuse_all(actor, actor.mailbox, RuntimeNotRunning("the runtime stopped"))
            self._release(actor)
        for actor in await self._scheduler.stop():
            self._refuse_all(actor, actor.mailbox, RuntimeNotRunning("the runtime stopped"))

    async def idle(self) -> None:
        """Return when every mailbox is empty (and no restart is pending)."""
        await self._directory.quiet()

    async def flush(self) -> None:
        """Return when every snapshot scheduled so far is committed to the store. A subject
        whose changes the store refused (stale, or unstorable: its waiting callers get the
        error, and it is reloaded from the store) is reported: `StaleVersion` (or
        `SnapshotRefused` if none was stale) names in `subjects` every subject whose changes
        were discarded since the previous flush returned."""
        discarded = await self._running_pipeline().flush()
        if discarded:
            raise discarded_error(discarded)

    # -- addressing ---------------------------------------------------------------------------

    def subject(self, name: str) -> SubjectRef:
        """A reference to a subject. Free: nothing is activated until it gets a message."""
        return SubjectRef(self, check_subject_name(name))

    async def emit(self, event_type: str, subject: object, payload: Any = None) -> None:
        """Send an event to a subject. Inside a handler it is sent when the turn commits."""
        await self.tell(subject, event_type, payload)

    async def tell(self, subject: object, event_type: str, payload: Any = None, *,
                   wait: bool = True) -> None:
        """Fire-and-forget: put an event in the subject's mailbox. From outside a turn, a full
        mailbox makes this wait for room, or raise `MailboxFull` when `wait=False`."""
        name = name_of(subject)
        msg = Message(EVENT, check_event_type(event_type), payload)
        turn = _CURRENT.get()
        if turn is not None and turn.runtime is self:
            turn.send(name, msg)
        elif not self._accepting or not self._enqueue(name, msg, bounded=True):
            await self._send(name, msg, wait)  # refused, or a full mailbox: the slow path

    async def ask(self, subject: object, event_type: str, payload: Any = None, *,
                  timeout: float | None = None) -> Any:
        """Send an event and wait for the reply: the first non-None value returned by the
        subject's handlers of that event, in registration order."""
        name = name_of(subject)
        msg = Message(ASK, check_event_type(event_type), payload)
        return await self._call(name, msg, self.ask_timeout if timeout is None else timeout)

    async def patch_many(self, updates: Mapping[Any, Mapping[str, Any]], *, extra: Any = None,
                         durable: bool | None = None) -> dict[str, int]:
        """Patch many subjects in one call: `{subject: {prop: value}}`, subjects given by name or
        reference. Each subject's patch is one turn of its own, atomic for that subject, as if
        `patch` had been sent to each concurrently; there is no transaction across subjects.
        Returns each subject's new version once every turn has run and, when durable, every
        snapshot is committed. If some fail, the rest are still applied and `BatchFailed` names
        both. Inside a handler the patches are sent when its turn commits (returns `{}`)."""
        messages: dict[str, Message] = {}
        for subject, values in updates.items():
            name = name_of(subject)
            if name in messages:
                raise ValueError(f"subject {name!r} is given twice")
            messages[name] = Message(PATCH, "", checked_patch(values), extra)
        turn = _CURRENT.get()
        if turn is not None and turn.runtime is self:
            for name, msg in messages.items():
                turn.send(name, msg)
            return {}
        if self._loop is None or not self._accepting:
            raise RuntimeNotRunning("the runtime is not running: use `async with rt:`"
                                    if not self._started else "the runtime is shutting down")
        batch = Batch(self._loop.create_future(), len(messages))
        durable = self.durable if durable is None else durable
        for sent, (name, msg) in enumerate(messages.items(), 1):
            msg.future = slot = Slot(batch, name)
            msg.durable = durable
            # Always through the mailbox, never run here: the workers run the turns side by
            # side, so a subject whose behaviours wait holds back no other subject of the batch
            # (measured: no slower than running them in the caller's task, one by one).
            try:
                if not self._enqueue(name, msg, bounded=True):
                    await self._send(name, msg, True)  # a full mailbox: wait for room
            except Exception as exc:  # this subject cannot take it (stopped, shutting down)
                if not slot.done():
                    slot.set_exception(exc)
            if not sent % INLINE_BUDGET:
                await asyncio.sleep(0)  # a big batch lets the event loop run now and then
        return await batch.outcome()

    async def restart(self, subject: object) -> None:
        """Let a stopped subject take messages again (its restart history starts afresh)."""
        name = name_of(subject)
        actor = self._actors.get(name)
        if actor is None or actor.status != STOPPED:
            return
        await self._running_pipeline().durable(actor, actor.version, None, urgent=True)
        self._directory.forget(actor)

    async def restart_supervisor(self, name: str) -> None:
        """Let a stopped supervisor, and the subjects it stopped, take messages again."""
        supervisor = self.supervisor(name)
        supervisor.stopped_reason = None
        supervisor.escalations = Intensity(supervisor.policy.max_restarts,
                                           supervisor.policy.within)
        for actor in list(self._actors.values()):
            if actor.status == STOPPED and supervisor in actor.supervisor.chain():
                await self.restart(actor.name)

    async def redeliver(self, letter: DeadLetter | int) -> Any:
        """Take a letter out of the dead-letter log and deliver its message again; returns what
        the turn returns. If it fails again, it is a new dead letter and the error is raised."""
        found, again = self.dead_letters.take(letter)
        if again.kind == STORE:
            return await self._store(found.subject)
        return await self._call(found.subject, again, self.ask_timeout if again.kind == ASK
                                else None)

    def add_observer(self, observer: Callable[[Observed], None]) -> None:
        """Call `observer(event)` for every event of every committed turn, in order."""
        self._observers.append(observer)

    def remove_observer(self, observer: Callable[[Observed], None]) -> None:
        self._observers.remove(observer)

    @property
    def halted(self) -> str | None:
        """Why the runtime refuses every message, or None: its root supervisor stopped, which
        only a root configured with `Policy(escalate=True)` can do."""
        return self.root.stopped_reason

    def active_subjects(self) -> list[str]:
        """Names of the activated subjects (stopped ones included)."""
        return list(self._actors)

    def stopped_subjects(self) -> dict[str, str]:
        """The stopped subjects, each with why: they refuse messages until `restart`ed."""
        return {actor.name: actor.trouble.stop_reason or "stopped"
                for actor in self._actors.values()
                if actor.status == STOPPED and actor.trouble is not None}

    @property
    def busy(self) -> int:
        """How many subjects have work: messages waiting or a turn running (or a restart or
        activation pending). `idle()` waits for none."""
        return self._directory.busy

    async def passivate(self, *names: str) -> list[str]:
        """Store these subjects and drop them from memory now, as the passivation sweep does
        after `passivate_after` idle seconds: their next message activates them again from
        their snapshot. Subjects with work, and stopped ones, stay. Returns those dropped."""
        await self.flush()
        done = []
        for name in names:
            actor = self._actors.get(name)
            if actor is not None and self._directory.passivate(actor):
                self._lifecycle(actor.supervisor, SUBJECT_PASSIVATED, actor.name, None)
                done.append(name)
        return done

    def stats(self) -> dict[str, int]:
        pipeline = self._pipeline
        return {
            "active": len(self._actors),
            "busy": self._directory.busy,
            "idle": len(self._directory.idle),
            "stopped": sum(1 for a in self._actors.values() if a.status == STOPPED),
            "unsaved": pipeline.pending if pipeline else 0,
            "dead_letters": len(self.dead_letters),
        }

    # -- messages from references --------------------------------------------------------------

    async def _read(self, name: str, kind: int, prop: str, default: Any) -> Any:
        return await self._call(name, Message(kind, prop, default), None)

    async def _store(self, name: str) -> int:
        # The actor that ran the turn, not whichever has the name now: passivated since (its
        # snapshot stored first) and activated again, the name belongs to another one.
        actor, version = await self._call(name, Message(STORE, ""), None)
        await self._running_pipeline().durable(actor, version, self.durable_timeout,
                                               urgent=True)
        return int(version)

    # -- sending ------------------------------------------------------------------------------

    async def _call(self, name: str, msg: Message, timeout: float | None,
                    durable: bool | None = None, write: bool = False) -> Any:
        """Send a message and wait for the result of its turn. A `write` sent from inside a turn
        is not waited for: it goes out when that turn commits."""
        turn = _CURRENT.get()
        if turn is not None and turn.runtime is not self:
            turn = None  # a turn of another runtime: for this one, an outside caller
        if turn is not None:
            if write:
                turn.send(name, msg)
                return None
            chain = turn.asking_chain()
            if name in chain:
                raise AskCycleError(chain, name)
            msg.chain = chain
        loop = self._loop
        if loop is None:
            raise RuntimeNotRunning("the runtime is not started: use `async with rt:`")
        fut = loop.create_future()
        msg.future = fut
        if write:
            msg.durable = self.durable if durable is None else durable
        actor = self._actors.get(name)
        if (actor is not None and not actor.busy and actor.status == ACTIVE and turn is None
                and self._accepting and self._scheduler.inline and msg.kind != ASK):
            # The actor is idle and the caller is going to wait anyway: a read is answered, and
            # a write's turn run, right here instead of waking a worker (no task switch, no
            # queueing). Every INLINE_BUDGET turns the caller takes the mailbox path once, so
            # that a caller in a tight loop still lets the event loop run. Not an ask: it runs
            # behaviours, and under concurrent callers (the edge) running them in the workers,
            # back to back, beat running each in its caller's task (measured: 0.86 of the bare
            # endpoint against 0.55), while a lone caller's ask costs a task switch more.
            if msg.kind >= GET:  # a read of an idle actor: nothing to serialise against
                fut.set_result(self._read_now(actor, msg))
                self._directory.used(actor)
            elif self._inline_budget:
                self._inline_budget -= 1
                self._directory.working(actor)
                try:
                    await self._turn(actor, msg)
                finally:
                    self._after_inline(actor)
            else:
                self._inline_budget = INLINE_BUDGET
                self._enqueue(name, msg)
        elif turn is not None:
            # A call from a turn (ask, get): like the messages turns send, it is not bounded
            # and is still delivered while the runtime drains its mailboxes to close.
            self._enqueue(name, msg)
        elif not self._accepting or not self._enqueue(name, msg, bounded=True):
            await self._send(name, msg, True)
        if timeout is None:
            result = await fut
        else:
            timer = self.clock.call_later(timeout, _time_out, fut, name, msg, timeout)
            try:
                result = await fut
            finally:
                timer.cancel()
        return result

    async def _send(self, name: str, msg: Message, wait: bool) -> None:
        """Put a message from outside any turn into a mailbox, honouring the mailbox bound."""
        while True:
            if not self._accepting:
                raise RuntimeNotRunning(
                    "the runtime is not running: use `async with rt:`" if not self._started
                    else "the runtime is shutting down")
            if self._enqueue(name, msg, bounded=True):
                return
            if not wait:
                raise MailboxFull(name, self.mailbox_size)
            actor = self._actors[name]
            room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if actor.space is None:
                actor.space = deque()
            actor.space.append(room)
            try:
                await room
            except asyncio.CancelledError:
                if room.done() and not room.cancelled():
                    _make_room(actor.space)  # the room it was given goes to the next sender
                raise

    def _enqueue(self, name: str, msg: Message, bounded: bool = False) -> bool:
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

    def _post(self, outbox: list[tuple[str, Message]]) -> None:
        """Deliver what a committed turn sent. Committed messages are never refused for a full
        mailbox (that could deadlock two actors sending to each other); one that cannot be
        delivered at all becomes a dead letter."""
        for name, msg in outbox:
            try:
                self._enqueue(name, msg)
            except Exception as exc:
                self._dead_letter(name, msg, exc)

    # -- activation and the mailbox loop --------------------------------------------------------

    def _activate_later(self, name: str) -> Actor:
        supervisor = self.root.resolve(name)
        halted = supervisor.halted_reason()
        if halted is not None:
            raise SubjectStopped(name, halted)
        actor = Actor(name, supervisor)
        for passivated in self._directory.add(actor):
            self._lifecycle(passivated.supervisor, SUBJECT_PASSIVATED, passivated.name, None)
        return actor

    def _start_drain(self, actor: Actor) -> None:
        if actor.mailbox is None:
            actor.mailbox = deque()
        self._directory.working(actor)
        self._scheduler.schedule(actor)

    async def _drain(self, actor: Actor) -> int:
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
        throughput = self._scheduler.throughput
        turns = 0
        again = False  # the actor has more work and goes back in line
        try:
            while True:
                trouble = actor.trouble
                if trouble is not None and trouble.restart_at is not None:
                    await self._restart(actor, trouble)
                if not box or actor.status == STOPPED:
                    break
                msg = box.popleft()
                if actor.space:
                    _make_room(actor.space)
                await self._turn(actor, msg)
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
                self._scheduler.schedule(actor)
            else:
                self._release(actor)
        return turns

    def _has_work(self, actor: Actor) -> bool:
        """Messages wait in its mailbox, or a restart is pending."""
        trouble = actor.trouble
        return actor.status == ACTIVE and bool(
            actor.mailbox or (trouble is not None and trouble.restart_at is not None))

    def _after_inline(self, actor: Actor) -> None:
        """After a turn run in the caller's task: messages that arrived meanwhile (or a pending
        restart) go to a worker, in order; otherwise the actor is idle again."""
        if self._has_work(actor):
            if actor.mailbox is None:
                actor.mailbox = deque()
            self._scheduler.schedule(actor)  # still busy: a worker takes over
        else:
            self._release(actor)

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
            self._lifecycle(actor.supervisor, SUBJECT_ACTIVATED, actor.name, None)
            self._scheduler.schedule(actor)

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

    # -- turns --------------------------------------------------------------------------------

    async def _turn(self, actor: Actor, msg: Message) -> None:
        """Run one message as a turn and apply its outcome: commit it, or report its failure."""
        kind = msg.kind
        fut = msg.future
        if kind >= GET:  # reads change nothing and run no behaviour
            if fut is not None and not fut.done():
                fut.set_result(self._read_now(actor, msg))
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
            assert self._pipeline is not None
            self._pipeline.mark_dirty(actor)
        if self._observers:
            self._notify(actor, turn.cascade)
        if turn.outbox is not None:
            self._post(turn.outbox)
        if fut is not None and not fut.done():
            if kind == PATCH:
                result = actor.version
            if msg.durable:  # the caller hears back once the snapshot is stored
                assert self._pipeline is not None
                self._pipeline.acknowledge(actor, actor.version, fut, result,
                                           self.durable_timeout)
            else:
                fut.set_result(result)

    def _notify(self, actor: Actor, events: list[CascadeEvent]) -> None:
        version = actor.version
        for event_type, prop, old, new, extra, payload, _ in events:
            seen = Observed(actor.name, event_type, payload, prop, old, new, extra, version)
            for observer in self._observers:
                try:
                    observer(seen)
                except Exception:
                    log.exception("observer %r failed on %s", observer, seen)

    def _read_now(self, actor: Actor, msg: Message) -> Any:
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

    # -- failure and supervision ----------------------------------------------------------------

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
            elif not self._accepting:  # cancelled by the runtime stopping: tell the caller
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
        pipeline = self._running_pipeline()
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
        self._lifecycle(actor.supervisor, SUBJECT_RESTARTED, actor.name,
                        {"restarts": trouble.restarts})

    async def _write_behind(self, pipeline: Pipeline) -> None:
        """Run the writer; reload the actors whose snapshots it could not store."""
        async for refused in pipeline.run():
            for actor, why in refused:
                self._reload(actor, why)

    def _reload(self, actor: Actor, why: str) -> None:
        """The store will not take the actor's snapshot (it holds another writer's version, or
        cannot keep what it holds): drop our changes, reload."""
        log.error("%s: %s; reloading it from the store", actor.name, why)
        actor.version = actor.stored_version  # nothing of ours is worth writing any more
        assert self._pipeline is not None
        self._pipeline.forget(actor)
        if actor.status == ACTIVE:
            self._schedule_restart(actor, self.clock.now())

    def _stop(self, actor: Actor, reason: str) -> None:
        assert actor.trouble is not None
        actor.status = STOPPED
        actor.trouble.stop_reason = reason
        actor.trouble.restart_at = None
        self._directory.idle.pop(actor.name, None)
        self._refuse_all(actor, actor.mailbox, SubjectStopped(actor.name, reason))
        log.error("subject %s stopped: %s", actor.name, reason)
        self._lifecycle(actor.supervisor, SUBJECT_STOPPED, actor.name, {"reason": reason})

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
            self._lifecycle(supervisor.parent, SUPERVISOR_ESCALATED, supervisor.subject,
                            {"supervisor": supervisor.name, "reason": reason})

    def _lifecycle(self, supervisor: Supervisor, event_type: str, subject: str,
                   details: dict[str, Any] | None) -> None:
        """Tell the supervisor's subject what happened, if any behaviour listens."""
        if not self._registry.listens_to(event_type):
            return
        if event_type != SUPERVISOR_ESCALATED and subject.startswith("supervisor:"):
            return  # supervisor subjects' own lifecycle is not reported (it would loop)
        payload = {"subject": subject, "supervisor": supervisor.name, **(details or {})}
        self._post([(supervisor.subject, Message(EVENT, event_type, payload))])

    # -- passivation --------------------------------------------------------------------------

    async def _sweep(self, idle_for: float) -> None:
        """Every quarter of `idle_for`, passivate the actors idle long enough (see
        `Directory.sweep`)."""
        while True:
            await self.clock.sleep(idle_for / 4)
            for actor in self._directory.sweep():
                self._lifecycle(actor.supervisor, SUBJECT_PASSIVATED, actor.name, None)

    def _running_pipeline(self) -> Pipeline:
        if self._pipeline is None or not self._started:
            raise RuntimeNotRunning("the runtime is not started: use `async with rt:`")
        return self._pipeline


def _make_room(waiting: deque[asyncio.Future[None]]) -> None:
    while waiting:
        room = waiting.popleft()
        if not room.done():
            room.set_result(None)
            return


def _time_out(fut: asyncio.Future[Any], name: str, msg: Message, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(AskTimeout(
            f"{KIND_NAMES[msg.kind]} {msg.name!r} to {name!r} got no reply within {timeout} s"))


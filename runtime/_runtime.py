"""The front door: a runtime's configuration, lifecycle and every public call.

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
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from mypy_extensions import mypyc_attr

from actors import (
    SUBJECT_PASSIVATED,
    Middleware,
    Registry,
    check_subject_name,
)
from actors._behaviours import Predicate
from storage import SnapshotStore, open_store

from ._actor import (
    ACTIVE,
    ASK,
    EVENT,
    GET,
    KIND_NAMES,
    PATCH,
    STOPPED,
    STORE,
    Actor,
    Message,
)
from ._backoff import STORE_RETRY, Backoff
from ._batch import Batch, Slot
from ._clock import Clock
from ._deadletters import DeadLetter, DeadLetters
from ._directory import Directory
from ._engine import Engine, make_room
from ._errors import (
    AskCycleError,
    AskTimeout,
    MailboxFull,
    RuntimeNotRunning,
)
from ._observe import Observed
from ._persistence import Pipeline, discarded_error
from ._ref import SubjectRef, checked_patch
from ._scheduler import Drain, Scheduler
from ._supervision import (
    Intensity,
    Policy,
    Strategy,
    Supervisor,
)
from ._turn import _CURRENT, Turn, TurnRunner, check_event_type, name_of
from ._waits import WaitGraph

log = logging.getLogger("subjects.runtime")
F = TypeVar("F", bound=Callable[..., Any])
INLINE_BUDGET = 64  # turns a caller may run inline before it takes the mailbox path once


# Subclassed by the testing kit: the compiled build allows interpreted subclasses.
@mypyc_attr(allow_interpreted_subclasses=True)
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
        self.max_cascade_depth = max_cascade_depth
        self.ask_timeout = ask_timeout
        self.durable = durable
        self.shutdown_timeout = shutdown_timeout
        self.store_retry = store_retry
        self.clock = clock or Clock()
        self.dead_letters = DeadLetters(dead_letter_limit)
        self.root = Supervisor("root", "*", root or Policy(), None)
        self._flush_batch = flush_batch
        self._flush_delay = flush_delay
        self._registry = Registry()
        self._directory = Directory(max_active)
        self._waits = WaitGraph()  # which turns wait on which subjects' mailboxes
        self._actors = self._directory.actors  # by name: the hot path's lookup
        self._engine = Engine(
            store=self.store, clock=self.clock, registry=self._registry,
            runner=TurnRunner(self, self._registry, max_cascade_depth),
            directory=self._directory, root=self.root, dead_letters=self.dead_letters,
            scheduler=scheduler, mailbox_size=mailbox_size, durable_timeout=durable_timeout,
            store_retry=store_retry, rng=random.Random(seed))
        self._inline_budget = INLINE_BUDGET
        self._sweeper: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False

    # Settings the engine applies, changeable while running: kept in the engine, in one place.
    @property
    def mailbox_size(self) -> int:
        return self._engine.mailbox_size

    @mailbox_size.setter
    def mailbox_size(self, size: int) -> None:
        self._engine.mailbox_size = size

    @property
    def durable_timeout(self) -> float:
        return self._engine.durable_timeout

    @durable_timeout.setter
    def durable_timeout(self, timeout: float) -> None:
        self._engine.durable_timeout = timeout

    def __repr__(self) -> str:
        return (f"<Runtime store={self.store!r} active={len(self._actors)} "
                f"busy={self._directory.busy}"
                f"{'' if self._started else ' stopped'}>")

    # -- behaviours ---------------------------------------------------------------------------

    def on(self, *event_types: str, subject: str = "*",
           properties: Iterable[str] | None = None) -> Callable[[F], F]:
        """Attach a handler, `async def handler(ctx)` or a plain `def`, to event types (glob
        patterns) on subjects whose names match `subject` (a glob pattern); `properties`
        narrows property events to those of the properties named."""
        return self._registry.on(*event_types, subject=subject, properties=properties)

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
        engine = self._engine
        engine.pipeline = pipeline = Pipeline(self.store, self.clock,
                                              batch_size=self._flush_batch,
                                              max_delay=self._flush_delay, retry=self.store_retry)
        self._writer = self._loop.create_task(engine.write_behind(pipeline),
                                              name="subjects-writer")
        if self.passivate_after is not None:
            self._sweeper = self._loop.create_task(engine.sweep(self.passivate_after),
                                                   name="subjects-passivation")
        self._started = True
        self._engine.accepting = True

    async def close(self, timeout: float | None = None) -> None:
        """Stop taking messages from outside, let every mailbox drain (cascades and messages
        between subjects included), store every pending snapshot, close the store.

        `timeout` (seconds of real time; default `shutdown_timeout`) bounds the draining and
        storing: past it, what is still unsaved is named in an error log and the runtime stops
        anyway, so that a store that never comes back cannot hang a shutdown forever."""
        if not self._started:
            return
        self._engine.accepting = False
        assert self._engine.pipeline is not None
        try:
            async with asyncio.timeout(self.shutdown_timeout if timeout is None else timeout):
                await self.idle()
                await self._engine.pipeline.flush()
        except TimeoutError:
            unsaved = [a.name for a in self._actors.values() if not a.clean]
            log.error("shutdown timed out: %d busy subjects, %d with unsaved changes (%s)",
                      self._directory.busy, len(unsaved), ", ".join(unsaved[:20]))
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()
                await asyncio.gather(self._sweeper, return_exceptions=True)
                self._sweeper = None
            await self._engine.abort()
            if self._writer is not None:
                self._writer.cancel()
                await asyncio.gather(self._writer, return_exceptions=True)
                self._writer = None
            if self._engine.pipeline is not None:
                await self._engine.pipeline.stop()
            await self.store.close()
            self._directory.clear()
            self._started = False


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
        # An active subject's name was checked when it was activated.
        name = subject if subject.__class__ is str and subject in self._actors else \
            name_of(subject)
        if event_type.__class__ is not str or not event_type:
            check_event_type(event_type)  # raises
        msg = Message(EVENT, event_type, payload)
        turn = _CURRENT.get()
        if turn is not None and turn.runtime is self:
            turn.send(name, msg)
        elif not self._engine.accepting or not self._engine.enqueue(name, msg, bounded=True):
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
        if self._loop is None or not self._engine.accepting:
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
                if not self._engine.enqueue(name, msg, bounded=True):
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
        self._engine.observers.append(observer)

    def remove_observer(self, observer: Callable[[Observed], None]) -> None:
        self._engine.observers.remove(observer)

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
                self._engine.lifecycle(actor.supervisor, SUBJECT_PASSIVATED, actor.name, None)
                done.append(name)
        return done

    def stats(self) -> dict[str, int]:
        pipeline = self._engine.pipeline
        return {
            "active": len(self._actors),
            "busy": self._directory.busy,
            "idle": self._directory.idle_count(),
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
                and self._engine.accepting and self._engine.scheduler.inline and msg.kind != ASK):
            # The actor is idle and the caller is going to wait anyway: a read is answered, and
            # a write's turn run, right here instead of waking a worker (no task switch, no
            # queueing). Every INLINE_BUDGET turns the caller takes the mailbox path once, so
            # that a caller in a tight loop still lets the event loop run. Not an ask: it runs
            # behaviours, and under concurrent callers (the edge) running them in the workers,
            # back to back, beat running each in its caller's task (measured: 0.86 of the bare
            # endpoint against 0.55), while a lone caller's ask costs a task switch more.
            if msg.kind >= GET:  # a read of an idle actor: nothing to serialise against
                fut.set_result(self._engine.read_now(actor, msg))
                self._directory.used(actor)
            elif self._inline_budget:
                self._inline_budget -= 1
                self._directory.working(actor)
                try:
                    await self._engine.turn(actor, msg)
                finally:
                    self._engine.after_inline(actor)
            else:
                self._inline_budget = INLINE_BUDGET
                self._engine.enqueue(name, msg)
        elif turn is not None:
            return await self._call_from_turn(turn, name, msg, fut, timeout)
        elif not self._engine.accepting or not self._engine.enqueue(name, msg, bounded=True):
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

    async def _call_from_turn(self, turn: Turn, name: str, msg: Message, fut: asyncio.Future[Any],
                              timeout: float | None) -> Any:
        """A call from a turn (ask, get): like the messages turns send, it is not bounded and is
        still delivered while the runtime drains its mailboxes to close. While it waits, its turn
        waits on the target's mailbox: an edge of the wait-for graph, refused with
        `AskCycleError` before anything is sent if it would close a cycle (a deadlock)."""
        wait = self._waits.wait(turn, name)
        try:
            self._engine.enqueue(name, msg)
            if timeout is None:
                return await fut
            timer = self.clock.call_later(timeout, _time_out, fut, name, msg, timeout)
            try:
                return await fut
            finally:
                timer.cancel()
        finally:
            if wait is not None:
                self._waits.done(wait)

    async def _send(self, name: str, msg: Message, wait: bool) -> None:
        """Put a message from outside any turn into a mailbox, honouring the mailbox bound."""
        while True:
            if not self._engine.accepting:
                raise RuntimeNotRunning(
                    "the runtime is not running: use `async with rt:`" if not self._started
                    else "the runtime is shutting down")
            if self._engine.enqueue(name, msg, bounded=True):
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
                    make_room(actor.space)  # the room it was given goes to the next sender
                raise



    # -- activation and the mailbox loop --------------------------------------------------------












    # -- turns --------------------------------------------------------------------------------




    # -- failure and supervision ----------------------------------------------------------------











    # -- passivation --------------------------------------------------------------------------


    def _running_pipeline(self) -> Pipeline:
        if self._engine.pipeline is None or not self._started:
            raise RuntimeNotRunning("the runtime is not started: use `async with rt:`")
        return self._engine.pipeline

    @property
    def _pipeline(self) -> Pipeline | None:
        """The writer's pipeline while running (white-box tests read its counters)."""
        return self._engine.pipeline


def _time_out(fut: asyncio.Future[Any], name: str, msg: Message, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(AskTimeout(
            f"{KIND_NAMES[msg.kind]} {msg.name!r} to {name!r} got no reply within {timeout:g} s"))


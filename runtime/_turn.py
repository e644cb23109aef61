"""One turn: a message to an actor, and the cascade of property events it causes, run to an
outcome. The runner changes nothing outside the actor's state and returns the `Turn`: the
front door commits it (new version, snapshot, outgoing messages, reply) or, when `error` is
set, reports the failure; the state is already rolled back then.
"""

from __future__ import annotations

from contextvars import ContextVar
from inspect import isawaitable
from typing import Any, Protocol

from actors import Context, Registry, SubjectState, check_subject_name
from actors._behaviours import SKIPPED, call_handler

from ._actor import ASK, DELETE, DELETE_EXT, EVENT, PATCH, SET, SET_EXT, Actor, Message
from ._errors import CascadeTooDeep, NoHandler


class Asker(Protocol):
    """What a turn needs of its runtime: asks wait for a reply, so they cannot wait for the
    commit like the messages a turn sends."""

    async def ask(self, subject: object, event_type: str, payload: Any = None, *,
                  timeout: float | None = None) -> Any: ...


_CURRENT: ContextVar[Turn | None] = ContextVar("subjects_current_turn", default=None)


def name_of(subject: object) -> str:
    """A subject name from a name, a reference or a `ctx.subject`."""
    if type(subject) is str:
        return check_subject_name(subject)
    name = getattr(subject, "name", None)
    if type(name) is str:
        return name
    raise TypeError(f"expected a subject name or reference, not {subject!r}")


def check_event_type(event_type: object) -> str:
    if type(event_type) is not str or not event_type:
        raise TypeError(f"event type must be a non-empty str, not {event_type!r}")
    return event_type


class Turn(SubjectState):
    """One turn of one actor: the state its handlers see (`ctx.subject`), the messages they send
    (the outbox, delivered on commit) and the ask chain the turn runs in. One object per turn."""

    __slots__ = ("chain", "error", "outbox", "result", "runtime")

    def __init__(self, runtime: Asker, name: str, props: dict[str, Any],
                 ext: dict[str, Any] | None, chain: tuple[str, ...]) -> None:
        SubjectState.__init__(self, name, props, ext)
        self.runtime = runtime
        self.chain = chain  # the subjects waiting, through asks, on this turn's message
        self.outbox: list[tuple[str, Message]] | None = None
        self.result: Any = None  # the reply: a write's result, or an ask's answer
        self.error: BaseException | None = None  # why it failed (state rolled back)

    def send(self, target: str, message: Message) -> None:
        outbox = self.outbox
        if outbox is None:
            self.outbox = outbox = []
        outbox.append((target, message))

    def emit(self, event_type: object, subject: object, payload: Any = None) -> None:
        # `object`, checked here: compiled, a `str` parameter would refuse a wrong type itself,
        # with mypyc's message instead of ours.
        self.send(name_of(subject), Message(EVENT, check_event_type(event_type), payload))

    async def ask(self, subject: object, event_type: str, payload: Any = None,
                  timeout: float | None = None) -> Any:
        return await self.runtime.ask(subject, event_type, payload, timeout=timeout)

    @property
    def running(self) -> bool:
        """Still in progress: its handlers run, or wait on calls (then it holds its mailbox)."""
        return self._open

    def asking_chain(self) -> tuple[str, ...]:
        """The chain an ask sent from this turn carries: everyone waiting, then this subject."""
        return (*self.chain, self.name)


class TurnRunner:
    """Runs turns against one registry of behaviours; holds nothing between turns."""

    __slots__ = ("max_depth", "owner", "registry")

    def __init__(self, owner: Asker, registry: Registry, max_depth: int) -> None:
        self.owner = owner
        self.registry = registry
        self.max_depth = max_depth

    async def run(self, actor: Actor, msg: Message) -> Turn:
        """Apply a write or event message to the actor's state, then work through the cascade
        of events it causes, breadth-first, until it settles. Returns the turn as its outcome:
        committed by the caller, or rolled back already with `error` set."""
        kind = msg.kind
        state = turn = Turn(self.owner, actor.name, actor.props, actor.ext, msg.chain)
        actor.turn = turn
        token = _CURRENT.set(turn)
        result: Any = None
        try:
            # A message's values were normalised by its sender (`checked_value`): put as they
            # are, unless a callable computes them from the current value here.
            if kind == SET:
                value = msg.value
                result = (state.set if callable(value) else state.put)(msg.name, value,
                                                                       msg.extra)
            elif kind in (EVENT, ASK):
                state.cascade.append((msg.name, None, None, None, None, msg.value, 0))
            elif kind == DELETE:
                result = state.delete(msg.name, msg.extra)
            elif kind == PATCH:
                for prop, value in msg.value.items():
                    (state.set if callable(value) else state.put)(prop, value, msg.extra)
            elif kind == SET_EXT:
                result = state.set_ext(msg.name, msg.value)
            elif kind == DELETE_EXT:
                result = state.delete_ext(msg.name)
            events = state.cascade
            if events:
                # Inline here, being the hottest loop of the runtime.
                name = actor.name
                registry = self.registry
                fixed = registry.fixed
                match = registry.match
                middleware = registry.middleware_chain
                limit = self.max_depth
                asking = kind == ASK
                i = 0
                while i < len(events):
                    event_type, prop, old, new, extra, payload, depth = events[i]
                    i += 1
                    if depth >= limit:
                        raise CascadeTooDeep(
                            f"the turn of {name!r} did not settle after {limit} generations of "
                            f"property events (last: {event_type} {prop!r}); do two behaviours "
                            "keep changing each other's property?")
                    handlers = fixed.get(event_type)
                    if handlers is None:
                        handlers = match(event_type, name, prop)
                    if not handlers:
                        if asking and i == 1:
                            raise NoHandler(f"no behaviour answers {event_type!r} on {name!r}")
                        continue
                    ctx = Context(turn, state, event_type, payload, prop, old, new, extra)
                    state._depth = depth + 1
                    for handler in handlers:
                        if middleware:
                            reply = await call_handler(handler, ctx, middleware)
                            if asking and i == 1 and result is None and reply is not SKIPPED:
                                result = reply
                            continue
                        # No middleware: filters and handler called right here.
                        passed = True
                        for f in handler.filters:
                            verdict = f.predicate(ctx)
                            if verdict.__class__ is not bool and isawaitable(verdict):
                                verdict = await verdict
                            if not verdict:
                                passed = False
                                break
                        if passed:
                            ctx.handler = handler.name
                            reply = handler.func(ctx)
                            if handler.is_async:
                                reply = await reply
                            if asking and i == 1 and result is None:
                                result = reply
            turn.result = result
        except BaseException as exc:
            state.rollback()
            turn.error = exc
        state._open = False  # a context kept past its turn can change nothing
        actor.turn = None
        _CURRENT.reset(token)
        return turn

"""The engine's record of one activated subject, and the messages in its mailbox.

Both are small `__slots__` objects: an idle actor costs its properties plus this record and
owns no task and no queue (the mailbox deque exists only while messages wait).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from actors import SubjectState

if TYPE_CHECKING:
    from ._supervision import Intensity, Supervisor

LOADING, ACTIVE, STOPPED = 0, 1, 2

# Message kinds. Property messages never reach behaviours directly: they change state, and the
# change (if any) is what behaviours see.
EVENT, ASK, SET, DELETE, SET_EXT, DELETE_EXT, PATCH, GET, GET_EXT, READ, STORE = range(11)
KIND_NAMES = ("event", "ask", "set", "delete", "set_ext", "delete_ext", "patch", "get", "get_ext",
              "read", "store")


class Reply(Protocol):
    """Where the outcome of a message goes: its caller's future, or a slot of a batch (one
    future for many messages). The part of `asyncio.Future` the engine uses."""

    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def exception(self) -> BaseException | None: ...
    def set_result(self, result: Any, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...
    def cancel(self) -> bool: ...


class Message(msgspec.Struct, eq=False):
    """One entry of a mailbox. `name` is the event type or property name; `value` the payload or
    new value; `chain` the subjects waiting on this one through asks (for cycle detection).
    The `future` of a `durable` write is resolved only once its snapshot is stored."""

    kind: int
    name: str
    value: Any = None
    extra: Any = None
    future: Reply | None = None
    chain: tuple[str, ...] = ()
    durable: bool = False

    def __repr__(self) -> str:
        return f"<Message {KIND_NAMES[self.kind]} {self.name!r}>"


class Trouble:
    """What an actor that has failed carries: its restart history and pending restart."""

    __slots__ = ("failures", "restart_at", "restarts", "stop_reason")

    def __init__(self, failures: Intensity) -> None:
        self.failures = failures
        self.restart_at: float | None = None
        self.restarts = 0
        self.stop_reason: str | None = None


class Rare:
    """What few actors hold at a time, kept apart so that every other actor is smaller by as
    many fields: its restart history (after a failure), senders waiting for room in its
    mailbox, durable acknowledgements waiting for its snapshot. Dropped once all are gone."""

    __slots__ = ("acks", "space", "trouble")

    def __init__(self) -> None:
        self.trouble: Trouble | None = None
        self.space: deque[asyncio.Future[None]] | None = None
        self.acks: list[tuple[int, Reply, Any, float, float | None]] | None = None


class Actor(msgspec.Struct, gc=False, repr_omit_defaults=True):
    """An activated subject: its state, its version, its mailbox and where it stands.

    Not tracked by the garbage collector (`gc=False`): a runtime holds hundreds of thousands of
    these for a long time, and each full collection would walk every one of them, pausing every
    turn (measured: 50-300 ms pauses with 25,000-100,000 active subjects). Nothing refers back
    to an actor from what it holds once its messages are handled, so it forms no lasting cycle.
    """

    name: str
    supervisor: Supervisor
    props: dict[str, Any] = {}
    ext: dict[str, Any] | None = None
    version: int = 0
    stored_version: int = 0  # the version the store holds (what a write must be based on)
    status: int = LOADING
    mailbox: deque[Message] | None = None
    busy: bool = False  # scheduled or being drained: it has work and a worker will run it
    turn: SubjectState | None = None  # a turn in progress: `props` hold its changes
    queued: int = 0  # its entries in the directory's idle line (the last one stands)
    rare: Rare | None = None  # `trouble`, `space` and `acks`, while any is set

    def __repr__(self) -> str:
        status = ("loading", "active", "stopped")[self.status]
        return f"<Actor {self.name!r} v{self.version} {status}>"

    # Hot paths test `rare is None` first: each of these is a call.
    @property
    def trouble(self) -> Trouble | None:
        """Its restart history and pending restart, once it has failed."""
        rare = self.rare
        return None if rare is None else rare.trouble

    @trouble.setter
    def trouble(self, trouble: Trouble | None) -> None:
        self._rare().trouble = trouble
        self._tidy()

    @property
    def space(self) -> deque[asyncio.Future[None]] | None:
        """Senders waiting for room in its mailbox."""
        rare = self.rare
        return None if rare is None else rare.space

    @space.setter
    def space(self, space: deque[asyncio.Future[None]] | None) -> None:
        self._rare().space = space
        self._tidy()

    @property
    def acks(self) -> list[tuple[int, Reply, Any, float, float | None]] | None:
        """Durable acknowledgements waiting for a version to be stored: (version, future,
        result, deadline, timeout); the persistence pipeline's."""
        rare = self.rare
        return None if rare is None else rare.acks

    @acks.setter
    def acks(self, acks: list[tuple[int, Reply, Any, float, float | None]] | None) -> None:
        self._rare().acks = acks
        self._tidy()

    def _rare(self) -> Rare:
        rare = self.rare
        if rare is None:
            self.rare = rare = Rare()
        return rare

    def _tidy(self) -> None:
        rare = self.rare
        if rare is not None and rare.trouble is None and rare.space is None and \
                rare.acks is None:
            self.rare = None

    def committed(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Its properties and extended properties as of its last committed turn: what a
        snapshot holds, even in the middle of a turn."""
        turn = self.turn
        return (self.props, self.ext) if turn is None else turn.committed()

    @property
    def clean(self) -> bool:
        """Everything committed is stored."""
        return self.version == self.stored_version

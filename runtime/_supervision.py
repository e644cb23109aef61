"""Supervision policy: what happens when a turn fails (Erlang/OTP and Akka semantics).

The tree is Runtime -> supervisors (each watching subjects whose names match its pattern) ->
subject actors. Virtual actors are many and independent, so restart intensity is counted per
actor: an actor that fails more than `max_restarts` times within `within` seconds is stopped.

Escalation is opt-in, per supervisor (`escalate=True`): such a supervisor counts the stops
below it against its own intensity; past it, it stops (with every subject it watches) and
escalates to its parent, which again counts it only if it escalates too. Off by default, as in
Orleans: one stopped subject says nothing about its independent siblings, and with escalation on
at the root a few bad subjects would halt the whole runtime.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

from actors._patterns import compile_pattern

from ._actor import ACTIVE
from ._backoff import Backoff

if TYPE_CHECKING:
    from ._actor import Actor, Trouble

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


@dataclass(frozen=True)
class Policy:
    """How a supervisor treats failures of the subjects it watches.

    - strategy: which actors restart when one fails: only it (one_for_one), every active actor of
      this supervisor (one_for_all), or it and those activated after it (rest_for_one).
    - max_restarts within `within` seconds: the restart intensity (OTP's MaxR/MaxT).
    - escalate: whether subjects stopped below this supervisor count against that same
      intensity, stopping the supervisor (and escalating to its parent) past it.
    """

    strategy: Strategy = "one_for_one"
    max_restarts: int = 3
    within: float = 5.0
    backoff: Backoff = field(default_factory=Backoff)
    escalate: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; use one of {STRATEGIES}")
        if self.max_restarts < 0 or self.within <= 0:
            raise ValueError("max_restarts must be >= 0 and within > 0")


class Intensity:
    """Counts events in a sliding window: exceeded once more than `limit` fall within it."""

    __slots__ = ("_times", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Record one event at `now`; return whether the intensity is now exceeded."""
        times = self._times
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        return len(times) > self.limit

    @property
    def count(self) -> int:
        return len(self._times)


class Supervisor:
    """A node of the supervision tree. Its lifecycle events go to subject `supervisor:<name>`."""

    def __init__(self, name: str, pattern: str, policy: Policy, parent: Supervisor | None) -> None:
        self.name = name
        self.pattern = pattern
        self.matches = compile_pattern(pattern)
        self.policy = policy
        self.parent = parent
        self.children: list[Supervisor] = []
        self.escalations = Intensity(policy.max_restarts, policy.within)
        self.stopped_reason: str | None = None

    def __repr__(self) -> str:
        state = f" stopped: {self.stopped_reason}" if self.stopped_reason else ""
        return f"<Supervisor {self.name} {self.pattern!r} {self.policy.strategy}{state}>"

    @property
    def subject(self) -> str:
        return f"supervisor:{self.name}"

    @property
    def stopped(self) -> bool:
        return self.stopped_reason is not None

    def resolve(self, subject: str) -> Supervisor:
        """The most specific supervisor below (or at) this one whose pattern matches; children
        are tried in the order they were added."""
        for child in self.children:
            if child.matches(subject):
                return child.resolve(subject)
        return self

    def find(self, name: str) -> Supervisor | None:
        if self.name == name:
            return self
        for child in self.children:
            found = child.find(name)
            if found is not None:
                return found
        return None

    def chain(self) -> list[Supervisor]:
        """This supervisor and its ancestors, up to the root."""
        node: Supervisor | None = self
        out = []
        while node is not None:
            out.append(node)
            node = node.parent
        return out

    def halted_reason(self) -> str | None:
        """Why subjects under this supervisor refuse messages, if any ancestor is stopped."""
        for node in self.chain():
            if node.stopped_reason is not None:
                return f"supervisor {node.name!r} stopped: {node.stopped_reason}"
        return None


class Restart(NamedTuple):
    """Restart the failed actor from its last snapshot at `at` (clock time), and with it the
    siblings its supervisor's strategy names."""

    at: float


class Stop(NamedTuple):
    """Stop the failed actor: it refuses messages until restarted by hand."""

    reason: str


def decide(policy: Policy, trouble: Trouble, error: Exception, now: float,
           rng: random.Random) -> Restart | Stop:
    """What becomes of an actor whose turn failed with `error` (its failure is recorded in
    `trouble`): a restart after the backoff, or a stop once the intensity is exceeded."""
    if trouble.failures.record(now):
        return Stop(f"more than {policy.max_restarts} restarts within {policy.within:g} s; "
                    f"last error: {type(error).__name__}: {error}")
    return Restart(now + policy.backoff.delay(trouble.failures.count, rng))


def siblings(actor: Actor, actors: Iterable[Actor]) -> list[Actor]:
    """The other actors of the failed one's supervisor that restart with it: every one
    (one_for_all), those activated after it (rest_for_one), or none (one_for_one). `actors`
    in activation order; only active ones can restart."""
    supervisor = actor.supervisor
    strategy = supervisor.policy.strategy
    if strategy == "one_for_one":
        return []
    found, after = [], False
    for other in actors:
        if other is actor:
            after = True
        elif other.supervisor is supervisor and other.status == ACTIVE and (
                strategy == "one_for_all" or after):
            found.append(other)
    return found


def escalate(supervisor: Supervisor, child: str, error: Exception,
             now: float) -> list[tuple[Supervisor, str]]:
    """`child` stopped below `supervisor`: the supervisors that stop because of it, bottom up,
    each with its reason. A supervisor counts stops only if it escalates; past its intensity it
    stops, and its parent counts that stop in turn."""
    stopped = []
    node: Supervisor | None = supervisor
    while node is not None and node.policy.escalate and not node.stopped and \
            node.escalations.record(now):
        policy = node.policy
        reason = (f"more than {policy.max_restarts} failures escalated within {policy.within:g} "
                  f"s; last from {child}: {type(error).__name__}: {error}")
        node.stopped_reason = reason
        stopped.append((node, reason))
        child, node = node.subject, node.parent
    return stopped

"""The directory: which subjects are activated here, which of them have work, which are idle.

Bookkeeping only, and no waiting on anything but quiet: it decides which actors are passivated
(idle too long, or the longest idle when too many are active) and returns them, and the front
door tells their supervisors. In a cluster, this is where ownership of a subject is checked.

The idle line is a queue of actors in the order they went idle (or were read while idle), cut
into ticks of the passivation sweep. Going idle appends the actor; nothing is ever removed from
the middle: an actor counts its entries in the line (`Actor.queued`), and only its last entry
stands for it, if it is idle at all. So going busy costs nothing, going idle an append, and an
idle actor one pointer in the line instead of an entry in a second dictionary (measured: 490
bytes per idle subject with three properties became 4xx). Stale entries are dropped as the head
of the line is consumed, and the whole line is rebuilt when they outnumber the actors.
Time is counted in sweep ticks, not timestamps: going idle costs no clock read and no float.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ._actor import ACTIVE, Actor

IDLE_TICKS = 4  # sweeps an actor stays idle before it is passivated (sweeps: every 1/4 period)
# The line is rebuilt without its stale entries once it holds more than two entries per
# activated actor and this many: each rebuild is paid for by as many appends as it drops.
COMPACT_SLACK = 1024


class Directory:
    """The activated actors of one runtime, by name, and their idle line."""

    __slots__ = ("_entries", "_line", "_quiet", "_ticks", "actors", "busy", "max_active", "tick")

    def __init__(self, max_active: int | None) -> None:
        self.max_active = max_active
        self.actors: dict[str, Actor] = {}
        self.busy = 0  # actors with work (scheduled or being drained)
        self.tick = 0  # passivation sweeps so far
        self._line: deque[Actor] = deque()  # the idle line, the longest idle first
        self._ticks: deque[list[int]] = deque()  # [tick, entries of the line made in it]
        self._entries = 0
        self._quiet: list[asyncio.Future[None]] = []  # waiting for busy == 0

    def add(self, actor: Actor) -> list[Actor]:
        """Record a newly activated actor; return the idle actors passivated to make room."""
        self.actors[actor.name] = actor
        if self.max_active is not None and len(self.actors) > self.max_active:
            return self.evict(len(self.actors) - self.max_active)
        return []

    def forget(self, actor: Actor) -> None:
        """Drop the actor (never activated, or restarted by hand): its name is free again."""
        if self.actors.get(actor.name) is actor:
            del self.actors[actor.name]

    def working(self, actor: Actor) -> None:
        """The actor has work: counted busy until `rested`."""
        self.busy += 1
        actor.busy = True

    def rested(self, actor: Actor) -> None:
        """The actor has no more work: it joins the back of the idle line (unless stopped
        meanwhile). The last to rest wakes whoever waits for quiet."""
        actor.busy = False
        self.busy -= 1
        if actor.status == ACTIVE:
            self.used(actor)
        if not self.busy and self._quiet:
            for quiet in self._quiet:
                if not quiet.done():
                    quiet.set_result(None)
            self._quiet.clear()

    def used(self, actor: Actor) -> None:
        """The idle actor was used (it rested, or it was read): to the back of the line."""
        actor.queued += 1
        self._line.append(actor)
        ticks = self._ticks
        if ticks and ticks[-1][0] == self.tick:
            ticks[-1][1] += 1
        else:
            ticks.append([self.tick, 1])
        self._entries += 1
        if self._entries > 2 * len(self.actors) + COMPACT_SLACK:
            self._compact()

    def is_idle(self, actor: Actor) -> bool:
        """Activated here, active, and without work."""
        return (not actor.busy and actor.status == ACTIVE
                and self.actors.get(actor.name) is actor)

    def idle_count(self) -> int:
        return sum(1 for actor in self.actors.values() if not actor.busy and actor.status == ACTIVE)

    async def quiet(self) -> None:
        """Return once no actor has work."""
        while self.busy:
            quiet = asyncio.get_running_loop().create_future()
            self._quiet.append(quiet)
            await quiet

    def _pop(self) -> tuple[Actor, int]:
        """Take the head entry of the line: its actor, and the tick it was made in."""
        group = self._ticks[0]
        tick = group[0]
        group[1] -= 1
        if not group[1]:
            self._ticks.popleft()
        self._entries -= 1
        actor = self._line.popleft()
        actor.queued -= 1
        return actor, tick

    def _stands(self, actor: Actor) -> bool:
        """Whether the entry just taken stood for the actor: its last, and the actor idle."""
        return not actor.queued and self.is_idle(actor)

    def sweep(self) -> list[Actor]:
        """One tick of the passivation sweep: passivate and return the actors idle for
        IDLE_TICKS ticks or more. With a sweep every quarter of the idle period, an actor is
        passivated after between 3/4 and 1 times that period of idleness. One idle with
        unsaved changes goes back to the head of the line, for the next sweep."""
        self.tick += 1
        cutoff = self.tick - IDLE_TICKS
        passivated: list[Actor] = []
        kept: list[tuple[Actor, int]] = []
        while self._ticks and self._ticks[0][0] <= cutoff:
            actor, tick = self._pop()
            if not self._stands(actor):
                continue
            if self.passivate(actor):
                passivated.append(actor)
            else:
                kept.append((actor, tick))  # its snapshot is on its way
        for actor, tick in reversed(kept):  # back at the head, in their order
            actor.queued += 1
            self._line.appendleft(actor)
            self._ticks.appendleft([tick, 1])
            self._entries += 1
        return passivated

    def evict(self, count: int) -> list[Actor]:
        """Passivate and return up to `count` of the longest-idle actors whose state is stored.
        Actors with unsaved changes are skipped, to the back of the line (the bound is soft:
        memory never wins over durability)."""
        victims: list[Actor] = []
        for _ in range(self._entries):  # each entry once at most
            if len(victims) == count:
                break
            actor, _ = self._pop()
            if not self._stands(actor):
                continue
            if self.passivate(actor):
                victims.append(actor)
            else:
                self.used(actor)
        return victims

    def _compact(self) -> None:
        """Rebuild the line with only the entries that stand for idle actors."""
        old, old_ticks = self._line, self._ticks
        self._line, self._ticks, self._entries = deque(), deque(), 0
        for tick, entries in old_ticks:
            kept = 0
            for _ in range(entries):
                actor = old.popleft()
                actor.queued -= 1
                if not actor.queued and self.is_idle(actor):
                    actor.queued = 1
                    self._line.append(actor)
                    kept += 1
            if kept:
                self._ticks.append([tick, kept])
                self._entries += kept

    def passivate(self, actor: Actor) -> bool:
        """Drop an idle actor whose state is stored; return whether it was dropped. Its entries
        in the idle line stand for nothing from now on."""
        if not actor.clean or not self.is_idle(actor):
            return False  # its snapshot is on its way (or it has work): a later sweep takes it
        del self.actors[actor.name]
        return True

    def clear(self) -> None:
        self.actors.clear()
        self._line.clear()
        self._ticks.clear()
        self._entries = 0

"""The directory: which subjects are activated here, which of them have work, which are idle.

Bookkeeping only, and no waiting on anything but quiet: it decides which actors are passivated
(idle too long, or the longest idle when too many are active) and returns them, and the front
door tells their supervisors. In a cluster, this is where ownership of a subject is checked.

The idle line is a dict in the order actors went idle, so the longest idle come first: the
passivation sweep stops at the first actor idle for too short a time, and eviction takes from
the head. Time is counted in sweep ticks, not timestamps, so that going idle costs no clock
read and no float per actor.
"""

from __future__ import annotations

import asyncio

from ._actor import ACTIVE, Actor

IDLE_TICKS = 4  # sweeps an actor stays idle before it is passivated (sweeps: every 1/4 period)


class Directory:
    """The activated actors of one runtime, by name, and their idle line."""

    __slots__ = ("_quiet", "actors", "busy", "idle", "max_active", "tick")

    def __init__(self, max_active: int | None) -> None:
        self.max_active = max_active
        self.actors: dict[str, Actor] = {}
        self.idle: dict[str, Actor] = {}  # idle actors, the longest idle first
        self.busy = 0  # actors with work (scheduled or being drained)
        self.tick = 0  # passivation sweeps so far
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
        self.idle.pop(actor.name, None)

    def working(self, actor: Actor) -> None:
        """The actor has work: out of the idle line, counted busy until `rested`."""
        self.idle.pop(actor.name, None)
        self.busy += 1
        actor.busy = True

    def rested(self, actor: Actor) -> None:
        """The actor has no more work: it joins the back of the idle line (unless stopped or
        forgotten meanwhile). The last to rest wakes whoever waits for quiet."""
        actor.busy = False
        self.busy -= 1
        if actor.status == ACTIVE and self.actors.get(actor.name) is actor:
            actor.idle_since = self.tick
            self.idle[actor.name] = actor
        if not self.busy and self._quiet:
            for quiet in self._quiet:
                if not quiet.done():
                    quiet.set_result(None)
            self._quiet.clear()

    def used(self, actor: Actor) -> None:
        """An idle actor was read: reading counts as use, to the back of the idle line."""
        del self.idle[actor.name]
        actor.idle_since = self.tick
        self.idle[actor.name] = actor

    async def quiet(self) -> None:
        """Return once no actor has work."""
        while self.busy:
            quiet = asyncio.get_running_loop().create_future()
            self._quiet.append(quiet)
            await quiet

    def sweep(self) -> list[Actor]:
        """One tick of the passivation sweep: passivate and return the actors idle for
        IDLE_TICKS ticks or more. With a sweep every quarter of the idle period, an actor is
        passivated after between 3/4 and 1 times that period of idleness."""
        self.tick += 1
        cutoff = self.tick - IDLE_TICKS
        expired = []
        for actor in self.idle.values():
            if actor.idle_since > cutoff:
                break
            expired.append(actor)
        return [actor for actor in expired if self.passivate(actor)]

    def evict(self, count: int) -> list[Actor]:
        """Passivate and return up to `count` of the longest-idle actors whose state is stored.
        Actors with unsaved changes are skipped (the bound is soft: memory never wins over
        durability)."""
        victims: list[Actor] = []
        for actor in self.idle.values():
            if len(victims) == count:
                break
            if actor.clean:
                victims.append(actor)
        return [actor for actor in victims if self.passivate(actor)]

    def passivate(self, actor: Actor) -> bool:
        """Drop an idle actor whose state is stored; return whether it was dropped."""
        if not actor.clean or actor.busy or self.idle.get(actor.name) is not actor:
            return False  # its snapshot is on its way (or it has work): a later sweep takes it
        del self.idle[actor.name]
        del self.actors[actor.name]
        return True

    def clear(self) -> None:
        self.actors.clear()
        self.idle.clear()

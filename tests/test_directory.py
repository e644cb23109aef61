"""The directory's idle line against a model: an exact LRU of idle actors by last use.

The line is lazy (entries are appended, never removed from the middle, and compacted now and
then), so its answers are checked against the plainest possible bookkeeping: for each idle
actor, when it was last used. Sweeps passivate those idle for IDLE_TICKS ticks; eviction takes
the longest idle with a stored state, and sends one with unsaved changes to the back.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime._actor import ACTIVE, Actor
from runtime._directory import IDLE_TICKS, Directory
from runtime._supervision import Policy, Supervisor

ROOT = Supervisor("root", "*", Policy(), None)
NAMES = [f"a:{i}" for i in range(8)]

ops = st.lists(st.one_of(
    st.tuples(st.just("activate"), st.sampled_from(NAMES)),
    st.tuples(st.just("work"), st.sampled_from(NAMES)),
    st.tuples(st.just("read"), st.sampled_from(NAMES)),
    st.tuples(st.just("dirty"), st.sampled_from(NAMES)),
    st.tuples(st.just("clean"), st.sampled_from(NAMES)),
    st.tuples(st.just("passivate"), st.sampled_from(NAMES)),
    st.tuples(st.just("sweep"), st.none()),
), max_size=120)


class Model:
    """Idle actors in order of last use (a dict keeps insertion order), with that tick."""

    def __init__(self, max_active: int | None) -> None:
        self.max_active = max_active
        self.active: dict[str, Actor] = {}
        self.idle: dict[str, int] = {}
        self.tick = 0

    def use(self, name: str) -> None:
        self.idle.pop(name, None)
        self.idle[name] = self.tick

    def evict(self, count: int) -> list[str]:
        victims: list[str] = []
        for name in list(self.idle):  # each once: dirty ones go to the back
            if len(victims) == count:
                break
            if self.active[name].clean:
                victims.append(name)
                del self.idle[name]
                del self.active[name]
            else:
                self.use(name)
        return victims

    def sweep(self) -> list[str]:
        self.tick += 1
        due = [n for n, t in self.idle.items() if t <= self.tick - IDLE_TICKS]
        gone = [n for n in due if self.active[n].clean]
        for name in gone:
            del self.idle[name]
            del self.active[name]
        return gone


@settings(max_examples=300, deadline=None)
@given(program=ops, max_active=st.sampled_from([None, 3, 5]))
def test_the_idle_line_agrees_with_an_exact_lru(program, max_active):
    directory = Directory(max_active)
    model = Model(max_active)
    for op, name in program:
        if op == "activate" and name is not None and name not in directory.actors:
            actor = Actor(name, ROOT)
            actor.status = ACTIVE
            model.active[name] = actor
            evicted = [a.name for a in directory.add(actor)]
            expected = model.evict(len(model.active) - max_active) \
                if max_active is not None and len(model.active) > max_active else []
            assert evicted == expected, (op, name)
            directory.working(actor)  # a new actor is busy until its first turn ends...
            directory.rested(actor)  # ...then idle
            model.use(name)
        elif op == "work" and name in directory.actors:
            actor = directory.actors[name]
            directory.working(actor)
            model.idle.pop(name, None)
            directory.rested(actor)
            model.use(name)
        elif op == "read" and name in directory.actors:
            directory.used(directory.actors[name])
            model.use(name)
        elif op in ("dirty", "clean") and name in directory.actors:
            actor = directory.actors[name]
            actor.version = actor.stored_version + (op == "dirty")
        elif op == "passivate" and name in directory.actors:
            actor = directory.actors[name]
            dropped = directory.passivate(actor)
            assert dropped == actor.clean
            if dropped:
                del model.active[name]
                del model.idle[name]
        elif op == "sweep":
            assert [a.name for a in directory.sweep()] == model.sweep()
        assert set(directory.actors) == set(model.active)
        assert directory.busy == 0
        assert directory.idle_count() == len(model.idle)


def test_the_line_stays_in_proportion_to_the_actors():
    """One hot actor resting a million times leaves a line of a few thousand entries."""
    directory = Directory(None)
    actor = Actor("hot", ROOT)
    actor.status = ACTIVE
    directory.add(actor)
    for _ in range(100_000):
        directory.working(actor)
        directory.rested(actor)
    assert len(directory._line) <= 2 * len(directory.actors) + 1024 + 1
    assert actor.queued == len(directory._line)
    for _ in range(IDLE_TICKS):
        directory.sweep()
    assert "hot" not in directory.actors  # its last entry stood for it

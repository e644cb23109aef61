"""Property-based tests of the actor model's invariants, on random concurrent programs.

Each program is a set of senders running concurrently; each sender sends its own sequence of
operations to a few subjects. A sender owns one property per subject (so per-sender order
fixes its final value) and all senders share a counter they increment with callable updates
(so any lost update shows). Some operations fail on purpose, inside a cascade, after changing
state and emitting messages. The runtime's final state and the property events it emitted must
equal a sequential replay of the successful operations.
"""

from __future__ import annotations

import asyncio
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import PROPERTY_CHANGED, PROPERTY_DELETED
from runtime import BatchFailed, Policy, Runtime
from storage import MemoryStore

SUBJECTS = ["s:0", "s:1", "s:2"]
values = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b"]), st.none(),
                   st.lists(st.integers(0, 2), max_size=2), st.tuples(st.integers(0, 1)))
operation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(SUBJECTS), values),
    st.tuples(st.just("delete"), st.sampled_from(SUBJECTS), st.none()),
    st.tuples(st.just("incr"), st.sampled_from(SUBJECTS), st.integers(1, 3)),
    st.tuples(st.just("fail"), st.sampled_from(SUBJECTS), values),
)
programs = st.lists(st.lists(operation, max_size=12), min_size=1, max_size=5)
# SUBJECTS_HYPOTHESIS_EXAMPLES=2000 for a longer hunt than the default run affords.
EXAMPLES = int(os.environ.get("SUBJECTS_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def normalised(value):
    return list(value) if isinstance(value, tuple) else value


def frozen(value):
    """A hashable stand-in for a JSON value, that tells 1, 1.0 and True apart."""
    return (type(value).__name__, json.dumps(value, sort_keys=True))


def replay(program):
    """The expected final state and events, per subject: every sender's operations in order
    (senders own disjoint properties; increments commute)."""
    state = {s: {} for s in SUBJECTS}
    events = {s: [] for s in SUBJECTS}  # per subject, in order per property
    increments = {s: 0 for s in SUBJECTS}
    for k, ops in enumerate(program):
        prop = f"p{k}"
        for kind, subject, arg in ops:
            props = state[subject]
            if kind == "set":
                new = normalised(arg)
                if prop not in props or props[prop] != new or type(props[prop]) is not type(new):
                    events[subject].append((PROPERTY_CHANGED, prop, frozen(props.get(prop)),
                                            frozen(new), k))
                    props[prop] = new
            elif kind == "delete" and prop in props:
                events[subject].append((PROPERTY_DELETED, prop, frozen(props.pop(prop)),
                                        frozen(None), k))
            elif kind == "incr":
                increments[subject] += arg
    for subject, total in increments.items():
        if total:
            state[subject]["n"] = total
    return state, events, increments


async def run_program(program, store, **options):
    changes = {s: [] for s in SUBJECTS}
    async with Runtime(store, root=Policy(max_restarts=1000, within=1), **options) as rt:
        @rt.on(PROPERTY_CHANGED, PROPERTY_DELETED)
        async def record(ctx):
            await asyncio.sleep(0)  # a handler that suspends: turns interleave for real
            changes[ctx.subject.name].append(
                (ctx.event_type, ctx.property_name, ctx.old_value, ctx.new_value, ctx.extra))

        @rt.on("fail")
        async def fail(ctx):
            ctx.subject.set(ctx.payload["prop"], ctx.payload["value"])
            ctx.subject.set("n", -1)
            await ctx.emit("fail-echo", ctx.subject)
            raise RuntimeError("fails on purpose")

        @rt.on("fail-echo")
        async def echo(ctx):  # must never run: its message came from failed turns only
            ctx.subject.set("echoed", True)

        async def sender(k, ops):
            for kind, subject, arg in ops:
                ref = rt.subject(subject)
                if kind == "set":
                    await ref.set(f"p{k}", arg, extra=k)
                elif kind == "delete":
                    await ref.delete(f"p{k}", extra=k)
                elif kind == "incr":
                    await ref.set("n", lambda n, arg=arg: (n or 0) + arg, extra="incr")
                else:
                    try:
                        await rt.ask(subject, "fail", {"prop": f"p{k}", "value": arg})
                    except RuntimeError:
                        pass
                    else:
                        raise AssertionError("a failing turn reported success")

        await asyncio.gather(*(sender(k, ops) for k, ops in enumerate(program)))
        await rt.idle()
        final = {s: (await rt.subject(s).state()).properties for s in SUBJECTS}
    return final, changes


def check(program, final, changes):
    state, events, increments = replay(program)
    assert final == state
    for subject in SUBJECTS:
        own = [(t, p, frozen(o), frozen(n), x) for t, p, o, n, x in changes[subject] if p != "n"]
        # Each sender's property: exactly the expected events, in order (no more, no fewer).
        for k in range(len(program)):
            assert [e for e in own if e[1] == f"p{k}"] == \
                [e for e in events[subject] if e[1] == f"p{k}"]
        assert len(own) == len(events[subject])
        counter = [(o or 0, n) for t, p, o, n, x in changes[subject] if p == "n"]
        # Every increment is one change event, consecutive, with no lost update.
        assert sorted(counter) == counter
        assert sum(n - o for o, n in counter) == increments[subject]


@SETTINGS
@given(programs)
def test_concurrent_programs_equal_their_sequential_replay(program):
    final, changes = asyncio.run(run_program(program, MemoryStore(), passivate_after=None))
    check(program, final, changes)


@SETTINGS
@given(programs)
def test_passivation_and_reactivation_preserve_state(program):
    # At most one active subject: nearly every message passivates another one first.
    final, changes = asyncio.run(run_program(program, MemoryStore(), passivate_after=None,
                                             max_active=1, flush_delay=0))
    check(program, final, changes)


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=60))
def test_racing_first_messages_activate_each_subject_once(targets):
    class CountingStore(MemoryStore):
        def __init__(self):
            super().__init__()
            self.loads = []

        async def load_many(self, names):
            self.loads.extend(names)
            await asyncio.sleep(0)
            return await super().load_many(names)

    async def main():
        store = CountingStore()
        async with Runtime(store, passivate_after=None) as rt:
            @rt.on("hit")
            async def hit(ctx):
                ctx.subject.set("hits", ctx.subject.get("hits", 0) + 1)

            await asyncio.gather(*(rt.tell(t, "hit") for t in targets))
            await rt.idle()
            hits = {t: await rt.subject(t).get("hits") for t in set(targets)}
        return store.loads, hits

    loads, hits = asyncio.run(main())
    assert sorted(loads) == sorted(set(targets))
    assert hits == {t: targets.count(t) for t in set(targets)}


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=40))
def test_messages_from_one_sender_are_handled_in_order(sends):
    """Each sender's tells to a subject (whatever the mix with asks and other senders) arrive
    in the order sent."""

    async def main():
        async with Runtime(passivate_after=None, mailbox_size=4) as rt:
            @rt.on("note")
            async def note(ctx):
                if ctx.payload["seq"] % 3 == 0:
                    await asyncio.sleep(0)
                log = ctx.subject.get("log", [])
                ctx.subject.set("log", [*log, [ctx.payload["sender"], ctx.payload["seq"]]])

            async def sender(k):
                for seq, (who, subject) in enumerate(sends):
                    if who == k:
                        await rt.tell(f"t:{subject}", "note", {"sender": k, "seq": seq})

            await asyncio.gather(*(sender(k) for k in range(4)))
            await rt.idle()
            return {s: await rt.subject(f"t:{s}").get("log", []) for s in range(3)}

    logs = asyncio.run(main())
    for subject, log in logs.items():
        for k in range(4):
            got = [seq for who, seq in log if who == k]
            assert got == [seq for seq, (w, s) in enumerate(sends) if w == k and s == subject]


# Batches: each sender sends a sequence of `patch_many` calls, each setting its own property on
# some subjects and incrementing their shared counter. A value "boom" makes that subject's turn
# fail (after its changes): the batch reports it, and the other subjects' turns stand.
BOOM = "boom"
batch_programs = st.lists(
    st.lists(st.dictionaries(st.sampled_from(SUBJECTS), st.one_of(values, st.just(BOOM)),
                             min_size=1), max_size=6),
    min_size=1, max_size=4)


def replay_batches(program):
    state = {s: {} for s in SUBJECTS}
    events = {s: [] for s in SUBJECTS}
    counts = {s: 0 for s in SUBJECTS}
    for k, batches in enumerate(program):
        prop = f"p{k}"
        for batch in batches:
            for subject, value in batch.items():
                if value == BOOM:
                    continue
                props, new = state[subject], normalised(value)
                if prop not in props or props[prop] != new or type(props[prop]) is not type(new):
                    events[subject].append((prop, frozen(props.get(prop)), frozen(new)))
                    props[prop] = new
                counts[subject] += 1
    for subject, count in counts.items():
        if count:
            state[subject]["n"] = count
    return state, events, counts


async def run_batches(program, **options):
    changes = {s: [] for s in SUBJECTS}
    async with Runtime(MemoryStore(), root=Policy(max_restarts=1000, within=1),
                       **options) as rt:
        @rt.on(PROPERTY_CHANGED)
        async def record(ctx):
            await asyncio.sleep(0)  # turns interleave for real
            if ctx.new_value == BOOM:
                raise RuntimeError("fails on purpose")
            changes[ctx.subject.name].append((ctx.property_name, ctx.old_value, ctx.new_value))

        async def sender(k, batches):
            for batch in batches:
                updates = {s: {f"p{k}": v, "n": lambda n: (n or 0) + 1} for s, v in batch.items()}
                failing = {s for s, v in batch.items() if v == BOOM}
                try:
                    versions = await rt.patch_many(updates)
                except BatchFailed as exc:
                    assert set(exc.errors) == failing
                    assert all(isinstance(e, RuntimeError) for e in exc.errors.values())
                    versions = exc.results
                else:
                    assert not failing, "a failing turn reported success"
                assert set(versions) == set(batch) - failing

        await asyncio.gather(*(sender(k, batches) for k, batches in enumerate(program)))
        await rt.idle()
        final = {s: (await rt.subject(s).state()).properties for s in SUBJECTS}
    return final, changes


def check_batches(program, final, changes):
    state, events, counts = replay_batches(program)
    assert final == state
    for subject in SUBJECTS:
        own = [(p, frozen(o), frozen(n)) for p, o, n in changes[subject] if p != "n"]
        for k in range(len(program)):
            assert [e for e in own if e[0] == f"p{k}"] == \
                [e for e in events[subject] if e[0] == f"p{k}"]
        assert len(own) == len(events[subject])
        counter = [(o or 0, n) for p, o, n in changes[subject] if p == "n"]
        assert counter == [(i, i + 1) for i in range(counts[subject])]


@SETTINGS
@given(batch_programs)
def test_concurrent_batches_equal_their_patches_replayed(program):
    final, changes = asyncio.run(run_batches(program, passivate_after=None))
    check_batches(program, final, changes)


@SETTINGS
@given(batch_programs)
def test_batches_to_passivated_subjects_equal_their_patches_replayed(program):
    final, changes = asyncio.run(run_batches(program, passivate_after=None, max_active=1,
                                             flush_delay=0))
    check_batches(program, final, changes)

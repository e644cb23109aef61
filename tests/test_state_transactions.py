"""A turn's state is a transaction: every kind of change it makes (set, delete, set_ext,
delete_ext) is undone when it fails, and never visible to a snapshot taken before it commits."""

from __future__ import annotations

import asyncio

import pytest

from actors import PROPERTY_CHANGED, PROPERTY_DELETED, TurnClosed
from runtime import Backoff, Policy, Runtime
from storage import MemoryStore

NEVER = Policy(max_restarts=100, within=1, backoff=Backoff(min=0.001, max=0.001, jitter=0))


def failing(rt: Runtime, event: str, change) -> None:
    """A behaviour on `event` that applies `change(state)` and then fails."""

    @rt.on(event)
    async def fail(ctx):
        change(ctx.subject)
        raise RuntimeError("refused")


async def test_a_delete_in_a_failed_turn_is_undone(rt):
    observed = []
    rt.add_observer(lambda seen: observed.append((seen.event_type, seen.property_name)))
    failing(rt, "drop", lambda s: (s.delete("a"), s.delete("a"), s.set("b", 2), s.delete("b")))
    dev = rt.subject("d")
    await dev.patch({"a": 1, "c": 3})
    before = await dev.state()
    with pytest.raises(RuntimeError, match="refused"):
        await rt.ask("d", "drop")
    assert await dev.state() == before
    assert (PROPERTY_DELETED, "a") not in observed  # nothing of the failed turn is published


async def test_a_set_then_delete_of_a_new_property_in_a_failed_turn_leaves_it_absent(rt):
    failing(rt, "try", lambda s: (s.set("new", 1), s.delete("new"), s.set("new", 2)))
    dev = rt.subject("d")
    await dev.set("x", 1)
    with pytest.raises(RuntimeError):
        await rt.ask("d", "try")
    assert (await dev.state()).properties == {"x": 1}
    assert "new" not in (await dev.state()).properties


async def test_extended_properties_changed_in_a_failed_turn_are_undone(rt):
    def change(s):
        s.set_ext("kept", "changed")
        s.set_ext("kept", "twice")  # the first value before the turn is what comes back
        s.set_ext("added", 1)
        s.delete_ext("gone")
        s.set_ext("gone", "back")

    failing(rt, "try", change)
    dev = rt.subject("d")
    await dev.set_ext("kept", "original")
    await dev.set_ext("gone", "soon")
    before = await dev.state()
    with pytest.raises(RuntimeError):
        await rt.ask("d", "try")
    after = await dev.state()
    assert after.ext == {"kept": "original", "gone": "soon"}
    assert after == before


async def test_the_first_extended_property_of_a_failed_turn_leaves_none(rt):
    failing(rt, "try", lambda s: s.set_ext("first", 1))
    dev = rt.subject("d")
    await dev.set("x", 1)
    version = (await dev.state()).version
    with pytest.raises(RuntimeError):
        await rt.ask("d", "try")
    state = await dev.state()
    assert (state.ext, state.version) == ({}, version)
    assert await dev.get_ext("first", "absent") == "absent"


async def test_delete_ext_of_a_missing_key_changes_nothing(rt):
    dev = rt.subject("d")
    await dev.set("x", 1)
    version = (await dev.state()).version
    assert await dev.delete_ext("nothing") is False  # no extended property at all yet
    await dev.set_ext("other", 1)
    assert await dev.delete_ext("nothing") is False  # some, but not this one
    state = await dev.state()
    assert (state.version, state.ext) == (version + 1, {"other": 1})
    assert await dev.delete_ext("other") is True
    assert (await dev.state()).version == version + 2
    assert await dev.delete_ext("other") is False
    assert (await dev.state()).version == version + 2


async def test_extended_properties_count_as_a_change_only_when_they_change(rt):
    dev = rt.subject("d")
    assert await dev.set_ext("n", 1) == 1
    version = (await dev.state()).version
    assert await dev.set_ext("n", 1) == 1  # the same value: no new version
    assert (await dev.state()).version == version
    assert await dev.set_ext("n", 1.0) == 1.0  # another type: a change
    assert (await dev.state()).version == version + 1
    assert await dev.set_ext("n", lambda old: old + 1) == 2.0
    assert await dev.set_ext("fresh", lambda old: [old]) == [None]
    assert (await dev.state()).ext == {"n": 2.0, "fresh": [None]}


async def test_setting_the_same_value_is_no_change(rt):
    events = []

    @rt.on(PROPERTY_CHANGED)
    async def seen(ctx):
        events.append((ctx.property_name, ctx.old_value, ctx.new_value))

    dev = rt.subject("d")
    await dev.set("x", [1, 2])
    version = (await dev.state()).version
    assert await dev.set("x", [1, 2]) == [1, 2]
    assert await dev.set("x", lambda old: old) == [1, 2]
    assert await dev.delete("missing") is False
    assert (await dev.state()).version == version
    assert events == [("x", None, [1, 2])]


async def test_a_snapshot_taken_during_a_turn_holds_no_extended_change_of_it():
    store = MemoryStore()
    async with Runtime(store, passivate_after=None, flush_delay=0, root=NEVER,
                       ask_timeout=5, shutdown_timeout=5) as rt:
        @rt.on("work")
        async def work(ctx):
            ctx.subject.set_ext("kept", "changed")
            ctx.subject.set_ext("added", 1)
            ctx.subject.delete_ext("gone")
            ctx.subject.set("p", "changed")
            await asyncio.sleep(0.05)  # the writer stores the subject meanwhile
            raise RuntimeError("refused")

        dev = rt.subject("d")
        await dev.set_ext("kept", "original")
        await dev.set_ext("gone", "soon")
        await dev.set("p", "original")
        await rt.flush()
        await dev.set("note", "dirty")  # so that the writer has something to store mid-turn
        with pytest.raises(RuntimeError):
            await rt.ask("d", "work")
        await rt.flush()
        snapshot = (await store.load_many(["d"]))["d"]
        assert snapshot.ext in (b'{"kept":"original","gone":"soon"}',
                                b'{"gone":"soon","kept":"original"}')
        assert b'"p":"original"' in snapshot.properties


async def test_a_snapshot_during_a_turn_holds_no_extended_property_it_adds_first():
    store = MemoryStore()
    async with Runtime(store, passivate_after=None, flush_delay=0, root=NEVER,
                       ask_timeout=5, shutdown_timeout=5) as rt:
        @rt.on("work")
        async def work(ctx):
            ctx.subject.set_ext("added", 1)
            await asyncio.sleep(0.05)
            raise RuntimeError("refused")

        dev = rt.subject("d")
        await dev.set("p", 1)
        await rt.flush()
        await dev.set("p", 2)
        with pytest.raises(RuntimeError):
            await rt.ask("d", "work")
        await rt.flush()
        assert (await store.load_many(["d"]))["d"].ext == b"{}"


async def test_handlers_can_iterate_over_their_subject_while_changing_it(rt):
    seen = {}

    @rt.on("prune")
    async def prune(ctx):
        seen["names"] = sorted(ctx.subject)
        seen["in"] = ("a" in ctx.subject, "zzz" in ctx.subject)
        for name in ctx.subject:  # deleting while iterating is fine: a copy is iterated
            if name.startswith("tmp"):
                ctx.subject.delete(name)
        props = ctx.subject.properties()
        props["a"] = "not stored"  # a copy, too
        seen["props"] = props
        seen["repr"] = repr(ctx.subject)
        return sorted(ctx.subject)

    dev = rt.subject("d")
    await dev.patch({"a": 1, "tmp1": 2, "tmp2": 3})
    assert await rt.ask("d", "prune") == ["a"]
    assert seen["names"] == ["a", "tmp1", "tmp2"]
    assert seen["in"] == (True, False)
    assert seen["props"] == {"a": "not stored"}
    assert seen["repr"] == "<SubjectState 'd' {'a': 1}>"
    assert (await dev.state()).properties == {"a": 1}


async def test_get_ext_inside_a_turn_sees_the_turns_own_changes(rt):
    @rt.on("look")
    async def look(ctx):
        before = (ctx.subject.get_ext("e", "none"), ctx.subject.get("p", "none"))
        ctx.subject.set_ext("e", [1])
        value = ctx.subject.get_ext("e")
        value.append(2)  # a copy
        return [*before, ctx.subject.get_ext("e"), ctx.subject.delete_ext("e"),
                ctx.subject.get_ext("e", "gone")]

    assert await rt.ask("d", "look") == ["none", "none", [1], True, "gone"]
    assert (await rt.subject("d").state()).ext == {}


@pytest.mark.parametrize("use", [
    lambda s: s.set("x", 1),
    lambda s: s.delete("x"),
    lambda s: s.set_ext("x", 1),
    lambda s: s.delete_ext("x"),
])
async def test_every_change_after_the_turn_is_refused(rt, use):
    kept = []

    @rt.on("keep")
    async def keep(ctx):
        kept.append(ctx.subject)

    await rt.tell("d", "keep")
    await rt.idle()
    with pytest.raises(TurnClosed, match="has ended"):
        use(kept[0])


async def test_property_names_are_checked_inside_a_turn_too(rt):
    @rt.on("bad")
    async def bad(ctx):
        for name in ("", 5, None):
            for change in (ctx.subject.set, ctx.subject.set_ext):
                # Compiled (mypyc), the `prop: str` parameter refuses a non-str itself.
                with pytest.raises(TypeError, match=r"property name must be a non-empty str|"
                                                    r"str object expected"):
                    change(name, 1)
        ctx.subject.set("fine", 1)
        ctx.subject.set("fine", 2)  # an existing name is not checked again

    await rt.tell("d", "bad")
    await rt.idle()
    assert (await rt.subject("d").state()).properties == {"fine": 2}
    with pytest.raises(TypeError, match="property name"):
        await rt.subject("d").set("", 1)


async def test_an_equal_extended_value_is_no_change_even_as_another_object(rt):
    dev = rt.subject("d")
    await dev.set_ext("l", [1, {"a": "b"}])
    version = (await dev.state()).version
    assert await dev.set_ext("l", [1, {"a": "b"}]) == [1, {"a": "b"}]
    assert (await dev.state()).version == version
    await dev.set_ext("l", [1, {"a": "c"}])
    assert (await dev.state()).version == version + 1

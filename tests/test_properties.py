"""KRules property semantics: events only on real change, old and new values, deletes, extra,
extended properties, normalisation that survives a reload."""

import pytest

from actors import PROPERTY_CHANGED, PROPERTY_DELETED
from runtime import Runtime


def record(rt, events, pattern="*"):
    @rt.on(PROPERTY_CHANGED, PROPERTY_DELETED, subject=pattern)
    async def recorder(ctx):
        events.append((ctx.subject.name, ctx.event_type, ctx.property_name, ctx.old_value,
                       ctx.new_value, ctx.extra))


async def test_set_get_delete_and_events(rt):
    events = []
    record(rt, events)
    dev = rt.subject("device:1")
    assert await dev.set("cpu", 10) == 10
    assert await dev.set("cpu", 10) == 10  # no change: no event
    await dev.set("cpu", 20, extra={"by": "test"})
    assert await dev.get("cpu") == 20
    assert await dev.get("missing", "dflt") == "dflt"
    assert await dev.delete("cpu") is True
    assert await dev.delete("cpu") is False  # nothing to delete: no event
    assert events == [
        ("device:1", PROPERTY_CHANGED, "cpu", None, 10, None),
        ("device:1", PROPERTY_CHANGED, "cpu", 10, 20, {"by": "test"}),
        ("device:1", PROPERTY_DELETED, "cpu", 20, None, None),
    ]


async def test_type_change_is_a_change(rt):
    events = []
    record(rt, events)
    dev = rt.subject("d")
    await dev.set("x", 1)
    await dev.set("x", True)
    await dev.set("x", 1.0)
    assert [e[4] for e in events] == [1, True, 1.0]


async def test_callable_update_is_atomic_under_concurrency(rt):
    import asyncio

    dev = rt.subject("counter")
    await asyncio.gather(*(dev.set("n", lambda n: (n or 0) + 1) for _ in range(500)))
    assert await dev.get("n") == 500


async def test_extended_properties_emit_nothing(rt):
    events = []
    record(rt, events)
    dev = rt.subject("d")
    await dev.set_ext("meta", {"a": 1})
    assert await dev.get_ext("meta") == {"a": 1}
    assert await dev.delete_ext("meta") is True
    assert await dev.get_ext("meta", "gone") == "gone"
    assert events == []


async def test_tuple_is_normalised_and_a_reload_fires_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    async with Runtime(url) as rt:
        events = []
        record(rt, events)
        dev = rt.subject("d")
        assert await dev.set("pair", (1, 2)) == [1, 2]
        assert await dev.get("pair") == [1, 2]
    async with Runtime(url) as rt:
        events = []
        record(rt, events)
        dev = rt.subject("d")
        assert await dev.get("pair") == [1, 2]
        await dev.set("pair", (1, 2))  # the same value as stored: no spurious change
        await dev.set("pair", [1, 2])
        assert events == []


async def test_delete_then_set_in_one_turn_ends_set(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    async with Runtime(url) as rt:
        @rt.on("reset")
        async def reset(ctx):
            ctx.subject.delete("x")
            ctx.subject.set("x", "new")

        dev = rt.subject("d")
        await dev.set("x", "old")
        await rt.tell("d", "reset")
        await rt.idle()
        assert await dev.get("x") == "new"
    async with Runtime(url) as rt:
        assert await rt.subject("d").get("x") == "new"


async def test_patch_sets_several_in_one_turn_and_returns_version(rt):
    events = []
    record(rt, events)
    dev = rt.subject("d")
    v1 = await dev.patch({"a": 1, "b": 2})
    v2 = await dev.patch({"a": 1, "b": 3})
    assert v2 == v1 + 1
    view = await dev.state()
    assert view.properties == {"a": 1, "b": 3} and view.version == v2
    assert [(e[2], e[4]) for e in events] == [("a", 1), ("b", 2), ("b", 3)]
    with pytest.raises(TypeError):
        await dev.patch([("a", 1)])


async def test_reads_return_copies(rt):
    @rt.on("mutate")
    async def mutate(ctx):
        ctx.subject.get("l").append("in-turn")

    dev = rt.subject("d")
    await dev.set("l", [1])
    view = await dev.state()
    view.properties["l"].append(2)
    view.properties["new"] = 1
    (await dev.get("l")).append(3)
    await rt.tell("d", "mutate")
    await rt.idle()
    assert (await dev.state()).properties == {"l": [1]}

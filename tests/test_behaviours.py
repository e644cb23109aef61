"""Handlers by event type and subject pattern, filters, middleware, emit and ask."""

import asyncio

import pytest

from actors import PROPERTY_CHANGED
from runtime import NoHandler, Runtime


async def test_on_matches_event_globs_and_subject_patterns(rt):
    seen = []

    @rt.on("device.alert.*", "device.ping", subject="device:*")
    async def h(ctx):
        seen.append((ctx.event_type, ctx.subject.name, ctx.payload))

    await rt.tell("device:1", "device.alert.cpu", {"v": 1})
    await rt.tell("device:2", "device.ping")
    await rt.tell("user:1", "device.ping")  # subject does not match
    await rt.tell("device:3", "device.other")  # event does not match
    await rt.idle()
    assert sorted(seen) == [("device.alert.cpu", "device:1", {"v": 1}),
                            ("device.ping", "device:2", None)]


async def test_when_filters_sync_async_stacked_in_any_order(rt):
    calls = []

    async def is_even(ctx):
        return ctx.payload % 2 == 0

    @rt.when(lambda ctx: ctx.payload > 2)  # above @on: applied after registration
    @rt.on("n")
    @rt.when(is_even)
    async def h(ctx):
        calls.append(ctx.payload)

    for n in range(8):
        await rt.tell("s", "n", n)
    await rt.idle()
    assert calls == [4, 6]


async def test_plain_def_handlers_run_in_the_turn_like_async_ones(rt):
    """A plain `def` handler is called without a coroutine: it sets, emits (through the
    context, whose emit it cannot await: it is queued all the same), and answers asks."""
    @rt.on(PROPERTY_CHANGED, properties=("cpu",))
    def derive(ctx):
        ctx.subject.set("hot", ctx.new_value > 90)

    @rt.on("double")
    def double(ctx):
        return ctx.payload * 2

    @rt.when(lambda ctx: ctx.payload != 0)
    @rt.on("inverse")
    def inverse(ctx):
        return 1 / ctx.payload

    d = rt.subject("d")
    await d.set("cpu", 95)
    assert await d.get("hot") is True
    assert await d.ask("double", 21) == 42
    assert await d.ask("inverse", 4) == 0.25
    assert await d.ask("inverse", 0) is None  # filtered out: nobody answered

    @rt.middleware
    async def passes(ctx, nxt):
        return await nxt()

    assert await d.ask("double", 5) == 10  # through middleware too


async def test_a_failing_plain_handler_rolls_its_turn_back(rt):
    @rt.on("boom")
    def boom(ctx):
        ctx.subject.set("x", 1)
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        await rt.subject("b").ask("boom")
    assert await rt.subject("b").get("x") is None


async def test_handlers_must_be_callable_and_middleware_async(rt):
    with pytest.raises(TypeError, match="must be a function"):
        rt.on("x")(42)
    with pytest.raises(TypeError):
        rt.on()
    with pytest.raises(TypeError, match="async def"):
        rt.middleware(lambda ctx, nxt: None)
    with pytest.raises(TypeError, match="properties="):
        rt.on(PROPERTY_CHANGED, properties="cpu")


async def test_property_filters_call_only_the_handlers_of_the_property_changed(rt):
    seen = []

    @rt.on(PROPERTY_CHANGED, "subject-property-deleted", subject="device:*",
           properties=("cpu", "mem"))
    async def resources(ctx):
        seen.append(("resources", ctx.subject.name, ctx.property_name))

    @rt.on(PROPERTY_CHANGED, properties=["name"])
    def names(ctx):
        seen.append(("names", ctx.subject.name, ctx.property_name))

    @rt.on(PROPERTY_CHANGED)
    async def every(ctx):
        seen.append(("every", ctx.subject.name, ctx.property_name))

    await rt.subject("device:1").patch({"cpu": 1, "disk": 2, "name": "a"})
    await rt.subject("device:1").delete("mem")  # absent: no event
    await rt.subject("device:1").delete("cpu")
    await rt.subject("user:1").patch({"cpu": 3, "name": "b"})
    assert seen == [
        ("resources", "device:1", "cpu"), ("every", "device:1", "cpu"),
        ("every", "device:1", "disk"),
        ("names", "device:1", "name"), ("every", "device:1", "name"),
        ("resources", "device:1", "cpu"),
        ("every", "user:1", "cpu"),  # device:* only
        ("names", "user:1", "name"), ("every", "user:1", "name"),
    ]


async def test_middleware_wraps_every_call_in_registration_order(rt):
    trace = []

    @rt.middleware
    async def outer(ctx, next):
        trace.append(f"outer>{ctx.handler}")
        result = await next()
        trace.append("outer<")
        return result

    @rt.middleware
    async def inner(ctx, next):
        trace.append("inner>")
        return await next()

    @rt.on("q")
    async def answer(ctx):
        trace.append("handler")
        return 42

    assert await rt.ask("s", "q") == 42
    assert trace == ["outer>test_middleware_wraps_every_call_in_registration_order.<locals>.answer",
                     "inner>", "handler", "outer<"]


async def test_context_fields_for_property_events(rt):
    seen = []

    @rt.on(PROPERTY_CHANGED)
    async def h(ctx):
        seen.append((ctx.event_type, ctx.property_name, ctx.old_value, ctx.new_value, ctx.extra,
                     ctx.payload, ctx.subject.name))

    await rt.subject("d").set("p", 1, extra="why")
    assert seen == [(PROPERTY_CHANGED, "p", None, 1, "why", None, "d")]


async def test_ask_reply_is_first_non_none_in_registration_order(rt):
    @rt.on("q")
    async def first(ctx):
        return None

    @rt.on("q")
    async def second(ctx):
        return "second"

    @rt.on("q")
    async def third(ctx):
        return "third"

    assert await rt.ask("s", "q") == "second"


async def test_ask_without_handler_is_a_clear_error(rt):
    with pytest.raises(NoHandler, match="no behaviour answers 'nothing' on 's'"):
        await rt.ask("s", "nothing")


async def test_emit_signature_is_the_same_outside_and_inside(rt):
    got = []
    on, _when, _middleware, emit = rt.handlers()

    @on("hello")
    async def hello(ctx):
        got.append((ctx.subject.name, ctx.payload))
        if ctx.payload == "first":
            await ctx.emit("hello", "b", "from-a")  # a name
            await ctx.emit("hello", rt.subject("c"), "from-a-ref")  # a reference
            await ctx.emit("hello.self", ctx.subject)  # ctx.subject itself

    @on("hello.self")
    async def self_event(ctx):
        got.append((ctx.subject.name, "self"))

    await emit("hello", "a", "first")
    await rt.idle()
    assert sorted(got) == [("a", "first"), ("a", "self"), ("b", "from-a"),
                           ("c", "from-a-ref")]


async def test_emitted_messages_are_delivered_only_after_commit(rt):
    seen = []

    @rt.on("go")
    async def go(ctx):
        ctx.subject.set("x", 1)
        await ctx.emit("peek", "other", None)
        await rt.subject("other").set("written", True)  # a message too, sent on commit
        await asyncio.sleep(0.01)
        seen.append(("go done", rt.stats()["busy"]))

    @rt.on("peek")
    async def peek(ctx):
        seen.append("peek")

    await rt.tell("s", "go")
    await rt.idle()
    assert seen[0][0] == "go done" and seen[1] == "peek"
    assert await rt.subject("other").get("written") is True


async def test_messages_from_a_failed_turn_are_never_delivered(rt):
    delivered = []

    @rt.on("go")
    async def go(ctx):
        await ctx.emit("note", "other")
        await rt.subject("other").set("x", 1)
        raise RuntimeError("boom")

    @rt.on("note")
    async def note(ctx):
        delivered.append(ctx.subject.name)

    with pytest.raises(RuntimeError, match="boom"):
        await rt.ask("s", "go")
    await rt.idle()
    assert delivered == []
    assert await rt.subject("other").get("x") is None


async def test_get_from_outside_sees_every_earlier_message_of_the_same_caller(rt):
    @rt.on("incr")
    async def incr(ctx):
        await asyncio.sleep(0)  # a turn that suspends
        ctx.subject.set("n", ctx.subject.get("n", 0) + 1)

    for _ in range(20):
        await rt.tell("s", "incr")
    assert await rt.subject("s").get("n") == 20


async def test_handlers_registered_late_are_seen(rt):
    await rt.tell("s", "late")
    await rt.idle()
    hits = []

    @rt.on("late")
    async def late(ctx):
        hits.append(1)

    await rt.tell("s", "late")
    await rt.idle()
    assert hits == [1]


async def test_two_runtimes_do_not_share_behaviours():
    async with Runtime() as a, Runtime() as b:
        @a.on("q")
        async def only_a(ctx):
            return "a"

        assert await a.ask("s", "q") == "a"
        with pytest.raises(NoHandler):
            await b.ask("s", "q")


async def test_observers_see_exactly_the_committed_events_in_order(rt):
    from runtime import Observed

    seen: list[Observed] = []
    rt.add_observer(seen.append)

    @rt.on("go")
    async def go(ctx):
        ctx.subject.set("a", 1)
        if ctx.payload == "fail":
            raise RuntimeError("no")

    @rt.on(PROPERTY_CHANGED)
    async def derive(ctx):
        if ctx.property_name == "a":
            ctx.subject.set("b", 2)

    await rt.tell("s", "go", "ok")
    with pytest.raises(RuntimeError):
        await rt.ask("t", "go", "fail")
    await rt.idle()
    assert [(o.subject, o.event_type, o.payload, o.property_name, o.new_value, o.version)
            for o in seen] == [
        ("s", "go", "ok", None, None, 1),
        ("s", PROPERTY_CHANGED, None, "a", 1, 1),
        ("s", PROPERTY_CHANGED, None, "b", 2, 1),
    ]
    rt.remove_observer(seen.append)
    await rt.tell("s", "go", "again")
    await rt.idle()
    assert len(seen) == 3

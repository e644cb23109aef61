"""The edges of one turn: each kind of message and what its caller gets back, the exact depth
limit of a cascade, which event's reply an ask gets, addressing inside a turn, observers, and
what a failed turn tells (or does not tell) its caller, the dead letters and the supervisor."""

from __future__ import annotations

import asyncio

import pytest

from actors import PROPERTY_CHANGED, InvalidPayload, InvalidSubjectName
from runtime import CascadeTooDeep, NoHandler, Policy, Runtime
from storage import MemoryStore


def chain_of(rt: Runtime, length: int) -> None:
    """Setting p0 sets p1, which sets p2, ... up to p<length - 1>: `length` generations."""

    @rt.on(PROPERTY_CHANGED)
    async def next_one(ctx):
        i = int(ctx.property_name[1:])
        if i + 1 < length:
            ctx.subject.set(f"p{i + 1}", ctx.new_value)


@pytest.mark.parametrize("limit", [1, 3])
async def test_a_cascade_may_run_exactly_its_depth_limit_of_generations(limit):
    async with Runtime(passivate_after=None, max_cascade_depth=limit, ask_timeout=5,
                       shutdown_timeout=5) as rt:
        chain_of(rt, limit)
        await rt.subject("ok").set("p0", 1)
        assert (await rt.subject("ok").state()).properties == {f"p{i}": 1 for i in range(limit)}


@pytest.mark.parametrize("limit", [1, 3])
async def test_one_generation_more_than_the_limit_fails_the_turn(limit):
    async with Runtime(passivate_after=None, max_cascade_depth=limit, ask_timeout=5,
                       shutdown_timeout=5, root=Policy(max_restarts=10)) as rt:
        chain_of(rt, limit + 1)
        with pytest.raises(CascadeTooDeep, match=f"did not settle after {limit} generations"):
            await rt.subject("bad").set("p0", 1)
        assert (await rt.subject("bad").state()).properties == {}


async def test_each_kind_of_message_gives_its_caller_what_its_turn_returned(rt):
    events = []

    @rt.on(PROPERTY_CHANGED)
    async def seen(ctx):
        events.append((ctx.property_name, ctx.new_value, ctx.extra))
        return "not a reply"

    dev = rt.subject("d")
    assert await dev.set("a", 1, extra="why") == 1
    assert await dev.patch({"a": 2, "b": 3}, extra="both") == 2  # the new version
    assert await dev.delete("a") is True
    assert await dev.set_ext("e", {"k": 1}) == {"k": 1}
    assert await dev.delete_ext("e") is True
    assert await dev.get("b") == 3 and await dev.get("a", "default") == "default"
    assert await dev.get_ext("e", "default") == "default"
    assert await rt.tell("d", "nobody listens") is None
    state = await dev.state()
    assert (state.version, state.properties, state.ext) == (5, {"b": 3}, {})
    assert events == [("a", 1, "why"), ("a", 2, "both"), ("b", 3, "both")]


async def test_the_reply_of_an_ask_comes_only_from_its_own_event(rt):
    @rt.on("q")
    async def ask(ctx):
        ctx.subject.set("x", ctx.payload)  # no behaviour listens to this property: fine

    with_reply = []

    @rt.on("r")
    async def reply(ctx):
        ctx.subject.set("y", ctx.payload)
        return "r"

    @rt.on(PROPERTY_CHANGED, subject="w")
    async def late(ctx):
        with_reply.append(ctx.property_name)
        return "from the cascade"

    assert await rt.ask("s", "q", 1) is None
    assert await rt.subject("s").get("x") == 1
    assert await rt.ask("w", "r", 2) == "r"
    assert await rt.ask("w", "q", 3) is None
    assert with_reply == ["y", "x"]


async def test_an_ask_without_a_handler_is_refused_without_a_dead_letter_or_restart(rt):
    await rt.subject("s").set("x", 1)
    for _ in range(5):  # more than the root's intensity: refusals do not count
        with pytest.raises(NoHandler, match="no behaviour answers 'nothing' on 's'"):
            await rt.ask("s", "nothing")
    assert len(rt.dead_letters) == 0 and rt.stopped_subjects() == {}
    assert await rt.subject("s").get("x") == 1


async def test_a_refusal_nobody_waits_for_becomes_a_dead_letter(rt):
    @rt.on("check")
    async def check(ctx):
        raise InvalidPayload(f"bad payload {ctx.payload!r}")

    with pytest.raises(InvalidPayload):
        await rt.ask("s", "check", 1)
    assert len(rt.dead_letters) == 0
    await rt.tell("s", "check", 2)
    await rt.idle()
    [letter] = rt.dead_letters
    assert (letter.subject, letter.kind, letter.payload) == ("s", "event", 2)
    assert rt.stopped_subjects() == {}


async def test_emit_and_ask_address_by_name_reference_or_state(rt):
    got = []

    @rt.on("ping")
    async def ping(ctx):
        got.append((ctx.subject.name, ctx.payload))

    @rt.on("relay")
    async def relay(ctx):
        await ctx.emit("ping", "by-name", 1)
        await ctx.emit("ping", rt.subject("by-ref"), 2)
        await ctx.emit("ping", ctx.subject, 3)
        for wrong in (5, None):
            with pytest.raises(TypeError, match="expected a subject name or reference"):
                await ctx.emit("ping", wrong)
        for wrong in ("", 5, None):
            with pytest.raises(TypeError, match="event type must be a non-empty str"):
                await ctx.emit(wrong, "x")
        with pytest.raises(InvalidSubjectName):
            await ctx.emit("ping", "has space")

    await rt.tell("relay", "relay")
    await rt.idle()
    assert sorted(got) == [("by-name", 1), ("by-ref", 2), ("relay", 3)]
    with pytest.raises(TypeError, match="event type"):
        await rt.tell("x", "")
    with pytest.raises(TypeError, match="expected a subject name"):
        await rt.ask(42, "ping")


async def test_messages_sent_in_a_turn_go_out_in_order_on_commit(rt):
    got = []

    @rt.on("n")
    async def n(ctx):
        got.append(ctx.payload)

    @rt.on("burst")
    async def burst(ctx):
        for i in range(5):
            await ctx.emit("n", "target", i)
        await rt.subject("target").set("last", 4)
        assert got == []  # nothing delivered before the commit

    await rt.tell("source", "burst")
    await rt.idle()
    assert got == [0, 1, 2, 3, 4]
    assert await rt.subject("target").get("last") == 4


async def test_observers_see_each_event_of_a_turn_with_the_committed_version(rt):
    seen = []

    def broken(event):
        raise RuntimeError("an observer's bug is only logged")

    rt.add_observer(broken)
    rt.add_observer(lambda e: seen.append((e.subject, e.event_type, e.property_name, e.old_value,
                                           e.new_value, e.extra, e.version, e.payload)))

    @rt.on(PROPERTY_CHANGED)
    async def derive(ctx):
        if ctx.property_name == "a":
            ctx.subject.set("b", ctx.new_value * 2)

    @rt.on("hello")
    async def hello(ctx):
        pass

    await rt.subject("d").set("a", 1, extra="x")
    await rt.tell("d", "hello", {"p": 1})
    await rt.idle()
    assert seen == [("d", PROPERTY_CHANGED, "a", None, 1, "x", 1, None),
                    ("d", PROPERTY_CHANGED, "b", None, 2, None, 1, None),
                    ("d", "hello", None, None, None, None, 1, {"p": 1})]


async def test_a_turn_that_changes_nothing_keeps_the_version_and_extensions(rt):
    @rt.on("noop")
    async def noop(ctx):
        ctx.subject.set("x", ctx.subject.get("x"))
        return "done"

    dev = rt.subject("d")
    await dev.set("x", 1)
    await dev.set_ext("e", 1)
    assert await rt.ask("d", "noop") == "done"
    state = await dev.state()
    assert (state.version, state.ext) == (2, {"e": 1})
    assert await dev.delete_ext("e") is True
    assert (await dev.state()).ext == {}
    assert await dev.set("y", 2) == 2
    assert (await dev.state()).ext == {}


async def test_reads_queued_behind_an_activation_are_answered_from_the_state(rt):
    """The first messages to a subject wait for its activation in the mailbox: reads are then
    answered by the turn loop, not by the caller's shortcut for idle actors."""
    assert await rt.subject("fresh1").get("x", "default") == "default"
    assert await rt.subject("fresh2").get_ext("x", "default") == "default"
    view = await rt.subject("fresh3").state()
    assert (view.name, view.version, view.properties, view.ext) == ("fresh3", 0, {}, {})
    assert await rt.subject("fresh4").store() == 0

    @rt.on("slow")
    async def slow(ctx):
        ctx.subject.set("x", [1])
        ctx.subject.set_ext("e", [2])

    await rt.tell("busy", "slow", wait=False)
    reads = [rt.subject("busy").get("x"), rt.subject("busy").get_ext("e"),
             rt.subject("busy").state()]
    x, e, view = await asyncio.gather(*reads)
    assert (x, e, view.properties, view.ext, view.version) == ([1], [2], {"x": [1]},
                                                               {"e": [2]}, 1)
    x.append("changed")  # a copy
    assert await rt.subject("busy").get("x") == [1]


async def test_an_event_nobody_handles_does_not_end_the_cascade(rt):
    seen = []

    @rt.on("q")
    async def q(ctx):
        ctx.subject.delete("a")  # nobody listens to deletions
        ctx.subject.set("b", 1)

    @rt.on(PROPERTY_CHANGED)
    async def changed(ctx):
        seen.append(ctx.property_name)

    await rt.subject("s").set("a", 0)
    await rt.tell("s", "q")
    await rt.idle()
    assert seen == ["a", "b"]


class GatedStore(MemoryStore):
    """A memory store whose writes wait until the gate opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def save_many(self, writes):
        await self.gate.wait()
        return await super().save_many(writes)


async def test_a_durable_write_is_answered_once_stored_and_a_plain_one_at_once():
    store = GatedStore()
    async with Runtime(store, passivate_after=None, flush_delay=0, ask_timeout=5,
                       shutdown_timeout=5) as rt:
        dev = rt.subject("d")
        assert await asyncio.wait_for(dev.set("plain", 1), 5) == 1  # the store is shut
        durable = asyncio.ensure_future(dev.set("durable", 2, durable=True))
        patched = asyncio.ensure_future(dev.patch({"p": 3}, durable=True))
        await asyncio.sleep(0.05)
        assert not durable.done() and not patched.done()
        store.gate.set()
        assert await asyncio.wait_for(durable, 5) == 2
        assert await asyncio.wait_for(patched, 5) == 3  # the version, as for a plain patch

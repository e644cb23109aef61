"""Turns: transactional, breadth-first cascades, depth limit, ask cycles and timeouts."""

import asyncio

import pytest

from actors import PROPERTY_CHANGED, TurnClosed
from runtime import AskCycleError, AskTimeout, CascadeTooDeep, Policy, Runtime, RuntimeNotRunning


async def test_failed_turn_changes_nothing_and_reports_to_the_caller(rt):
    @rt.on(PROPERTY_CHANGED)
    async def derive(ctx):
        if ctx.property_name == "x":
            ctx.subject.set("derived", ctx.new_value * 2)
            ctx.subject.set_ext("seen", True)
            ctx.subject.delete("keep")
            if ctx.new_value == 13:
                raise ValueError("unlucky")

    dev = rt.subject("d")
    await dev.set("keep", "me")
    await dev.set("x", 1)
    before = await dev.state()
    with pytest.raises(ValueError, match="unlucky"):
        await dev.set("x", 13)
    after = await dev.state()
    assert after == before
    letters = rt.dead_letters.for_subject("d")
    assert len(letters) == 1 and letters[0].kind == "set" and letters[0].payload == 13
    assert isinstance(letters[0].error, ValueError)


async def test_cascade_is_breadth_first_in_change_order(rt):
    order = []

    @rt.on(PROPERTY_CHANGED)
    async def first(ctx):
        order.append(("first", ctx.property_name, ctx.new_value))
        if ctx.property_name == "a":
            ctx.subject.set("b", 1)
            ctx.subject.set("c", 1)

    @rt.on(PROPERTY_CHANGED)
    async def second(ctx):
        order.append(("second", ctx.property_name, ctx.subject.get(ctx.property_name)))

    await rt.subject("s").set("a", 1)
    assert order == [
        ("first", "a", 1), ("second", "a", 1),
        ("first", "b", 1), ("second", "b", 1),
        ("first", "c", 1), ("second", "c", 1),
    ]


async def test_re_setting_the_same_property_gives_every_handler_a_consistent_view(rt):
    """The KRules stale-final-view bug: with recursion the last handler sees the older value."""
    views = []

    @rt.on(PROPERTY_CHANGED)
    async def clamp(ctx):
        if ctx.property_name == "v" and ctx.new_value > 10:
            ctx.subject.set("v", 10)

    @rt.on(PROPERTY_CHANGED)
    async def observe(ctx):
        views.append((ctx.old_value, ctx.new_value, ctx.subject.get("v")))

    await rt.subject("s").set("v", 50)
    assert await rt.subject("s").get("v") == 10
    assert views == [(None, 50, 10), (50, 10, 10)]


async def test_a_cascade_that_never_settles_fails_cleanly():
    async with Runtime(passivate_after=None, max_cascade_depth=20,
                       root=Policy(max_restarts=10)) as rt:
        @rt.on(PROPERTY_CHANGED)
        async def ping_pong(ctx):
            other = "b" if ctx.property_name == "a" else "a"
            ctx.subject.set(other, ctx.subject.get(other, 0) + 1)

        dev = rt.subject("s")
        with pytest.raises(CascadeTooDeep, match="did not settle after 20"):
            await dev.set("a", 1)
        assert (await dev.state()).properties == {}
        assert rt.dead_letters.for_subject("s")[0].kind == "set"


async def test_state_cannot_be_used_after_its_turn(rt):
    kept = []

    @rt.on("keep")
    async def keep(ctx):
        kept.append(ctx.subject)

    await rt.tell("s", "keep")
    await rt.idle()
    with pytest.raises(TurnClosed):
        kept[0].set("x", 1)


async def test_ask_self_fails_fast(rt):
    @rt.on("q")
    async def q(ctx):
        return await rt.ask("a", "q")

    with pytest.raises(AskCycleError, match="a -> a"):
        await asyncio.wait_for(rt.ask("a", "q"), 2)


async def test_ask_cycle_between_two_subjects_fails_fast(rt):
    @rt.on("q", subject="a")
    async def a(ctx):
        return await ctx.ask("b", "q")

    @rt.on("q", subject="b")
    async def b(ctx):
        return await ctx.ask("a", "q")

    with pytest.raises(AskCycleError, match="a -> b -> a"):
        await asyncio.wait_for(rt.ask("a", "q"), 2)


async def test_get_of_an_asker_fails_fast_too(rt):
    @rt.on("q", subject="a")
    async def a(ctx):
        return await ctx.ask("b", "q")

    @rt.on("q", subject="b")
    async def b(ctx):
        return await rt.subject("a").get("x")

    with pytest.raises(AskCycleError):
        await asyncio.wait_for(rt.ask("a", "q"), 2)


async def test_ask_chain_without_cycle_works(rt):
    @rt.on("q", subject="a")
    async def a(ctx):
        return ("a", await ctx.ask("b", "q"))

    @rt.on("q", subject="b")
    async def b(ctx):
        return ("b", await rt.subject("c").get("x", "c-default"))

    assert await rt.ask("a", "q") == ("a", ("b", "c-default"))


async def test_ask_timeout(rt):
    @rt.on("slow")
    async def slow(ctx):
        await asyncio.sleep(0.3)
        return "late"

    with pytest.raises(AskTimeout, match=r"within 0\.05 s"):
        await rt.ask("s", "slow", timeout=0.05)
    await rt.idle()


async def test_turns_of_one_subject_never_overlap_while_others_interleave(rt):
    active = {}
    overlaps = []
    interleaved = []

    @rt.on("work")
    async def work(ctx):
        name = ctx.subject.name
        if active.get(name):
            overlaps.append(name)
        active[name] = True
        interleaved.append(sum(active.values()))
        await asyncio.sleep(0.001)
        active[name] = False

    await asyncio.gather(*(rt.tell(f"s{i % 5}", "work") for i in range(50)))
    await rt.idle()
    assert overlaps == []
    assert max(interleaved) > 1  # different subjects did run at the same time


async def test_a_caller_cancelled_during_its_turn_leaves_no_trace(rt):
    entered = asyncio.Event()

    @rt.on(PROPERTY_CHANGED)
    async def slow(ctx):
        if ctx.property_name == "x":
            ctx.subject.set("derived", True)
            entered.set()
            await asyncio.sleep(10)

    dev = rt.subject("d")
    await dev.set("before", 1)
    call = asyncio.create_task(dev.set("x", 1))
    await entered.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert (await dev.state()).properties == {"before": 1}
    assert await dev.set("y", 2) == 2  # the subject goes on serving


async def test_a_turn_cut_short_by_shutdown_answers_its_caller():
    rt = Runtime(passivate_after=None, shutdown_timeout=0.1)
    await rt.start()

    @rt.on("hang")
    async def hang(ctx):
        await asyncio.sleep(60)

    pending = asyncio.create_task(rt.ask("s", "hang", timeout=30))
    await asyncio.sleep(0.01)
    await rt.close()
    with pytest.raises(RuntimeNotRunning, match="stopped during this turn"):
        await pending


async def test_an_ask_that_outlives_its_timeout_still_completes(rt):
    """An ask is a message: its timeout ends the caller's wait, not the turn, which commits
    (its reply goes nowhere) and is followed by the next message."""
    @rt.on("slow")
    async def slow(ctx):
        ctx.subject.set("started", True)
        await asyncio.sleep(0.2)
        ctx.subject.set("finished", True)
        return "late"

    dev = rt.subject("s")
    await dev.set("before", 1)  # activated and idle: the ask still goes through the mailbox
    with pytest.raises(AskTimeout):
        await rt.ask("s", "slow", timeout=0.05)
    assert await dev.set("after", 2) == 2  # queued behind the slow turn
    assert (await dev.state()).properties == {
        "before": 1, "started": True, "finished": True, "after": 2}
    assert rt.dead_letters.for_subject("s") == []

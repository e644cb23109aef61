"""Deadlocks between separate turns that ask each other are found from the wait-for graph.

Each subject runs one turn at a time, so when A's turn (started by one outside message) asks B
while B's turn (started by another) asks A, each ask waits behind the other's turn. The ask that
closes the cycle must fail at once with `AskCycleError`, not after `ask_timeout` (30 s here):
every wait below is bounded by a few seconds so that a regression fails fast. The graph must
also refuse nothing that is not a cycle, and forget each wait once its call ends.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import AskCycleError, AskTimeout, Runtime
from runtime.testing import SimRuntime

BOUND = 5.0  # seconds: far above a detection, far below the 30 s ask timeout


@pytest.fixture
async def rt():
    """As the shared one, but a deadlock left by a regression holds its close for BOUND only."""
    async with Runtime(passivate_after=None, shutdown_timeout=BOUND) as runtime:
        yield runtime


def answering(rt: Runtime) -> None:
    """`ping` answers with the subject's name."""

    @rt.on("ping")
    async def ping(ctx):
        return ctx.subject.name


async def test_two_chains_asking_each_other_fail_one_ask_at_once(rt):
    """A's turn asks B; then B's turn, from another outside message, asks A: B's ask fails
    (B's turn fails with it, and its caller hears why), then B answers A."""
    assert rt.ask_timeout == 30
    answering(rt)
    b_running, a_asked = asyncio.Event(), asyncio.Event()

    @rt.on("start", subject="a")
    async def start_a(ctx):
        await b_running.wait()
        a_asked.set()  # B wakes only once this ask waits in its mailbox
        return ("a got", await ctx.ask("b", "ping"))

    @rt.on("start", subject="b")
    async def start_b(ctx):
        b_running.set()
        await a_asked.wait()
        return ("b got", await ctx.ask("a", "ping"))

    began = time.monotonic()
    a, b = await asyncio.wait_for(
        asyncio.gather(rt.ask("a", "start"), rt.ask("b", "start"), return_exceptions=True), BOUND)
    assert time.monotonic() - began < 1.0
    assert a == ("a got", "b")
    assert isinstance(b, AskCycleError)
    assert b.chain == ("a", "b", "a")
    assert "a -> b -> a" in str(b)


async def test_the_failing_ask_can_be_handled_by_its_turn(rt):
    """The handler decides: B catches the error, answers its own caller, and A is answered."""
    answering(rt)
    b_running, a_asked = asyncio.Event(), asyncio.Event()

    @rt.on("start", subject="a")
    async def start_a(ctx):
        await b_running.wait()
        a_asked.set()
        return await ctx.ask("b", "ping")

    @rt.on("start", subject="b")
    async def start_b(ctx):
        b_running.set()
        await a_asked.wait()
        try:
            return await ctx.ask("a", "ping")
        except AskCycleError as exc:
            return ("refused", exc.chain)

    began = time.monotonic()
    both = await asyncio.wait_for(asyncio.gather(rt.ask("a", "start"), rt.ask("b", "start")),
                                  BOUND)
    assert time.monotonic() - began < 1.0
    assert both == ["b", ("refused", ("a", "b", "a"))]


async def test_three_separate_chains_in_a_cycle():
    """A's turn asks B, B's turn asks C, C's turn asks A, each turn started from outside: the
    last ask fails naming the whole cycle, and the other two are answered in turn."""
    async with Runtime(passivate_after=None, shutdown_timeout=BOUND) as rt:
        answering(rt)
        running = {name: asyncio.Event() for name in "abc"}
        asked = {name: asyncio.Event() for name in "abc"}
        order = {"a": (None, "b"), "b": ("a", "c"), "c": ("b", "a")}  # (waits for, asks)

        @rt.on("start")
        async def start(ctx):
            me = ctx.subject.name
            running[me].set()
            for other in running.values():
                await other.wait()
            after, target = order[me]
            if after is not None:
                await asked[after].wait()
            asked[me].set()
            return await ctx.ask(target, "ping")

        began = time.monotonic()
        a, b, c = await asyncio.wait_for(asyncio.gather(
            *(rt.ask(name, "start") for name in "abc"), return_exceptions=True), BOUND)
        assert time.monotonic() - began < 1.0
        assert (a, b) == ("b", "c")
        assert isinstance(c, AskCycleError)
        assert c.chain == ("a", "b", "c", "a")


async def test_a_get_from_a_turn_closes_a_cycle_too(rt):
    b_running, a_asked = asyncio.Event(), asyncio.Event()
    answering(rt)

    @rt.on("start", subject="a")
    async def start_a(ctx):
        await b_running.wait()
        a_asked.set()
        return await ctx.ask("b", "ping")

    @rt.on("start", subject="b")
    async def start_b(ctx):
        b_running.set()
        await a_asked.wait()
        try:
            return await rt.subject("a").get("x", "none")
        except AskCycleError as exc:
            return exc.chain

    both = await asyncio.wait_for(asyncio.gather(rt.ask("a", "start"), rt.ask("b", "start")),
                                  BOUND)
    assert both == ["b", ("a", "b", "a")]


async def test_a_wait_counts_until_its_last_call_to_that_subject_ends(rt):
    """A's turn waits on two asks to B at once; the first timing out leaves the second still
    waiting, so B's ask to A is still a cycle (the edges are counted, not a set)."""
    answering(rt)
    b_running, a_waits_on_one = asyncio.Event(), asyncio.Event()

    @rt.on("start", subject="a")
    async def start_a(ctx):
        await b_running.wait()
        first, second = await asyncio.gather(ctx.ask("b", "ping", timeout=0.05),
                                             ctx.ask("b", "ping"), return_exceptions=True)
        return type(first).__name__, second

    @rt.on("start", subject="b")
    async def start_b(ctx):
        b_running.set()
        await a_waits_on_one.wait()
        try:
            return await ctx.ask("a", "ping")
        except AskCycleError as exc:
            return exc.chain

    a = asyncio.ensure_future(rt.ask("a", "start"))
    b = asyncio.ensure_future(rt.ask("b", "start"))
    await asyncio.sleep(0.2)  # the first of A's asks has timed out by now
    a_waits_on_one.set()
    assert await asyncio.wait_for(b, BOUND) == ("a", "b", "a")
    assert await asyncio.wait_for(a, BOUND) == ("AskTimeout", "b")


def slow_d(rt: Runtime, release: asyncio.Event) -> None:
    """`slow` to D answers once `release` is set: a turn of A waiting on it keeps running."""

    @rt.on("slow", subject="d")
    async def slow(ctx):
        await release.wait()
        return "d"


async def asked_back(asking: asyncio.Event, release: asyncio.Event,
                     *calls: asyncio.Future) -> list:
    """Once the reverse ask is sent (while A's turn still runs), let A's turn end."""
    await asyncio.wait_for(asking.wait(), BOUND)
    await asyncio.sleep(0.01)
    release.set()
    return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), BOUND)


async def test_a_wait_is_forgotten_after_a_timeout(rt):
    """A's ask to a busy B times out; A's turn goes on (waiting on D), and B's turn asks A:
    not a cycle any more, so B's ask waits for A's turn to end and is answered."""
    answering(rt)
    release = asyncio.Event()
    slow_d(rt, release)
    b_running, go, b_asking = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @rt.on("start", subject="a")
    async def start_a(ctx):
        await b_running.wait()
        with pytest.raises(AskTimeout):
            await ctx.ask("b", "ping", timeout=0.05)
        go.set()
        return await ctx.ask("d", "slow")

    @rt.on("start", subject="b")
    async def start_b(ctx):
        b_running.set()
        await go.wait()
        b_asking.set()
        return await ctx.ask("a", "ping")

    a, b = asyncio.ensure_future(rt.ask("a", "start")), asyncio.ensure_future(rt.ask("b", "start"))
    assert await asked_back(b_asking, release, a, b) == ["d", "a"]


async def test_a_wait_is_forgotten_after_a_failure_and_a_cancellation(rt):
    """Asks that fail (the target's handler raises) or are cancelled (the asking handler
    gives up on them) leave no edge behind while A's turn goes on: B and C ask A back and
    are answered once A's turn ends."""
    answering(rt)
    release, held, went, asking = (asyncio.Event() for _ in range(4))
    slow_d(rt, release)

    @rt.on("fail", subject="b")
    async def fail(ctx):
        raise ValueError("no")

    @rt.on("hold", subject="c")
    async def hold(ctx):
        await held.wait()

    @rt.on("start", subject="a")
    async def start_a(ctx):
        with pytest.raises(ValueError):
            await ctx.ask("b", "fail")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ctx.ask("c", "hold"), 0.05)  # cancels that ask
        went.set()
        return await ctx.ask("d", "slow")

    @rt.on("back")
    async def back(ctx):
        if ctx.subject.name == "c":
            asking.set()
        return await ctx.ask("a", "ping")

    a = asyncio.ensure_future(rt.ask("a", "start"))
    await asyncio.wait_for(went.wait(), BOUND)
    held.set()
    b, c = asyncio.ensure_future(rt.ask("b", "back")), asyncio.ensure_future(rt.ask("c", "back"))
    assert await asked_back(asking, release, a, b, c) == ["d", "a", "a"]


async def test_calls_left_waiting_after_their_turn_ended_hold_no_mailbox(rt):
    """A's turn gathers two asks to B; one times out, so the gather fails and A's turn ends
    while the other ask still waits in B's mailbox. That ask holds nothing of A's: B's running
    turn may ask A (no false cycle)."""
    answering(rt)
    b_running, a_ended = asyncio.Event(), asyncio.Event()

    @rt.on("start", subject="a")
    async def start_a(ctx):
        await b_running.wait()
        try:
            await asyncio.gather(ctx.ask("b", "ping", timeout=0.05), ctx.ask("b", "ping"))
        finally:
            a_ended.set()

    @rt.on("start", subject="b")
    async def start_b(ctx):
        b_running.set()
        await a_ended.wait()
        await asyncio.sleep(0)  # A's turn has closed by now
        return await ctx.ask("a", "ping")

    a, b = await asyncio.wait_for(asyncio.gather(
        rt.ask("a", "start"), rt.ask("b", "start"), return_exceptions=True), BOUND)
    assert isinstance(a, AskTimeout)
    assert b == "a"


async def test_a_reactivated_subject_is_the_same_node():
    """Passivated subjects, activated again by the cycle's messages, still close it."""
    async with Runtime(passivate_after=None, shutdown_timeout=BOUND) as rt:
        answering(rt)
        events: dict[str, asyncio.Event] = {}

        @rt.on("start", subject="a")
        async def start_a(ctx):
            await events["b running"].wait()
            events["a asked"].set()
            return await ctx.ask("b", "ping")

        @rt.on("start", subject="b")
        async def start_b(ctx):
            events["b running"].set()
            await events["a asked"].wait()
            return await ctx.ask("a", "ping")

        await rt.subject("a").set("x", 1)
        await rt.subject("b").set("x", 1)
        for _ in range(2):
            assert sorted(await rt.passivate("a", "b")) == ["a", "b"]
            events.update({"b running": asyncio.Event(), "a asked": asyncio.Event()})
            a, b = await asyncio.wait_for(asyncio.gather(
                rt.ask("a", "start"), rt.ask("b", "start"), return_exceptions=True), BOUND)
            assert a == "b"
            assert isinstance(b, AskCycleError)
            assert b.chain == ("a", "b", "a")


@pytest.mark.subjects  # on a loop that virtual time and chosen interleavings can run on
@pytest.mark.parametrize("seed", range(8))
async def test_chosen_interleavings_always_refuse_the_cycle(seed):
    """Under chosen interleavings of turns (SimRuntime), whichever of the two crossing asks
    comes second is refused, and the other is answered by the subject it waited on."""
    async with SimRuntime(seed=seed, passivate_after=None, shutdown_timeout=BOUND) as rt:
        answering(rt)

        @rt.on("start")
        async def start(ctx):
            other = "b" if ctx.subject.name == "a" else "a"
            for _ in range(seed % 3):
                await asyncio.sleep(0)
            try:
                return ("got", await ctx.ask(other, "ping"))
            except AskCycleError as exc:
                return ("refused", exc.chain)

        a, b = await asyncio.wait_for(
            asyncio.gather(rt.ask("a", "start"), rt.ask("b", "start")), BOUND)
        # Both turns run before either can end, so one ask always closes the cycle.
        assert sorted([a[0], b[0]]) == ["got", "refused"], (a, b)
        got, refused = (a, b) if a[0] == "got" else (b, a)
        assert refused[1] in (("a", "b", "a"), ("b", "a", "b"))
        assert got[1] == refused[1][1]  # the subject it waited on answered it


# -- no false positives ------------------------------------------------------------------------

SUBJECTS = [f"s{i}" for i in range(6)]
EXAMPLES = int(os.environ.get("SUBJECTS_HYPOTHESIS_EXAMPLES", "60"))


def plans(level: int, depth: int) -> st.SearchStrategy[list]:
    """What the turn of subject `level` asks: subjects after it only (so no cycle can form),
    each with what that one asks in turn; all asked at once (`gather`), repeats allowed."""
    later = list(range(level + 1, len(SUBJECTS)))
    if not later or depth == 0:
        return st.just([])
    return st.lists(st.sampled_from(later).flatmap(
        lambda target: st.tuples(st.just(target), plans(target, depth - 1))), max_size=3)


def expected(level: int, plan: list) -> list:
    return [SUBJECTS[level], [expected(target, sub) for target, sub in plan]]


requests = st.lists(st.integers(0, len(SUBJECTS) - 1).flatmap(
    lambda level: st.tuples(st.just(level), plans(level, 3))), min_size=1, max_size=8)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_concurrent_acyclic_asks_all_succeed(program):
    """Many concurrent asks, each turn asking only subjects after its own, some several at once
    and some the same subject twice: the wait-for graph is acyclic, so nothing is refused."""

    async def run() -> list:
        async with Runtime(passivate_after=None, shutdown_timeout=BOUND) as rt:

            @rt.on("call")
            async def call(ctx):
                level = SUBJECTS.index(ctx.subject.name)
                await asyncio.sleep(0)  # let the other chains' turns start and interleave
                answers = await asyncio.gather(
                    *(ctx.ask(SUBJECTS[target], "call", sub) for target, sub in ctx.payload))
                return [SUBJECTS[level], list(answers)]

            return await asyncio.wait_for(asyncio.gather(
                *(rt.ask(SUBJECTS[level], "call", plan) for level, plan in program)), BOUND)

    assert asyncio.run(run()) == [expected(level, plan) for level, plan in program]

"""Virtual time: it moves only when a test advances it, runs what falls due in order, and
drives everything time-based in the runtime (passivation, restart backoff, ask timeouts)."""

from __future__ import annotations

import asyncio

import pytest

from actors import SUBJECT_PASSIVATED, SUBJECT_RESTARTED
from runtime import AskTimeout, Backoff, Policy
from runtime.testing import LOOP_KINDS, SimRuntime, VirtualClock, settle

pytestmark = pytest.mark.subjects(loop=LOOP_KINDS)  # each test on asyncio's loop and on uvloop

SLOW_RESTART = Policy(max_restarts=5, within=100, backoff=Backoff(min=10, max=100, jitter=0))


async def test_time_stands_still_until_advanced():
    clock = VirtualClock()
    woke = []

    async def sleeper():
        await clock.sleep(1.0)
        woke.append(clock.now())

    task = asyncio.create_task(sleeper())
    await settle()
    assert clock.now() == 0.0 and not woke
    await clock.advance(0.5)
    assert clock.now() == 0.5 and not woke
    await clock.advance(0.5)
    assert woke == [1.0]
    await task


async def test_advance_runs_what_falls_due_in_order_each_at_its_moment():
    clock = VirtualClock(start=100.0)
    ran = []
    clock.call_later(3, lambda: ran.append(("c", clock.now())))
    clock.call_later(1, lambda: ran.append(("a", clock.now())))
    clock.call_later(2, lambda: ran.append(("b", clock.now())))
    clock.call_later(1.5, lambda: ran.append(("cancelled", clock.now()))).cancel()
    await clock.advance(2.5)
    assert ran == [("a", 101.0), ("b", 102.0)]
    assert clock.now() == 102.5
    await clock.advance(10)
    assert ran[-1] == ("c", 103.0)
    assert clock.next_deadline() is None


async def test_timers_set_on_the_way_run_if_they_fall_due_within_the_span():
    clock = VirtualClock()
    ran = []

    def chain(n):
        ran.append((n, clock.now()))
        clock.call_later(1, chain, n + 1)

    clock.call_later(1, chain, 1)
    await clock.advance(3)
    assert ran == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert clock.next_deadline() == 4.0


async def test_what_is_due_now_runs_without_advancing():
    clock = VirtualClock()
    ran = []
    clock.call_later(0, ran.append, "now")
    await clock.sleep(0)
    await settle()
    assert ran == ["now"] and clock.now() == 0.0


async def test_time_never_moves_backwards():
    with pytest.raises(ValueError):
        await VirtualClock().advance(-1)


@pytest.mark.subjects(passivate_after=300)
async def test_virtual_time_drives_passivation(runtime):
    @runtime.on(SUBJECT_PASSIVATED)
    async def passivated(ctx):
        pass

    await runtime.subject("device:1").set("cpu", 42)
    await runtime.clock.advance(299)
    assert runtime.active_subjects() == ["device:1"]
    await runtime.clock.advance(1)
    assert "device:1" not in runtime.active_subjects()
    [event] = runtime.events(type=SUBJECT_PASSIVATED)
    assert event.payload["subject"] == "device:1"
    assert await runtime.subject("device:1").get("cpu") == 42  # reactivated from its snapshot


@pytest.mark.subjects(root=SLOW_RESTART)
async def test_virtual_time_drives_restart_backoff(runtime):
    @runtime.on(SUBJECT_RESTARTED)
    async def restarted(ctx):
        pass

    @runtime.on("work")
    async def work(ctx):
        if ctx.payload == "fail":
            raise RuntimeError("fails on purpose")
        ctx.subject.set("done", ctx.payload)

    with pytest.raises(RuntimeError):
        await runtime.ask("worker", "work", "fail")
    await runtime.tell("worker", "work", "queued")  # waits for the restart
    await runtime.clock.advance(9.9)
    assert not runtime.events(type=SUBJECT_RESTARTED)
    assert not runtime.events(subject="worker", property="done")
    await runtime.clock.advance(0.1)
    assert [e.payload["subject"] for e in runtime.events(type=SUBJECT_RESTARTED)] == ["worker"]
    assert await runtime.subject("worker").get("done") == "queued"


@pytest.mark.subjects(root=SLOW_RESTART)
async def test_virtual_time_drives_ask_timeouts(runtime):
    @runtime.on("boom")
    async def boom(ctx):
        raise RuntimeError("fails on purpose")

    @runtime.on("status")
    async def status(ctx):
        return "fine"

    with pytest.raises(RuntimeError):
        await runtime.ask("slow", "boom")
    asking = asyncio.create_task(runtime.ask("slow", "status", timeout=2))  # behind the restart
    await runtime.clock.advance(1.9)
    assert not asking.done()
    await runtime.clock.advance(0.1)
    with pytest.raises(AskTimeout):
        await asking


async def test_run_until_idle_jumps_to_what_the_runtime_waits_for():
    async with SimRuntime(root=SLOW_RESTART) as rt:
        @rt.on("boom")
        async def boom(ctx):
            raise RuntimeError("fails on purpose")

        await rt.tell("a", "boom")
        await rt.run_until_idle()
        assert rt.clock.now() == 10.0  # the backoff, and no further
        assert rt.stats()["busy"] == 0


async def test_closing_lets_virtual_time_run_until_idle():
    rt = SimRuntime(root=SLOW_RESTART)

    @rt.on(SUBJECT_RESTARTED)
    async def restarted(ctx):
        pass

    @rt.on("boom")
    async def boom(ctx):
        raise RuntimeError("fails on purpose")

    async with rt:
        await rt.tell("a", "boom")
    assert rt.clock.now() >= 10.0
    assert [e.payload["subject"] for e in rt.events(type=SUBJECT_RESTARTED)] == ["a"]


@pytest.mark.parametrize("plain_loop", ["asyncio", "uvloop"])
def test_virtual_time_needs_a_loop_that_counts_its_pending_callbacks(plain_loop):
    """On a loop of its own, asyncio's or uvloop's, the kit could not tell when time may jump:
    it says so at once, and what to run on instead."""
    loops = {"asyncio": asyncio.new_event_loop, "uvloop": pytest.importorskip("uvloop").Loop}

    async def main():
        async with SimRuntime():
            pass

    with asyncio.Runner(loop_factory=loops[plain_loop]) as runner:
        for attempt in (main(), settle()):
            with pytest.raises(RuntimeError, match=r"counts its pending callbacks.*new_event_loop"):
                runner.run(attempt)


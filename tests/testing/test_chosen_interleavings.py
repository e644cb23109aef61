"""Chosen interleavings: a seed (or a chooser) decides which subject's turn runs next, so the
same seed replays the same run, other seeds explore other orders, and the runtime's guarantees
hold under every one of them."""

from __future__ import annotations

import asyncio

import pytest

from runtime import Policy
from runtime.testing import LOOP_KINDS, Crash, SimRuntime

pytestmark = pytest.mark.subjects(loop=LOOP_KINDS)  # each test on asyncio's loop and on uvloop

SOURCES = [f"source:{i}" for i in range(5)]


async def forwarding_run(**options):
    """Every source forwards a note to one log subject; returns the log and every event."""
    async with SimRuntime(**options) as rt:
        @rt.on("note")
        async def forward(ctx):
            ctx.subject.set("seen", True)
            await ctx.emit("append", "log:1", ctx.subject.name)

        @rt.on("append")
        async def append(ctx):
            ctx.subject.set("log", [*ctx.subject.get("log", []), ctx.payload])

        await asyncio.gather(*(rt.tell(name, "note") for name in SOURCES))
        await rt.run_until_idle()
        log = await rt.subject("log:1").get("log")
        return log, [(e.subject, e.event_type, e.new_value) for e in rt.events()]


async def test_the_same_seed_replays_the_same_interleaving():
    for seed in range(5):
        assert await forwarding_run(seed=seed) == await forwarding_run(seed=seed)


async def test_seeds_choose_different_interleavings():
    logs = {tuple((await forwarding_run(seed=seed))[0]) for seed in range(20)}
    assert len(logs) > 5
    assert all(sorted(log) == SOURCES for log in logs)


async def test_without_a_seed_turns_run_first_in_first_out():
    log, _ = await forwarding_run()
    assert log == SOURCES


async def test_the_chooser_sees_the_ready_subjects_and_decides():
    seen = []

    def last_name(ready):
        seen.append(list(ready))
        return ready.index(max(ready))

    log, _ = await forwarding_run(choose=last_name)
    assert log == SOURCES[::-1]
    assert SOURCES in seen  # the five sources, ready together once loaded


def test_a_seed_or_a_chooser_not_both():
    with pytest.raises(TypeError):
        SimRuntime(seed=1, choose=lambda ready: 0)


@pytest.mark.parametrize("seed", range(8))
async def test_no_update_is_lost_under_any_interleaving(seed):
    async with SimRuntime(seed=seed, root=Policy(max_restarts=100, within=1)) as rt:
        @rt.on("bump")
        async def bump(ctx):
            await asyncio.sleep(0)  # a handler that suspends: other turns go meanwhile
            ctx.subject.set("n", lambda n: (n or 0) + 1)
            await ctx.emit("bumped", "tally:1")

        @rt.on("bumped")
        async def tally(ctx):
            ctx.subject.set("n", lambda n: (n or 0) + 1)

        async def sender(k):
            for i in range(6):
                await rt.tell(f"counter:{(k + i) % 3}", "bump")
                if i == 3:
                    await Crash(f"counter:{k % 3}").send(rt)  # restarts cost nothing
                await rt.subject(f"counter:{k % 3}").set(f"by{k}", i)

        sending = asyncio.gather(*(sender(k) for k in range(4)))
        await rt.run_until_idle()
        await sending
        counts = [await rt.subject(f"counter:{c}").get("n") for c in range(3)]
        assert sum(counts) == 24 == await rt.subject("tally:1").get("n")
        assert [await rt.subject(f"counter:{k % 3}").get(f"by{k}") for k in range(4)] == [5] * 4


async def test_a_broken_chooser_is_reported_and_turns_go_first_in_first_out(caplog):
    def broken(ready):
        return len(ready)  # out of range

    log, _ = await forwarding_run(choose=broken)
    assert log == SOURCES
    assert "the chooser of the next turn failed" in caplog.text

"""Supervision: restart with backoff, intensity, stop, escalation, lifecycle events, dead
letters and re-delivery, strategies."""

import asyncio

import pytest

from actors import SUBJECT_RESTARTED, SUBJECT_STOPPED, SUPERVISOR_ESCALATED
from runtime import Backoff, Policy, Runtime, SubjectStopped

FAST = Backoff(min=0.001, max=0.01, factor=2.0, jitter=0.0)


def flaky(rt, failures):
    """A behaviour on "work" that fails while `failures` has entries, taking one each time."""

    @rt.on("work")
    async def work(ctx):
        ctx.subject.set("attempts", ctx.subject.get("attempts", 0) + 1)
        if failures:
            failures.pop()
            raise RuntimeError("flaky")
        ctx.subject.set("done", ctx.payload)
        return "ok"


async def test_failed_actor_is_restarted_from_its_last_snapshot_with_backoff():
    restarts = []
    async with Runtime(passivate_after=None,
                       root=Policy(max_restarts=5, within=10,
                                   backoff=Backoff(min=0.02, max=1, jitter=0))) as rt:
        @rt.on(SUBJECT_RESTARTED)
        async def on_restart(ctx):
            restarts.append((ctx.payload["subject"], ctx.payload["restarts"],
                             asyncio.get_running_loop().time()))

        flaky(rt, [1, 1])
        dev = rt.subject("d")
        await dev.set("before", True)
        t0 = asyncio.get_running_loop().time()
        for _ in range(2):
            with pytest.raises(RuntimeError, match="flaky"):
                await rt.ask("d", "work", 1)
        assert await rt.ask("d", "work", 2) == "ok"
        await rt.idle()
        assert (await dev.state()).properties == {"before": True, "attempts": 1, "done": 2}
        assert [r[:2] for r in restarts] == [("d", 1), ("d", 2)]
        # Exponential backoff: the first restart after >= 0.02 s, the second >= 0.04 s later.
        assert restarts[0][2] - t0 >= 0.02
        assert restarts[1][2] - restarts[0][2] >= 0.04 - 0.005


async def test_past_its_intensity_an_actor_is_stopped_and_refuses_messages():
    stopped = []
    async with Runtime(passivate_after=None,
                       root=Policy(max_restarts=2, within=10, backoff=FAST)) as rt:
        @rt.on(SUBJECT_STOPPED)
        async def on_stop(ctx):
            stopped.append((ctx.subject.name, ctx.payload["subject"]))

        flaky(rt, [1] * 10)
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await rt.ask("d", "work", 1)
        with pytest.raises(SubjectStopped, match="'d' is stopped: more than 2 restarts"):
            await rt.ask("d", "work", 1)
        with pytest.raises(SubjectStopped):
            await rt.subject("d").get("attempts")
        await rt.idle()
        assert stopped == [("supervisor:root", "d")]
        assert rt.stats()["stopped"] == 1
        # Other subjects are unaffected.
        assert await rt.subject("other").set("x", 1) == 1
        await rt.restart("d")
        assert await rt.subject("d").get("attempts") is None  # every failed turn rolled back


async def test_dead_letters_can_be_inspected_and_redelivered(rt):
    failures = [1]
    flaky(rt, failures)
    with pytest.raises(RuntimeError):
        await rt.ask("d", "work", "payload")
    [letter] = rt.dead_letters
    assert (letter.subject, letter.kind, letter.name, letter.payload) == (
        "d", "ask", "work", "payload")
    assert letter.reason == "RuntimeError: flaky"
    await rt.idle()
    assert await rt.redeliver(letter) == "ok"
    assert len(rt.dead_letters) == 0
    assert await rt.subject("d").get("done") == "payload"


async def test_messages_to_a_stopped_subject_become_dead_letters():
    async with Runtime(passivate_after=None) as rt:
        rt.supervise("victim", max_restarts=0, within=10, backoff=FAST)
        @rt.on("boom")
        async def boom(ctx):
            await ctx.emit("later", "victim")
            raise RuntimeError("boom")

        @rt.on("relay")
        async def relay(ctx):
            await ctx.emit("boom", "victim")

        with pytest.raises(RuntimeError):
            await rt.ask("victim", "boom")
        await rt.tell("sender", "relay")  # an emit to a stopped subject: a dead letter
        await rt.idle()
        kinds = [(d.subject, d.name, type(d.error).__name__) for d in rt.dead_letters]
        assert kinds == [("victim", "boom", "RuntimeError"), ("victim", "boom", "SubjectStopped")]


async def test_escalation_stops_the_supervisor_and_its_subjects():
    escalated = []
    async with Runtime(passivate_after=None,
                       root=Policy(max_restarts=10, within=10, backoff=FAST)) as rt:
        devices = rt.supervise("device:*", name="devices", max_restarts=1, within=10,
                               backoff=FAST, escalate=True)

        @rt.on(SUPERVISOR_ESCALATED)
        async def on_escalate(ctx):
            escalated.append((ctx.subject.name, ctx.payload["supervisor"]))

        @rt.on("boom")
        async def boom(ctx):
            raise RuntimeError("boom")

        await rt.subject("device:healthy").set("ok", True)
        await rt.subject("user:1").set("ok", True)
        # device:a and device:b each exceed their own intensity (1): two escalations, more than
        # the supervisor's intensity (1) allows.
        for name in ("device:a", "device:b"):
            for _ in range(2):
                with pytest.raises(RuntimeError):
                    await rt.ask(name, "boom")
        await rt.idle()
        assert devices.stopped
        with pytest.raises(SubjectStopped, match="supervisor 'devices' stopped"):
            await rt.subject("device:healthy").get("ok")
        with pytest.raises(SubjectStopped, match="supervisor 'devices' stopped"):
            await rt.subject("device:new").set("x", 1)
        assert await rt.subject("user:1").get("ok") is True  # the root keeps going
        assert escalated == [("supervisor:root", "devices")]
        await rt.restart_supervisor("devices")
        assert await rt.subject("device:healthy").get("ok") is True


async def test_root_escalation_halts_the_runtime():
    async with Runtime(passivate_after=None,
                       root=Policy(max_restarts=0, within=10, backoff=FAST,
                                   escalate=True)) as rt:
        @rt.on("boom")
        async def boom(ctx):
            raise RuntimeError("boom")

        assert rt.halted is None
        with pytest.raises(RuntimeError):
            await rt.ask("a", "boom")  # a stops, and its escalation is one too many for root
        with pytest.raises(SubjectStopped, match="supervisor 'root' stopped"):
            await rt.subject("c").set("x", 1)
        assert "more than 0 failures escalated" in rt.halted


@pytest.mark.parametrize("strategy, restarted", [
    ("one_for_one", ["b"]),
    ("one_for_all", ["a", "b", "c"]),
    ("rest_for_one", ["b", "c"]),
])
async def test_strategies_choose_who_restarts(strategy, restarted):
    seen = []
    async with Runtime(passivate_after=None) as rt:
        rt.supervise("*", name="group", strategy=strategy, max_restarts=5, within=10,
                     backoff=FAST)

        @rt.on(SUBJECT_RESTARTED)
        async def on_restart(ctx):
            seen.append(ctx.payload["subject"])

        @rt.on("boom")
        async def boom(ctx):
            raise RuntimeError("boom")

        for name in ("a", "b", "c"):  # activation order: a, b, c
            await rt.subject(name).set("x", 1)
        with pytest.raises(RuntimeError):
            await rt.ask("b", "boom")
        await rt.idle()
        await rt.idle()
        assert sorted(seen) == restarted
        for name in ("a", "b", "c"):
            assert await rt.subject(name).get("x") == 1


def test_policies_are_checked():
    with pytest.raises(ValueError, match="strategy"):
        Policy(strategy="one_for_some")
    with pytest.raises(ValueError):
        Backoff(min=2, max=1)
    with pytest.raises(ValueError):
        Policy(max_restarts=-1)


async def test_supervisor_names_are_unique_and_parents_exist(rt):
    rt.supervise("a:*", name="a")
    with pytest.raises(ValueError, match="exists"):
        rt.supervise("b:*", name="a")
    with pytest.raises(LookupError):
        rt.supervise("c:*", parent="nope")
    child = rt.supervise("a:special:*", name="special", parent="a")
    assert rt.root.resolve("a:special:1") is child
    assert rt.root.resolve("a:1").name == "a"
    assert rt.root.resolve("z").name == "root"

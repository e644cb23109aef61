"""Restart intensity is a sliding window, in virtual time: failures older than `within` seconds
drop out of it (and out of the backoff's count), the limit is exceeded only past `max_restarts`,
and the supervision tree's strategies and escalation pick exactly who restarts and who stops."""

from __future__ import annotations

import pytest

from actors import SUBJECT_RESTARTED, SUBJECT_STOPPED, SUPERVISOR_ESCALATED
from runtime import Backoff, Policy, SubjectStopped
from runtime._supervision import Intensity
from runtime.testing import SimRuntime

# SimRuntime's virtual time needs the kit's event loop, which this marker gives the tests.
pytestmark = pytest.mark.subjects

STEADY = Backoff(min=1, max=100, factor=2, jitter=0)


def failing_on(rt: SimRuntime) -> list[tuple[str, float]]:
    """A behaviour on "boom" that fails; returns the log of restarts with their (virtual) time."""
    restarts: list[tuple[str, float]] = []

    @rt.on("boom")
    async def boom(ctx):
        raise RuntimeError("boom")

    @rt.on("ok")
    async def ok(ctx):
        return "ok"

    @rt.on(SUBJECT_RESTARTED)
    async def restarted(ctx):
        restarts.append((ctx.payload["subject"], rt.clock.now()))

    return restarts


async def fail_at(rt: SimRuntime, name: str, at: float) -> None:
    """Move virtual time to `at`, then fail a turn of `name`."""
    await rt.clock.advance(at - rt.clock.now())
    with pytest.raises(RuntimeError, match="boom"):
        await rt.ask(name, "boom")


async def test_failures_older_than_the_window_drop_out_of_it():
    policy = Policy(max_restarts=2, within=10, backoff=Backoff(min=0.5, max=0.5, jitter=0))
    async with SimRuntime(root=policy, ask_timeout=5, shutdown_timeout=5) as rt:
        failing_on(rt)
        await fail_at(rt, "d", 0)
        await fail_at(rt, "d", 1)
        await fail_at(rt, "d", 10)  # the failure at 0 is exactly `within` old: out
        await rt.run_until_idle()
        assert rt.stopped_subjects() == {}
        assert await rt.ask("d", "ok") == "ok"
        with pytest.raises(RuntimeError, match="boom"):
            await rt.ask("d", "boom")  # at 10.5: 1, 10 and 10.5 are within 10 s: three
        assert "d" in rt.stopped_subjects()
        with pytest.raises(SubjectStopped, match="more than 2 restarts within 10 s; last error: "
                                                 "RuntimeError: boom"):
            await rt.ask("d", "ok")


async def test_the_limit_is_exceeded_only_past_max_restarts():
    policy = Policy(max_restarts=1, within=10, backoff=Backoff(min=0.5, max=0.5, jitter=0))
    async with SimRuntime(root=policy, ask_timeout=5, shutdown_timeout=5) as rt:
        stopped = []
        failing_on(rt)

        @rt.on(SUBJECT_STOPPED)
        async def on_stop(ctx):
            stopped.append((ctx.payload["subject"], rt.clock.now()))

        await fail_at(rt, "d", 0)  # one: restarted
        await rt.run_until_idle()
        assert rt.stopped_subjects() == {}
        await fail_at(rt, "d", 5)  # two within 10 s: more than 1
        await rt.run_until_idle()
        assert stopped == [("d", 5)]


async def test_zero_restarts_allowed_stops_at_the_first_failure():
    async with SimRuntime(root=Policy(max_restarts=0, within=1), ask_timeout=5,
                          shutdown_timeout=5) as rt:
        restarts = failing_on(rt)
        await fail_at(rt, "d", 0)
        await rt.run_until_idle()
        assert list(rt.stopped_subjects()) == ["d"] and restarts == []


async def test_the_backoff_grows_with_the_failures_in_the_window_and_resets_after_it():
    async with SimRuntime(root=Policy(max_restarts=5, within=10, backoff=STEADY),
                          ask_timeout=5, shutdown_timeout=5) as rt:
        restarts = failing_on(rt)
        await fail_at(rt, "d", 0)  # the first in the window: 1 s
        await rt.run_until_idle()
        await fail_at(rt, "d", 1)  # the second: 2 s
        await rt.run_until_idle()
        await fail_at(rt, "d", 3)  # the third: 4 s
        await rt.run_until_idle()
        await fail_at(rt, "d", 30)  # all three have dropped out: 1 s again
        await rt.run_until_idle()
        assert restarts == [("d", 1), ("d", 3), ("d", 7), ("d", 31)]


async def test_a_restart_waits_out_its_backoff_in_virtual_time():
    async with SimRuntime(root=Policy(max_restarts=5, within=100,
                                      backoff=Backoff(min=10, max=10, jitter=0)),
                          ask_timeout=50, shutdown_timeout=5) as rt:
        restarts = failing_on(rt)
        await fail_at(rt, "d", 0)
        await rt.clock.advance(9.5)
        assert restarts == []
        await rt.clock.advance(0.5)
        assert restarts == [("d", 10)]


def test_intensity_counts_a_sliding_window():
    window = Intensity(limit=2, window=10)
    assert [window.record(t) for t in (0, 1, 2)] == [False, False, True]
    assert window.count == 3
    assert window.record(11) is False  # 0 and 1 are out; 2 and 11 are in
    assert window.count == 2
    assert window.record(12) is False  # exactly 10 s after 2: 2 is out too
    assert window.count == 2
    assert window.record(12) is True  # 11, 12, 12


def test_policies_check_each_bound_alone():
    Policy(max_restarts=0, within=0.001)
    for bad in ({"max_restarts": -1}, {"within": 0}, {"within": -1}):
        with pytest.raises(ValueError, match="max_restarts must be >= 0 and within > 0"):
            Policy(**bad)
    with pytest.raises(ValueError, match="unknown strategy 'one_for_some'"):
        Policy(strategy="one_for_some")


@pytest.mark.parametrize("strategy, restarted", [
    ("one_for_one", ["b"]),
    ("one_for_all", ["a", "b", "c"]),
    ("rest_for_one", ["b", "c"]),
])
async def test_strategies_restart_only_active_subjects_of_the_same_supervisor(strategy,
                                                                               restarted):
    async with SimRuntime(ask_timeout=5, shutdown_timeout=5) as rt:
        rt.supervise("g:*", name="group", strategy=strategy, max_restarts=1, within=10,
                     backoff=STEADY)
        rt.supervise("h:*", name="other", strategy=strategy, max_restarts=5, within=10,
                     backoff=STEADY)
        rt.supervise("g:*", name="group2", strategy=strategy, max_restarts=5, within=10,
                     backoff=STEADY)  # never chosen: "group" comes first
        for name in ("g:stopped", "a", "g:a", "h:x", "g:b", "g:c"):
            await rt.subject(name).set("x", 1)
        restarts = failing_on(rt)
        await fail_at(rt, "g:stopped", 0)
        await rt.run_until_idle()
        await fail_at(rt, "g:stopped", 2)  # the second within 10 s: stopped
        await rt.run_until_idle()
        restarts.clear()
        await fail_at(rt, "g:b", 3)
        await rt.run_until_idle()
        assert sorted(name for name, _ in restarts) == [f"g:{n}" for n in restarted]
        assert "g:stopped" in rt.stopped_subjects()


async def test_escalation_counts_only_where_it_is_on_and_names_the_last_failure():
    async with SimRuntime(ask_timeout=5, shutdown_timeout=5) as rt:
        rt.supervise("x:*", name="top", max_restarts=0, within=10, escalate=False)
        rt.supervise("x:y:*", name="mid", parent="top", max_restarts=0, within=10,
                     escalate=True)
        escalated = []

        @rt.on(SUPERVISOR_ESCALATED)
        async def on_escalate(ctx):
            escalated.append((ctx.subject.name, ctx.payload["supervisor"],
                              ctx.payload["reason"]))

        failing_on(rt)
        await rt.subject("x:z").set("ok", 1)
        await fail_at(rt, "x:y:1", 0)
        await rt.run_until_idle()
        assert rt.root.find("mid").stopped and not rt.root.find("top").stopped
        assert escalated == [("supervisor:top", "mid",
                              "more than 0 failures escalated within 10 s; last from x:y:1: "
                              "RuntimeError: boom")]
        assert await rt.subject("x:z").get("ok") == 1
        assert rt.halted is None
        sup = rt.root.find("mid")
        assert repr(sup).startswith("<Supervisor mid 'x:y:*' one_for_one stopped: more than 0")
        assert sup.halted_reason().startswith("supervisor 'mid' stopped: ")
        assert rt.root.find("top").halted_reason() is None
        assert [s.name for s in sup.chain()] == ["mid", "top", "root"]
        assert rt.root.find("nothing") is None


async def test_escalation_climbs_while_each_parent_escalates_too():
    async with SimRuntime(ask_timeout=5, shutdown_timeout=5) as rt:
        top = rt.supervise("x:*", name="top", max_restarts=0, within=10, escalate=True)
        mid = rt.supervise("x:y:*", name="mid", parent="top", max_restarts=0, within=10,
                           escalate=True)
        failing_on(rt)
        assert repr(top) == "<Supervisor top 'x:*' one_for_one>" and not top.stopped
        await rt.subject("x:z").set("ok", 1)
        await fail_at(rt, "x:y:1", 0)
        await rt.run_until_idle()
        assert mid.stopped_reason == ("more than 0 failures escalated within 10 s; last from "
                                      "x:y:1: RuntimeError: boom")
        assert top.stopped_reason == ("more than 0 failures escalated within 10 s; last from "
                                      "supervisor:mid: RuntimeError: boom")
        assert not rt.root.stopped and rt.halted is None
        assert {"x:z", "x:y:1"} <= set(rt.stopped_subjects())


def test_the_default_policy():
    assert Policy() == Policy("one_for_one", 3, 5.0, Backoff(), False)
    assert Backoff() == Backoff(min=0.01, max=5.0, factor=2.0, jitter=0.2)

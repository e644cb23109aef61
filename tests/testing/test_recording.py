"""The `runtime` fixture records every event of every committed turn, for `rt.events(...)`."""

from __future__ import annotations

import pytest

from actors import PROPERTY_CHANGED, PROPERTY_DELETED
from runtime.testing import LOOP_KINDS

pytestmark = pytest.mark.subjects(loop=LOOP_KINDS)  # each test on asyncio's loop and on uvloop


async def install_alerts(rt):
    @rt.on(PROPERTY_CHANGED, subject="device:*")
    async def alert(ctx):
        if ctx.property_name == "cpu" and ctx.new_value > 90:
            await ctx.emit("device.alert.cpu", ctx.subject, {"cpu": ctx.new_value})

    @rt.on("device.alert.*", subject="device:*")
    async def count(ctx):
        ctx.subject.set("alerts", lambda n: (n or 0) + 1)

    @rt.on("fail")
    async def fail(ctx):
        ctx.subject.set("cpu", 99)  # would alert, but the turn fails
        raise RuntimeError("fails on purpose")


async def test_events_are_recorded_in_order_with_payloads(runtime):
    await install_alerts(runtime)
    await runtime.subject("device:1").set("cpu", 95)
    await runtime.subject("device:2").set("cpu", 50)
    await runtime.subject("device:2").set("cpu", 97)
    await runtime.subject("host:1").set("cpu", 99)
    await runtime.idle()
    alerts = runtime.events(type="device.alert.*", subject="device:*")
    assert [(e.subject, e.event_type, e.payload) for e in alerts] == [
        ("device:1", "device.alert.cpu", {"cpu": 95}),
        ("device:2", "device.alert.cpu", {"cpu": 97}),
    ]
    changes = runtime.events(type=PROPERTY_CHANGED, subject="device:2", property="cpu")
    assert [(e.old_value, e.new_value) for e in changes] == [(None, 50), (50, 97)]
    assert len(runtime.events()) == 8  # 4 cpu changes, 2 alerts, 2 alert counts


async def test_events_of_failed_turns_are_never_recorded(runtime):
    await install_alerts(runtime)
    with pytest.raises(RuntimeError):
        await runtime.ask("device:1", "fail")
    await runtime.run_until_idle()  # the restart waits out its backoff, in virtual time
    assert runtime.events() == []
    await runtime.subject("device:1").delete("nothing")  # no change, no event
    assert runtime.events() == []


async def test_recording_can_start_afresh(runtime):
    await runtime.subject("a").set("x", 1)
    runtime.recorder.clear()
    await runtime.subject("a").delete("x")
    assert [e.event_type for e in runtime.events()] == [PROPERTY_DELETED]


async def test_each_test_gets_a_fresh_runtime(runtime):
    assert runtime.active_subjects() == [] and runtime.events() == []
    assert runtime.clock.now() == 0.0


@pytest.mark.subjects(seed=7, passivate_after=60)
async def test_the_marker_configures_the_fixture(runtime):
    assert runtime.seed == 7 and runtime.passivate_after == 60  # and the module's loop= too

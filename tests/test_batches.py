"""`Runtime.patch_many`: many subjects' patches in one call, each its own turn.

The invariants (a batch equals its patches replayed; a failing subject changes nothing and
does not stop the others) are property-tested in test_invariants.py; here, the edges: bad
input refused before anything is sent, stopped subjects, handlers, durability, fairness.
"""

from __future__ import annotations

import asyncio

import pytest

from actors import PROPERTY_CHANGED, InvalidSubjectName
from runtime import (
    Backoff,
    BatchFailed,
    Runtime,
    RuntimeNotRunning,
    SubjectStopped,
)


async def test_each_subject_gets_its_patch_and_its_new_version(rt):
    await rt.subject("d:1").set("a", 1)
    versions = await rt.patch_many({"d:1": {"a": 2, "b": 3}, rt.subject("d:2"): {"a": 1}})
    assert versions == {"d:1": 2, "d:2": 1}
    assert (await rt.subject("d:1").state()).properties == {"a": 2, "b": 3}
    assert await rt.subject("d:2").get("a") == 1
    assert await rt.patch_many({}) == {}


async def test_bad_input_is_refused_before_anything_is_sent(rt):
    with pytest.raises(InvalidSubjectName):
        await rt.patch_many({"d:1": {"a": 1}, "bad name": {"a": 1}})
    with pytest.raises(ValueError, match="'d:1' is given twice"):
        await rt.patch_many({"d:1": {"a": 1}, rt.subject("d:1"): {"a": 2}})
    with pytest.raises(TypeError, match="mapping of property names"):
        await rt.patch_many({"d:1": {"a": 1}, "d:2": [("a", 1)]})
    with pytest.raises(TypeError):
        await rt.patch_many({"d:1": {"a": 1}, "d:2": {"a": object()}})
    assert rt.active_subjects() == []  # nothing was sent, nothing activated


async def test_a_stopped_subject_fails_alone():
    async with Runtime(passivate_after=None) as rt:
        rt.supervise("d:1", max_restarts=0, within=10, backoff=Backoff(0.001))

        @rt.on("crash")
        async def crash(ctx):
            raise RuntimeError("down")

        with pytest.raises(RuntimeError):
            await rt.ask("d:1", "crash")
        with pytest.raises(BatchFailed, match=r"1 of 2 subjects failed: d:1: SubjectStopped") \
                as failed:
            await rt.patch_many({"d:1": {"a": 1}, "d:2": {"a": 1}})
        assert failed.value.results == {"d:2": 1}
        assert isinstance(failed.value.errors["d:1"], SubjectStopped)
        assert await rt.subject("d:2").get("a") == 1


async def test_handlers_see_each_change_and_batches_from_handlers_go_out_on_commit(rt):
    seen = []

    @rt.on(PROPERTY_CHANGED, subject="room:*")
    async def spread(ctx):
        seen.append((ctx.subject.name, ctx.property_name, ctx.new_value))
        returned = await rt.patch_many({f"lamp:{ctx.subject.name}": {"on": ctx.new_value}})
        assert returned == {}  # sent when this turn commits, not waited for

    await rt.patch_many({"room:a": {"lit": True}, "room:b": {"lit": False}})
    await rt.idle()
    assert seen == [("room:a", "lit", True), ("room:b", "lit", False)]
    assert await rt.subject("lamp:room:a").get("on") is True
    assert await rt.subject("lamp:room:b").get("on") is False


async def test_a_big_batch_lets_the_event_loop_run(rt):
    ticks = 0
    running = True

    async def ticker():
        nonlocal ticks
        while running:
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await rt.patch_many({f"d:{i}": {"a": i} for i in range(1000)})
    during = ticks - before
    running = False
    await ticking
    assert during >= 10  # the batch yielded to other tasks again and again


async def test_durable_batches_are_in_the_store_when_they_return(tmp_path):
    url = f"sqlite:///{tmp_path}/state.db"
    async with Runtime(url, durable=True, flush_delay=0.05) as rt:
        versions = await rt.patch_many({f"d:{i}": {"a": i} for i in range(300)})
        assert set(versions.values()) == {1}
        # Returned: committed, although the writer had not yet flushed on its own timer.
        check = Runtime(url)
        await check.store.open()
        try:
            found = await check.store.load_many([f"d:{i}" for i in range(300)])
        finally:
            await check.store.close()
        assert sorted(snap.version for snap in found.values()) == [1] * 300


async def test_a_batch_needs_a_running_runtime():
    rt = Runtime()
    with pytest.raises(RuntimeNotRunning):
        await rt.patch_many({"d:1": {"a": 1}})


async def test_a_subject_whose_behaviour_waits_holds_back_no_other(rt):
    gate = asyncio.Event()

    @rt.on(PROPERTY_CHANGED, subject="slow:*")
    async def wait_for_gate(ctx):
        await gate.wait()

    names = ["slow:1"] + [f"fast:{i}" for i in range(10)]
    for name in names:  # active and idle: a caller could run their turns itself, one by one
        await rt.subject(name).get("v")
    batch = asyncio.create_task(rt.patch_many({name: {"v": 1} for name in names}))
    await asyncio.sleep(0)  # the batch is sent: each get below waits behind its patch
    for i in range(10):  # each is applied while slow:1's turn still waits
        assert await rt.subject(f"fast:{i}").get("v") == 1
    assert not batch.done()
    gate.set()
    assert (await batch)["slow:1"] == 1


async def test_a_batch_to_a_closed_runtime_is_refused_whole():
    async with Runtime() as rt:
        pass
    with pytest.raises(RuntimeNotRunning):
        await rt.patch_many({"d:1": {"a": 1}})


async def test_dead_letters_of_a_batch_keep_its_message_not_its_results(rt):
    @rt.on(PROPERTY_CHANGED, subject="bad:*")
    async def refuse(ctx):
        raise ValueError("no")

    with pytest.raises(BatchFailed):
        await rt.patch_many({"bad:1": {"v": 1}, "ok:1": {"v": 1}})
    letter = rt.dead_letters.for_subject("bad:1")[0]
    _, message = rt.dead_letters.take(letter)
    assert message.future is None and message.value == {"v": 1}

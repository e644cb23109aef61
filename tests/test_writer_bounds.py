"""The writer's bounds: batch size, batches in flight, shutdown, group commit, retry backoff.

Each test runs the real pipeline against the real in-memory store, instrumented (`Recorder`)
to count what is in flight and to hold writes at a gate; every wait is bounded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runtime import NotDurable
from runtime.testing import VirtualClock, settle
from storage import SnapshotRefused, StoreUnavailable
from tests.writer_store import Recorder, next_wait, runtime, stored, until, within

# Virtual time (VirtualClock, settle) needs the kit's event loop, which this marker gives.
pytestmark = pytest.mark.subjects

# -- batch size ---------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [None, 3])
async def test_a_batch_never_exceeds_flush_batch(concurrency):
    store = Recorder(concurrency)
    names = [f"d:{i}" for i in range(50)]
    async with runtime(store, flush_batch=7, flush_delay=0.01) as rt:
        await rt.patch_many({name: {"x": 1} for name in names})
        await within(rt.flush(), "flush of 50 subjects")
        sizes = [len(batch) for batch in store.batches]
        assert max(sizes) == 7, sizes  # full batches, never more
        assert sorted(store.written()) == sorted(names)  # each once
        assert rt._pipeline is not None and rt._pipeline.batches == len(sizes)  # its count
        assert len(await stored(store, names)) == 50


async def test_a_batch_of_exactly_flush_batch_goes_out_whole():
    store = Recorder()
    async with runtime(store, flush_batch=5, flush_delay=0.05) as rt:
        await rt.patch_many({f"d:{i}": {"x": i} for i in range(5)})
        await within(rt.flush(), "flush")
        assert [len(batch) for batch in store.batches] == [5]


MiB = 1024 * 1024


@pytest.mark.parametrize(("first", "sizes"), [(MiB, [4, 4]), (MiB - 1, [5, 3])])
async def test_a_batch_stops_at_4_mib_of_snapshots(first, sizes):
    """A snapshot is added while the batch holds under 4 MiB: four of exactly 1 MiB fill it,
    and with one byte less a fifth still goes in."""
    store = Recorder()

    def value(size: int) -> str:  # the encoded snapshot: {"v":"..."} and the empty ext {}
        return "x" * (size - len('{"v":""}') - len("{}"))

    patch = {f"d:{i}": {"v": value(first if i == 0 else MiB)} for i in range(8)}
    async with runtime(store, flush_delay=0.05) as rt:
        await rt.patch_many(patch)
        await within(rt.flush(), "flush of 8 MiB")
    assert [len(batch) for batch in store.batches] == sizes
    assert len(await stored(store, list(patch))) == 8


# -- batches in flight --------------------------------------------------------------------------


@pytest.mark.parametrize(("declared", "allowed"), [(None, 1), (0, 1), (1, 1), (2, 2), (3, 3)])
async def test_at_most_write_concurrency_batches_are_in_flight(declared, allowed):
    store = Recorder(declared)
    store.gate.clear()
    names = [f"d:{i}" for i in range(6)]
    async with runtime(store, flush_batch=1, flush_delay=0) as rt:
        for name in names:
            await rt.subject(name).set("x", 1)
        await until(lambda: store.in_flight == allowed, f"{allowed} batches in flight")
        await asyncio.sleep(0.05)  # time for a writer that ignores its bound to start more
        assert store.in_flight == allowed and len(store.batches) == allowed
        assert rt.stats()["unsaved"] == 6 - allowed  # the dirty subjects not yet taken
        store.gate.set()
        await within(rt.flush(), "flush once the gate is open")
    assert store.most_in_flight == allowed
    assert len(await stored(store, names)) == 6


async def test_a_subject_is_never_in_two_batches_in_flight():
    """Its next snapshot is based on the version the one in flight stores: it waits."""
    store = Recorder(3)
    store.gate.clear()
    names = [f"d:{i}" for i in range(6)]
    async with runtime(store, flush_batch=2, flush_delay=0) as rt:
        for name in names:
            await rt.subject(name).set("x", 1)
        await until(lambda: store.in_flight == 3, "three batches in flight")
        await rt.subject("d:0").set("x", 2)
        await rt.subject("d:9").set("x", 1)
        await asyncio.sleep(0.05)
        assert len(store.batches) == 3  # d:0 waits for its batch; so does d:9 (no writer free)
        store.gate.set()
        await within(rt.flush(), "flush once the gate is open")
    assert store.overlaps == []
    assert (await stored(store, ["d:0"]))["d:0"] == b'{"x":2}'
    assert len(await stored(store, [*names, "d:9"])) == 7


async def test_a_dirty_subject_waits_while_its_batch_is_in_flight_and_the_rest_go():
    store = Recorder(2)
    store.gate.clear()
    async with runtime(store, flush_batch=10, flush_delay=0) as rt:
        await rt.subject("a").set("x", 1)
        await until(lambda: store.in_flight == 1, "a's batch in flight")
        await rt.subject("a").set("x", 2)
        await rt.subject("b").set("x", 1)
        await until(lambda: store.in_flight == 2, "b's batch in flight beside a's")
        assert store.batches == [["a"], ["b"]]
        store.gate.set()
        await within(rt.flush(), "flush once the gate is open")
    assert store.batches[2:] == [["a"]] and store.overlaps == []
    assert (await stored(store, ["a"]))["a"] == b'{"x":2}'


async def test_a_refused_batch_is_halved_until_the_snapshots_at_fault_are_alone():
    store = Recorder()
    names = [f"d:{i}" for i in range(8)]
    async with runtime(store, flush_delay=0.05) as rt:
        await rt.patch_many({name: {"x": "poison" if name in ("d:2", "d:5") else 1}
                             for name in names})
        with pytest.raises(SnapshotRefused) as flushed:
            await within(rt.flush(), "flush of a batch with two poisoned snapshots")
        assert flushed.value.subjects == ("d:2", "d:5")
        assert (await rt.subject("d:2").state()).properties == {}  # reloaded: never stored
    assert store.batches == [names, names[:4], names[:2], names[2:4], ["d:2"], ["d:3"],
                             names[4:], names[4:6], ["d:4"], ["d:5"], names[6:]]
    assert sorted(await stored(store, names)) == [n for n in names if n not in ("d:2", "d:5")]


async def test_a_half_of_a_split_batch_leaves_alone_what_another_writer_took_since():
    """[a, p] is refused for p and split: [a] is stored, [p] is held. a changes and goes out
    in a batch of its own, held too; when [p] ends, a is still in flight, and its next change
    must wait for that batch, not go out beside it."""
    store = Recorder(3)
    store.holds["p"] = asyncio.Event()
    async with runtime(store, flush_delay=0.05) as rt:
        await rt.patch_many({"a": {"x": 1}, "p": {"x": "poison"}})
        await until(lambda: store.batches[-1:] == [["p"]], "the split down to [p]")
        assert store.batches == [["a", "p"], ["a"], ["p"]]
        store.holds["a"] = asyncio.Event()
        await rt.subject("a").set("x", 2)
        await until(lambda: store.in_flight == 2, "a's second batch in flight beside [p]")
        store.holds["p"].set()
        await until(lambda: store.in_flight == 1, "[p] refused")
        await rt.subject("a").set("x", 3)
        await asyncio.sleep(0.1)  # time for a third batch of a to go out, if it could
        store.holds["a"].set()
        with pytest.raises(SnapshotRefused):
            await within(rt.flush(), "flush")
    assert store.overlaps == []
    assert (await stored(store, ["a"]))["a"] == b'{"x":3}'


# -- shutdown -----------------------------------------------------------------------------------


async def test_stop_cancels_a_write_in_flight_and_loses_nothing_acknowledged():
    store = Recorder()
    rt = runtime(store, flush_delay=0, durable_timeout=30)
    await rt.start()
    assert await within(rt.subject("d").set("n", 1, durable=True), "first durable set") == 1
    store.gate.clear()
    pending = asyncio.create_task(rt.subject("d").set("n", 2, durable=True))
    await until(lambda: store.in_flight == 1, "the second write in flight")
    await within(rt.close(timeout=0.1), "close with a write hanging")
    assert store.cancelled == 1 and store.in_flight == 0
    with pytest.raises(NotDurable, match="stopped before the write"):
        await within(pending, "the pending durable set's answer")
    assert (await stored(store, ["d"]))["d"] == b'{"n":1}'  # what was acknowledged is there


async def test_a_write_acknowledged_after_stop_fails_at_once():
    store = Recorder()
    rt = runtime(store, flush_delay=0)
    await rt.start()
    await rt.subject("d").set("n", 1)
    actor = rt._actors["d"]
    await within(rt.close(), "close")
    pipeline = rt._pipeline
    assert pipeline is not None
    actor.version += 1  # a turn that outlived the shutdown
    fut = asyncio.get_running_loop().create_future()
    pipeline.acknowledge(actor, actor.version, fut, "result", None)
    assert fut.done()
    with pytest.raises(NotDurable, match="stopped before the write"):
        fut.result()


# -- group commit -------------------------------------------------------------------------------


@pytest.mark.parametrize("hurry", ["flush", "store", "durable set"])
async def test_group_commit_still_gathers_after_a_hurried_write(hurry):
    """On virtual time: the batch goes out when flush_delay has passed, not at the first
    change, so the writes of the meantime share it."""
    clock = VirtualClock()
    store = Recorder()
    async with runtime(store, flush_delay=0.3, clock=clock, ask_timeout=1000) as rt:
        await rt.subject("first").set("x", 1)
        if hurry == "flush":
            await within(rt.flush(), "flush")
        elif hurry == "store":
            await within(rt.subject("first").store(), "store()")
        else:
            task = asyncio.create_task(rt.subject("first").set("x", 2, durable=True))
            await clock.advance(0.3)
            await within(task, "durable set")
        before = len(store.batches)
        names = [f"g:{i}" for i in range(5)]
        for name in names:
            await rt.subject(name).set("x", 1)
            await settle()  # the writer runs between these turns
        assert len(store.batches) == before, "a write went out before flush_delay"
        await clock.advance(0.3)
        assert store.batches[before:] == [names]  # one batch: the writer gathered them


async def test_store_and_flush_do_not_wait_for_a_batch_to_gather():
    store = Recorder()
    async with runtime(store, flush_delay=60) as rt:
        await rt.subject("a").set("x", 1)
        assert await within(rt.subject("a").store(), "store() with flush_delay=60", 1) == 1
        await rt.subject("b").set("x", 1)
        await within(rt.flush(), "flush() with flush_delay=60", 1)
        assert store.batches == [["a"], ["b"]]


async def test_group_commit_waits_for_flush_delay_exactly():
    clock = VirtualClock()
    store = Recorder()
    async with runtime(store, flush_delay=0.2, clock=clock, ask_timeout=1000) as rt:
        await rt.subject("a").set("x", 1)
        await clock.advance(0.19)
        assert store.batches == [], "written before flush_delay"
        await clock.advance(0.01)
        assert store.batches == [["a"]], "not written at flush_delay"


async def test_full_batches_go_out_without_gathering():
    """Dirty subjects that fill batches go out at once, batch after batch; only a batch that
    is not full waits flush_delay to gather."""
    clock = VirtualClock()
    store = Recorder()
    names = [f"d:{i:02}" for i in range(15)]
    async with runtime(store, flush_delay=0.3, flush_batch=5, clock=clock,
                       ask_timeout=1000) as rt:
        await rt.patch_many({name: {"x": 1} for name in names})
        await settle()
        assert store.batches == [names[:5], names[5:10], names[10:]]
        await rt.subject("last").set("x", 1)
        await settle()
        assert len(store.batches) == 3, "a batch of one went out without gathering"
        await clock.advance(0.3)
        assert store.batches[3:] == [["last"]]


# -- retry backoff ------------------------------------------------------------------------------


async def test_retry_backs_off_exponentially_up_to_5_s_and_resets_on_success():
    clock = VirtualClock()
    store = Recorder()
    store.down = True
    async with runtime(store, flush_delay=0, clock=clock) as rt:
        await rt.subject("a").set("x", 1)
        waits = []
        for _ in range(9):
            wait = await next_wait(clock)
            waits.append(wait)
            await clock.advance(wait)
        for n, wait in enumerate(waits, 1):
            base = min(5.0, 0.05 * 2 ** (n - 1))
            assert base <= wait <= base * 1.2 + 1e-9, (n, waits)
        store.down = False
        await clock.advance(await next_wait(clock))
        await settle()
        assert (await stored(store, ["a"]))["a"] == b'{"x":1}'
        assert rt._pipeline is not None and rt._pipeline.failures == 0
        store.down = True  # fails again: the backoff starts over
        await rt.subject("a").set("x", 2)
        assert 0.05 <= await next_wait(clock) <= 0.06 + 1e-9
        store.down = False
        await clock.advance(0.06)
        await settle()
        assert (await stored(store, ["a"]))["a"] == b'{"x":2}'


async def test_a_batch_that_succeeds_ends_the_backoff_of_the_others():
    """The store is back: the writer retries at once, not after its step of backoff."""
    clock = VirtualClock()
    store = Recorder(2)
    store.gate.clear()
    async with runtime(store, flush_delay=0, flush_batch=1,
                       clock=clock) as rt:
        await rt.subject("slow").set("x", 1)
        await settle()
        assert store.in_flight == 1
        store.down = True
        failing = store.save_many

        async def fail_b(writes: Any) -> list[str]:
            if [w.name for w in writes] == ["b"] and store.down:
                raise StoreUnavailable("b fails (test)")
            return await failing(writes)

        store.save_many = fail_b  # type: ignore[method-assign]
        await rt.subject("b").set("x", 1)
        await settle()
        assert await next_wait(clock) > 0  # backing off
        store.down = False
        store.gate.set()  # "slow" succeeds: the backoff ends, time stands still
        await settle()
        assert len(await stored(store, ["slow", "b"])) == 2

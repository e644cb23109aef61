"""What the writer tells the callers: refused and stale writes reported by `flush()`, the
deadlines of durable acknowledgements, a retry refused after a lost reply, a subject the store
lost. On the real in-memory store, instrumented (`Recorder`); every wait is bounded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runtime import NotDurable, Runtime, StaleVersion
from runtime._persistence import EXPIRY_CHECK, discarded_error
from runtime.testing import VirtualClock, settle
from storage import Delete, MemoryStore, SnapshotRefused, SQLiteStore, StoreUnavailable
from tests.writer_store import Recorder, next_wait, runtime, stored, until, within

# Virtual time (VirtualClock, settle) needs the kit's event loop, which this marker gives.
pytestmark = pytest.mark.subjects

# -- refused writes -----------------------------------------------------------------------------


async def test_flush_reports_stale_writes_with_their_subjects_once():
    store = MemoryStore()
    names = [f"s:{i}" for i in range(5)]
    async with runtime(store, flush_delay=0) as one, \
            runtime(store, flush_delay=0) as two:
        for name in names:
            assert await two.subject(name).get("x") is None  # activated at v0
            await one.subject(name).set("x", "one", durable=True)
        for name in names:
            await two.subject(name).set("x", "two")
        with pytest.raises(StaleVersion) as flushed:
            await within(two.flush(), "flush of stale writes")
        assert flushed.value.subjects == tuple(names)
        assert "5 subject(s)" in str(flushed.value) and "(and 2 more)" in str(flushed.value)
        await within(two.flush(), "second flush")  # reported once: nothing raised
    assert set((await stored(store, names)).values()) == {b'{"x":"one"}'}


async def test_flush_names_the_latest_10_000_discards():
    """The bound on what a flush can name is 10,000 subjects: of 10,001 discarded since the
    last flush, the oldest is dropped."""
    store = Recorder()
    names = [f"d:{i:05}" for i in range(10_001)]
    async with runtime(store, flush_delay=0) as rt:
        await rt.patch_many({name: {"a": 1} for name in names})
        await within(rt.flush(), "flush of 10,001 subjects")
        for name in names:
            rt._actors[name].props["a"] = "\ud800"  # no UTF-8 form: refused when written
        await rt.patch_many({name: {"b": 2} for name in names})
        with pytest.raises(SnapshotRefused) as flushed:
            await within(rt.flush(), "flush of 10,001 refused subjects")
    assert flushed.value.subjects == tuple(names[1:])


def test_discarded_error_prefers_stale_and_names_every_subject():
    stale = StaleVersion("stale")
    refused = SnapshotRefused("refused")
    both = discarded_error({"a": refused, "b": stale})
    assert isinstance(both, StaleVersion) and both.subjects == ("a", "b")
    assert str(both).endswith("flush: a: refused; b: stale")  # two: nothing "more"
    only = discarded_error({"a": refused, "b": refused, "c": refused})
    assert type(only) is SnapshotRefused and only.subjects == ("a", "b", "c")
    assert str(only) == ("the unsaved changes of 3 subject(s) were discarded since the last "
                         "flush: a: refused; b: refused; c: refused")
    seven = discarded_error(dict.fromkeys("abcdefg", refused))
    assert str(seven).endswith("c: refused (and 4 more)")



# -- deadlines of durable acknowledgements ------------------------------------------------------


async def _durable_set(rt: Runtime, name: str, timeout: float) -> asyncio.Task[Any]:
    """A durable set whose acknowledgement has `timeout`, left waiting (the gate is shut)."""
    rt.durable_timeout = timeout
    task = asyncio.create_task(rt.subject(name).set("x", timeout, durable=True))
    await settle()
    assert not task.done(), f"the durable set of {name} was answered with the gate shut"
    return task


async def test_an_earlier_deadline_is_noticed_on_time_and_a_later_one_is_kept():
    clock = VirtualClock()
    store = Recorder(3)
    store.gate.clear()
    async with runtime(store, flush_delay=0, clock=clock,
                       ask_timeout=1000) as rt:
        late = await _durable_set(rt, "late", 10)
        early = await _durable_set(rt, "early", 1)
        same = await _durable_set(rt, "late", 3)  # a second one on the same actor
        await clock.advance(1.1)
        assert early.done() and not late.done() and not same.done()
        with pytest.raises(NotDurable, match=r"'early' was not committed within 1 s;"):
            early.result()
        await clock.advance(2)
        assert same.done() and not late.done()
        with pytest.raises(NotDurable, match=r"'late' was not committed within 3 s;"):
            same.result()
        await clock.advance(7)
        assert late.done()
        with pytest.raises(NotDurable, match=r"'late' was not committed within 10 s;"):
            late.result()
        store.gate.set()
        await within(rt.flush(), "flush once the gate is open")
    assert len(await stored(store, ["late", "early"])) == 2  # kept in memory, then written


async def test_each_acknowledgement_is_answered_when_its_version_is_stored():
    """Three durable writes of one subject: the first batch stores v1 and answers only it; the
    store fails from then on, and the two left still time out."""
    clock = VirtualClock()
    store = Recorder()
    store.gate.clear()
    store.down_after = 1
    async with runtime(store, flush_delay=0, clock=clock, ask_timeout=1000) as rt:
        first = await _durable_set(rt, "d", 5)
        assert store.in_flight == 1
        second = await _durable_set(rt, "d", 5.5)  # (the value set is the timeout)
        third = await _durable_set(rt, "d", 6)
        store.gate.set()
        await settle()
        assert first.done() and first.result() == 5
        assert not second.done() and not third.done()
        await clock.advance(5.6)
        assert second.done() and not third.done()
        await clock.advance(0.5)
        for late in (second, third):
            with pytest.raises(NotDurable):
                late.result()
        store.down_after = None
        await clock.advance(10)


async def test_one_write_answers_every_acknowledgement_it_covers():
    """d's v1 and v2 wait behind another batch and go out as one snapshot, v2: both callers
    are answered by it."""
    store = Recorder()
    store.gate.clear()
    async with runtime(store, flush_delay=0, durable_timeout=1000) as rt:
        blocker = asyncio.create_task(rt.subject("b").set("x", 1, durable=True))
        await until(lambda: store.in_flight == 1, "b's batch in flight")
        first = asyncio.create_task(rt.subject("d").set("x", 1, durable=True))
        second = asyncio.create_task(rt.subject("d").set("x", 2, durable=True))
        await until(lambda: "d" in rt._actors and rt._actors["d"].version == 2, "d's turns")
        store.gate.set()
        assert await within(asyncio.gather(blocker, first, second), "the answers") == [1, 1, 2]
    assert store.batches == [["b"], ["d"]]


async def test_a_batch_answers_every_subject_in_it_when_one_still_waits():
    """d's acknowledgement of v2 outlives the batch that stores d's v1 and e's v1: e's caller
    is answered all the same."""
    store = Recorder()
    store.gate.clear()
    async with runtime(store, flush_delay=0, durable_timeout=1000) as rt:
        both = asyncio.create_task(rt.patch_many({"d": {"x": 1}, "e": {"x": 1}}, durable=True))
        await until(lambda: store.in_flight == 1, "the batch of d and e in flight")
        assert store.batches == [["d", "e"]]
        again = asyncio.create_task(rt.subject("d").set("x", 2, durable=True))
        await until(lambda: rt._actors["d"].version == 2, "d's second turn")
        store.gate.set()
        assert await within(both, "the answer to d's and e's v1") == {"d": 1, "e": 1}
        assert await within(again, "the answer to d's v2") == 2


async def test_a_deadline_that_falls_on_a_sweep_is_failed_by_it():
    clock = VirtualClock()
    store = Recorder(2)
    store.gate.clear()
    async with runtime(store, flush_delay=0, clock=clock, ask_timeout=1000) as rt:
        sweep = 1.0 + EXPIRY_CHECK  # when the sweep for a 1 s timeout runs
        first = await _durable_set(rt, "a", 1.0)
        second = await _durable_set(rt, "b", sweep)
        await clock.advance(sweep)
        assert first.done() and second.done()
        for task in (first, second):
            with pytest.raises(NotDurable):
                task.result()
        store.gate.set()


async def test_an_overdue_acknowledgement_names_the_store_error():
    clock = VirtualClock()
    store = Recorder()
    store.down = True
    async with runtime(store, flush_delay=0, clock=clock,
                       ask_timeout=1000) as rt:
        rt.durable_timeout = 0.5
        task = asyncio.create_task(rt.subject("d").set("x", 1, durable=True))
        await clock.advance(0.6)
        assert task.done()
        with pytest.raises(NotDurable, match=r"\(store error: the store is down \(test\)\)"):
            task.result()
        store.down = False
        await clock.advance(10)


async def test_a_cancelled_caller_does_not_hide_the_next_deadline():
    clock = VirtualClock()
    store = Recorder()
    store.gate.clear()
    async with runtime(store, flush_delay=0, clock=clock,
                       ask_timeout=1000) as rt:
        gone = await _durable_set(rt, "d", 1)
        waiting = await _durable_set(rt, "d", 2)
        gone.cancel()
        await clock.advance(2.1)
        assert waiting.done()
        with pytest.raises(NotDurable):
            waiting.result()
        store.gate.set()
        await within(rt.flush(), "flush once the gate is open")


async def test_acknowledgements_released_by_a_write_set_no_more_timers():
    clock = VirtualClock()
    store = Recorder()
    async with runtime(store, flush_delay=0, clock=clock,
                       ask_timeout=1000, durable_timeout=1) as rt:
        assert await within(rt.subject("d").set("x", 1, durable=True), "durable set") == 1
        # The same value again: no new version, and the stored one answers at once.
        assert await within(rt.subject("d").set("x", 1, durable=True), "the same set") == 1
        await clock.advance(1.1)  # the sweep finds nothing overdue, and stops
        assert clock.next_deadline() is None


async def test_a_stale_write_names_the_version_it_was_based_on():
    """Based on another writer's v2 (this writer never stored it), refused under a v3."""
    store = MemoryStore()
    async with runtime(store, flush_delay=0) as one, runtime(store, flush_delay=0) as two:
        await one.subject("d").set("x", 1, durable=True)
        await one.subject("d").set("x", 2, durable=True)
        assert await two.subject("d").get("x") == 2  # activated at v2
        await one.subject("d").set("x", 3, durable=True)
        with pytest.raises(StaleVersion, match=r"not the v2 this change was based on"):
            await within(two.subject("d").set("x", "two", durable=True), "the stale write")


# -- a retry refused after a lost reply ---------------------------------------------------------


@pytest.mark.parametrize("then", ["nothing", "one changes d", "two writes on top",
                                  "one changes d and two writes on top"])
async def test_a_retry_after_a_lost_reply(then):
    """One's v2 commits but its reply is lost; before the retry, one may change d again, and
    another runtime may write on top. The retry is refused, yet v2 is durable: its caller gets
    its answer. Only a change of one's made after v2 and under two's write is lost (reported
    once by flush); anything else ends with one holding the newest state, quietly."""
    clock = VirtualClock()
    store = Recorder()
    async with runtime(store, flush_delay=0, clock=clock, ask_timeout=1000,
                       durable_timeout=1000) as one, runtime(store, flush_delay=0) as two:
        assert one._pipeline is not None
        await one.subject("d").set("x", 1, durable=True)
        store.losing = one._pipeline.writer
        written = asyncio.create_task(one.subject("d").set("x", 2, durable=True))
        await settle()
        assert one._pipeline.failures == 1 and not written.done()
        store.losing = None
        if "one changes" in then:
            await one.subject("d").set("z", 3)  # v3, in memory
        if "two writes" in then:
            assert await within(two.subject("d").set("y", "two", durable=True), "two's write")
        await clock.advance(await next_wait(clock))  # the retry
        assert await within(written, "the answer to the lost write") == 2
        if then == "one changes d and two writes on top":
            with pytest.raises(StaleVersion, match="not the v2 this change") as flushed:
                await within(one.flush(), "flush")
            assert flushed.value.subjects == ("d",)
        else:
            await within(one.flush(), "flush")  # nothing to report
        await within(one.idle(), "one's reload")
        expected = {"x": 2, "y": "two"} if "two" in then else \
            {"x": 2, "z": 3} if "one" in then else {"x": 2}
        assert (await one.subject("d").state()).properties == expected
        snapshot = (await store.load_many(["d"]))["d"]
        assert snapshot.version == (3 if then != "nothing" else 2)
        if then == "nothing":  # v1, v2 (reply lost), the retry (refused): nothing more
            assert len(store.batches) == 3, store.batches


class LossySQLite(SQLiteStore):
    """The real SQLite store, whose writes by `losing` commit and then lose their reply."""

    losing: str | None = None

    async def save_many(self, writes: Any) -> list[str]:
        refused = await super().save_many(writes)
        if self.losing is not None and writes[0].writer == self.losing:
            raise StoreUnavailable("connection lost after commit (test)")
        return refused


@pytest.mark.parametrize("then", ["two writes on top", "one changes d"])
async def test_a_lost_reply_past_version_256(tmp_path, then):
    """Versions read back from SQLite are new int objects: past CPython's small ints, a
    comparison by identity instead of value would call this durable write or the change
    made after it stale."""
    path = str(tmp_path / "two.db")
    lossy = LossySQLite(path)
    clock = VirtualClock()
    async with runtime(lossy, flush_delay=0, clock=clock, ask_timeout=1000,
                       durable_timeout=1000) as one, \
            runtime(SQLiteStore(path), flush_delay=0) as two:
        assert one._pipeline is not None
        for i in range(299):
            await one.subject("d").set("x", i)
        await within(one.flush(), "flush of v299")
        lossy.losing = one._pipeline.writer
        written = asyncio.create_task(one.subject("d").set("x", "v300", durable=True))
        await settle()
        assert one._pipeline.failures == 1 and not written.done()
        lossy.losing = None
        if then == "two writes on top":
            assert await within(two.subject("d").set("y", "two", durable=True), "two's v301")
        else:
            await one.subject("d").set("y", "one")  # v301, written on top of v300
        await clock.advance(await next_wait(clock))  # the retry
        assert await within(written, "the answer to the lost write") == "v300"
        await within(one.flush(), "flush")  # nothing to report: nothing of one's was lost
        await within(one.idle(), "one's reload")
        y = "two" if then == "two writes on top" else "one"
        assert (await one.subject("d").state()).properties == {"x": "v300", "y": y}
        assert (await lossy.load_many(["d"]))["d"].version == 301


async def test_a_subject_the_store_lost_is_written_again(caplog):
    """Its row deleted by hand: the next write is refused, the store has nothing of it, and
    the state in memory (the newest there is) is written again from version 0."""
    store = Recorder()
    async with runtime(store, flush_delay=0) as rt:
        await rt.subject("d").set("x", 1, durable=True)
        assert await store.delete_many([Delete("d", 1)]) == []
        assert await within(rt.subject("d").set("y", 2, durable=True), "the write again") == 2
        await within(rt.flush(), "flush")  # nothing discarded
    snapshot = (await store.load_many(["d"]))["d"]
    assert snapshot.version == 2 and snapshot.properties == b'{"x":1,"y":2}'
    assert "the store holds nothing of d, which had v1 stored" in caplog.text

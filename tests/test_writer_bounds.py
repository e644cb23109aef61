"""The writer's bounds: batch size, batches in flight, shutdown, group commit, retry backoff.

Each test runs the real pipeline against the real in-memory store, instrumented (`Recorder`)
to count what is in flight and to hold writes at a gate. Every wait is bounded (`within`,
`until`): a broken writer fails in seconds, saying what did not happen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from runtime import NotDurable, Runtime, StaleVersion
from runtime._persistence import EXPIRY_CHECK, discarded_error
from runtime.testing import VirtualClock, settle
from storage import Delete, MemoryStore, SnapshotRefused, StoreUnavailable

T = TypeVar("T")
BOUND = 3.0  # seconds any single wait may take before the test fails


class Recorder(MemoryStore):
    """The real in-memory store, recording its batches and how many are in flight at once;
    writes wait at `gate` while it is clear, fail while `down` is set, and a batch holding a
    snapshot with "poison" in it is refused whole, as PostgreSQL refuses a value it cannot keep."""

    def __init__(self, write_concurrency: int | None = None) -> None:
        super().__init__()
        if write_concurrency is not None:
            self.write_concurrency = write_concurrency
        self.gate = asyncio.Event()
        self.gate.set()
        self.down = False
        self.down_after: int | None = None  # then `down` from the batch after that many
        self.batches: list[list[str]] = []
        self.flying: set[str] = set()  # names in a batch being written
        self.in_flight = 0
        self.most_in_flight = 0
        self.overlaps: list[str] = []  # names sent while a batch in flight held them
        self.cancelled = 0
        self.holds: dict[str, asyncio.Event] = {}  # a batch of that subject alone waits on it
        self.losing: str | None = None  # the writer whose writes commit but lose their reply

    async def save_many(self, writes: Any) -> list[str]:
        names = [w.name for w in writes]
        self.batches.append(names)
        self.overlaps += [n for n in names if n in self.flying]
        self.flying.update(names)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if len(names) == 1 and names[0] in self.holds:
                await self.holds[names[0]].wait()
            await self.gate.wait()
            if self.down or (self.down_after is not None and
                             len(self.batches) > self.down_after):
                raise StoreUnavailable("the store is down (test)")
            if any(b"poison" in w.properties for w in writes):
                raise SnapshotRefused("a poisoned snapshot (test)")
            refused = await super().save_many(writes)
            if self.losing is not None and writes[0].writer == self.losing:
                raise StoreUnavailable("connection lost after commit (test)")
            return refused
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
            self.flying.difference_update(names)

    def written(self) -> list[str]:
        return [name for batch in self.batches for name in batch]


def runtime(store: MemoryStore, **options: Any) -> Runtime:
    """A runtime on `store` whose shutdown is bounded too: a test that fails with a write
    held at the gate must not wait out the default 30 s on its way out."""
    options.setdefault("passivate_after", None)
    options.setdefault("shutdown_timeout", 2.0)
    return Runtime(store, **options)


async def within(aw: Awaitable[T], what: str, seconds: float = BOUND) -> T:
    """`await aw`, failing the test with `what` if it takes over `seconds` (a `NotDurable` of
    its own, also a TimeoutError, passes through)."""
    bound = asyncio.timeout(seconds)
    try:
        async with bound:
            return await aw
    except TimeoutError:
        if bound.expired():
            pytest.fail(f"{what}: did not happen within {seconds} s", pytrace=False)
        raise


async def until(check: Callable[[], bool], what: str, seconds: float = BOUND) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.002)

    await within(poll(), what, seconds)


async def stored(store: MemoryStore, names: list[str]) -> dict[str, bytes]:
    return {name: snap.properties for name, snap in (await store.load_many(names)).items()}


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


async def _next_wait(clock: VirtualClock) -> float:
    await settle()
    due = clock.next_deadline()
    assert due is not None, "the writer set no timer"
    return due - clock.now()


async def test_retry_backs_off_exponentially_up_to_5_s_and_resets_on_success():
    clock = VirtualClock()
    store = Recorder()
    store.down = True
    async with runtime(store, flush_delay=0, clock=clock) as rt:
        await rt.subject("a").set("x", 1)
        waits = []
        for _ in range(9):
            wait = await _next_wait(clock)
            waits.append(wait)
            await clock.advance(wait)
        for n, wait in enumerate(waits, 1):
            base = min(5.0, 0.05 * 2 ** (n - 1))
            assert base <= wait <= base * 1.2 + 1e-9, (n, waits)
        store.down = False
        await clock.advance(await _next_wait(clock))
        await settle()
        assert (await stored(store, ["a"]))["a"] == b'{"x":1}'
        assert rt._pipeline is not None and rt._pipeline.failures == 0
        store.down = True  # fails again: the backoff starts over
        await rt.subject("a").set("x", 2)
        assert 0.05 <= await _next_wait(clock) <= 0.06 + 1e-9
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
        assert await _next_wait(clock) > 0  # backing off
        store.down = False
        store.gate.set()  # "slow" succeeds: the backoff ends, time stands still
        await settle()
        assert len(await stored(store, ["slow", "b"])) == 2


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
    only = discarded_error({"a": refused, "b": refused, "c": refused})
    assert type(only) is SnapshotRefused and only.subjects == ("a", "b", "c")
    assert str(only) == ("the unsaved changes of 3 subject(s) were discarded since the last "
                         "flush: a: refused; b: refused; c: refused")
    four = discarded_error(dict.fromkeys("abcd", refused))
    assert str(four).endswith("c: refused (and 1 more)")



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
        await clock.advance(await _next_wait(clock))  # the retry
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

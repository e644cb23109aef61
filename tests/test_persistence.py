"""Snapshots: coalescing, group commit, forced stores, versions between runtimes, durable
acknowledgements, writes racing a snapshot in flight."""

import asyncio
import sqlite3

import pytest

from runtime import NotDurable, Runtime, StaleVersion
from storage import MemoryStore, SnapshotCorrupt, SnapshotRefused, Write


class GatedStore(MemoryStore):
    """The real in-memory store, whose writes wait at a gate the test opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.batches: list[list[Write]] = []
        self.in_flight = asyncio.Event()

    async def save_many(self, writes):
        self.batches.append(list(writes))
        self.in_flight.set()
        await self.gate.wait()
        return await super().save_many(writes)


async def test_many_turns_one_write_many_subjects_one_batch():
    store = GatedStore()
    async with Runtime(store, passivate_after=None, flush_delay=0.05) as rt:
        for i in range(100):
            await rt.subject("hot").set("n", i)
        await asyncio.gather(*(rt.subject(f"d:{i}").set("x", i) for i in range(300)))
        await rt.flush()
        written = [w.name for batch in store.batches for w in batch]
        assert written.count("hot") == 1  # coalesced
        assert len(store.batches) <= 3  # group commit: hundreds of subjects per batch
        snap = (await store.load_many(["hot"]))["hot"]
        assert snap.version == 100 and snap.properties == b'{"n":99}'


async def test_a_set_during_a_snapshot_in_flight_is_not_lost():
    store = GatedStore()
    async with Runtime(store, passivate_after=None, flush_delay=0) as rt:
        dev = rt.subject("d")
        await dev.set("x", 1)
        await store.in_flight.wait()
        store.gate.clear()
        store.in_flight.clear()
        await dev.set("x", 2)  # the first snapshot (x=1) may be in flight
        await asyncio.sleep(0.01)
        store.gate.set()
        await rt.flush()
    assert (await store.load_many(["d"]))["d"].properties == b'{"x":2}'


async def test_store_forces_a_snapshot_and_returns_its_version():
    store = GatedStore()
    async with Runtime(store, passivate_after=None, flush_delay=60) as rt:
        dev = rt.subject("d")
        await dev.set("x", 1)
        await dev.set("y", 2)
        assert await dev.store() == 2
        assert (await store.load_many(["d"]))["d"].version == 2


async def test_durable_acknowledgement_waits_for_the_commit():
    store = GatedStore()
    store.gate.clear()
    async with Runtime(store, passivate_after=None, flush_delay=0, durable_timeout=5) as rt:
        dev = rt.subject("d")
        pending = asyncio.create_task(dev.set("x", 1, durable=True))
        try:
            await asyncio.sleep(0.05)
            assert not pending.done()  # the turn is applied, the write is not committed yet
            assert await dev.get("x") == 1
        finally:
            store.gate.set()
        assert await pending == 1
        assert (await store.load_many(["d"]))["d"].version == 1


async def test_durable_acknowledgement_times_out_clearly():
    store = GatedStore()
    store.gate.clear()
    rt = Runtime(store, passivate_after=None, flush_delay=0, durable=True, durable_timeout=0.05)
    async with rt:
        try:
            with pytest.raises(NotDurable, match=r"not committed within 0\.05 s"):
                await rt.subject("d").set("x", 1)
        finally:
            store.gate.set()
    assert (await store.load_many(["d"]))["d"].properties == b'{"x":1}'


async def test_two_runtimes_never_overwrite_each_other(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    async with Runtime(url, passivate_after=None, flush_delay=0) as one, \
            Runtime(url, passivate_after=None, flush_delay=0) as two:
        assert await one.subject("d").get("x") is None
        assert await two.subject("d").get("x") is None  # both activated at version 0
        await one.subject("d").set("x", "one", durable=True)
        with pytest.raises(StaleVersion, match="another writer's version of 'd'"):
            await two.subject("d").set("x", "two", durable=True)
        await two.idle()
        assert await two.subject("d").get("x") == "one"  # reloaded, nothing overwritten
        await two.subject("d").set("x", "two again", durable=True)
    async with Runtime(url) as three:
        assert await three.subject("d").get("x") == "two again"


async def test_store_and_flush_raise_stale_version_naming_the_subject(tmp_path):
    """A write forced by `ref.store()` or `rt.flush()` and refused as stale is the caller's
    to hear of, with the subjects named, not only a line in the log."""
    url = f"sqlite:///{tmp_path}/shared.db"
    async with Runtime(url, passivate_after=None, flush_delay=0) as one, \
            Runtime(url, passivate_after=None, flush_delay=3600) as two:
        for rt in (one, two):
            assert await rt.subject("d").get("x") is None  # both activated at version 0
            assert await rt.subject("e").get("x") is None
        await one.subject("d").set("x", "one", durable=True)
        await one.subject("e").set("x", "one", durable=True)
        await two.subject("d").set("x", "two")  # write-behind: not written yet
        with pytest.raises(StaleVersion) as stored:
            await two.subject("d").store()
        assert stored.value.subjects == ("d",)
        await two.subject("e").set("x", "two")
        with pytest.raises(StaleVersion) as flushed:
            await two.flush()
        assert set(flushed.value.subjects) == {"d", "e"}
        await two.idle()
        assert await two.subject("e").get("x") == "one"  # reloaded, nothing overwritten


async def test_sqlite_round_trip_of_properties_and_extended_properties(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    async with Runtime(url) as rt:
        dev = rt.subject("device:é")
        await dev.patch({"cpu": 1.5, "tags": ["a", "b"], "nested": {"k": [1, None, True]}})
        await dev.set_ext("secret", {"n": 1})
    async with Runtime(url) as rt:
        view = await rt.subject("device:é").state()
        assert view.properties == {"cpu": 1.5, "tags": ["a", "b"],
                                   "nested": {"k": [1, None, True]}}
        assert view.ext == {"secret": {"n": 1}}
        assert view.version == 2


class LostReplyStore(MemoryStore):
    """The real in-memory store whose first write commits but whose reply is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    async def save_many(self, writes):
        refused = await super().save_many(writes)
        if not self.lost:
            self.lost += 1
            from storage import StoreUnavailable
            raise StoreUnavailable("connection lost after commit")
        return refused


async def test_a_write_whose_reply_was_lost_is_recognised_on_retry():
    store = LostReplyStore()
    async with Runtime(store, passivate_after=None, flush_delay=0) as rt:
        assert await rt.subject("d").set("x", 1, durable=True) == 1  # no StaleVersion
        await rt.subject("d").set("x", 2, durable=True)
    assert store.lost == 1
    assert (await store.load_many(["d"]))["d"].properties == b'{"x":2}'


async def test_shutdown_with_a_store_that_never_answers_is_bounded(caplog):
    store = GatedStore()
    store.gate.clear()  # every write hangs
    rt = Runtime(store, passivate_after=None, flush_delay=0, shutdown_timeout=0.2)
    await rt.start()
    await rt.subject("d").set("x", 1)
    await asyncio.wait_for(rt.close(), 5)
    assert "shutdown timed out" in caplog.text and "d" in caplog.text


async def test_a_snapshot_that_cannot_be_encoded_does_not_stop_the_writer(caplog):
    """Values are checked at `set`; a state corrupted behind the runtime's back (here by hand)
    fails that subject's durable writes clearly and reloads it, and every other write goes on."""
    store = MemoryStore()
    async with Runtime(store, passivate_after=None) as rt:
        await rt.subject("bad").set("a", 1, durable=True)
        rt._actors["bad"].props["a"] = "\ud800"  # no UTF-8 form: the encoder refuses it
        with pytest.raises(SnapshotRefused, match=r"'bad' cannot be stored.*reloaded from v1"):
            await rt.subject("bad").set("b", 2, durable=True)
        async with asyncio.timeout(5):  # nothing is left to write: the pipeline is settled
            with pytest.raises(SnapshotRefused) as flushed:  # it reports the discarded change
                await rt.flush()
        assert flushed.value.subjects == ("bad",)
        assert await rt.subject("good").set("a", 1, durable=True) == 1
        await rt.idle()
        assert (await rt.subject("bad").state()).properties == {"a": 1}  # as stored
        assert await rt.subject("bad").set("b", 3, durable=True) == 3
    assert "bad: the store cannot take its snapshot" in caplog.text
    found = await store.load_many(["bad", "good"])
    assert found["bad"].version == 2 and found["bad"].properties == b'{"a":1,"b":3}'
    assert found["good"].version == 1


async def test_batches_are_bounded_in_bytes_too():
    store = MemoryStore()
    async with Runtime(store, passivate_after=None, flush_batch=1000, flush_delay=0.001) as rt:
        big = "x" * (1024 * 1024)
        versions = await rt.patch_many({f"d:{i}": {"v": big} for i in range(20)}, durable=True)
        assert set(versions.values()) == {1}
        # About 4 MiB per batch: at least five batches, and every snapshot stored.
        assert store.writes >= 5
        assert len(await store.load_many([f"d:{i}" for i in range(20)])) == 20


async def test_store_waits_on_the_actor_that_ran_its_turn():
    """Between the STORE turn and its caller's wait, the subject may be passivated (its snapshot
    stored first) and activated again: the wait must not fall on the new, loading actor."""
    async with Runtime("memory://", max_active=1, durable_timeout=2,
                       passivate_after=None) as rt:
        a = rt.subject("a")
        await a.set("n", 1, durable=True)
        storing = False

        async def other_traffic():  # runs between the STORE turn and its caller
            while not (storing and "a" in rt._actors and
                       rt._directory.is_idle(rt._actors["a"])):
                await asyncio.sleep(0)
            await rt.subject("b").tell("noop")  # activating b passivates a (clean, idle)
            await a.tell("noop")  # and a comes back: another actor, loading

        helper = asyncio.create_task(other_traffic())
        await asyncio.sleep(0)
        await a.tell("noop")  # a is busy: store() goes through its mailbox
        storing = True
        async with asyncio.timeout(1):  # not durable_timeout: it was stored already
            assert await a.store() == 1
        await helper



async def test_redelivering_a_failed_store_answers_like_store(tmp_path):
    path = tmp_path / "r.db"
    async with Runtime(f"sqlite:///{path}", passivate_after=None) as rt:
        await rt.subject("d").set("x", 1, durable=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE subjects SET properties = 'not json' WHERE name = 'd'")
    async with Runtime(f"sqlite:///{path}", passivate_after=None) as rt:
        with pytest.raises(SnapshotCorrupt):
            await rt.subject("d").store()
        db.execute("""UPDATE subjects SET properties = '{"x": 1}' WHERE name = 'd'""")
        letter = rt.dead_letters.for_subject("d")[-1]
        assert await rt.redeliver(letter) == 1
    db.close()


async def test_flush_names_at_most_the_latest_discards(monkeypatch):
    """A runtime that never flushes does not pile up discards without bound."""
    from runtime import _persistence

    monkeypatch.setattr(_persistence, "DISCARDS_KEPT", 3)
    store = MemoryStore()
    async with Runtime(store, passivate_after=None, flush_delay=0) as rt:
        for i in range(5):
            await rt.subject(f"bad:{i}").set("a", 1, durable=True)
            rt._actors[f"bad:{i}"].props["a"] = "\ud800"  # no UTF-8 form: refused when written
            await rt.subject(f"bad:{i}").set("b", 2)
            await rt.idle()
        with pytest.raises(SnapshotRefused) as flushed:
            await rt.flush()
        assert flushed.value.subjects == ("bad:2", "bad:3", "bad:4")

"""Addresses, activation, mailboxes, backpressure and passivation."""

import asyncio

import pytest

from actors import SUBJECT_ACTIVATED, SUBJECT_PASSIVATED
from runtime import MailboxFull, Runtime, RuntimeNotRunning
from storage import MemoryStore


class CountingStore(MemoryStore):
    """The real in-memory store, counting what it is asked to load."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []

    async def load_many(self, names):
        self.loaded.extend(names)
        await asyncio.sleep(0.01)  # a store that takes a moment, so that messages race
        return await super().load_many(names)


async def eventually(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def test_a_reference_activates_nothing(rt):
    refs = [rt.subject(f"device:{i}") for i in range(1000)]
    assert refs[0] == rt.subject("device:0") and len(set(refs)) == 1000
    assert rt.active_subjects() == []


async def test_racing_first_messages_load_once_and_keep_order():
    store = CountingStore()
    async with Runtime(store, passivate_after=None) as rt:
        @rt.on("append")
        async def append(ctx):
            ctx.subject.set("log", [*ctx.subject.get("log", []), ctx.payload])

        await asyncio.gather(*(rt.tell("s", "append", i) for i in range(100)),
                             *(rt.tell(f"other:{i}", "append", i) for i in range(50)))
        await rt.idle()
        assert await rt.subject("s").get("log") == list(range(100))
        assert sorted(store.loaded) == sorted(["s", *(f"other:{i}" for i in range(50))])


async def test_activation_loads_are_batched():
    store = CountingStore()
    calls = []
    original = store.load_many

    async def spy(names):
        calls.append(len(names))
        return await original(names)

    store.load_many = spy
    async with Runtime(store, passivate_after=None) as rt:
        await asyncio.gather(*(rt.tell(f"d:{i}", "x") for i in range(200)))
        await rt.idle()
    assert sum(calls) == 200 and len(calls) < 10


async def test_an_idle_actor_owns_no_task(rt):
    await asyncio.gather(*(rt.subject(f"d:{i}").set("x", i) for i in range(2000)))
    await rt.idle()
    tasks = asyncio.all_tasks()
    # The test's own task, the writer, and at most a few parked workers: none per actor.
    assert len(tasks) < 10, tasks
    assert rt.stats()["active"] == 2000 and rt.stats()["busy"] == 0


async def test_full_mailbox_applies_backpressure_or_refuses():
    async with Runtime(passivate_after=None, mailbox_size=3) as rt:
        gate = asyncio.Event()
        done = []

        @rt.on("work")
        async def work(ctx):
            await gate.wait()
            done.append(ctx.payload)

        for i in range(4):  # one in its turn, three waiting
            await rt.tell("s", "work", i)
        with pytest.raises(MailboxFull, match="mailbox of 's' is full"):
            await rt.tell("s", "work", 99, wait=False)
        blocked = asyncio.create_task(rt.tell("s", "work", 4))
        await asyncio.sleep(0.02)
        assert not blocked.done()  # backpressure: the sender waits for room
        gate.set()
        await blocked
        await rt.idle()
        assert done == [0, 1, 2, 3, 4]


async def test_messages_between_subjects_ignore_the_bound():
    """Committed messages must never block a turn (two actors filling each other's mailboxes
    would deadlock); the bound is for senders outside the runtime."""
    async with Runtime(passivate_after=None, mailbox_size=2) as rt:
        @rt.on("fan")
        async def fan(ctx):
            for i in range(10):
                await ctx.emit("count", "sink", i)

        @rt.on("count")
        async def count(ctx):
            ctx.subject.set("n", ctx.subject.get("n", 0) + 1)

        await rt.tell("src", "fan")
        await rt.idle()
        assert await rt.subject("sink").get("n") == 10


async def test_idle_actors_are_passivated_and_come_back_with_their_state():
    lifecycle = []
    async with Runtime(passivate_after=0.05) as rt:
        @rt.on(SUBJECT_ACTIVATED, SUBJECT_PASSIVATED)
        async def watch(ctx):
            lifecycle.append((ctx.event_type, ctx.payload["subject"], ctx.subject.name))

        await rt.subject("d").set("x", [1, 2])
        await eventually(lambda: "d" not in rt.active_subjects())
        assert await rt.subject("d").get("x") == [1, 2]
        await eventually(lambda: len(lifecycle) >= 3)
    assert lifecycle[:3] == [
        (SUBJECT_ACTIVATED, "d", "supervisor:root"),
        (SUBJECT_PASSIVATED, "d", "supervisor:root"),
        (SUBJECT_ACTIVATED, "d", "supervisor:root"),
    ]


async def test_max_active_passivates_the_least_recently_used():
    async with Runtime(passivate_after=None, max_active=10, flush_delay=0) as rt:
        for i in range(10):
            await rt.subject(f"d:{i}").set("i", i)
        await rt.flush()
        await rt.subject("d:0").get("i")  # d:0 is now the most recently used
        await rt.subject("d:new").set("i", "new")
        active = set(rt.active_subjects())
        assert "d:1" not in active and "d:0" in active and "d:new" in active
        assert len(active) <= 10
        assert await rt.subject("d:1").get("i") == 1  # reactivated from its snapshot


async def test_a_runtime_not_started_refuses_clearly():
    rt = Runtime()
    with pytest.raises(RuntimeNotRunning, match="async with"):
        await rt.subject("d").set("x", 1)
    async with rt:
        await rt.subject("d").set("x", 1)
    with pytest.raises(RuntimeNotRunning):
        await rt.tell("d", "x")


async def test_leaving_the_block_drains_and_flushes(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    async with Runtime(url) as rt:
        @rt.on("chain")
        async def chain(ctx):
            if ctx.payload < 50:
                await ctx.emit("chain", f"n:{ctx.payload + 1}", ctx.payload + 1)
            ctx.subject.set("seen", True)

        await rt.tell("n:0", "chain", 0)  # returns at once; the chain runs on
    async with Runtime(url) as rt:
        assert all([await rt.subject(f"n:{i}").get("seen") for i in range(51)])

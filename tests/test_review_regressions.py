"""Regressions found by review: each test failed before its fix."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from actors import PROPERTY_CHANGED
from runtime import Backoff, NotDurable, Runtime, RuntimeNotRunning, SubjectStopped
from storage import MemoryStore, StoreUnavailable


async def test_a_snapshot_taken_during_a_turn_holds_only_committed_state():
    store = MemoryStore()
    async with Runtime(store, passivate_after=None, flush_delay=0) as rt:
        rt.supervise("acct:*", backoff=Backoff(min=0.01, max=0.01, jitter=0))

        @rt.on("withdraw", subject="acct:*")
        async def withdraw(ctx):
            ctx.subject.set("balance", ctx.subject.get("balance") - 100)
            await asyncio.sleep(0.05)  # the writer runs meanwhile
            raise RuntimeError("payment refused")

        acct = rt.subject("acct:1")
        await acct.set("balance", 100)
        await rt.flush()
        await acct.set("note", "x")  # dirty again, so the writer has work during the turn
        with pytest.raises(RuntimeError):
            await rt.ask("acct:1", "withdraw")
        await rt.idle()
        assert await acct.get("balance") == 100  # after the restart from the snapshot, too
    assert b'"balance":100' in (await store.load_many(["acct:1"]))["acct:1"].properties


class ReplyLostOnce(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.lost = False

    async def save_many(self, writes):
        refused = await super().save_many(writes)
        if not self.lost:
            self.lost = True
            raise StoreUnavailable("reply lost")
        return refused


async def test_a_lost_reply_then_newer_changes_lose_nothing():
    store = ReplyLostOnce()
    async with Runtime(store, passivate_after=None, flush_delay=0) as rt:
        s = rt.subject("s:1")
        await s.set("a", 1)
        await asyncio.sleep(0.02)  # the first write commits, its reply is lost
        await s.set("b", 2)
        await s.set("c", 3, durable=True)  # no StaleVersion: the store holds our own write
        assert (await s.state()).properties == {"a": 1, "b": 2, "c": 3}
    assert (await store.load_many(["s:1"]))["s:1"].properties == b'{"a":1,"b":2,"c":3}'


async def test_a_subject_stopped_during_its_backoff_stays_stopped():
    async with Runtime(passivate_after=None) as rt:
        group = rt.supervise("d:*", max_restarts=1, within=10,
                             backoff=Backoff(min=0.2, max=0.2, jitter=0), escalate=True)

        @rt.on("boom", subject="d:*")
        async def boom(ctx):
            raise RuntimeError("boom")

        for name in ("d:b", "d:c"):
            await rt.tell(name, "boom")
        await asyncio.sleep(0.25)  # b and c restarted
        await rt.tell("d:a", "boom")  # a now waits out a 0.2 s backoff
        for name in ("d:b", "d:c"):
            await rt.tell(name, "boom")  # both stopped: two escalations stop the supervisor
        await asyncio.sleep(0.05)
        assert group.stopped
        await asyncio.sleep(0.3)
        await rt.idle()
        with pytest.raises(SubjectStopped):
            await rt.subject("d:a").set("x", 1)


async def test_calls_between_subjects_still_work_while_the_runtime_drains_to_close():
    rt = Runtime(passivate_after=None)

    @rt.on("price", subject="catalog:*")
    async def price(ctx):
        return 42

    @rt.on("order", subject="order:*")
    async def order(ctx):
        ctx.subject.set("total", await ctx.ask("catalog:1", "price"))

    store = rt.store
    async with rt:
        await rt.tell("order:1", "order")  # handled during close()
    assert list(rt.dead_letters) == []
    assert (await store.load_many(["order:1"]))["order:1"].properties == b'{"total":42}'


class NeverLoads(MemoryStore):
    async def load_many(self, names):
        await asyncio.sleep(3600)
        return {}


async def test_a_shutdown_during_an_activation_answers_the_waiting_caller():
    rt = Runtime(NeverLoads(), passivate_after=None, shutdown_timeout=0.1)
    await rt.start()
    pending = asyncio.create_task(rt.subject("d").set("x", 1))
    await asyncio.sleep(0.02)
    await rt.close()
    with pytest.raises(RuntimeNotRunning):
        await asyncio.wait_for(pending, 2)
    assert rt.stats()["busy"] == 0


async def test_a_durable_write_committed_after_shutdown_gave_up_is_answered():
    """An inline turn still running when `close` gives up commits into a stopped pipeline: its
    caller must hear at once that the write is not durable, not wait forever."""

    class StuckStore(MemoryStore):
        async def save_many(self, writes):  # type: ignore[no-untyped-def]
            await asyncio.Event().wait()  # the store never answers

    rt = Runtime(StuckStore(), passivate_after=None, flush_delay=0, durable_timeout=1.0,
                 shutdown_timeout=0.2)

    @rt.on(PROPERTY_CHANGED, subject="slow")
    async def slow(ctx):
        await asyncio.sleep(0.5)  # the turn is still running when close() gives up

    await rt.start()
    await rt.subject("slow").get("x")
    await rt.subject("other").get("x")
    pending = asyncio.create_task(rt.subject("other").set("x", 1, durable=True))
    late = asyncio.create_task(rt.subject("slow").set("x", 1, durable=True))
    await asyncio.sleep(0.05)
    await rt.close()
    with pytest.raises(NotDurable, match="stopped before the write"):
        await pending
    async with asyncio.timeout(0.9):  # well before durable_timeout: at once
        with pytest.raises(NotDurable, match="stopped before the write"):
            await late


def test_a_runtime_whose_handler_holds_a_reference_can_be_collected():
    """References are tracked by the garbage collector: a handler closing over one makes a
    cycle through its runtime, which must still be collectable. The handler is what is watched
    (the runtime holds it, and the compiled build's `Runtime`, a native class, takes no weak
    reference): it outlives the cycle only if the runtime does."""

    def make() -> weakref.ref[Any]:
        rt = Runtime()
        peer = rt.subject("peer")

        @rt.on("ping", subject="*")
        async def forward(ctx):
            await peer.tell("pong")

        return weakref.ref(forward)

    refs = [make() for _ in range(10)]
    gc.collect()
    assert [r() for r in refs] == [None] * 10

"""The kit's event loops count the callbacks they have pending, on asyncio's default loop and on
uvloop alike, and the kit learns when a loop is quiet from that count alone: nothing private of
asyncio (nor of uvloop) is read."""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from pathlib import Path

import pytest

from runtime.testing import LOOP_KINDS, CountingLoop, SimRuntime, new_event_loop, settle

uvloop = pytest.importorskip("uvloop")

KIT = Path(__file__).resolve().parents[2] / "runtime" / "testing"
BASES = {"asyncio": asyncio.SelectorEventLoop, "uvloop": uvloop.Loop}


def run(kind, main):
    with asyncio.Runner(loop_factory=lambda: new_event_loop(kind)) as runner:
        return runner.run(main())


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_new_event_loop_extends_the_loop_asked_for(kind):
    loop = new_event_loop(kind)
    try:
        assert isinstance(loop, CountingLoop) and isinstance(loop, BASES[kind])
        assert not isinstance(loop, BASES["uvloop" if kind == "asyncio" else "asyncio"])
    finally:
        loop.close()


def test_an_unknown_kind_of_loop_is_refused():
    with pytest.raises(ValueError, match="asyncio, uvloop"):
        new_event_loop("trio")


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_callbacks_count_until_they_run_or_are_cancelled(kind):
    async def main():
        loop = asyncio.get_running_loop()
        ran = []
        assert loop.pending_callbacks() == 0  # this task runs: its step is not pending
        loop.call_soon(ran.append, 1)
        cancelled = loop.call_soon(ran.append, 2)
        loop.call_soon(ran.append, 3)
        assert loop.pending_callbacks() == 3
        cancelled.cancel()
        assert loop.pending_callbacks() == 2
        await asyncio.sleep(0)  # they run before this task's next step
        assert ran == [1, 3] and loop.pending_callbacks() == 0

    run(kind, main)


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_task_steps_and_future_callbacks_are_counted(kind):
    """asyncio's C Task and Future schedule through the loop's `call_soon`, uvloop or not."""
    async def main():
        loop = asyncio.get_running_loop()
        waiting = loop.create_future()
        waiting.add_done_callback(lambda fut: None)
        task = asyncio.create_task(asyncio.sleep(0))
        assert loop.pending_callbacks() == 1  # the task's first step
        waiting.set_result(None)
        assert loop.pending_callbacks() == 2  # and the future's callback
        await task
        await settle()
        assert loop.pending_callbacks() == 0

    run(kind, main)


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_other_threads_callbacks_count_and_timers_do_not(kind):
    async def main():
        loop = asyncio.get_running_loop()
        loop.call_later(3600, print)  # waits for time: quiet allows it
        woken = asyncio.Event()
        thread = threading.Thread(target=loop.call_soon_threadsafe, args=(woken.set,))
        thread.start()
        thread.join()
        assert loop.pending_callbacks() == 1
        await woken.wait()
        assert loop.pending_callbacks() == 0

    run(kind, main)


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_settle_waits_for_every_task_that_can_run(kind):
    async def main():
        done = []

        async def worker(n):
            for _ in range(n):
                await asyncio.sleep(0)
            done.append(n)

        tasks = [asyncio.create_task(worker(n)) for n in (30, 10, 20)]
        await settle()
        assert done == [10, 20, 30]
        await asyncio.gather(*tasks)

    run(kind, main)


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_a_loop_class_of_ones_own_counts_with_the_mixin(kind):
    class MyLoop(CountingLoop, BASES[kind]):
        pass

    async def main():
        async with SimRuntime(seed=3) as rt:
            await rt.subject("a:1").set("x", 1)
            await rt.clock.advance(60)
            return await rt.subject("a:1").get("x")

    with asyncio.Runner(loop_factory=MyLoop) as runner:
        assert runner.run(main()) == 1


class Watched(CountingLoop, asyncio.SelectorEventLoop):
    """asyncio's loop, counting, and noting every private attribute that code of the kit reads
    from it (the mixin's own `_counting_` ones aside)."""

    def __init__(self):
        self.read = []
        super().__init__()

    def __getattribute__(self, name):
        if name.startswith("_") and not name.startswith(("__", "_counting_")):
            caller = inspect.currentframe().f_back
            if Path(caller.f_code.co_filename).resolve().parent == KIT:
                object.__getattribute__(self, "read").append(name)
        return object.__getattribute__(self, name)


def test_the_kit_reads_nothing_private_of_the_loop():
    """A run with a seed, virtual time, restarts and passivation, on a loop that notes what the
    kit reads of it."""
    loop = Watched()

    async def main():
        async with SimRuntime(seed=5, passivate_after=30) as rt:
            @rt.on("boom")
            async def boom(ctx):
                raise RuntimeError("fails on purpose")

            await asyncio.gather(*(rt.subject(f"a:{i}").set("x", i) for i in range(4)))
            await rt.tell("a:1", "boom")
            await rt.run_until_idle()
            await rt.clock.advance(60)
            return rt.live_subjects()

    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        assert runner.run(main()) == []  # all of it ran: every subject passivated
    assert loop.read == []


PRIVATE = re.compile(
    r"loop(\(\))?\._(?!_)"  # loop._ready, get_running_loop()._ready
    r"|getattr\([^,]*loop[^,]*,\s*[\"']_(?!_)"  # getattr(loop, "_ready")
    r"|asyncio\.(\w+\.)*_\w"  # asyncio._something, asyncio.events._get_running_loop
    r"|from asyncio(\.\w+)* import _"
    r"|from asyncio\.(base_events|base_futures|base_tasks|selector_events|unix_events) import"
)


def test_the_kits_source_names_nothing_private_of_asyncio():
    found = [f"{path.name}:{n}: {line.strip()}"
             for path in sorted(KIT.glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if PRIVATE.search(line)]
    assert found == []
    assert PRIVATE.search('ready = getattr(loop, "_ready", None)')  # what it used to do

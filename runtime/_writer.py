"""The writer's loop, an async generator: mypyc compiles `_persistence.py` but not async
generators, so this one function stays interpreted; it drives the compiled `Pipeline`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._actor import Actor
    from ._persistence import Pipeline


async def run_writer(pipeline: Pipeline) -> AsyncIterator[list[tuple[Actor, str]]]:
    """The writer: gathers dirty actors into batches and writes them, forever. Yields the
    actors whose unsaved changes the store refused (with why): they hold state nobody can
    store, and the consumer reloads them. Everything else it settles itself."""
    loop = asyncio.get_running_loop()
    while True:
        if pipeline._refusals:
            refused, pipeline._refusals = pipeline._refusals, []
            for actor, error, _ in refused:
                if error is not None:
                    # Told only now, as the consumer reloads the actor (before anything
                    # else runs): a caller that hears of the loss finds it reloading.
                    pipeline._fail_acks(actor, error)
            yield [(actor, why) for actor, _, why in refused]
            continue
        if not pipeline._dirty:
            if not pipeline._in_flight and pipeline._flushers:
                flushers, pipeline._flushers = pipeline._flushers, []
                for settled in flushers:
                    if not settled.done():
                        settled.set_result(None)
            await pipeline._sleep()
            continue
        if not pipeline._urgent and len(pipeline._dirty) < pipeline._batch_size:
            await pipeline._gather()
        if len(pipeline._writers) >= pipeline._concurrency:
            await pipeline._sleep()  # a writer finishing wakes us
            continue
        if pipeline.failures:  # the store is failing: back off before the next attempt
            await pipeline._back_off()
        actors, writes = pipeline._take_batch()
        if not actors:
            if pipeline._dirty:  # every dirty actor is in a batch in flight: wait for one
                await pipeline._sleep()
            continue  # (or the store refused every one of them: nothing is left)
        writer = loop.create_task(pipeline._write(actors, writes))
        pipeline._writers.add(writer)
        writer.add_done_callback(pipeline._writer_done)

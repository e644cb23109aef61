"""Shared fixtures: a fresh runtime per test on the in-memory store, every wait of it bounded.

A broken cascade or writer must fail its test within seconds, saying what did not happen, not
hang until the runner's timeout: with `rt`, asks time out after `BOUND` seconds, the runtime must
go idle within `BOUND` seconds after the test and drain at shutdown within as many, and the test
itself must finish within `TEST_BOUND` seconds.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from runtime import Runtime

BOUND = 5.0
TEST_BOUND = 10.0


@pytest.fixture
async def rt() -> AsyncIterator[Runtime]:
    runtime = Runtime(passivate_after=None, ask_timeout=BOUND, shutdown_timeout=BOUND)
    async with runtime:
        yield runtime
        await went_idle(runtime, "after the test")


async def went_idle(runtime: Runtime, when: str) -> None:
    """Wait until every mailbox of `runtime` is empty; fail, saying so, past `BOUND` s."""
    try:
        async with asyncio.timeout(BOUND):
            await runtime.idle()
    except TimeoutError:
        pytest.fail(f"the runtime did not go idle within {BOUND} s {when}: {runtime.busy} "
                    f"subjects still had work (active: {runtime.active_subjects()[:10]}); "
                    "a cascade or a mailbox that never empties?", pytrace=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Bound every `async def` test that uses `rt` (see the module's docstring)."""
    for item in items:
        if (isinstance(item, pytest.Function) and "rt" in item.fixturenames
                and inspect.iscoroutinefunction(item.obj)):
            item.obj = bounded(item.obj, item.name)


def bounded(test: Callable[..., Coroutine[Any, Any, Any]],
            name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(test)
    async def run(**kwargs: Any) -> Any:
        limit = asyncio.timeout(TEST_BOUND)
        try:
            async with limit:
                return await test(**kwargs)
        except TimeoutError:
            if not limit.expired():
                raise  # the test's own timeout (an AskTimeout, say)
        runtime = kwargs.get("rt")
        busy = f"; {runtime.busy} subjects still had work" if runtime is not None else ""
        pytest.fail(f"{name} did not finish within {TEST_BOUND} s: a turn, cascade or wait "
                    f"never completed{busy}", pytrace=False)

    return run

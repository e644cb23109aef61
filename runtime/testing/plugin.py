"""The pytest plugin of the testing kit (entry point `subjects`): the `runtime` fixture, a fresh
`SimRuntime` per test, and the `subjects` marker for its options. An `async def` test that uses
the fixture runs on pytest-asyncio whatever its mode:

    @pytest.mark.subjects(seed=7, passivate_after=60)
    async def test_something(runtime): ...
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, TypeVar, cast

import pytest

from ._sim import SimRuntime

F = TypeVar("F", bound=Callable[..., Any])


def _async_fixture(func: F) -> F:
    """pytest-asyncio's fixture decorator, which runs async fixtures in its strict mode too.
    This plugin loads wherever subjects is installed, pytest-asyncio or not: without it, the
    fixture is a plain one and pytest says it cannot run it."""
    try:
        import pytest_asyncio
    except ImportError:
        return cast(F, pytest.fixture(func))
    return cast(F, pytest_asyncio.fixture(func))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str,
                              obj: object) -> Generator[None, Any, Any]:
    """Mark `async def` tests that use the `runtime` fixture `asyncio`, so that they run as they
    are, without configuring pytest-asyncio (its default, strict mode, runs only marked tests).
    A wrapper inside pytest-asyncio's own (trylast): it converts marked tests after this."""
    items = yield
    if collector.config.pluginmanager.hasplugin("asyncio"):
        for item in items if isinstance(items, list) else [items]:
            if (isinstance(item, pytest.Function) and "runtime" in item.fixturenames
                    and inspect.iscoroutinefunction(item.obj)
                    and item.get_closest_marker("asyncio") is None):
                item.add_marker(pytest.mark.asyncio)
    return items


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "subjects(**options): options of the `runtime` fixture's SimRuntime "
                   "(seed=, passivate_after=, root=, ...)")


@_async_fixture
async def runtime(request: pytest.FixtureRequest) -> AsyncIterator[SimRuntime]:
    """A started `SimRuntime` on the in-memory store, recording every event; after the test it
    runs until idle (virtual time moving as needed) and closes."""
    marker = request.node.get_closest_marker("subjects")
    rt = SimRuntime(**(marker.kwargs if marker else {}))
    async with rt:
        yield rt

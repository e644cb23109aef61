"""The pytest plugin of the testing kit (entry point `subjects`): the `runtime` fixture, a fresh
`SimRuntime` per test, and the `subjects` marker for its options. An `async def` test that uses
the fixture (or carries the marker) runs on pytest-asyncio whatever its mode:

    @pytest.mark.subjects(seed=7, passivate_after=60)
    async def test_something(runtime): ...

Such tests run on an event loop of `runtime.testing.new_event_loop` (virtual time needs a loop
that can tell when nothing can run): asyncio's default loop, or uvloop with
`@pytest.mark.subjects(loop="uvloop")` or, for every such test, the ini option
`subjects_loop = uvloop`. Several kinds (`loop=("asyncio", "uvloop")`, `subjects_loop = asyncio
uvloop`) run the test once on each. Markers on a test, its class and its module add up, the
nearest winning. Other async tests keep the loop they would have had. The loops come through
pytest-asyncio's `pytest_asyncio_loop_factories` hook (pytest-asyncio >= 1.5); a project that
implements that hook itself answers first, and must give these tests such loops too.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from typing import Any, TypeVar, cast

import pytest

from ._loops import LOOP_KINDS, new_event_loop
from ._quiet import counting_loop
from ._sim import SimRuntime

F = TypeVar("F", bound=Callable[..., Any])

# One factory per kind, the same object for every test: pytest-asyncio parametrizes the loop
# with it, and a loop shared by several tests (loop_scope="module") is shared only if they
# have the same parameter.
_FACTORIES = {kind: functools.partial(new_event_loop, kind) for kind in LOOP_KINDS}


def _async_fixture(func: F) -> F:
    """pytest-asyncio's fixture decorator, which runs async fixtures in its strict mode too.
    This plugin loads wherever subjects is installed, pytest-asyncio or not: without it, the
    fixture is a plain one and pytest says it cannot run it."""
    try:
        import pytest_asyncio
    except ImportError:
        return cast(F, pytest.fixture(func))
    return cast(F, pytest_asyncio.fixture(func))


def _ours(item: pytest.Function) -> bool:
    """Whether the test uses the `runtime` fixture or carries the `subjects` marker."""
    return "runtime" in item.fixturenames or item.get_closest_marker("subjects") is not None


def _options(node: pytest.Item) -> dict[str, Any]:
    """The options of the `subjects` markers on the test, its class and its module, the
    nearest winning."""
    options: dict[str, Any] = {}
    for marker in reversed(list(node.iter_markers("subjects"))):
        options.update(marker.kwargs)
    return options


def _needs_marking(item: pytest.Function) -> bool:
    return (item.config.pluginmanager.hasplugin("asyncio") and _ours(item)
            and inspect.iscoroutinefunction(item.obj)
            and item.get_closest_marker("asyncio") is None)


@pytest.hookimpl(wrapper=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> Generator[None, None, None]:
    """Mark the test's definition `asyncio` before pytest-asyncio looks at it (every plugin's
    hook runs inside this wrapper): only a marked definition gets the loops of this plugin."""
    if _needs_marking(metafunc.definition):
        metafunc.definition.add_marker(pytest.mark.asyncio)
    return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str,
                              obj: object) -> Generator[None, Any, Any]:
    """Mark `async def` tests that use the `runtime` fixture `asyncio`, so that they run as they
    are, without configuring pytest-asyncio (its default, strict mode, runs only marked tests).
    A wrapper inside pytest-asyncio's own (trylast): it converts marked tests after this."""
    items = yield
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, pytest.Function) and _needs_marking(item):
            item.add_marker(pytest.mark.asyncio)
    return items


@pytest.hookimpl(optionalhook=True, trylast=True)
def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Function
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loops a test runs on (one test per loop): the kit's loops for the kit's tests,
    and for any other test the loop it would have had without this hook."""
    if not _ours(item):
        return {"default": asyncio.new_event_loop}
    kinds = _options(item).get("loop") or config.getini("subjects_loop") or ["asyncio"]
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    unknown = [kind for kind in kinds if kind not in LOOP_KINDS]
    if unknown:
        pytest.fail(f"{item.nodeid}: unknown kind of event loop {', '.join(map(repr, unknown))}"
                    f" (known: {', '.join(LOOP_KINDS)})", pytrace=False)
    return {kind: _FACTORIES[kind] for kind in kinds}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("subjects_loop", "the kinds of event loop tests using the `runtime` fixture "
                  "run on, each test once on each: asyncio (the default), uvloop", type="args")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "subjects(**options): options of the `runtime` fixture's SimRuntime "
                   "(seed=, passivate_after=, root=, ...), and loop= the kind(s) of event loop "
                   "the test runs on (asyncio, uvloop)")


@_async_fixture
async def runtime(request: pytest.FixtureRequest) -> AsyncIterator[SimRuntime]:
    """A started `SimRuntime` on the in-memory store, recording every event; after the test it
    runs until idle (virtual time moving as needed) and closes."""
    try:
        counting_loop()
    except RuntimeError as exc:
        raise RuntimeError(
            f"{exc}. pytest-asyncio >= 1.5 runs this test on such a loop, unless a "
            f"`pytest_asyncio_loop_factories` hook of your own answers first") from None
    options = _options(request.node)
    options.pop("loop", None)
    rt = SimRuntime(**options)
    async with rt:
        yield rt

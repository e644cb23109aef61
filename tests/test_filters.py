"""`@when` filters on both paths of a turn: with middleware registered (filters run by
`call_handler`) and without (run inline by the turn). Each test runs on both."""

from __future__ import annotations

import pytest

from actors import PROPERTY_CHANGED, Registry, _behaviours
from runtime import Runtime


@pytest.fixture(params=["no middleware", "middleware"])
def with_middleware(request, rt: Runtime) -> Runtime:
    """The `rt` fixture, with a pass-through middleware in the second run."""
    if request.param == "middleware":
        @rt.middleware
        async def through(ctx, next):
            return await next()
    return rt


async def test_a_filter_false_skips_and_true_runs(with_middleware):
    rt = with_middleware
    calls = []

    @rt.on("n")
    @rt.when(lambda ctx: ctx.payload > 2)
    async def big(ctx):
        calls.append(ctx.payload)

    for n in (1, 3, 2, 4):
        await rt.tell("s", "n", n)
    await rt.idle()
    assert calls == [3, 4]


async def test_an_async_filter_is_awaited(with_middleware):
    rt = with_middleware
    calls = []

    async def even(ctx):
        return ctx.payload % 2 == 0

    async def never(ctx):
        return False

    @rt.on("n")
    @rt.when(even)
    async def h(ctx):
        calls.append(ctx.payload)

    @rt.on("n")
    @rt.when(never)  # a coroutine object is truthy: only awaiting it says no
    async def not_called(ctx):
        calls.append("never")

    for n in range(4):
        await rt.tell("s", "n", n)
    await rt.idle()
    assert calls == [0, 2]


async def test_a_sync_filter_returning_an_awaitable_is_awaited(with_middleware):
    rt = with_middleware
    calls = []

    async def no(ctx):
        return False

    async def yes(ctx):
        return True

    @rt.on("n")
    @rt.when(lambda ctx: no(ctx))
    async def skipped(ctx):
        calls.append("skipped")

    @rt.on("n")
    @rt.when(lambda ctx: yes(ctx))
    async def ran(ctx):
        calls.append("ran")

    await rt.tell("s", "n")
    await rt.idle()
    assert calls == ["ran"]


@pytest.mark.parametrize("verdict, runs", [
    (None, False), (0, False), ("", False), ([], False), (0.0, False),
    (1, True), ("yes", True), ([0], True), (2.5, True),
])
async def test_a_sync_filter_returning_a_non_bool_counts_by_its_truth(with_middleware, verdict,
                                                                       runs):
    rt = with_middleware
    calls = []

    @rt.on("n")
    @rt.when(lambda ctx: verdict)
    async def h(ctx):
        calls.append(ctx.payload)
        return "ran"

    await rt.tell("s", "n", 1)
    await rt.idle()
    assert calls == ([1] if runs else [])


async def test_every_stacked_filter_must_pass_and_the_first_no_stops(with_middleware):
    rt = with_middleware
    asked = []

    def ask(name, answer):
        def predicate(ctx):
            asked.append(name)
            return answer
        return predicate

    @rt.on("n")
    @rt.when(ask("first", True))
    @rt.when(ask("second", False))
    @rt.when(ask("third", True))
    async def h(ctx):
        asked.append("handler")

    await rt.tell("s", "n")
    await rt.idle()
    assert asked == ["first", "second"]


async def test_a_filtered_out_handler_gives_no_reply_and_the_next_answers(with_middleware):
    rt = with_middleware

    @rt.on("q")
    @rt.when(lambda ctx: ctx.payload == "first")
    async def first(ctx):
        return "first"

    @rt.on("q")
    async def second(ctx):
        return "second"

    assert await rt.ask("s", "q", "first") == "first"
    assert await rt.ask("s", "q", "other") == "second"


async def test_only_the_asked_event_gives_the_reply(with_middleware):
    rt = with_middleware

    @rt.on("q")
    async def ask(ctx):
        ctx.subject.set("x", ctx.payload)
        return None

    @rt.on(PROPERTY_CHANGED)
    async def changed(ctx):
        return "not the reply"

    @rt.on("q")
    async def later(ctx):
        return "reply"

    assert await rt.ask("s", "q", 1) == "reply"
    assert await rt.ask("s", "q", 2) == "reply"


async def test_the_handler_name_is_set_for_middleware_only_when_it_runs(rt):
    names = []

    @rt.middleware
    async def record(ctx, next):
        names.append(ctx.handler)
        return await next()

    @rt.on("n")
    @rt.when(lambda ctx: False)
    async def skipped(ctx):
        pass

    @rt.on("n")
    async def ran(ctx):
        pass

    await rt.tell("s", "n")
    await rt.idle()
    assert [n.rsplit(".", 1)[-1] for n in names] == ["ran"]


async def test_when_takes_only_callables(rt):
    with pytest.raises(TypeError, match="@when takes a callable"):
        rt.when(True)


def test_a_registry_matches_by_subject_and_bounds_its_cache(monkeypatch):
    monkeypatch.setattr(_behaviours, "_CACHE_LIMIT", 4)
    with pytest.raises(TypeError, match="pattern"):
        Registry().on("e", subject="")  # refused by `on` itself, before any decoration
    with pytest.raises(ValueError, match="limit"):
        Registry().on("e" * 10_000)
    registry = Registry()

    @registry.on("e", subject="dev:*")
    async def dev(ctx):
        pass

    @registry.on("e", "f")
    async def anyone(ctx):
        pass

    assert [h.func for h in registry.match("e", "dev:1")] == [dev, anyone]
    assert [h.func for h in registry.match("e", "user:1")] == [anyone]
    assert [h.func for h in registry.match("f", "dev:1")] == [anyone]
    assert registry.match("g", "dev:1") == ()

    @registry.on("h", subject="#1")  # sorts before "*": still a pattern to match, not "any"
    async def hash_one(ctx):
        pass

    assert [h.func for h in registry.match("h", "#1")] == [hash_one]
    assert registry.match("h", "other") == ()
    assert registry.listens_to("f") and not registry.listens_to("g")
    assert "subject='dev:*'" in repr(registry.handlers[0])
    sizes = []
    for i in range(10):
        registry.match("e", f"dev:{i}")
        sizes.append(len(registry._cache))
    assert sizes == [3, 4, 1, 2, 3, 4, 1, 2, 3, 4]  # full at 4: cleared before the next
    assert [h.func for h in registry.match("e", "dev:0")] == [dev, anyone]


def test_the_match_cache_is_bounded_at_any_size(monkeypatch):
    monkeypatch.setattr(_behaviours, "_CACHE_LIMIT", 300)  # past CPython's small-int cache
    registry = Registry()

    @registry.on("e", subject="dev:*")
    async def dev(ctx):
        pass

    for i in range(305):
        registry.match("e", f"dev:{i}")
    assert len(registry._cache) == 5

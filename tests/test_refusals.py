"""A refusal of the caller's input is the caller's error, never the actor's failure.

Before: an ask nobody handles counted as a failed turn, so sixteen asks stopped four subjects,
whose escalations stopped the root supervisor and with it every subject of the runtime.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import InvalidPayload, ValueNotStorable
from runtime import Backoff, NoHandler, Policy, Runtime, SubjectStopped

FAST = Backoff(min=0.001, max=0.001, jitter=0)


def strict_runtime(**options) -> Runtime:
    """A runtime that stops a subject at its first failure: any refusal counted as a failure
    would show at once."""
    rt = Runtime(passivate_after=None, root=Policy(max_restarts=0, within=60, backoff=FAST),
                 **options)

    @rt.on("checked")
    async def checked(ctx):
        if not isinstance(ctx.payload, int):
            raise InvalidPayload(f"checked wants an integer, not {ctx.payload!r}")
        ctx.subject.set("n", ctx.payload)
        return ctx.payload

    @rt.on("store-it")
    async def store_it(ctx):
        ctx.subject.set("kept", ctx.payload)  # the payload may be a value no store keeps

    return rt


async def test_asks_nobody_handles_stop_nothing():
    async with strict_runtime() as rt:
        await rt.subject("user:1").set("name", "ada")
        for s in range(1, 5):  # the reproduction: 4 subjects x 4 asks
            for _ in range(4):
                with pytest.raises(NoHandler):
                    await rt.ask(f"x:{s}", "nope")
        assert rt.halted is None
        assert rt.stats()["stopped"] == 0
        assert await rt.subject("x:1").get("anything", "default") == "default"
        assert await rt.subject("user:1").get("name") == "ada"
        # The caller heard each refusal: none is a dead letter to inspect.
        assert len(rt.dead_letters) == 0


async def test_invalid_payloads_and_unstorable_values_refuse_without_stopping():
    async with strict_runtime() as rt:
        ref = rt.subject("c:1")
        assert await rt.ask(ref, "checked", 1) == 1
        for _ in range(5):
            with pytest.raises(InvalidPayload, match="wants an integer"):
                await rt.ask(ref, "checked", "two")
            with pytest.raises(ValueNotStorable):
                await rt.ask(ref, "store-it", "nul \u0000 inside")
        assert await ref.get("n") == 1  # each refused turn changed nothing
        assert await ref.get("kept") is None
        assert await rt.ask(ref, "checked", 3) == 3
        assert rt.stats()["stopped"] == 0


async def test_a_refused_message_nobody_waits_for_is_a_dead_letter():
    async with strict_runtime() as rt:
        await rt.tell("c:1", "checked", "two")
        await rt.idle()
        [letter] = rt.dead_letters
        assert (letter.subject, letter.name, type(letter.error)) == ("c:1", "checked",
                                                                     InvalidPayload)
        assert await rt.ask("c:1", "checked", 4) == 4  # and the subject was not stopped


async def test_a_stopped_subject_does_not_escalate_by_default():
    async with strict_runtime() as rt:
        @rt.on("boom")
        async def boom(ctx):
            raise RuntimeError("boom")

        for i in range(20):  # far more stops than the root's intensity (0) allows
            with pytest.raises(RuntimeError):
                await rt.ask(f"bad:{i}", "boom")
        await rt.idle()
        with pytest.raises(SubjectStopped):
            await rt.subject("bad:0").get("x")
        assert rt.halted is None and not rt.root.stopped
        await rt.subject("good:1").set("x", 1)
        assert await rt.subject("good:1").get("x") == 1


async def test_escalation_is_opt_in_per_supervisor():
    async with strict_runtime() as rt:
        quiet = rt.supervise("quiet:*", max_restarts=0, within=60, backoff=FAST)
        loud = rt.supervise("loud:*", max_restarts=0, within=60, backoff=FAST, escalate=True)

        @rt.on("boom")
        async def boom(ctx):
            raise RuntimeError("boom")

        for name in ("quiet:1", "quiet:2", "loud:1"):
            with pytest.raises(RuntimeError):
                await rt.ask(name, "boom")
        await rt.idle()
        assert not quiet.stopped
        assert loud.stopped  # one stop is past its intensity of 0
        assert rt.halted is None  # the root does not take escalations by default
        with pytest.raises(SubjectStopped, match="supervisor 'loud:\\*' stopped"):
            await rt.subject("loud:2").set("x", 1)
        await rt.subject("quiet:3").set("x", 1)


refusal = st.sampled_from(["no-handler", "invalid", "unstorable"])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.one_of(refusal, st.integers(0, 99))),
                max_size=40))
async def test_refusals_never_stop_a_subject_nor_change_its_state(messages):
    """Any mix of refused and accepted messages over a few subjects: each subject ends with the
    last accepted value (a replay of the accepted messages alone), and none is stopped."""
    expected: dict[str, int] = {}
    async with strict_runtime() as rt:
        for subject, what in messages:
            name = f"s:{subject}"
            if what == "no-handler":
                with pytest.raises(NoHandler):
                    await rt.ask(name, "nope")
            elif what == "invalid":
                with pytest.raises(InvalidPayload):
                    await rt.ask(name, "checked", [what])
            elif what == "unstorable":
                with pytest.raises(ValueNotStorable):
                    await rt.ask(name, "store-it", "\ud800")
            else:
                assert await rt.ask(name, "checked", what) == what
                expected[name] = what
        assert rt.stats()["stopped"] == 0
        for subject in range(4):
            name = f"s:{subject}"
            assert await rt.subject(name).get("n") == expected.get(name)
            assert await rt.subject(name).get("kept") is None

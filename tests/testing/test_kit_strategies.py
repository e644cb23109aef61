"""The kit's hypothesis strategies generate what they promise: valid names, values a snapshot
stores exactly, and messages that the runtime takes."""

from __future__ import annotations

import asyncio
import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import runtime.testing as kit
from actors import check_subject_name, normalize
from runtime import Policy
from runtime.testing import (
    LOOP_KINDS,
    Crash,
    Delete,
    Patch,
    Set,
    SimRuntime,
    Tell,
    crashes,
    deletes,
    message_sequences,
    new_event_loop,
    patches,
    property_values,
    sets,
    subject_names,
    tells,
)


def same(a, b):
    """Equal, type for type, all the way down (1 is not True, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


@given(subject_names())
def test_subject_names_are_valid(name):
    assert check_subject_name(name) == name


@given(subject_names("device:", max_size=80))
def test_subject_names_take_a_prefix_and_stay_within_the_limit(name):
    assert name.startswith("device:") and len(name.encode()) <= 255
    check_subject_name(name)


@given(property_values())
def test_property_values_are_stored_exactly(value):
    assert same(normalize(value), value)
    assert same(msgspec.json.decode(msgspec.json.encode(value)), value)


@pytest.mark.parametrize("loop", LOOP_KINDS)
@settings(max_examples=50, deadline=None)
@given(messages=message_sequences(sets(["a:1", "a:2"], ["x", "y"]), deletes("a:1", "x"),
                         patches(st.sampled_from(["a:2"]), ["x", "y"]),
                         tells(["a:1"], "ping", st.integers()), crashes(["a:2"]),
                         max_size=12))
def test_message_sequences_are_taken_by_the_runtime(loop, messages):
    async def main():
        async with SimRuntime(root=Policy(max_restarts=100, within=1)) as rt:
            @rt.on("ping")
            async def ping(ctx):
                ctx.subject.set("pinged", ctx.payload)

            for message in messages:
                await message.send(rt)
                await rt.run_until_idle()
            return {name: (await rt.subject(name).state()).properties for name in ("a:1", "a:2")}

    with asyncio.Runner(loop_factory=lambda: new_event_loop(loop)) as runner:
        final = runner.run(main())
    expected = {"a:1": {}, "a:2": {}}
    for m in messages:
        props = expected[m.subject]
        if isinstance(m, Set):
            props[m.prop] = m.value
        elif isinstance(m, Delete):
            props.pop(m.prop, None)
        elif isinstance(m, Patch):
            props.update(m.values)
        elif isinstance(m, Tell):
            props["pinged"] = m.payload
        else:
            assert isinstance(m, Crash)
    assert final == expected


def test_the_public_names_are_pinned():
    assert set(kit.__all__) == {
        "LOOP_KINDS", "BehaviourMachine", "Chooser", "CountingLoop", "Crash", "Delete",
        "EventRecorder", "InjectedCrash", "Message", "Patch", "Set", "SimRuntime", "Tell",
        "VirtualClock", "crashes", "deletes", "message_sequences", "new_event_loop", "patches",
        "property_values", "sets", "settle", "subject_names", "tells",
    }
    for name in kit.__all__:
        assert getattr(kit, name) is not None

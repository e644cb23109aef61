import datetime
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import InvalidSubjectName, ValueNotStorable, check_subject_name, normalize
from actors._values import too_deep
from runtime import Runtime


@pytest.mark.parametrize("name", ["device:1", "user:42", "a", "ü" * 63, "x" * 255, "a/b?c=d"])
def test_valid_names(name):
    assert check_subject_name(name) == name


@pytest.mark.parametrize(
    "name, why",
    [
        ("", "empty"),
        ("x" * 256, "bytes long"),
        ("ü" * 128, "bytes long"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\nb", "whitespace"),
        ("a\x00b", "control"),
        ("a\u00a0b", "whitespace"),
        (42, "must be a str"),
        (None, "must be a str"),
    ],
)
def test_invalid_names(name, why):
    with pytest.raises(InvalidSubjectName, match=why):
        check_subject_name(name)


async def test_runtime_refuses_invalid_names_everywhere(rt):
    with pytest.raises(InvalidSubjectName):
        rt.subject("bad name")
    with pytest.raises(InvalidSubjectName):
        await rt.tell("", "ping")
    with pytest.raises(InvalidSubjectName):
        await rt.ask("a\nb", "ping")
    assert rt.active_subjects() == []


def test_normalize_keeps_json_values():
    for value in [1, "s", True, None, 1.5, [1, "a"], {"a": [1, {"b": None}]}]:
        assert normalize(value) == value


def test_normalize_converts_to_the_stored_form():
    assert normalize((1, 2)) == [1, 2]
    assert normalize({"t": (1,)}) == {"t": [1]}
    assert normalize(datetime.date(2026, 1, 2)) == "2026-01-02"
    assert normalize({1: "a"}) == {"1": "a"}
    assert normalize(math.nan) is None


def test_normalize_refuses_what_cannot_be_stored():
    with pytest.raises(ValueNotStorable, match="object"):
        normalize(object())
    with pytest.raises(ValueNotStorable):
        normalize({"f": lambda: 1})
    with pytest.raises(ValueNotStorable):
        normalize({(1, 2): "tuple key"})


async def test_set_refuses_unstorable_values_at_call_time():
    async with Runtime() as rt:
        dev = rt.subject("d")
        with pytest.raises(ValueNotStorable):
            await dev.set("x", object())
        with pytest.raises(TypeError):
            await dev.set("", 1)
        assert (await dev.state()).properties == {}


@pytest.mark.parametrize("value", ["a\x00b", "\ud800", ["ok", "\x00"], {"k\x00": 1},
                                   {"a": ["\udfff"]}, ("\\\x00",)])
def test_text_every_store_cannot_keep_is_refused(value):
    # NUL: PostgreSQL's JSONB refuses it; a lone surrogate has no UTF-8 form. One rule for
    # every store, so that a state can move between stores.
    with pytest.raises(ValueNotStorable, match=r"NUL|surrogate"):
        normalize(value)


def test_text_that_only_looks_like_nul_is_kept():
    assert normalize("\\u0000") == "\\u0000"  # a backslash, then the letters u0000
    assert normalize(["\\\\u0000", "é", "\U0001f600"]) == ["\\\\u0000", "é", "\U0001f600"]


async def test_unstorable_text_is_refused_at_the_caller_and_nothing_is_sent():
    async with Runtime() as rt:
        dev = rt.subject("d")
        for write in (dev.set("x", "a\x00"), dev.set("x\x00", 1), dev.set("\ud800", 1),
                      dev.patch({"ok": 1, "x": "\ud800"}), dev.patch({"ok": 1, "x\x00": 1}),
                      dev.set_ext("x", "a\x00"),
                      rt.patch_many({"d": {"ok": 1}, "e": {"x": ["\x00"]}})):
            with pytest.raises(ValueNotStorable):
                await write
        assert (await dev.state()).properties == {}
        assert rt.dead_letters.for_subject("d") == []  # refused before any turn


async def test_unstorable_text_set_by_a_handler_fails_only_its_turn():
    async with Runtime() as rt:
        @rt.on("store")
        async def store(ctx):
            ctx.subject.set("x", ctx.payload)

        with pytest.raises(ValueNotStorable):
            await rt.ask("d", "store", "a\x00")
        await rt.ask("d", "store", "fine")
        assert (await rt.subject("d").state()).properties == {"x": "fine"}


def test_integers_too_long_to_write_are_refused():
    assert normalize(2**70) == 2**70  # big integers are fine: JSON numbers have no size
    with pytest.raises(ValueNotStorable, match="bits cannot be stored"):
        normalize(10**5000)
    with pytest.raises(ValueNotStorable, match="too big to show"):
        normalize([10**5000])


async def test_values_too_long_or_too_deep_are_refused_at_the_caller():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    async with Runtime() as rt:
        for value in (10**5000, deep):
            with pytest.raises(ValueNotStorable):
                await rt.subject("d").set("x", value)


def nested(depth: int, inner=None):
    value = inner
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("depth", [101, 990, 100_000])
def test_values_nested_past_the_limit_are_refused_with_the_limit(depth):
    assert normalize(nested(100)) == nested(100)
    with pytest.raises(ValueNotStorable, match="more than 100 levels deep"):
        normalize(nested(depth))


@pytest.mark.parametrize("text, depth", [
    ("[]", 1), ('{"a": [1, {"b": []}]}', 4), ('["[[[[", "]]"]', 1),
    (r'["\"[[[", "\\", [["\\\"]"]]]', 3), ('[' * 300 + ']' * 300, 300),
    ('[[]]' * 200, 2), ('[' + '[1],' * 200 + '[]]', 2),
])
def test_the_depth_of_json_text_is_counted_outside_strings(text, depth):
    assert not too_deep(text, depth) and not too_deep(text.encode(), depth)
    assert too_deep(text, depth - 1) == (depth - 1 >= 0)


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


_TRICKY_TEXT = st.text(alphabet='[]{}"\\ab\n', max_size=6)


@settings(max_examples=500, deadline=None)
@given(st.recursive(st.none() | st.integers() | _TRICKY_TEXT,
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(_TRICKY_TEXT, inner, max_size=3), max_leaves=30),
       st.integers(0, 6))
def test_the_depth_of_any_json_text_is_what_its_value_has(value, limit):
    text = json.dumps(value)
    assert too_deep(text, limit) == (_depth(value) > limit), text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), _TRICKY_TEXT), max_size=6), st.integers(0, 45))
def test_the_depth_of_deeply_nested_json_text_is_what_its_value_has(branches, limit):
    value = [nested(depth, text) for depth, text in branches]
    text = json.dumps(value)
    assert too_deep(text, limit) == (_depth(value) > limit), text

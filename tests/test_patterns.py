"""Glob patterns: the meaning of `fnmatch`, at a cost linear in the pattern, with a length limit
wherever patterns come from."""

import fnmatch
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors._patterns import MAX_PATTERN_LENGTH, compile_pattern
from runtime import Runtime

# Characters with a meaning in globs or in regexes, so that every rule gets exercised.
_GLOB = st.text(alphabet="ab-!]^[*?\\&~|", min_size=1, max_size=10)
_NAME = st.text(alphabet="ab-!]^[\\&~|c", max_size=8)


@settings(max_examples=2000, deadline=None)
@given(_GLOB, st.lists(_NAME, max_size=5))
def test_patterns_mean_what_fnmatch_means(pattern, names):
    match = compile_pattern(pattern)
    for name in names:
        assert bool(match(name)) == fnmatch.fnmatchcase(name, pattern), (pattern, name)


def test_unclosed_brackets_compile_in_linear_time():
    # fnmatch took 16 s over 32,000 of them, growing with the square of their number.
    started = time.perf_counter()
    match = compile_pattern("[" * MAX_PATTERN_LENGTH)
    assert match("[" * MAX_PATTERN_LENGTH) and not match("[")
    assert time.perf_counter() - started < 0.5


def test_adversarial_patterns_match_in_bounded_time():
    name = "a" * 255
    for pattern in ("*a" * 500 + "b", "*" + "a" * 254 + "b*", "*" + "?" * 254 + "b*",
                    "*" + "[!b]" * 200 + "b*"):
        match = compile_pattern(pattern)
        started = time.perf_counter()
        for _ in range(10):
            assert not match(name)
        assert time.perf_counter() - started < 0.5, pattern


def test_patterns_over_the_limit_are_refused_everywhere():
    long = "x" * MAX_PATTERN_LENGTH + "*"
    with pytest.raises(ValueError, match="1025 characters long; the limit is 1024"):
        compile_pattern(long)
    rt = Runtime()
    with pytest.raises(ValueError, match="the limit is"):
        rt.on("ping", subject=long)
    with pytest.raises(ValueError, match="the limit is"):
        rt.on(long)
    with pytest.raises(ValueError, match="the limit is"):
        rt.supervise(long)

"""hypothesis strategies for what tests of behaviours send: subject names, property values the
snapshot codec stores exactly, messages and sequences of them.

Wherever a strategy takes `subjects`, `props` or `event_types`, a plain sequence of constants
(or one constant) will do as well as a strategy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

from hypothesis import strategies as st

from actors import InvalidSubjectName, check_subject_name

from ._messages import Crash, Delete, Message, Patch, Set, Tell

Choices: TypeAlias = st.SearchStrategy[str] | Sequence[str] | str


def subject_names(prefix: str = "", *, max_size: int = 30) -> st.SearchStrategy[str]:
    """Valid subject names, `prefix` followed by up to `max_size` printable characters (any
    script, no whitespace), within the 255-byte limit."""
    # Other (C*) and separators (Z*) are what `str.isprintable()` refuses: exactly what a
    # subject name must not contain.
    suffixes = st.text(st.characters(exclude_categories=("C", "Z")),
                       min_size=0 if prefix else 1, max_size=max_size)
    return suffixes.map(lambda suffix: prefix + suffix).filter(_valid_name)


def _valid_name(name: str) -> bool:
    try:
        check_subject_name(name)
    except InvalidSubjectName:
        return False
    return True


def property_values(*, max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Values a snapshot stores exactly as they are: None, booleans, integers, finite floats,
    strings (without NUL or lone surrogates: no store keeps those), and lists and string-keyed
    dicts of these. A value read back after a reload equals the one set, type for type."""
    text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
    scalars = (st.none() | st.booleans() | st.integers()
               | st.floats(allow_nan=False, allow_infinity=False) | text)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=max_leaves)


def sets(subjects: Choices, props: Choices,
         values: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Set]:
    """`Set` messages (default values: `property_values()`)."""
    return st.builds(Set, _choices(subjects), _choices(props),
                     property_values() if values is None else values)


def deletes(subjects: Choices, props: Choices) -> st.SearchStrategy[Delete]:
    return st.builds(Delete, _choices(subjects), _choices(props))


def patches(subjects: Choices, props: Choices,
            values: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Patch]:
    """`Patch` messages setting one or more properties in one turn."""
    return st.builds(Patch, _choices(subjects), st.dictionaries(
        _choices(props), property_values() if values is None else values, min_size=1))


def tells(subjects: Choices, event_types: Choices,
          payloads: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Tell]:
    """`Tell` messages (default payload: None)."""
    return st.builds(Tell, _choices(subjects), _choices(event_types),
                     st.none() if payloads is None else payloads)


def crashes(subjects: Choices) -> st.SearchStrategy[Crash]:
    return st.builds(Crash, _choices(subjects))


def message_sequences(*messages: st.SearchStrategy[Message], min_size: int = 0,
                      max_size: int = 20) -> st.SearchStrategy[list[Message]]:
    """Lists of messages drawn from any of the given message strategies."""
    return st.lists(st.one_of(*messages), min_size=min_size, max_size=max_size)


def _choices(choices: Choices) -> st.SearchStrategy[str]:
    if isinstance(choices, st.SearchStrategy):
        return choices
    if isinstance(choices, str):
        return st.just(choices)
    return st.sampled_from(choices)

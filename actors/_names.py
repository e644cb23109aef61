"""Subject names: the addresses of actors.

A name is checked once, where it enters the system (a reference, a message, an edge route), so
that the engine below can treat every name it holds as valid.
"""

from __future__ import annotations

from ._errors import SubjectsError

MAX_NAME_BYTES = 255


class InvalidSubjectName(SubjectsError, ValueError):
    """A subject name is empty, too long, or contains whitespace or control characters."""


def check_subject_name(name: object) -> str:
    """Return `name` if it is a valid subject name, else raise `InvalidSubjectName`."""
    if type(name) is not str:
        raise InvalidSubjectName(f"subject name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidSubjectName("subject name must not be empty")
    # str.isprintable() is False for control characters and for every Unicode separator except
    # the ASCII space, which we refuse separately: one C-level scan covers all the rules.
    if not name.isprintable() or " " in name:
        raise InvalidSubjectName(
            f"subject name {name!r} must not contain whitespace or control characters"
        )
    # At most 4 bytes per character in UTF-8: short names cannot exceed the limit, skip encoding.
    if len(name) > MAX_NAME_BYTES // 4 and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidSubjectName(
            f"subject name is {len(name.encode('utf-8'))} bytes long; the limit is {MAX_NAME_BYTES}"
        )
    return name

"""Glob patterns (`*`, `?`, `[...]`, `[!...]`) on names, compiled and matched in linear time.

Patterns come from code (`@on`, supervisors, payload schemas) and from clients (tokens, WebSocket
watches), so a pattern must not cost more than its length. `fnmatch.translate` scans for the
`]` of every `[` to the end of the pattern, quadratic in the number of unclosed brackets (32,000
of them took 16 s), and `re` keeps compiled patterns in a cache. Here each character is read
once, and patterns over `MAX_PATTERN_LENGTH` are refused outright. The regex we build has the
shape fnmatch's has since Python 3.11: the fixed run between two stars sits in an atomic group,
so a match never backtracks into an earlier star, and costs at most len(name) x len(pattern).
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Subject names are at most 255 bytes; a pattern four times that still leaves room for long
# character classes, and anything longer is a mistake or an attack.
MAX_PATTERN_LENGTH = 1024
# A run of `*` in the parsed pattern; no regex piece is a bare `*` (a literal one is escaped).
_STAR = "*"
# What a compiled pattern returns is truthy for a match: a bool, or an `re.Match` or None.
Matcher = Callable[[str], object]


def compile_pattern(pattern: str) -> Matcher:
    """A glob pattern as a fast predicate on a name. Raises TypeError for a non-string or empty
    pattern, ValueError for one over `MAX_PATTERN_LENGTH` characters."""
    if type(pattern) is not str or not pattern:
        raise TypeError(f"a pattern must be a non-empty str, not {pattern!r:.80}")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"a pattern is {len(pattern)} characters long; the limit is "
                         f"{MAX_PATTERN_LENGTH}")
    if pattern == "*":
        return _always
    if not any(c in pattern for c in "*?["):
        return pattern.__eq__
    return re.compile(translate(pattern)).match


def _always(_: str) -> bool:
    return True


def translate(pattern: str) -> str:
    """The regex of a glob pattern, matching the whole name; what `fnmatch.translate` means,
    built in one pass."""
    parts = _parse(pattern)
    out: list[str] = []
    i, n = 0, len(parts)
    while i < n and parts[i] != _STAR:  # the fixed run before the first star
        out.append(parts[i])
        i += 1
    while i < n:  # parts[i] is a star, followed by a fixed run
        i += 1
        start = i
        while i < n and parts[i] != _STAR:
            i += 1
        fixed = "".join(parts[start:i])
        if i == n:
            out.append(".*" + fixed)  # the last run is anchored at the end: plain backtracking
        else:
            # The first place the run fits is as good as any later one for what follows.
            out.append(f"(?>.*?{fixed})")
    return "(?s:" + "".join(out) + r")\Z"


def _parse(pattern: str) -> list[str]:
    """The pattern as regex pieces, one per character or set, and `_STAR` for each run of
`*`."""
    parts: list[str] = []
    i, n = 0, len(pattern)
    # Past this index no `]` closes a set: every later `[` is a literal. Remembering it keeps
    # a pattern of many unclosed `[` linear (fnmatch scans to the end for each of them).
    unclosed_from = n + 1
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not parts or parts[-1] != _STAR:
                parts.append(_STAR)
        elif c == "?":
            parts.append(".")
        elif c == "[" and i < unclosed_from:
            # As in fnmatch: `!` negates, and a `]` first in the set is a member.
            j = i + 1 if i < n and pattern[i] == "!" else i
            if j < n and pattern[j] == "]":
                j += 1
            end = pattern.find("]", j)
            if end < 0:
                unclosed_from = i
                parts.append(re.escape(c))
            else:
                parts.append(_char_set(pattern[i:end]))
                i = end + 1
        else:
            parts.append(re.escape(c))
    return parts


def _char_set(body: str) -> str:
    """The regex of the inside of `[...]`: members and `a-z` ranges, `!` first negating. Every
    member is escaped, so nothing in it reads as regex syntax (`\\`, `^`, `&&`, `--`...)."""
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    items: list[str] = []
    k, n = 0, len(body)
    while k < n:
        if k + 2 < n and body[k + 1] == "-":
            low, high = body[k], body[k + 2]
            if low <= high:  # a reversed range matches nothing, as in fnmatch
                items.append(f"{re.escape(low)}-{re.escape(high)}")
            k += 3
        else:
            items.append(re.escape(body[k]))
            k += 1
    if not items:
        return "." if negate else "(?!)"
    return "[" + ("^" if negate else "") + "".join(items) + "]"

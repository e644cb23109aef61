"""The root of every error subjects raises."""

from __future__ import annotations


class SubjectsError(Exception):
    """Base of the errors of subjects: the model's (`actors`), the engine's (`runtime`), the
    stores' (`storage`) and the edge's answers. `except SubjectsError` catches what the library
    raises and nothing of the application's own. Errors that refuse bad input also derive from
    the builtin a Python caller would expect (`ValueError`, `TypeError`)."""


# Errors of compiled modules live here: mypyc cannot compile a class deriving from a builtin
# exception, and this module stays interpreted.
class TurnClosed(SubjectsError, RuntimeError):
    """A handler kept `ctx.subject` and used it after its turn ended."""


class ValueNotStorable(SubjectsError, TypeError):
    """A property value has no JSON form that every store keeps, so no snapshot could hold it."""

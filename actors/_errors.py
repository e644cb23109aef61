"""The root of every error subjects raises."""

from __future__ import annotations


class SubjectsError(Exception):
    """Base of the errors of subjects: the model's (`actors`), the engine's (`runtime`), the
    stores' (`storage`) and the edge's answers. `except SubjectsError` catches what the library
    raises and nothing of the application's own. Errors that refuse bad input also derive from
    the builtin a Python caller would expect (`ValueError`, `TypeError`)."""

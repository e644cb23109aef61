"""Errors the engine reports to callers. Each names what happened and to which subject."""

from __future__ import annotations

from itertools import islice
from typing import Any

from actors import SubjectsError
from actors._refused import REFUSALS as _REFUSED_INPUT


class RuntimeNotRunning(SubjectsError):
    """A message was sent to a runtime that is not started (use `async with rt:`) or is closing."""


class MailboxFull(SubjectsError):
    """The subject's mailbox is at its bound and the caller asked not to wait."""

    def __init__(self, subject: str, size: int) -> None:
        super().__init__(f"mailbox of {subject!r} is full ({size} messages)")
        self.subject = subject


class SubjectStopped(SubjectsError):
    """The subject was stopped by its supervisor (restart intensity exceeded); it refuses messages
    until restarted with `rt.restart(name)`."""

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"subject {subject!r} is stopped: {reason}")
        self.subject = subject


class AskCycleError(SubjectsError):
    """An ask (or a `get`) from a turn would wait on a subject that already waits, directly or
    not, on the asker: a deadlock, since each subject runs one turn at a time and a call waits
    in its target's mailbox. Found at once, before anything is sent, both along one chain of
    nested asks (the chain an ask carries) and across separate turns asking each other (the
    runtime's graph of which running turn waits on which subject). `chain` is the cycle, from
    the subject asked, already waiting, round to it again: `("a", "b", "a")`."""

    def __init__(self, chain: tuple[str, ...], target: str) -> None:
        path = " -> ".join((*chain, target))
        super().__init__(f"ask cycle: {path} (the last subject is already waiting in this chain)")
        self.chain = (*chain, target)


class AskTimeout(SubjectsError, TimeoutError):
    """No reply within the ask's timeout. The message may still be handled later."""


class NoHandler(SubjectsError, LookupError):
    """An ask found no behaviour for that event type on that subject."""


# Errors of a turn that refuse the caller's input: the caller's fault, not the actor's failure.
REFUSALS: tuple[type[Exception], ...] = (*_REFUSED_INPUT, NoHandler)


class CascadeTooDeep(SubjectsError):
    """A turn's cascade of property events did not settle within the depth limit (usually two
    behaviours that keep changing each other's property)."""


class StaleVersion(SubjectsError):
    """The store refused a snapshot because another writer stored a newer version; the actor
    was reloaded from the store and its unsaved changes were discarded. `subjects` names the
    subjects whose changes were discarded, when the runtime knows them (`flush()`)."""

    def __init__(self, message: str, subjects: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.subjects = subjects


class NotDurable(SubjectsError, TimeoutError):
    """A durable acknowledgement was asked for, but the snapshot was not committed in time."""


class BatchFailed(SubjectsError):
    """Some messages of a batch failed. Each subject's turn stands alone: the others were
    applied (and, if durable, stored). `results` holds what succeeded and `errors` why the
    others failed, both by subject name."""

    def __init__(self, results: dict[str, Any], errors: dict[str, BaseException]) -> None:
        listed = "; ".join(f"{name}: {type(exc).__name__}: {exc}"
                           for name, exc in islice(errors.items(), 3))
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        super().__init__(f"{len(errors)} of {len(results) + len(errors)} subjects failed: "
                         f"{listed}{more}")
        self.results = results
        self.errors = errors
